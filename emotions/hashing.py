"""Reading a file once while hashing exactly the bytes read.

The assembly pairs the labels of a job with the records of its input, and the job names the
content by its SHA-256. Hashing the file and then reading it again leaves a window in which a
replacement is parsed and written with the old content's labels; hashing the very bytes the
parser reads closes it: what was parsed is what was hashed, and the digest is compared
before the output is renamed into place.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any, BinaryIO

from emotions.constants import INPUT_READ_BYTES


class _HashingRaw(io.RawIOBase):
    """A raw stream over ``source`` that feeds every byte it returns into ``digest``."""

    def __init__(self, source: BinaryIO, digest: Any) -> None:
        self._source = source
        self._digest = digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._source.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self._digest.update(memoryview(buffer)[:n])
        return n or 0

    def readall(self) -> bytes:
        """The rest of the file in one read (``RawIOBase.readall`` would loop 8 KB at a time,
        through :meth:`readinto`, for a document read whole)."""
        data = self._source.read()
        self._digest.update(data)
        return data


class HashedInput:
    """An open input file: ``stream`` for the parser, :meth:`hexdigest` of all its bytes.

    The stream cannot seek (a seek would hash bytes twice or skip some). :meth:`hexdigest`
    first reads whatever the parser left unread, so the digest always covers the whole file
    as it was read through this one open file.
    """

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._digest = hashlib.sha256()
        self.stream: BinaryIO = io.BufferedReader(
            _HashingRaw(source, self._digest), buffer_size=INPUT_READ_BYTES
        )

    def hexdigest(self) -> str:
        """SHA-256 of every byte of the file, the parser's and the rest."""
        while self.stream.read(INPUT_READ_BYTES):
            pass
        return self._digest.hexdigest()

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> HashedInput:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
