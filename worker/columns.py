"""The ids and texts of many comments at once, for the assembly's fast reading path.

The format readers (:mod:`emotions.formats`) parse every field of every comment with orjson and
make one :class:`~emotions.formats.Record` per comment through a few Python calls; for the
results worker that is most of the cost of re-reading a file. The assembly needs two columns,
ids and texts. So here the JSON is decoded with msgspec into small structs holding only the
fields the readers look at (every other field is skipped, not built), and a block of comments
is checked and taken apart with whole-column passes (``map`` over the block, run in C) instead
of a Python step per comment.

Each function answers ``None`` whenever anything about the block is not the common case the
readers' own fast paths accept (``RecordMaker.plain``, ``youtube_api.plain_comment``); the
caller then hands the block to the readers. So a block's records are decided here only when
they are certain: the fields a reader would choose are the ones present, the texts are strings
within the limit and the ids strings or 64-bit integers (which orjson reads exactly too).
"""

from __future__ import annotations

from itertools import chain, compress, repeat
from operator import attrgetter, is_not
from typing import Any, Final, Literal

import msgspec
from msgspec import UNSET, Raw, UnsetType

from emotions.formats import ID_FIELDS, TEXT_FIELDS
from emotions.formats.json_document import API_KEYS

Columns = tuple[list[Any], list[str]]  # (ids, texts) of consecutive records

_INT_RANGE: Final = (-(1 << 63), (1 << 64) - 1)  # integers orjson parses exactly


class ApiText(msgspec.Struct, gc=False):
    """A ``youtube#comment`` snippet holding ``textOriginal`` (the first text field) as a
    string; any other snippet fails to decode, and the readers take the block."""

    textOriginal: str


class ApiComment(msgspec.Struct, gc=False):
    """A ``youtube#comment`` with a string id (an integer or a missing one: the readers')."""

    id: str
    snippet: ApiText


class ThreadSnippet(msgspec.Struct, gc=False):
    topLevelComment: ApiComment


class Replies(msgspec.Struct, gc=False):
    comments: list[ApiComment] | None = None


class Thread(msgspec.Struct, gc=False):
    """A ``youtube#commentThread``: its top-level comment and replies."""

    kind: Literal["youtube#commentThread"]
    snippet: ThreadSnippet
    replies: Replies | None = None


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


class Document(Line, gc=False):
    """A whole JSON document that is an object: downloader ``--format json`` or an API page."""

    comments: list[Line] | UnsetType = UNSET


def _all_are(values: list[Any], names: tuple[str, ...], marker: object) -> bool:
    """Every value holds ``marker`` (``UNSET``: absent; ``None``: absent or null) in each of
    the fields ``names``, in one pass."""
    if not names:
        return True
    expected: Any = (marker,) * len(names) if len(names) > 1 else marker
    return list(map(attrgetter(*names), values)).count(expected) == len(values)


def no_text(value: Line) -> bool:
    """``value`` has none of the text fields (an API page, a ``{"comments": [...]}``)."""
    return _all_are([value], TEXT_FIELDS, UNSET)


def _texts(values: list[Any], field: str, limit: int) -> list[str] | None:
    """Each value's ``field`` (a dotted path), if every one is a string within ``limit``."""
    texts = list(map(attrgetter(field), values))
    if set(map(type, texts)) != {str} or max(map(len, texts)) > limit:
        return None
    return texts


def _ids(values: list[Any], field: str) -> list[Any] | None:
    """Each value's ``field``, if every one is a string or an integer orjson reads exactly."""
    ids = list(map(attrgetter(field), values))
    kinds = set(map(type, ids))
    if not kinds <= {str, int}:
        return None
    if int in kinds:
        numbers = [i for i in ids if type(i) is int]
        if min(numbers) < _INT_RANGE[0] or max(numbers) > _INT_RANGE[1]:
            return None
    return ids


def plain_lines(values: list[Line], position: int, limit: int) -> Columns | None:
    """The records of plain comment objects (``{"cid": ..., "text": ...}``), the first at
    ``position``: each value's first text field present and first id field not null, the
    same fields as the first value's; ``None`` otherwise."""
    if not values:
        return [], []
    first = values[0]
    text_field = next((f for f in TEXT_FIELDS if getattr(first, f) is not UNSET), None)
    if text_field is None:
        return None
    absent = (*API_KEYS, *TEXT_FIELDS[: TEXT_FIELDS.index(text_field)])
    if not _all_are(values, absent, UNSET):
        return None
    texts = _texts(values, text_field, limit)
    if texts is None:
        return None
    id_field = next((f for f in ID_FIELDS if getattr(first, f) is not None), None)
    before = ID_FIELDS if id_field is None else ID_FIELDS[: ID_FIELDS.index(id_field)]
    if not _all_are(values, before, None):
        return None
    if id_field is None:  # no id anywhere: each record's position, as a string
        return list(map(str, range(position, position + len(values)))), texts
    ids = _ids(values, id_field)
    return None if ids is None else (ids, texts)


def _api_comments(comments: list[ApiComment], limit: int) -> Columns | None:
    """The records of ``youtube#comment`` resources (their types checked as they were decoded),
    if every text is within the limit."""
    if not comments:
        return [], []
    texts = list(map(attrgetter("snippet.textOriginal"), comments))
    if max(map(len, texts)) > limit:
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
    threads: list[Thread] = list(chain.from_iterable(pages))
    top = _api_comments(list(map(attrgetter("snippet.topLevelComment"), threads)), limit)
    if top is None:
        return None
    replies = list(map(attrgetter("replies"), threads))
    if replies.count(None) == len(replies):
        return top
    holders = list(compress(range(len(threads)), map(is_not, replies, repeat(None))))
    groups = [replies[k].comments or [] for k in holders]
    reply = _api_comments([comment for group in groups for comment in group], limit)
    if reply is None:
        return None
    return _interleave(top, holders, list(map(len, groups)), reply)


def _interleave(top: Columns, holders: list[int], counts: list[int], reply: Columns) -> Columns:
    """Top-level comments with each holder's ``count`` replies right after it."""
    ids: list[Any] = []
    texts: list[str] = []
    done = taken = 0
    for k, count in zip(holders, counts, strict=True):
        ids += top[0][done : k + 1]
        texts += top[1][done : k + 1]
        ids += reply[0][taken : taken + count]
        texts += reply[1][taken : taken + count]
        done, taken = k + 1, taken + count
    ids += top[0][done:]
    texts += top[1][done:]
    return ids, texts
