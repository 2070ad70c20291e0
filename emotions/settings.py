"""The one settings object of a process, read from ``EMOTIONS_*`` environment variables.

Built at the entry point (worker start, producer ``main``), never at import, so tests and
tools can build their own. Frozen: nothing changes a setting behind a running process's back.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Literal

from kombu.utils.url import maybe_sanitize_url
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from emotions.constants import (
    AUTO_BATCH,
    DEFAULT_BROKER_URL,
    DEFAULT_INCOMPLETE_SECONDS,
    DEFAULT_MODEL,
    DEFAULT_OPEN_FILE_SECONDS,
    DEFAULT_SETTLE_SECONDS,
    MAX_BATCH_ROWS,
)
from emotions.errors import ConfigurationError

_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")
_SECRET_FIELDS = ("broker_url", "result_backend")
log = logging.getLogger(__name__)


class Settings(BaseSettings):
    """Every knob of the system; the README's settings table documents each one."""

    model_config = SettingsConfigDict(env_prefix="EMOTIONS_", frozen=True, extra="ignore")

    broker_url: str = DEFAULT_BROKER_URL
    result_backend: str = ""  # empty: the broker URL
    model: str = DEFAULT_MODEL
    device: str = "cuda"
    # Rows per forward pass; "auto": as many as the token budget allows (big GPUs).
    batch_size: int | Literal["auto"] = 16
    # Rows x longest tokens per batch: long comments go in smaller batches instead of padding
    # 15 short ones to 512 tokens. 1024 and chunks of 512 measured best (bench/, README).
    token_budget: int = Field(1024, ge=0)  # 0: no cap
    max_length: int = Field(0, ge=0)  # 0: the tokenizer's maximum
    cuda_graphs: bool = True  # on CUDA with a fixed batch size; checked against eager at start
    tokenizer_threads: int = Field(0, ge=0)  # 0: the host's cores / its GPUs (at most 8)
    chunk_size: int = Field(512, ge=1, le=100_000)
    # A chunk also closes once its comments reach this many bytes of UTF-8 (a chunk of long
    # comments must not make a message of hundreds of megabytes).
    chunk_bytes: int = Field(256 * 1024, ge=1024)
    # Chunks queued or running at once, over all files: Redis holds this window of work, not
    # the backlog. Enough to keep every worker busy; raise it for large fleets.
    window: int = Field(64, ge=1)
    # A job with chunks outstanding and none finished for this long is healed (its missing
    # chunks are sent again); several heals without progress fail the file. 0: three times
    # the task time limit.
    stall_seconds: float = Field(0, ge=0)
    visibility_timeout: int = Field(900, ge=2)
    task_time_limit: int = Field(600, ge=1)
    max_retries: int = Field(3, ge=0)
    retry_backoff_max: int = Field(60, ge=1)
    model_load_timeout: int = Field(600, ge=5)
    # A stopping worker lets the chunk in hand finish this long, then hands it back to the
    # queue. 2 s fits honcho's 5 s between SIGTERM and SIGKILL; compose allows more.
    stop_grace_seconds: float = Field(2.0, ge=0)
    result_ttl: int = Field(7 * 24 * 3600, ge=60)
    input_dir: Path = Path("data/input")
    output_dir: Path = Path("data/output")
    failed_dir: Path = Path("data/failed")
    # Where the producer keeps each checked file's chunk texts until they are sent (unlinked
    # temporary files, about the size of the comments' text). None: the system's temp folder.
    spool_dir: Path | None = None
    settle_seconds: float = Field(DEFAULT_SETTLE_SECONDS, ge=0)
    # A file written since its last close (inotify) waits for the close, up to this long still.
    open_file_seconds: float = Field(DEFAULT_OPEN_FILE_SECONDS, gt=0)
    # A file that reads as cut short is read again once unchanged this long, then failed.
    incomplete_seconds: float = Field(DEFAULT_INCOMPLETE_SECONDS, ge=0)
    rescan_seconds: float = Field(30.0, gt=0)
    max_file_bytes: int = Field(1024**3, ge=1)
    max_comment_chars: int = Field(1_000_000, ge=1)
    log_level: str = "INFO"

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size(cls, value: Any) -> int | str:
        if isinstance(value, str) and value.strip().lower() == AUTO_BATCH:
            return AUTO_BATCH
        try:
            rows = int(value)
        except (TypeError, ValueError):
            rows = 0
        if not 1 <= rows <= MAX_BATCH_ROWS or (isinstance(value, float) and value != rows):
            raise ValueError(f"must be a number of rows from 1 to {MAX_BATCH_ROWS}, or 'auto'")
        return rows

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError("must be 'cuda', 'cuda:N' or 'cpu'")
        return value

    @field_validator("broker_url", "result_backend")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown log level {value!r}")
        return value.upper()

    @model_validator(mode="after")
    def _limits(self) -> Settings:
        if self.batch_size == AUTO_BATCH and self.token_budget <= 0:
            raise ValueError(
                "EMOTIONS_BATCH_SIZE=auto sizes batches by EMOTIONS_TOKEN_BUDGET, which must then "
                "be above 0"
            )
        if self.task_time_limit >= self.visibility_timeout:
            raise ValueError(
                "EMOTIONS_TASK_TIME_LIMIT must be below EMOTIONS_VISIBILITY_TIMEOUT, or a chunk "
                "still running would be handed to a second worker"
            )
        return self

    @property
    def stall_after(self) -> float:
        """Seconds without progress before a job is healed (``stall_seconds`` or its default)."""
        return self.stall_seconds or 3.0 * self.task_time_limit

    @property
    def rows_per_batch(self) -> int | None:
        """The row cap of a batch, or None when the token budget alone decides (``auto``)."""
        return None if self.batch_size == AUTO_BATCH else int(self.batch_size)

    @property
    def backend_url(self) -> str:
        """Where results and job state live: ``result_backend``, else the broker."""
        return self.result_backend or self.broker_url

    def masked(self) -> dict[str, Any]:
        """The settings as a dict with passwords in URLs replaced, fit for logs."""
        values = self.model_dump()
        for name in _SECRET_FIELDS:
            values[name] = maybe_sanitize_url(values[name]) if values[name] else ""
        return values


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (CLI flags as ``overrides``), with a clear error."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        problems = "; ".join(
            f"EMOTIONS_{'_'.join(str(p) for p in err['loc']).upper() or 'SETTINGS'}: {err['msg']}"
            for err in e.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from e


def log_settings(settings: Settings, process: str) -> None:
    """Log the settings once per process, secrets masked."""
    log.info("%s settings: %s", process, settings.masked())
