"""The failed folder: an input that cannot be finished is moved there with a report beside it.

``<failed dir>/<name>`` is the input, ``<failed dir>/<name>.error.json`` says why, in words a
user can act on, with the model and the time. A name already taken there (the same file
failed before) becomes ``<stem>~2.<ext>``, ``~3``, ...: a failed file never overwrites
another. The ledger records the failure with the file's size and mtime, so that ``status``
lists it and a file that could not be moved (or whose report could not be written) is not
taken again until it changes.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from emotions.constants import ERROR_SUFFIX, FAILED
from emotions.errors import EmotionsError
from emotions.files import display_name, inside, safe_name, write_atomic
from emotions.redisfaults import unavailable
from emotions.settings import Settings
from producer.ledger import Entry, Ledger

log = logging.getLogger(__name__)
_MAX_COPIES = 10_000


def free_name(folder: Path, name: str) -> str:
    """``name``, or ``<stem>~N<suffix>`` for the first N that is free in ``folder``."""
    base = safe_name(name)
    stem, dot, suffix = base.rpartition(".")
    if not dot or not stem:
        stem, suffix = base, ""
    for n in range(1, _MAX_COPIES):
        candidate = base if n == 1 else safe_name(f"{stem}~{n}" + (f".{suffix}" if suffix else ""))
        if not os.path.lexists(folder / candidate) and not os.path.lexists(
            folder / (candidate + ERROR_SUFFIX)
        ):
            return candidate
    raise OSError(f"more than {_MAX_COPIES} failed files named {base!r}")


class FailedFolder:
    """Moves failed inputs aside with a report, and counts them (``--once`` exits 1 if any)."""

    def __init__(self, settings: Settings, ledger: Ledger) -> None:
        self.settings = settings
        self.ledger = ledger
        self.count = 0

    def fail(self, path: Path, error: str, **detail: Any) -> None:
        """Move ``path`` to the failed folder with ``<name>.error.json`` saying why."""
        name, shown = path.name, display_name(path.name)
        folder = self.settings.failed_dir
        self.count += 1
        report = {
            "file": shown,
            "error": error,
            "model": self.settings.model,
            **detail,
            "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            stat = path.lstat()
            size, mtime = stat.st_size, stat.st_mtime
        except OSError:
            size, mtime = -1, -1.0
        try:
            folder.mkdir(parents=True, exist_ok=True)
            target = free_name(folder, name)
            write_atomic(
                inside(folder, target + ERROR_SUFFIX),
                [orjson.dumps(report, option=orjson.OPT_INDENT_2)],
            )
            if os.path.lexists(path):
                shutil.move(path, inside(folder, target))  # across filesystems too
        except (OSError, EmotionsError) as e:
            log.error(
                "file=%s cannot move to the failed folder (%s); it stays where it is and "
                "is not taken again until it changes",
                shown,
                e,
            )
        log.error("file=%s event=failed error=%s", shown, error)
        try:
            entry = self.ledger.get(name) or Entry("", "", self.settings.model, FAILED, -1, -1.0)
            self.ledger.put(name, replace(entry, state=FAILED, error=error, size=size, mtime=mtime))
        except Exception as e:
            if not unavailable(e):
                raise
            # The file's failure is its own and stands (its report is written); only the
            # ledger's record of it waits for Redis. A file that could not be moved either is
            # read again, and failed again, once Redis is back.
            log.warning(
                "file=%s failure not recorded in the ledger: redis unavailable (%s)", shown, e
            )
