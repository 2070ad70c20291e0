"""Which model a setting names, compared by identity rather than by spelling.

``EMOTIONS_MODEL`` may be a hub id (``AnasAlokla/multilingual_go_emotions``, optionally with
``@revision``) or a local folder. The same model is often spelled differently on different
machines: a trailing slash, a relative path, a symlinked folder, ``@main`` or nothing. A
worker compares the identity of the model a chunk was queued for with its own; only a real
difference makes it hand the chunk back.
"""

from __future__ import annotations

import os
from typing import Final

DEFAULT_REVISION: Final = "main"


def model_identity(model: str) -> str:
    """``dir:<resolved absolute path>`` for an existing folder, else ``hub:<id>@<revision>``.

    A folder that does not exist on this machine is treated as a hub id only if it looks
    like one (``owner/name``); otherwise it is normalised as a path, so two spellings of the
    same path still agree.
    """
    value = model.strip()
    if os.path.isdir(value):
        return "dir:" + os.path.realpath(value)
    hub, _, revision = value.rstrip("/").partition("@")
    if _looks_like_hub_id(hub):
        return f"hub:{hub}@{revision or DEFAULT_REVISION}"
    return "dir:" + os.path.normpath(os.path.abspath(value))


def _looks_like_hub_id(value: str) -> bool:
    """``name`` or ``owner/name``, without path syntax (hub ids have at most one slash)."""
    if not value or value.startswith((".", "/", "~")) or value.count("/") > 1:
        return False
    return all(part and not part.startswith(".") for part in value.split("/"))
