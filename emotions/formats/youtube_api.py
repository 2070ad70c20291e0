"""YouTube Data API v3 responses: ``commentThreads.list`` and ``comments.list``.

A thread holds its top-level comment under ``snippet.topLevelComment`` and (some of) its replies
under ``replies.comments``; every one of them is its own record, top-level comment first, so a
thread's replies follow it in the output as they do on YouTube.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from emotions.errors import InputError
from emotions.formats.records import (
    TEXT_FIELDS,
    At,
    Record,
    RecordMaker,
    first_key,
    id_of,
    kind_of,
    list_names,
)

THREAD_KIND: Final = "youtube#commentThread"
COMMENT_KIND: Final = "youtube#comment"
SNIPPET_TEXT_FIELDS: Final = ("textOriginal", "textDisplay")


def is_response(obj: Mapping[str, Any]) -> bool:
    """A list response (one page): its comments are under ``items``."""
    return isinstance(obj.get("items"), list) and first_key(obj, TEXT_FIELDS) is None


def is_item(obj: Mapping[str, Any]) -> bool:
    """A single thread or comment resource, by its ``kind`` or, failing that, its shape."""
    if obj.get("kind") in (THREAD_KIND, COMMENT_KIND):
        return True
    snippet = obj.get("snippet")
    if not isinstance(snippet, dict) or first_key(obj, TEXT_FIELDS) is not None:
        return False
    return "topLevelComment" in snippet or first_key(snippet, SNIPPET_TEXT_FIELDS) is not None


def _is_plain(obj: Mapping[str, Any]) -> bool:
    """A plain comment object (``{"id": ..., "text": ...}``), not an API resource."""
    return not is_item(obj) and first_key(obj, TEXT_FIELDS) is not None


def response_records(obj: Mapping[str, Any], maker: RecordMaker, where: At) -> Iterator[Record]:
    """Every comment of one response page, in order."""
    for index, item in enumerate(obj["items"]):
        yield from item_records(item, maker, where / f"items[{index}]")


def item_records(item: Any, maker: RecordMaker, where: At) -> Iterator[Record]:
    """A thread's top-level comment then its replies, or a single comment (or plain object)."""
    if isinstance(item, str) or (isinstance(item, dict) and _is_plain(item)):
        yield maker.from_value(item, where)  # {"items": [plain comments]} from other scrapers
        return
    if not isinstance(item, dict):
        raise InputError(
            f"{where()} is {kind_of(item)}; expected a {THREAD_KIND} or {COMMENT_KIND} object"
        )
    snippet = item.get("snippet")
    if not (isinstance(snippet, dict) and "topLevelComment" in snippet):
        yield comment_record(item, maker, where)
        return
    top = snippet["topLevelComment"]
    yield plain_comment(top, maker, item.get("id")) or comment_record(
        top, maker, where / "snippet" / "topLevelComment", item.get("id")
    )
    replies = item.get("replies")
    comments = replies.get("comments") if isinstance(replies, dict) else None
    if comments is None:
        return
    if not isinstance(comments, list):
        raise InputError(
            f"{(where / 'replies' / 'comments')()} is {kind_of(comments)}; expected an array"
        )
    for index, reply in enumerate(comments):
        yield plain_comment(reply, maker) or comment_record(
            reply, maker, where / "replies" / "comments" / f"[{index}]"
        )


def plain_comment(comment: Any, maker: RecordMaker, fallback_id: Any = None) -> Record | None:
    """:func:`comment_record` of a well-formed ``youtube#comment`` in one tight step, or None
    when anything about it needs a closer look (``comment_record`` then gives the record or
    the error): a snippet with a string text within the limit, a string or integer id."""
    snippet = comment.get("snippet") if type(comment) is dict else None
    if type(snippet) is not dict:
        return None
    for field in SNIPPET_TEXT_FIELDS:
        if field in snippet:
            text = snippet[field]
            break
    else:
        return None
    if type(text) is not str or len(text) > maker.max_comment_chars:
        return None
    comment_id = comment.get("id")
    if comment_id is None:
        comment_id = fallback_id
    if comment_id is not None and type(comment_id) is not str and type(comment_id) is not int:
        return None
    return maker.known(comment_id, text)


def comment_record(comment: Any, maker: RecordMaker, where: At, fallback_id: Any = None) -> Record:
    """One ``youtube#comment``: its ``id`` and its snippet's textOriginal or textDisplay."""
    if not isinstance(comment, dict):
        raise InputError(f"{where()} is {kind_of(comment)}; expected a {COMMENT_KIND} object")
    snippet = comment.get("snippet")
    if not isinstance(snippet, dict):
        raise InputError(
            f"{where()} has no snippet object; found keys: {list_names(comment)} "
            "(was the API called with part=snippet?)"
        )
    field = first_key(snippet, SNIPPET_TEXT_FIELDS)
    if field is None:
        raise InputError(
            f"{(where / 'snippet')()} has no text field: expected one of "
            f"{', '.join(SNIPPET_TEXT_FIELDS)}; found keys: {list_names(snippet)}"
        )
    comment_id = id_of(comment, ("id",))
    if comment_id is None:
        comment_id = fallback_id
    return maker.make(comment_id, snippet[field], where / "snippet", field)
