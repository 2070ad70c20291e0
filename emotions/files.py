"""Where files go, and writing them so that a reader never sees half of one.

Input names come from users (and from whatever wrote the folder), so every output or report
name is reduced to a plain single-component name before it is joined to a folder: no
``..``, no separators, no control characters, and the result is checked to stay inside.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from emotions.constants import ERROR_SUFFIX, NAME_BYTES, NAME_HASH_CHARS
from emotions.errors import OutputWriteError

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once at import: os.umask can only be read by setting it


def display_name(name: str) -> str:
    """A file name fit for messages, logs and JSON: bytes that are not UTF-8 (Linux names
    need not be) shown as ``\\xNN`` instead of Python's unencodable surrogate escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def safe_name(name: str) -> str:
    """A single, visible path component derived from ``name`` (never empty, never hidden).

    At most :data:`NAME_BYTES` bytes, so that temporary names and reports built on it stay
    within the 255 bytes a Linux file name may have; a shortened name keeps its extension and
    gets a short hash of the whole name, so two long names never shorten to the same one.
    """
    base = _UNSAFE.sub("_", os.path.basename(name.replace("\\", "/")))
    return shorten(base.lstrip(".") or "_", NAME_BYTES)


def shorten(name: str, limit: int) -> str:
    """``name`` if it fits in ``limit`` bytes, else a cut of its stem + ``~<hash>`` + suffix."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= limit:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:NAME_HASH_CHARS]
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem or len(suffix.encode("utf-8", "surrogateescape")) > 16:
        stem, suffix = name, ""
    tail = f"~{digest}" + (f".{suffix}" if suffix else "")
    room = limit - len(tail.encode("utf-8", "surrogateescape"))
    cut = stem.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return cut + tail


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes, read in blocks (files may be gigabytes)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def inside(folder: Path, name: str) -> Path:
    """``folder / name``, refusing anything that would resolve outside ``folder``."""
    root = folder.resolve()
    target = (root / name).resolve()
    if target.parent != root:
        raise OutputWriteError(f"refusing to write {name!r} outside {root}")
    return target


def report_path(failed_dir: Path, input_name: str) -> Path:
    """``<failed dir>/<input name>.error.json``: the report beside the failed input."""
    return inside(failed_dir, safe_name(input_name) + ERROR_SUFFIX)


def write_atomic(path: Path, pieces: Iterable[bytes]) -> None:
    """Write ``pieces`` to a hidden temporary file beside ``path``, fsync, then rename over it.

    Any OS error (disk full, folder missing or read-only) becomes :class:`OutputWriteError`,
    a transient error: the caller keeps its data and retries later.
    """
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are for other users too
        with os.fdopen(fd, "wb") as f:
            for piece in pieces:
                f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise OutputWriteError(f"cannot write {path}: {e.strerror or e}") from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
