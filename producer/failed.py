"""The failed folder: an input that cannot be finished is moved there with a report beside it.

``<failed dir>/<name>`` is the input, ``<failed dir>/<name>.error.json`` says why, in words a
user can act on, with the model and the time. The ledger records the failure so that
``status`` lists it and a restart does not take the file again.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from emotions.constants import FAILED
from emotions.errors import EmotionsError
from emotions.files import report_path, safe_name, write_atomic
from emotions.settings import Settings
from producer.ledger import Entry, Ledger

log = logging.getLogger(__name__)


class FailedFolder:
    """Moves failed inputs aside with a report, and counts them (``--once`` exits 1 if any)."""

    def __init__(self, settings: Settings, ledger: Ledger) -> None:
        self.settings = settings
        self.ledger = ledger
        self.count = 0

    def fail(self, path: Path, error: str, **detail: Any) -> None:
        """Move ``path`` to the failed folder with ``<name>.error.json`` saying why."""
        name = path.name
        folder = self.settings.failed_dir
        self.count += 1
        report = {"file": name, "error": error, "model": self.settings.model, **detail,
                  "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(
                report_path(folder, name), [orjson.dumps(report, option=orjson.OPT_INDENT_2)]
            )
            if path.exists() or path.is_symlink():
                shutil.move(str(path), str(folder / safe_name(name)))
        except (OSError, EmotionsError) as e:
            log.error("file=%s cannot move to the failed folder: %s", name, e)
        entry = self.ledger.get(name) or Entry("", "", self.settings.model, FAILED, -1, -1.0)
        self.ledger.put(name, replace(entry, state=FAILED, error=error))  # status lists it
        log.error("file=%s event=failed error=%s", name, error)
