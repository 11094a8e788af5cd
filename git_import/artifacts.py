"""The task's artifacts: JSON files under `$PONOS_DATA/current/`, which Ponos uploads as `<task ID>/<name>`."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from git_import.errors import ConfigError
from git_import.settings import Settings


def check_writable(settings: Settings) -> Path:
    """Make sure the artifacts folder can be created and written, before anything is created on Arkindex:
    a read-only data folder found at the end would leave tasks created and no plan to say so."""
    folder = settings.artifacts_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"PONOS_DATA: cannot write the task's artifacts to {folder} ({reason})",
            hint="PONOS_DATA must be a writable folder; in the image, mount it writable by uid 1000",
            settings=("PONOS_DATA",),
        ) from None
    return folder


def write_json(settings: Settings, name: str, data: Any) -> Path:
    """Write an artifact whole or not at all: a reader never finds half a file."""
    folder = settings.artifacts_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with tempfile.NamedTemporaryFile("w", dir=folder, prefix=f".{name}.", delete=False) as tmp:
        tmp.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp.name, path)
    return path
