"""The ids and texts of many comments at once, for the assembly's fast reading path.

The format readers (:mod:`emotions.formats`) parse every field of every comment with orjson and
make one :class:`~emotions.formats.Record` per comment through a few Python calls; for the
results worker that is most of the cost of re-reading a file. The assembly needs two columns,
ids and texts. So here JSON is decoded with msgspec into small structs holding only the fields
the readers look at (every other field is skipped, not built), typed so that msgspec checks the
readers' rules as it decodes, and a block of comments is taken apart with whole-column passes
(``map``, run in C) instead of a Python step per comment.

A block is read here only when it is the common case the readers' own fast paths accept
(``RecordMaker.plain``, ``youtube_api.plain_comment``): every value a plain comment object with
the same text and id fields as the first, or every value a well-formed ``commentThreads`` page.
Anything else raises ``msgspec.MsgspecError`` (or answers ``None``), and the caller hands the
block to the readers. So a record is decided here only when it is certain: the fields a reader
would choose are the ones present, the texts are strings within the limit and the ids strings
or 64-bit integers (which orjson reads exactly too).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from itertools import chain
from operator import attrgetter
from typing import Annotated, Any, Final

import msgspec
from msgspec import UNSET, Meta, Raw, UnsetType

from emotions.formats import ID_FIELDS, TEXT_FIELDS
from emotions.formats.json_document import API_KEYS
from emotions.formats.pages import (
    ApiComment,
    TextFields,
    Thread,
    comment_texts,
    thread_comments,
    within_limit,
)
from emotions.formats.records import Columns

Value = bytes | Raw  # the bytes of one JSON value: a line, or an array element

# No JSON value decodes as this (no integer is both >= 1 and <= 0): a field of this type must be
# absent. Ids: strings, or integers orjson reads exactly (beyond those the readers parse again).
_ABSENT: Final = Annotated[int, Meta(ge=1, le=0)]
_ID: Final = str | Annotated[int, Meta(ge=-(1 << 63), le=(1 << 63) - 1)]


class Line(msgspec.Struct, gc=False):
    """A comment object, or a Data API page (``items``): the fields the readers look at."""

    id: Any = None
    comment_id: Any = None
    commentId: Any = None
    cid: Any = None
    comment: Any = UNSET
    text: Any = UNSET
    textOriginal: Any = UNSET
    textDisplay: Any = UNSET
    content: Any = UNSET
    kind: Raw | UnsetType = UNSET
    snippet: Raw | UnsetType = UNSET
    items: list[Thread] | UnsetType = UNSET


class Head(TextFields):
    """A whole JSON document that is an object, as far as telling its shape needs: its
    ``comments`` (each element's bytes) and whether it has a text field."""

    comments: list[Raw] | UnsetType = UNSET


LINE_DECODER: Final = msgspec.json.Decoder(Line)


def no_text(value: Line | Head) -> bool:
    """``value`` has none of the text fields (an API page, a ``{"comments": [...]}``)."""
    return all(getattr(value, field) is UNSET for field in TEXT_FIELDS)


def comments(values: Sequence[Value], position: int, limit: int) -> Columns | None:
    """The records of a block of JSON values (lines, or array elements), the first record at
    ``position``: plain comment objects shaped like the first value, or API pages.

    ``None`` when the first value is neither; ``msgspec.MsgspecError`` when a value is not
    JSON, or not shaped like the first.
    """
    first = LINE_DECODER.decode(values[0])
    if first.items is not UNSET:  # a Data API page is ~100 KB: the first is not decoded twice
        return api_pages([first, *map(LINE_DECODER.decode, values[1:])], limit)
    text_field = next((f for f in TEXT_FIELDS if getattr(first, f) is not UNSET), None)
    if text_field is None:
        return None
    id_field = next((f for f in ID_FIELDS if getattr(first, f) is not None), None)
    decoded = list(map(_shape(text_field, id_field, limit).decode, values))
    texts = list(map(attrgetter(text_field), decoded))
    if id_field is None:  # no id anywhere: each record's position, as a string
        return list(map(str, range(position, position + len(decoded)))), texts
    return list(map(attrgetter(id_field), decoded)), texts


@functools.cache
def _shape(text_field: str, id_field: str | None, limit: int) -> msgspec.json.Decoder[Any]:
    """A decoder that accepts exactly the comment objects whose record comes from
    ``text_field`` (a string within ``limit``) and ``id_field`` (``None``: no id, the position),
    as :meth:`~emotions.formats.RecordMaker.plain` takes it: no earlier text field present, no
    earlier id field other than null, no API key. Other fields are skipped."""
    fields: list[Any] = [(text_field, Annotated[str, Meta(max_length=limit)])]
    if id_field is not None:
        fields.append((id_field, _ID))
    earlier = TEXT_FIELDS[: TEXT_FIELDS.index(text_field)]
    fields += [(name, _ABSENT, UNSET) for name in (*sorted(API_KEYS), *earlier)]
    before = ID_FIELDS if id_field is None else ID_FIELDS[: ID_FIELDS.index(id_field)]
    fields += [(name, None, None) for name in before]
    shape = msgspec.defstruct("Comment", fields, kw_only=True, gc=False)
    return msgspec.json.Decoder(shape)


def _api_comments(comments: list[ApiComment], limit: int) -> Columns | None:
    """The records of ``youtube#comment`` resources (their types checked as they were decoded),
    if every text is within the limit."""
    texts = comment_texts(comments)
    if not within_limit(texts, limit):
        return None
    return list(map(attrgetter("id"), comments)), texts


def api_pages(values: list[Line], limit: int) -> Columns | None:
    """The records of ``commentThreads.list`` pages: each thread's top-level comment, then its
    replies; ``None`` unless every page and comment is well formed."""
    if not values or not all(map(no_text, values)):  # a page has no text field
        return None
    pages = list(map(attrgetter("items"), values))
    if UNSET in pages:
        return None
    return _api_comments(thread_comments(list(chain.from_iterable(pages))), limit)
