"""Input files of the benchmark corpus in every real format, written as the tools write them.

What a format costs to parse depends on what else its records carry: youtube-comment-downloader
writes eleven fields per comment, the Data API nests each comment three objects deep with a
dozen snippet fields. So the files here carry those fields too (with plausible values), not just
an id and a text: a benchmark on bare ``{"id", "comment"}`` records would flatter every parser.
Each writer returns the number of comments written (a Data API thread holds its replies).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import orjson

from bench.corpus import comments
from emotions.formats.detect import BOM

API_PAGE: Final = 100  # commentThreads.list returns at most 100 threads per page
REPLY_EVERY: Final = 7  # one thread in seven carries a reply


def _token(i: int, salt: bytes, size: int) -> str:
    """A YouTube-like id: ``size`` URL-safe base64 characters, a pure function of ``i``."""
    digest = hashlib.blake2b(i.to_bytes(8, "little"), digest_size=size, person=salt).digest()
    return base64.urlsafe_b64encode(digest).decode()[:size]


def _downloader(i: int, text: str) -> dict[str, Any]:
    """One comment as youtube-comment-downloader writes it (its eleven keys, in its order)."""
    return {
        "cid": f"Ugw{_token(i, b'cid', 20)}4AaABAg",
        "text": text,
        "time": "2 years ago",
        "author": f"@user-{i % 9973:04d}",
        "channel": f"UC{_token(i % 7919, b'channel', 22)}",
        "votes": str(i % 1000),
        "replies": str(i % 7),
        "photo": "https://yt3.ggpht.com/ytc/AIdro_k-placeholder=s88-c-k-c0x00ffffff-no-rj",
        "heart": i % 11 == 0,
        "reply": False,
        "time_parsed": 1_700_000_000.0 + i,
    }


def _api_comment(cid: str, text: str, i: int) -> dict[str, Any]:
    """A ``youtube#comment`` resource with the snippet fields the API returns."""
    return {
        "kind": "youtube#comment",
        "etag": f"etag{i:012d}",
        "id": cid,
        "snippet": {
            "channelId": "UCuAXFkgsw1L7xaCfnd5JJOw",
            "videoId": "dQw4w9WgXcQ",
            "textDisplay": text,
            "textOriginal": text,
            "authorDisplayName": f"@user-{i % 9973:04d}",
            "authorProfileImageUrl": "https://yt3.ggpht.com/ytc/placeholder=s48-c-k-c0x00ffffff",
            "authorChannelUrl": f"http://www.youtube.com/@user-{i % 9973:04d}",
            "authorChannelId": {"value": f"UC{_token(i % 7919, b'channel', 22)}"},
            "canRate": True,
            "viewerRating": "none",
            "likeCount": i % 1000,
            "publishedAt": "2024-01-01T00:00:00Z",
            "updatedAt": "2024-01-01T00:00:00Z",
        },
    }


def downloader_jsonl(path: Path, n: int, seed: int = 0) -> int:
    """youtube-comment-downloader's default output: one comment object per line."""
    with path.open("wb") as f:
        for i, text in enumerate(comments(n, seed)):
            f.write(orjson.dumps(_downloader(i, text)) + b"\n")
    return n


def downloader_json(path: Path, n: int, seed: int = 0) -> int:
    """``--format json``: ``{"comments": [...]}``, indented as the downloader writes it."""
    document = {"comments": [_downloader(i, t) for i, t in enumerate(comments(n, seed))]}
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return n


def downloader_csv(path: Path, n: int, seed: int = 0) -> int:
    """``--format csv``: UTF-8 with a BOM, a header row, quoted where needed."""
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(BOM.decode())
        writer: Any = None
        for i, text in enumerate(comments(n, seed)):
            row = _downloader(i, text)
            if writer is None:
                writer = csv.DictWriter(f, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)
    return n


def _threads(n: int, seed: int) -> Iterator[dict[str, Any]]:
    """``youtube#commentThread`` resources holding ``n`` comments, some with a reply."""
    texts = comments(n, seed)
    i = 0
    for text in texts:
        top = _api_comment(f"Ugz{_token(i, b'cid', 20)}4AaABAg", text, i)
        thread: dict[str, Any] = {
            "kind": "youtube#commentThread",
            "etag": _token(i, b"thread", 27),
            "id": top["id"],
            "snippet": {
                "channelId": "UCuAXFkgsw1L7xaCfnd5JJOw",
                "videoId": "dQw4w9WgXcQ",
                "topLevelComment": top,
                "canReply": True,
                "totalReplyCount": 0,
                "isPublic": True,
            },
        }
        i += 1
        if i % REPLY_EVERY == 0 and i < n:
            reply_text = next(texts)
            reply = _api_comment(f"{top['id']}.{_token(i, b'reply', 22)}", reply_text, i)
            thread["snippet"]["totalReplyCount"] = 1
            thread["replies"] = {"comments": [reply]}
            i += 1
        yield thread


def api_threads(path: Path, n: int, seed: int = 0) -> int:
    """``commentThreads.list`` responses, one page of up to 100 threads per line (how a
    collector appends the pages it fetches)."""
    with path.open("wb") as f:
        page: list[dict[str, Any]] = []
        for thread in _threads(n, seed):
            page.append(thread)
            if len(page) == API_PAGE:
                f.write(_page(page) + b"\n")
                page = []
        if page:
            f.write(_page(page) + b"\n")
    return n


def _page(items: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(
        {
            "kind": "youtube#commentThreadListResponse",
            "etag": "page",
            "nextPageToken": "QURTSl9pMlQ",
            "pageInfo": {"totalResults": len(items), "resultsPerPage": API_PAGE},
            "items": items,
        }
    )


def json_array(path: Path, n: int, seed: int = 0) -> int:
    """The original script's input: ``[{"id": ..., "comment": ...}, ...]``."""
    buffer = io.BytesIO()
    buffer.write(b"[")
    for i, text in enumerate(comments(n, seed)):
        buffer.write((b"," if i else b"") + orjson.dumps({"id": f"c{i}", "comment": text}))
    buffer.write(b"]")
    path.write_bytes(buffer.getvalue())
    return n


Writer = Callable[[Path, int, int], int]

# Name -> (file suffix, writer), in the order the benchmark reports them.
FORMATS: Final[dict[str, tuple[str, Writer]]] = {
    "downloader-jsonl": (".jsonl", downloader_jsonl),
    "downloader-json": (".json", downloader_json),
    "downloader-csv": (".csv", downloader_csv),
    "api-threads": (".json", api_threads),
    "json-array": (".json", json_array),
}
