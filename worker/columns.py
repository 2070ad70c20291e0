"""The ids and texts of many parsed comments at once, for the assembly's fast reading path.

The format readers (:mod:`emotions.formats`) make one :class:`~emotions.formats.Record` per
comment through a few Python calls each, which is most of what re-reading a file costs the
results worker. The assembly needs only two columns, ids and texts, and almost every block of
a real file is uniform: the same fields on every comment, string texts within the limit,
string or integer ids. So a block is checked and taken apart here with whole-column passes
(``map`` over the block, run in C) instead of a Python step per comment.

Each function answers ``None`` whenever anything about the block is not the common case the
readers' own fast paths accept (``RecordMaker.plain``, ``youtube_api.plain_comment``); the
caller then hands the block to the readers themselves. So these functions never decide a
record the readers would make differently: they only recognise blocks whose records are
certain, and give exactly those records.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from operator import contains, itemgetter
from typing import Any, Final

from emotions.formats import ID_FIELDS, TEXT_FIELDS
from emotions.formats.json_document import API_KEYS
from emotions.formats.youtube_api import SNIPPET_TEXT_FIELDS, THREAD_KIND

Columns = tuple[list[Any], list[str]]  # (ids, texts) of consecutive records

_IDS: Final = frozenset({str, int})  # ids orjson parses exactly (bool is its own type)
_get: Callable[[Any, str], Any] = dict.get


def _all_dicts(values: list[Any]) -> bool:
    return set(map(type, values)) == {dict}


def _none_has(values: list[Any], keys: Any) -> bool:
    """No value holds any of ``keys`` (whatever its value)."""
    return not any(any(map(contains, values, repeat(key))) for key in keys)


def _all_null(values: list[Any], key: str) -> bool:
    """Every value lacks ``key`` or holds null there."""
    return list(map(_get, values, repeat(key))).count(None) == len(values)


def _texts(values: list[Any], field: str, limit: int) -> list[str] | None:
    """Each value's ``field``, if every one is a string of at most ``limit`` characters."""
    try:
        texts = list(map(itemgetter(field), values))
    except KeyError:
        return None
    if set(map(type, texts)) != {str} or max(map(len, texts)) > limit:
        return None
    return texts


def _ids(values: list[Any], field: str) -> list[Any] | None:
    """Each value's ``field``, if every one is a string or an integer (never null)."""
    ids = list(map(_get, values, repeat(field)))
    return ids if set(map(type, ids)) <= _IDS else None


def plain_objects(values: list[Any], position: int, limit: int) -> Columns | None:
    """The records of a block of plain comment objects (``{"cid": ..., "text": ...}``), the
    first at ``position``; ``None`` unless every value is one with the same id and text fields
    as the first, the records :meth:`~emotions.formats.RecordMaker.plain` would make."""
    if not values:
        return [], []
    first = values[0]
    if type(first) is not dict or not _all_dicts(values):
        return None
    text_field = next((f for f in TEXT_FIELDS if f in first), None)
    if text_field is None:
        return None
    earlier = TEXT_FIELDS[: TEXT_FIELDS.index(text_field)]
    if not _none_has(values, (*API_KEYS, *earlier)):
        return None
    texts = _texts(values, text_field, limit)
    if texts is None:
        return None
    id_field = next((f for f in ID_FIELDS if first.get(f) is not None), None)
    before = ID_FIELDS if id_field is None else ID_FIELDS[: ID_FIELDS.index(id_field)]
    if not all(_all_null(values, key) for key in before):
        return None
    if id_field is None:  # no id anywhere: each record's position, as a string
        return list(map(str, range(position, position + len(values)))), texts
    ids = _ids(values, id_field)
    return None if ids is None else (ids, texts)


def _comments(comments: list[Any], limit: int) -> Columns | None:
    """The records of well-formed ``youtube#comment`` resources: a snippet holding
    ``textOriginal`` as a string within the limit, an ``id`` that is a string or an integer."""
    if not comments:
        return [], []
    if not _all_dicts(comments):
        return None
    snippets = list(map(_get, comments, repeat("snippet")))
    if not _all_dicts(snippets):
        return None
    texts = _texts(snippets, SNIPPET_TEXT_FIELDS[0], limit)  # the first text field present
    ids = _ids(comments, "id")
    return None if texts is None or ids is None else (ids, texts)


def api_pages(values: list[Any], limit: int) -> Columns | None:
    """The records of a block of ``commentThreads.list`` pages (one page per JSON line): each
    thread's top-level comment, then its replies; ``None`` unless every page, thread and
    comment is well formed, the records ``youtube_api.response_records`` would make."""
    if not _all_dicts(values) or not _none_has(values, TEXT_FIELDS):
        return None
    pages = list(map(_get, values, repeat("items")))
    if set(map(type, pages)) != {list}:
        return None
    threads = [thread for page in pages for thread in page]
    if not threads:
        return [], []
    if not _all_dicts(threads):
        return None
    kinds = list(map(_get, threads, repeat("kind")))
    if kinds.count(THREAD_KIND) != len(threads):
        return None
    snippets = list(map(_get, threads, repeat("snippet")))
    if not _all_dicts(snippets):
        return None
    tops = list(map(_get, snippets, repeat("topLevelComment")))
    top = _comments(tops, limit)
    if top is None:
        return None
    replies = list(map(_get, threads, repeat("replies")))
    if replies.count(None) == len(replies):
        return top
    return _with_replies(top, replies, limit)


def _with_replies(top: Columns, replies: list[Any], limit: int) -> Columns | None:
    """Each thread's top-level comment followed by its replies, in order."""
    ids: list[Any] = []
    texts: list[str] = []
    for top_id, top_text, held in zip(top[0], top[1], replies, strict=True):
        ids.append(top_id)
        texts.append(top_text)
        comments = held.get("comments") if type(held) is dict else None
        if comments is None:
            continue  # as the readers do: replies that are not an object hold none
        if type(comments) is not list:
            return None
        reply = _comments(comments, limit)
        if reply is None:
            return None
        ids += reply[0]
        texts += reply[1]
    return ids, texts
