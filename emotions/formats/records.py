"""Rules every input format shares: which fields hold the id and the text, how a value becomes
comment text, and the per-comment size limit.

Kept in one place so a JSON array, a JSON Lines file and a CSV file with the same comments give
exactly the same records (the output is joined with the embeddings pipeline by ``id``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, NamedTuple

from emotions.errors import InputError, InputTooLargeError

ID_FIELDS: Final = ("id", "comment_id", "commentId", "cid")
TEXT_FIELDS: Final = ("comment", "text", "textOriginal", "textDisplay", "content")
# Consecutive records as two columns, (ids, texts): what the fast reading paths give.
Columns = tuple[list[Any], list[str]]
LIMIT_SETTING: Final = "EMOTIONS_MAX_COMMENT_CHARS"

_KINDS: Final = (
    (bool, "true/false"),  # before int: bool is an int subclass
    (int | float, "a number"),
    (str, "a string"),
    (list, "an array"),
    (dict, "an object"),
)

# What orjson may have parsed inexactly: it turns an integer beyond 64 bits into a float, and
# an id can be an array or object holding one. Only ids and texts matter (other fields are not
# kept), and such values are rare, so a record holding one is parsed again (exact_loads).
_MAYBE_INEXACT: Final = (float, list, dict)


class InexactNumber(Exception):
    """A record's id or text may have lost digits in orjson: parse its source again exactly.

    orjson silently turns an integer beyond 64 bits into a float, and an id is a join key: a
    comment id ``12345678901234567890123`` must come out as it went in, not as
    ``1.2345678901234568e22``. Checking each record's two values is far cheaper than scanning
    every input byte for long runs of digits (which ids and URLs inside strings are full of).
    """


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def exact_loads(raw: bytes | memoryview) -> Any:
    """Parse JSON keeping every integer exact (the standard library; slower than orjson)."""
    return json.loads(bytes(raw), parse_constant=_refuse_constant)


# Where a record sits, for error messages only: rendered lazily, because a file can hold a
# million records and only the failing one is ever described.
Where = Callable[[], str]


class At:
    """A location: the file, optionally a line or record number, then a JSON path inside it.

    Renders as ``comments.jsonl line 12``, ``threads.json: items[3].snippet`` or
    ``pages.json record 2: items[0].replies.comments[1]``. A step deeper keeps a reference to
    its parent and is only rendered when an error names it: a location is made for every
    record, and read for almost none.
    """

    __slots__ = ("_label", "_name", "_number", "_parent", "_part")

    def __init__(
        self,
        name: str,
        label: str = "",
        number: int = 0,
        parent: At | None = None,
        part: str = "",
    ) -> None:
        self._name, self._label, self._number = name, label, number
        self._parent, self._part = parent, part

    def __call__(self) -> str:
        base = f"{self._name} {self._label} {self._number}" if self._label else self._name
        path = self._path()
        return f"{base}: {path}" if path else base

    def _path(self) -> str:
        if self._parent is None:
            return ""
        above = self._parent._path()
        dot = "." if above and not self._part.startswith("[") else ""
        return f"{above}{dot}{self._part}"

    def numbered(self, label: str, number: int) -> At:
        """The same file, at a line or record number (``comments.json record 5``)."""
        return At(self._name, label, number)

    def __truediv__(self, part: str) -> At:
        """One step deeper: ``at / "items[3]"``, ``at / "snippet"``."""
        return At(self._name, self._label, self._number, self, part)


class Record(NamedTuple):
    """One comment: its id exactly as the input gave it (or its position), and its text."""

    id: Any
    comment: str


def utf8_length(text: str) -> int:
    """Bytes of ``text`` in UTF-8; ``str.isascii`` is a flag check, so ASCII costs no encoding."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def first_key(obj: Mapping[str, Any], names: Iterable[str]) -> str | None:
    """The first of ``names`` that ``obj`` has, whatever its value."""
    for name in names:
        if name in obj:
            return name
    return None


def id_of(obj: Mapping[str, Any], names: Iterable[str] = ID_FIELDS) -> Any:
    """The first id field that is present and not null (a null id cannot be joined on)."""
    for name in names:
        value = obj.get(name)
        if value is not None:
            return value
    return None


def shorten(value: object, limit: int = 40) -> str:
    """A value cut to ``limit`` characters, so one huge key cannot swamp an error message."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def list_names(names: Iterable[object], limit: int = 15) -> str:
    """Comma-separated, shortened names for messages ("found keys: ...")."""
    shown = [shorten(name) for name in names]
    if not shown:
        return "none"
    more = f" (and {len(shown) - limit} more)" if len(shown) > limit else ""
    return ", ".join(shown[:limit]) + more


def kind_of(value: object) -> str:
    """A JSON name for a value's type, as a user would recognise it."""
    if value is None:
        return "null"
    for types, name in _KINDS:
        if isinstance(value, types):
            return name
    return type(value).__name__


def as_text(value: Any, where: Where, field: str) -> str:
    """Comment text from a field value: strings as given, null as "", numbers as decimals."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise InputError(
        f"{where()}: field {field!r} is {kind_of(value)}; expected text, a number or null"
    )


class RecordMaker:
    """Builds records in file order and numbers them, so positional ids count every record."""

    def __init__(self, max_comment_chars: int) -> None:
        self.max_comment_chars = max_comment_chars
        self.position = 0
        self.exact = False  # True: values come from exact_loads, floats are really floats

    def exactly(self, make: Callable[[], Iterable[Record]], position: int) -> list[Record]:
        """Records made again from an exact parse, numbered from ``position`` on."""
        self.position, self.exact = position, True
        try:
            return list(make())
        finally:
            self.exact = False

    def plain(self, obj: dict[str, Any]) -> Record | None:
        """The record of a plain comment object in one tight step, or None when anything about
        it needs a closer look (:meth:`from_object` then gives the record or the error).

        Plain: a text field holding a string within the limit, an id that is absent, null or
        a string or integer (orjson parses those exactly). Most records of most files are.
        """
        for field in TEXT_FIELDS:
            if field in obj:
                text = obj[field]
                break
        else:
            return None
        if type(text) is not str or len(text) > self.max_comment_chars:
            return None
        for name in ID_FIELDS:
            rid = obj.get(name)
            if rid is not None:
                if type(rid) is not str and type(rid) is not int:
                    return None
                break
        return self.known(rid, text)

    def known(self, id_value: Any, text: str) -> Record:
        """The next record, from an id (``None``: use the position) and a text already known
        to be a string within the limit."""
        if id_value is None:
            id_value = str(self.position)
        self.position += 1
        return Record(id_value, text)

    def make(self, id_value: Any, text: Any, where: Where, field: str = "text") -> Record:
        """A record from an id (``None``: use the position) and a raw text value.

        Raises :class:`InexactNumber` for an id or text that orjson may have parsed inexactly.
        """
        if not self.exact and (type(text) is float or type(id_value) in _MAYBE_INEXACT):
            raise InexactNumber
        comment = as_text(text, where, field)
        if len(comment) > self.max_comment_chars:
            named = "" if id_value is None else f" (id {shorten(repr(id_value))})"
            raise InputTooLargeError(
                f"{where()}{named}: the comment is {len(comment):,} characters long, over the "
                f"limit of {self.max_comment_chars:,} ({LIMIT_SETTING}); shorten it or raise "
                f"{LIMIT_SETTING}"
            )
        if id_value is None:
            id_value = str(self.position)
        self.position += 1
        return Record(id_value, comment)

    def from_object(self, obj: Mapping[str, Any], where: Where) -> Record:
        """A record from a comment object, by the shared id and text field names."""
        field = first_key(obj, TEXT_FIELDS)
        if field is None:
            raise InputError(
                f"{where()} has no text field: expected one of {', '.join(TEXT_FIELDS)}; "
                f"found keys: {list_names(obj)}"
            )
        return self.make(id_of(obj), obj[field], where, field)

    def from_value(self, value: Any, where: Where) -> Record:
        """A record from an object, or from a bare string (a comment without an id)."""
        if isinstance(value, dict):
            return self.from_object(value, where)
        if isinstance(value, str):
            return self.make(None, value, where)
        raise InputError(
            f"{where()} is {kind_of(value)}; expected a comment object such as "
            '{"id": "...", "comment": "..."} or a string'
        )
