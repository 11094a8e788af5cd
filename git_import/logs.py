"""Logging for Ponos: plain lines on stderr (Ponos shows them as they come) or one JSON object a line."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from git_import.redact import ScrubFilter

# Seconds between two progress lines of a long step (a clone, the fan-out): read at each use, so that
# a test can set it to zero.
PROGRESS_INTERVAL = 5.0


# What a line is about, given as `extra=fields(...)`: with LOG_FORMAT=json each is a field of its own, so
# that a log shipper can find every line of one revision or task without parsing the message.
FIELDS = ("revision", "slug", "task_id", "worker", "file", "setting", "phase", "phases", "counts")


def fields(**values: object) -> dict[str, object]:
    """`extra` for a log call: the FIELDS given, those that are None left out."""
    unknown = set(values) - set(FIELDS)
    assert not unknown, f"unknown log fields {unknown}"
    return {key: value for key, value in values.items() if value is not None}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            data["exception"] = record.exc_text
        for key in FIELDS:
            if hasattr(record, key):
                data[key] = getattr(record, key)
        return json.dumps(data, ensure_ascii=False)


def setup_logging(fmt: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ScrubFilter())
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries log their own retries in their own words; ours say more.
    for noisy in ("urllib3", "arkindex", "requests"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Timings:
    """Wall time of each phase, for the closing summary line."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.started = time.monotonic()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.monotonic() - start

    def rounded(self) -> dict[str, float]:
        """Seconds of each phase and in all, for a log line's `phases` field."""
        return {
            **{name: round(s, 3) for name, s in self.phases.items()},
            "total": round(time.monotonic() - self.started, 3),
        }

    def __str__(self) -> str:
        parts = [f"{name} {seconds:.2f}s" for name, seconds in self.phases.items()]
        parts.append(f"total {time.monotonic() - self.started:.2f}s")
        return ", ".join(parts)
