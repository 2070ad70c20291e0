"""A file is parsed once: its check writes every chunk's texts, ready to send, to a spool.

The producer must read a whole file before its job exists (a bad record at the end fails the
file before any GPU time is spent on it, and the job needs its chunk count), and it sends the
chunks later, a window at a time. Parsing the file a second time to send it cost as much as the
check itself, so the check keeps what sending needs: each chunk's texts, encoded once as the
JSON array the chunk message carries (:class:`~emotions.messages.Texts`), in an anonymous
temporary file. Memory stays bounded whatever the file's size (the spool is on disk, about the
size of the comments' text), and the file is gone when the producer closes it or dies.

What is sent as chunk ``k`` is therefore what the check read as chunk ``k``, whatever happens to
the input afterwards (renamed, rewritten, deleted): the assembly reads the input again and
writes nothing unless its SHA-256 is still the job's. A job taken over from an earlier run of
the producer (a resume) has no spool: it is scanned again, and if the file no longer gives the
job's chunk count, the caller treats it as changed.

The cut is :func:`emotions.chunking.cut`; the assembly pairs records with each chunk's
stored labels, in file order, so it never needs to know where chunks begin.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from emotions.chunking import cut
from emotions.constants import INPUT_READ_BYTES
from emotions.errors import TransientError
from emotions.formats import Format, detect, read_texts
from emotions.messages import Texts, encode_json

SPOOL_PREFIX = ".emotions-spool-"


class SpoolError(TransientError):
    """The spool could not be written (its folder missing, the disk full): the input file is
    not at fault, so it is taken again later instead of failing."""


@dataclass(frozen=True, slots=True)
class Piece:
    """Chunk texts: ``count`` comments, encoded in bytes ``[start, end)`` of the spool."""

    count: int
    start: int
    end: int


class Layout:
    """A checked file: its format and its chunks, each readable again from the spool."""

    def __init__(self, fmt: Format, pieces: list[Piece], spool: BinaryIO) -> None:
        self.fmt = fmt
        self.pieces = tuple(pieces)
        self._spool = spool

    @property
    def records(self) -> int:
        return sum(piece.count for piece in self.pieces)

    @property
    def chunks(self) -> int:
        return len(self.pieces)

    def texts(self, index: int) -> Texts:
        """Chunk ``index``'s texts, as encoded by the check."""
        piece = self.pieces[index]
        try:
            self._spool.seek(piece.start)
            data = self._spool.read(piece.end - piece.start)
        except (OSError, ValueError) as e:  # ValueError: closed
            raise SpoolError(f"the spool cannot be read: {e}") from e
        if len(data) != piece.end - piece.start:
            raise SpoolError("the spool is shorter than written")
        return Texts(data, piece.count)

    def close(self) -> None:
        self._spool.close()


def scan(
    path: Path,
    size: int,
    max_bytes: int,
    *,
    max_comment_chars: int,
    spool_dir: Path | None = None,
    on_chunk: Callable[[], object] | None = None,
) -> Layout:
    """Check every record of ``path`` (by :func:`~emotions.formats.read_texts`, raising what
    :func:`~emotions.formats.read_records` raises), cut its texts into chunks of ``size``
    comments / ``max_bytes`` bytes and spool each chunk. Raises :class:`SpoolError` if the
    spool cannot be written.

    ``on_chunk`` is called after each chunk: a big file's check takes seconds, and the caller
    keeps feeding its other files meanwhile."""
    fmt = detect(path)
    spool = _open_spool(spool_dir)
    pieces: list[Piece] = []
    offset = 0
    try:
        with path.open("rb", buffering=INPUT_READ_BYTES) as stream:
            blocks = read_texts(stream, path.name, fmt, max_comment_chars=max_comment_chars)
            for chunk in cut(blocks, size, max_bytes):
                encoded = encode_json(chunk)
                try:
                    spool.write(encoded)
                except OSError as e:
                    raise SpoolError(f"the spool cannot be written: {e}") from e
                pieces.append(Piece(len(chunk), offset, offset + len(encoded)))
                offset += len(encoded)
                if on_chunk is not None:
                    on_chunk()
        try:
            spool.flush()
        except OSError as e:
            raise SpoolError(f"the spool cannot be written: {e}") from e
    except BaseException:
        spool.close()
        raise
    return Layout(fmt, pieces, spool)


def _open_spool(folder: Path | None) -> BinaryIO:
    try:
        return tempfile.TemporaryFile(prefix=SPOOL_PREFIX, dir=folder)
    except OSError as e:
        where = folder if folder is not None else tempfile.gettempdir()
        raise SpoolError(f"no spool can be created in {where} (EMOTIONS_SPOOL_DIR): {e}") from e
