"""A file holding one JSON document: an array of comments, youtube-comment-downloader's
``{"comments": [...]}``, or YouTube Data API responses (one page, or an array of pages).

orjson has no streaming parser, so the document is read whole; the raw bytes are dropped as soon
as they are parsed, leaving only the objects (a million-comment file is JSON Lines in practice).
A document that stops before its end (orjson fails at the last byte) is reported as incomplete:
a file still being written, not a malformed one.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any, BinaryIO, Final

import orjson

from emotions.errors import IncompleteInputError, InputError
from emotions.formats import youtube_api
from emotions.formats.detect import BOM, STILL_WRITING, not_utf8_error
from emotions.formats.records import (
    TEXT_FIELDS,
    At,
    InexactNumber,
    Record,
    RecordMaker,
    exact_loads,
    first_key,
    kind_of,
    list_names,
)
from emotions.formats.texts import DECODE_ERRORS, Undecided, decode_doc, plain_document_texts
from emotions.formats.texts import document_texts as texts_of

BLANKS: Final = " \t\r\n"  # JSON's whitespace
# An object with none of these keys is neither an API page nor an API resource (see
# youtube_api.is_response / is_item): the common case, a plain comment, skips those checks.
API_KEYS: Final = frozenset({"items", "kind", "snippet"})
UNKNOWN_SHAPE: Final = (
    'unknown JSON shape: expected an array of comment objects, {"comments": [...]} or a '
    'YouTube Data API response with "items"'
)


def document_records(stream: BinaryIO, name: str, maker: RecordMaker) -> Iterator[Record]:
    """Parse the whole stream as one JSON document and yield its comments in order.

    The raw bytes are kept while the records are made: should a record's id or text need an
    exact parse (:class:`InexactNumber`, rare), the same bytes are parsed again and the records
    already handed on are skipped, not repeated.
    """
    raw = stream.read()
    start = len(BOM) if raw.startswith(BOM) else 0
    body = memoryview(raw)[start:]
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise not_utf8_error(name, raw, bad) from e
        where = f"{name} line {e.lineno}: invalid JSON ({e.msg} at column {e.colno})"
        if ends_early(e, len(text[1 if start else 0 :].rstrip(BLANKS))):
            raise IncompleteInputError(
                f"{where}: the document ends before it is complete; {STILL_WRITING}"
            ) from e
        raise InputError(where) from e
    try:
        yield from value_records(document, maker, At(name))
    except InexactNumber:
        made, document = maker.position, None
        maker.position, maker.exact = 0, True
        yield from islice(value_records(exact_loads(body), maker, At(name)), made, None)


def document_texts(stream: BinaryIO, name: str, maker: RecordMaker) -> Iterator[list[str]]:
    """The texts of :func:`document_records` (for a check that needs no ids), in one block,
    decoded by msgspec into the fewest fields where the document is one of the common cases,
    into the general structs where it is another ordinary case, else by the full path."""
    raw = stream.read()
    body, limit = raw.removeprefix(BOM), maker.max_comment_chars
    texts = plain_document_texts(body, limit)
    if texts is not None:
        return iter([texts])
    try:
        texts = texts_of(decode_doc(body), limit)
    except (*DECODE_ERRORS, Undecided):
        texts = [r.comment for r in document_records(io.BytesIO(raw), name, maker)]
    return iter([texts])


def ends_early(error: orjson.JSONDecodeError, length: int) -> bool:
    """Whether the parse failed because the data ran out, not because something was wrong.

    orjson says "unexpected end of data", at a position (in characters) just past the last
    one; ``length`` is the document's length in characters without trailing blanks, so the
    position alone decides should the wording ever change.
    """
    return "end of data" in error.msg or error.pos >= length


def value_records(document: Any, maker: RecordMaker, where: At) -> Iterator[Record]:
    """The comments of a whole document, whichever known shape it has."""
    if isinstance(document, list):
        yield from _elements(document, maker, lambda i: where.numbered("record", i))
        return
    if isinstance(document, dict):
        comments = document.get("comments")
        if isinstance(comments, list) and first_key(document, TEXT_FIELDS) is None:
            yield from _elements(comments, maker, lambda i: where / f"comments[{i}]")
            return
        if youtube_api.is_response(document):
            yield from youtube_api.response_records(document, maker, where)
            return
        if youtube_api.is_item(document):
            yield from youtube_api.item_records(document, maker, where)
            return
        if first_key(document, TEXT_FIELDS) is not None:
            # A single comment object: what a one-line JSON Lines file looks like.
            yield maker.from_object(document, where)
            return
        raise InputError(
            f"{where()}: {UNKNOWN_SHAPE}; found an object with keys: {list_names(document)}"
        )
    raise InputError(f"{where()}: {UNKNOWN_SHAPE}; found {kind_of(document)}")


def _elements(
    elements: list[Any], maker: RecordMaker, where: Callable[[int], At]
) -> Iterator[Record]:
    """The records of an array's elements; plain comments take :meth:`RecordMaker.plain`."""
    plain = maker.plain
    for index, element in enumerate(elements):
        if type(element) is dict and API_KEYS.isdisjoint(element):
            record = plain(element)
            if record is not None:
                yield record
                continue
        yield from element_records(element, maker, where(index))


def element_records(element: Any, maker: RecordMaker, where: At) -> Iterator[Record]:
    """One element of an array or one JSON Lines value: a comment, or an API page or thread."""
    if isinstance(element, dict) and not API_KEYS.isdisjoint(element):
        if youtube_api.is_response(element):
            yield from youtube_api.response_records(element, maker, where)
            return
        if youtube_api.is_item(element):
            yield from youtube_api.item_records(element, maker, where)
            return
    yield maker.from_value(element, where)
