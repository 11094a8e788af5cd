"""Keep secrets out of every message: registered values are masked, URL user info is stripped."""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import quote

MASK = "***"

# The tool's secret settings, named once. Pure, because readers that run before pydantic is imported
# need them too (git's environment filter, the early clone); the settings model types exactly these
# as SecretStr (a test holds the two together), registers their values here, and marks them in the
# README's settings reference.
SECRET_SETTINGS = frozenset(
    {"REPOSITORY_TOKEN", "REPOSITORY_SSH_KEY", "ARKINDEX_TASK_TOKEN", "ARKINDEX_API_TOKEN"}
)
_lock = threading.Lock()
_secrets: set[str] = set()

# user:password@ or token@ in any scheme://… URL; up to the authority's last '@', so that a password
# holding an unencoded '@' is masked whole.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#\s]+)@")
# Authorization headers that could be echoed by a library, as a header line (`Authorization: Basic …`),
# a mapping (`{'Authorization': 'Ponos …'}`, JSON) or a setting (`http.extraHeader=Authorization=…`).
_AUTH_HEADER = re.compile(
    r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?\s*(?:basic|bearer|token|ponos)\s+)[^\s'\",}]+"
)


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`scrub` masks it everywhere from now on.

    A secret of several lines (a private key) is masked whole, and line by line too: a message may
    quote one line of it. Its armor lines (`-----BEGIN …`) are no secret and stay readable."""
    if not value:
        return
    parts = [value]
    if "\n" in value:
        parts.append(value.strip())
        parts += [line.strip() for line in value.splitlines() if not line.strip().startswith("-----")]
    with _lock:
        for part in parts:
            if len(part) >= 4:
                _secrets.add(part)
                # As it would appear inside a URL (a query string, userinfo).
                _secrets.add(quote(part, safe=""))


def scrub(text: object) -> str:
    """Return ``text`` with every registered secret, URL credential and auth header masked."""
    out = str(text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in out:
            out = out.replace(secret, MASK)
    out = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", out)
    return _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{MASK}", out)


class ScrubFilter(logging.Filter):
    """A logging filter that formats the record's message once and scrubs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        record.msg = scrub(message)
        record.args = None
        return True
