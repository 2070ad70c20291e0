"""Which format a file is in, decided from its content first and its name second.

youtube-comment-downloader's JSON Lines is routinely saved as ``.json`` and CSV exports come
with any extension, so the extension alone would misread real files. Only the start of the file
is read here; binary and non-UTF-8 files are refused before any parser sees them. A file with
nothing in it yet, or one that stops in the middle of a character, is reported as incomplete
(``IncompleteInputError``): it is most likely still being written.
"""

from __future__ import annotations

import codecs
import enum
from pathlib import Path
from typing import BinaryIO, Final

import orjson

from emotions.errors import IncompleteInputError, InputError

BOM: Final = codecs.BOM_UTF8
HEAD_BYTES: Final = 64 * 1024
WHITESPACE: Final = b" \t\r\n"
LINES_SUFFIXES: Final = frozenset({".jsonl", ".ndjson", ".jsonlines"})
JSON_SUFFIXES: Final = LINES_SUFFIXES | {".json"}
SAVE_AS: Final = "save it as UTF-8 JSON, JSON Lines or CSV"
STILL_WRITING: Final = "is it still being written, or was it cut short?"
# UnicodeDecodeError.reason when the bytes stop inside a multi-byte character.
_CUT_CHARACTER: Final = "unexpected end of data"

# Signatures of files people drop into the folder by mistake, with what to do instead.
_SIGNATURES: Final = (
    (codecs.BOM_UTF32_LE, f"UTF-32 text, not UTF-8; {SAVE_AS}"),
    (codecs.BOM_UTF32_BE, f"UTF-32 text, not UTF-8; {SAVE_AS}"),
    (codecs.BOM_UTF16_LE, f"UTF-16 text, not UTF-8; {SAVE_AS}"),
    (codecs.BOM_UTF16_BE, f"UTF-16 text, not UTF-8; {SAVE_AS}"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook?), not a comment file; export CSV"),
    (b"\x1f\x8b", "gzip-compressed; decompress it first"),
)


class Format(enum.Enum):
    """How a file is parsed."""

    JSON_DOCUMENT = "json"
    JSON_LINES = "jsonl"
    CSV = "csv"


def ends_mid_character(error: UnicodeDecodeError) -> bool:
    """Whether decoding failed only because the data stops inside a multi-byte character."""
    return error.reason == _CUT_CHARACTER


def cut_character_error(name: str, line: int) -> IncompleteInputError:
    """The error for a file whose last bytes are the start of a character, not all of it."""
    return IncompleteInputError(
        f"{name} line {line}: the file ends in the middle of a UTF-8 character; {STILL_WRITING}"
    )


def not_utf8_error(
    name: str, data: bytes, error: UnicodeDecodeError, first_line: int = 1
) -> InputError:
    """An InputError pointing at the line of the first byte of ``data`` that is not UTF-8."""
    line = first_line + data.count(b"\n", 0, error.start)
    if ends_mid_character(error):
        return cut_character_error(name, line)
    byte = data[error.start]
    return InputError(
        f"{name} line {line}: not UTF-8 text (byte 0x{byte:02x} cannot be decoded): is this a "
        f"comment file? If it is, {SAVE_AS}"
    )


def check_text(name: str, head: bytes, complete: bool) -> None:
    """Refuse empty, binary and non-UTF-8 files from their first bytes."""
    if not head:
        raise IncompleteInputError(
            f"{name}: file is empty (0 bytes); expected comments as JSON or CSV ({STILL_WRITING})"
        )
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            raise InputError(f"{name}: the file is {what}")
    if b"\x00" in head:
        raise InputError(f"{name}: binary data (NUL bytes), not text: is this a comment file?")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError as e:
        raise not_utf8_error(name, head, e) from e


def _first_content(stream: BinaryIO, head: bytes) -> bytes:
    """The first non-whitespace byte after an optional BOM, or b"" for a blank file."""
    data = head.removeprefix(BOM).lstrip(WHITESPACE)
    while not data:
        more = stream.read(HEAD_BYTES)
        if not more:
            return b""
        data = more.lstrip(WHITESPACE)
    return data[:1]


def _is_json_lines(stream: BinaryIO) -> bool:
    """Whether a file starting with ``{`` holds one object per line rather than one document.

    It does when its first non-blank line is a whole JSON object and more content follows; a
    pretty-printed document's first line (``{``) does not parse on its own.
    """
    stream.seek(0)
    line = b""
    while not line.removeprefix(BOM).strip(WHITESPACE):
        line = stream.readline()
        if not line:
            return False
    while True:
        more = stream.read(HEAD_BYTES)
        if not more:
            return False  # one line only: a document (a lone comment object is handled there)
        if more.strip(WHITESPACE):
            break
    try:
        return isinstance(orjson.loads(line.removeprefix(BOM)), dict)
    except orjson.JSONDecodeError:
        return False


def detect(path: Path) -> Format:
    """The format of ``path``; raises InputError for empty, binary or non-UTF-8 files."""
    with path.open("rb") as stream:
        head = stream.read(HEAD_BYTES)
        check_text(path.name, head, complete=len(head) < HEAD_BYTES)
        first = _first_content(stream, head)
        if not first:
            raise IncompleteInputError(
                f"{path.name}: file is empty (only whitespace); expected comments as JSON or CSV "
                f"({STILL_WRITING})"
            )
        suffix = path.suffix.lower()
        if first == b"[":
            return Format.JSON_DOCUMENT
        if suffix in LINES_SUFFIXES:
            return Format.JSON_LINES
        if first == b"{":
            return Format.JSON_LINES if _is_json_lines(stream) else Format.JSON_DOCUMENT
        if suffix in JSON_SUFFIXES:
            return Format.JSON_DOCUMENT  # not JSON at all: its parser says where and why
        return Format.CSV
