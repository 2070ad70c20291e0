"""Comment texts without ids, for the producer's check: the same texts as the records, faster.

The check needs every comment's text and the certainty that the file reads, not the ids or
the dozen other fields each comment carries (the Data API nests a comment three objects deep
among a dozen snippet fields). msgspec decodes a document into typed structs holding only the
keys that decide a comment's shape and text, and validates the rest without making Python
objects for it. The structs are then walked by the same rules as
:mod:`~emotions.formats.json_document` and :mod:`~emotions.formats.youtube_api`. JSON Lines
are first tried a block at a time with even fewer keys (:class:`Head`, :func:`plain_texts`):
youtube-comment-downloader's lines are all plain comments, and a block of them is decoded and
measured by C loops alone.

Only the ordinary case is decided here: wherever a value has another type than expected, a
text is not a string within the limit, or a shape is unknown, :class:`Undecided` is raised and
the caller reads that line or document by the full path, which gives the same texts or the
error. So this module never has to reproduce an error message (tests compare both paths on
every format). Two things msgspec does not check in what it skips, bytes that are not UTF-8
and numbers beyond a double's range, pass here: a comment file with such a stray field is
taken, and the assembly's own msgspec path (worker.fastread) writes its output; only if the
assembly has to read the file by the full readers do they refuse it, and the file fails with
their error.
"""

from __future__ import annotations

from collections.abc import Iterator
from operator import attrgetter
from typing import Any, Final

import msgspec
from msgspec import UNSET, UnsetType

from emotions.formats.pages import (
    TextFields,
    Thread,
    comment_texts,
    thread_comments,
    within_limit,
)
from emotions.formats.records import TEXT_FIELDS
from emotions.formats.youtube_api import COMMENT_KIND, SNIPPET_TEXT_FIELDS, THREAD_KIND

ITEM_KINDS: Final = (THREAD_KIND, COMMENT_KIND)


class Undecided(Exception):
    """Not the ordinary case: read it by the full path."""


class Snippet(msgspec.Struct, gc=False):
    """A Data API snippet: a comment's texts, or a thread's top-level comment."""

    textOriginal: Any = UNSET
    textDisplay: Any = UNSET
    topLevelComment: Obj | UnsetType = UNSET


class Obj(msgspec.Struct, gc=False):
    """A comment object, a Data API resource or page: the keys that decide which, and the
    texts (TEXT_FIELDS, in their order; a test keeps them in step)."""

    comment: Any = UNSET
    text: Any = UNSET
    textOriginal: Any = UNSET
    textDisplay: Any = UNSET
    content: Any = UNSET
    kind: Any = UNSET
    items: list[str | Obj] | UnsetType = UNSET
    snippet: Snippet | UnsetType = UNSET
    replies: Any = UNSET  # the downloader's "replies" is a count: not typed, decoded as is


class Doc(Obj):
    """A whole document that is an object: youtube-comment-downloader's ``{"comments": [...]}``,
    a Data API page or resource, or a single comment."""

    comments: list[str | Obj] | UnsetType = UNSET


class Head(msgspec.Struct, gc=False):
    """What decides that a JSON Lines value is a plain comment whose text is ``text``: the
    first text field present is ``text`` when ``comment`` is absent, and the value is a Data
    API resource despite a text field only if its ``kind`` says so (youtube-comment-downloader
    writes ``text``, and neither of the others).

    Not tracked by the garbage collector (``gc=False``): it holds decoded JSON only, which can
    never refer back to it, and a block makes thousands of them (the collector's passes over
    them cost about 6% of the check)."""

    comment: Any = UNSET
    text: Any = UNSET
    kind: Any = UNSET


class PlainDoc(TextFields):
    """A whole JSON document that is an object, decoded for the two common cases: a list of
    plain comments under ``comments``, or one Data API page's threads under ``items``; and
    the text fields, which must be absent (else the object is a comment)."""

    comments: list[Head] | UnsetType = UNSET
    items: list[Thread] | UnsetType = UNSET


decode_obj = msgspec.json.Decoder(Obj).decode
decode_doc = msgspec.json.Decoder(list[str | Obj] | Doc).decode
decode_head = msgspec.json.Decoder(Head).decode
decode_plain_doc = msgspec.json.Decoder(list[Head] | PlainDoc).decode
_KIND: Final = attrgetter("kind")
_COMMENT: Final = attrgetter("comment")
_TEXT: Final = attrgetter("text")
DECODE_ERRORS: Final = (msgspec.DecodeError, msgspec.ValidationError)


def _text_field(obj: Obj) -> Any:
    """The first text field present (UNSET if none), as ``first_key`` picks it."""
    for field in TEXT_FIELDS:
        value = getattr(obj, field)
        if value is not UNSET:
            return value
    return UNSET


def _checked(text: Any, limit: int) -> str:
    if type(text) is not str or len(text) > limit:
        raise Undecided
    return text


def _is_item(obj: Obj) -> bool:
    if obj.kind in ITEM_KINDS:
        return True
    snippet = obj.snippet
    if snippet is UNSET or _text_field(obj) is not UNSET:
        return False
    return snippet.topLevelComment is not UNSET or _snippet_text(snippet) is not UNSET


def _snippet_text(snippet: Snippet) -> Any:
    return snippet.textOriginal if snippet.textOriginal is not UNSET else snippet.textDisplay


def _comment_text(comment: Obj, limit: int) -> str:
    """A ``youtube#comment``'s text: its snippet's textOriginal or textDisplay."""
    if comment.snippet is UNSET:
        raise Undecided
    return _checked(_snippet_text(comment.snippet), limit)


def _reply_text(reply: Any, limit: int) -> str:
    """A reply, decoded as is (under the untyped ``replies``)."""
    snippet = reply.get("snippet") if type(reply) is dict else None
    if type(snippet) is not dict:
        raise Undecided
    for field in SNIPPET_TEXT_FIELDS:
        if field in snippet:
            return _checked(snippet[field], limit)
    raise Undecided


def item_texts(item: str | Obj, limit: int) -> Iterator[str]:
    """A thread's top-level comment then its replies, a single comment, or a plain object."""
    if isinstance(item, str):
        yield _checked(item, limit)
        return
    text = _text_field(item)
    if not _is_item(item) and text is not UNSET:
        yield _checked(text, limit)
        return
    snippet = item.snippet
    if snippet is UNSET or snippet.topLevelComment is UNSET:
        yield _comment_text(item, limit)
        return
    yield _comment_text(snippet.topLevelComment, limit)
    replies = item.replies
    comments = replies.get("comments") if type(replies) is dict else None
    if comments is None:
        return
    if type(comments) is not list:
        raise Undecided
    for reply in comments:
        yield _reply_text(reply, limit)


def element_texts(element: str | Obj, limit: int) -> Iterator[str]:
    """An array element or a JSON Lines value: a comment, or a Data API page or resource."""
    if isinstance(element, str):
        yield _checked(element, limit)
        return
    text = _text_field(element)
    if element.items is not UNSET and text is UNSET:  # a page
        for item in element.items:
            yield from item_texts(item, limit)
    elif (element.kind is not UNSET or element.snippet is not UNSET) and _is_item(element):
        yield from item_texts(element, limit)
    else:
        yield _checked(text, limit)


def document_texts(document: list[str | Obj] | Doc, limit: int) -> list[str]:
    """Every text of a whole JSON document (raises :class:`Undecided`)."""
    if isinstance(document, list):
        return [text for element in document for text in element_texts(element, limit)]
    if document.comments is not UNSET and _text_field(document) is UNSET:
        return [text for element in document.comments for text in element_texts(element, limit)]
    if document.items is not UNSET and _text_field(document) is UNSET:
        return [text for item in document.items for text in item_texts(item, limit)]
    if _is_item(document):
        return list(item_texts(document, limit))
    return [_checked(_text_field(document), limit)]


def plain_texts(lines: list[bytes], limit: int) -> list[str] | None:
    """The texts of JSON Lines ``lines`` if every one is a plain comment (see
    :func:`head_texts`); None if any is not (or is not JSON, or is blank): the caller then
    reads them one by one."""
    try:
        heads = list(map(decode_head, lines))
    except DECODE_ERRORS:
        return None
    return head_texts(heads, limit)


def head_texts(heads: list[Head], limit: int) -> list[str] | None:
    """The texts of plain comments, if every one has no ``kind`` and its text under the same
    field, ``comment`` (the first text field) or else ``text``, a string of at most ``limit``
    characters; None if any is not. Only C-level loops per comment."""
    if list(map(_KIND, heads)).count(UNSET) != len(heads):
        return None
    texts = list(map(_COMMENT, heads))
    if texts.count(UNSET) == len(texts):
        texts = list(map(_TEXT, heads))
    if not all(map(str.__instancecheck__, texts)):
        return None  # a text missing or of another type (or comment and text mixed)
    return texts if within_limit(texts, limit) else None


def plain_document_texts(raw: bytes, limit: int) -> list[str] | None:
    """The texts of a whole JSON document that is one of the common cases: an array of plain
    comments, the downloader's ``{"comments": [...]}`` of them (see :func:`head_texts`), or
    one Data API page (:func:`~emotions.formats.pages.thread_comments`); None otherwise."""
    try:
        document = decode_plain_doc(raw)
    except DECODE_ERRORS:
        return None
    if isinstance(document, list):
        return head_texts(document, limit)
    if document.has_text():
        return None  # the object is a comment, not a collection
    if document.comments is not UNSET:
        return head_texts(document.comments, limit)
    if document.items is not UNSET:
        texts = comment_texts(thread_comments(document.items))
        return texts if within_limit(texts, limit) else None
    return None
