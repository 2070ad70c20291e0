"""Well-formed YouTube Data API ``commentThreads.list`` pages, decoded as typed structs.

A page is about 1 KB of JSON per comment, of which a comment's text is a tenth: the channel,
video, author and rating fields of every thread and comment, twice over (a thread and its
top-level comment). Decoding a page into general structs or dicts builds Python objects for
much of that; these structs name only what decides a comment's record (its id and the snippet's
``textOriginal``) and require each of them with its type, so msgspec skips everything else and
checks the rest as it decodes. ``id`` is required though the check needs none: the shape is the
one the assembly reads (an integer or missing id is not the common case, and takes the readers).

Only the common case decodes: a page with no text field of its own whose every item is a
``youtube#commentThread`` with a top-level comment, every comment with a string
``textOriginal`` (the readers' first snippet text field) and a string id, and replies, if any,
under ``replies.comments``. Anything else fails to decode (``msgspec.MsgspecError``), and its
reader takes the general path, which gives the same texts or the error. The structs hold decoded
JSON only, which can never refer back to them, so the garbage collector does not track them
(``gc=False``): a page makes hundreds.
"""

from __future__ import annotations

from itertools import chain
from operator import attrgetter
from typing import Final, Literal

import msgspec
from msgspec import UNSET, Raw, UnsetType


class ApiText(msgspec.Struct, gc=False):
    """A ``youtube#comment`` snippet holding ``textOriginal`` (the first text field) as a
    string; any other snippet fails to decode."""

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
    """A ``youtube#commentThread`` (the kind spelled as ``youtube_api.THREAD_KIND``; a test
    keeps them in step): its top-level comment and replies."""

    kind: Literal["youtube#commentThread"]
    snippet: ThreadSnippet
    replies: Replies | None = None


class TextFields(msgspec.Struct, gc=False):
    """The text fields (``TEXT_FIELDS``; a test keeps them in step), undecoded: an object with
    any of them is a comment, not a page or a collection of comments."""

    comment: Raw | UnsetType = UNSET
    text: Raw | UnsetType = UNSET
    textOriginal: Raw | UnsetType = UNSET
    textDisplay: Raw | UnsetType = UNSET
    content: Raw | UnsetType = UNSET

    def has_text(self) -> bool:
        return not (
            self.comment is self.text is self.textOriginal is self.textDisplay is self.content
        )


class Page(TextFields, kw_only=True):
    """A ``commentThreads.list`` page: its threads (and no text field, see
    :func:`texts_of_pages`)."""

    items: list[Thread]


decode_page: Final = msgspec.json.Decoder(Page).decode
_TEXT: Final = attrgetter("snippet.textOriginal")


def thread_comments(threads: list[Thread]) -> list[ApiComment]:
    """Each thread's top-level comment followed by its replies, in order: slices of the
    top-level comments, with a Python step only per thread that has replies."""
    tops: list[ApiComment] = list(map(attrgetter("snippet.topLevelComment"), threads))
    ordered: list[ApiComment] = []
    done = 0
    for k, thread in enumerate(threads):
        if thread.replies is not None and thread.replies.comments:
            ordered += tops[done : k + 1]
            ordered += thread.replies.comments
            done = k + 1
    if not done:
        return tops
    ordered += tops[done:]
    return ordered


def comment_texts(comments: list[ApiComment]) -> list[str]:
    return list(map(_TEXT, comments))


def within_limit(texts: list[str], limit: int) -> bool:
    """Whether no text is longer than ``limit`` characters (one C-level pass)."""
    return not texts or max(map(len, texts)) <= limit


def texts_of_pages(lines: list[bytes], limit: int) -> list[str] | None:
    """The texts of JSON Lines ``lines`` if every one is a well-formed page (see the module's
    docstring) and every text is at most ``limit`` characters; None otherwise."""
    try:
        pages = list(map(decode_page, lines))
    except msgspec.MsgspecError:
        return None
    if any(map(TextFields.has_text, pages)):
        return None
    threads = list(chain.from_iterable(map(attrgetter("items"), pages)))
    texts = comment_texts(thread_comments(threads))
    return texts if within_limit(texts, limit) else None
