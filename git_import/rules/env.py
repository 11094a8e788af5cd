"""Pure rules for reading settings from the environment: how a value parses, its default and bounds, and
what each command needs set.

Two readers share them: the settings model (pydantic), and the early clone, which starts before pydantic
is imported and so cannot use the model. Each rule and default lives here once; this module imports no
pydantic (the early clone's whole point).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from git_import.rules.urls import NULL_SHA, is_full_hash

# The values pydantic reads as booleans; the model reads them through parse_bool, so the two agree.
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})

_WHOLE_NUMBER = re.compile(r"^[+-]?[0-9]{1,18}$")

# A whole private key file, as ssh reads it (OpenSSH, PKCS#1 or PKCS#8 PEM).
_PRIVATE_KEY = re.compile(
    r"^-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----\n.+\n-----END \1PRIVATE KEY-----$", re.S
)
# What is pasted instead by mistake: a public key (OpenSSH line, PEM or RFC 4716).
_PUBLIC_KEY = re.compile(
    r"^(ssh-|ecdsa-|sk-|-----BEGIN (?:RSA )?PUBLIC KEY-----|---- BEGIN SSH2 PUBLIC KEY ----)"
)
_OPENSSH_MAGIC = b"openssh-key-v1\0"

DEFAULT_USERNAME = "oauth2"  # GitLab's user name for a token used as an HTTP password

# What each command needs set. Each entry is a group of variables any one of which is enough; the group
# is named by its first variable.
REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "trigger": (
        ("REPOSITORY_URL",),
        ("PONOS_PROCESS", "ARKINDEX_PROCESS_ID"),
        ("PONOS_TASK",),
        ("ARKINDEX_API_URL",),
        ("ARKINDEX_TASK_TOKEN", "ARKINDEX_API_TOKEN"),
    ),
    # A dry run reads the repository alone and writes nothing.
    "trigger --dry-run": (("REPOSITORY_URL",),),
    "revision": (
        ("REPOSITORY_URL",),
        ("REPOSITORY_REVISION",),
        ("ARKINDEX_API_URL",),
        ("ARKINDEX_TASK_TOKEN", "ARKINDEX_API_TOKEN"),
    ),
}


@dataclass(frozen=True)
class Number:
    """A numeric setting's default and bounds; the model hands them to pydantic as `Field(ge=, le=)`."""

    default: int | float
    low: int | float
    high: int | float | None = None

    def parse(self, text: str | None) -> int:
        """The whole number `text` holds (the default when unset), within bounds; else ValueError."""
        if text is None or text == "":
            return int(self.default)
        value = whole_number(text)
        if value < self.low or (self.high is not None and value > self.high):
            raise ValueError(f"{value} is out of bounds")
        return value


MAX_REVISIONS = Number(50, 1)
FAN_OUT_CONCURRENCY = Number(4, 1, 32)
WORKER_CONCURRENCY = Number(
    8, 1, 32
)  # two short calls a worker: 8 keeps a 200-worker revision near 1 s at 20 ms a call
RETRY_ATTEMPTS = Number(5, 1, 100)
RETRY_BASE_DELAY = Number(1.0, 0, 30)  # seconds
GIT_STALL_TIMEOUT = Number(60, 1)  # seconds
GIT_TIMEOUT = Number(1800, 1)  # seconds


def value(environ: Mapping[str, str], name: str) -> str | None:
    """A variable's value; an empty variable is unset (the model reads the environment so too)."""
    return environ.get(name) or None


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("must be 1 or 0 (or true/false, yes/no, on/off)")


def whole_number(text: str) -> int:
    # int() alone would also take "1_000" and non-ASCII digits.
    digits = text.strip()
    if not _WHOLE_NUMBER.match(digits):
        raise ValueError("is not a whole number")
    return int(digits)


def parse_hash(text: str) -> str:
    """A commit hash as git writes it (lower case), or ValueError for anything but a full hash."""
    commit = text.strip().lower()
    if not is_full_hash(commit):
        raise ValueError("not a full 40-character commit hash")
    return commit


def _lines(text: str) -> list[str]:
    """The lines of a multi-line variable, trimmed: CRLF line ends, the indentation of a pasted block,
    and the literal `\\n` that a variable set on one line holds (neither a key nor a known_hosts
    line has a backslash) all read as plain lines."""
    return [line.strip() for line in text.replace("\\n", "\n").splitlines() if line.strip()]


def parse_ssh_key(text: str) -> str:
    """A private key as ssh reads it (each line ended by a newline, the last one too), or ValueError
    for what ssh could not use without a prompt: not a private key, or one behind a passphrase."""
    key = "\n".join(_lines(text))
    if _PUBLIC_KEY.match(key):
        raise ValueError("holds a public key, not a private key")
    if not _PRIVATE_KEY.match(key):
        raise ValueError("is not a whole private key file (from its -----BEGIN line to its -----END line)")
    if _has_passphrase(key):
        raise ValueError("is protected by a passphrase, which the tool cannot type")
    return key + "\n"


def _has_passphrase(key: str) -> bool:
    lines = key.split("\n")
    if "ENCRYPTED" in lines[0] or any(
        line.startswith("Proc-Type:") and "ENCRYPTED" in line for line in lines
    ):
        return True  # PEM: PKCS#8 `ENCRYPTED PRIVATE KEY`, or PKCS#1 with a Proc-Type header
    if "OPENSSH" not in lines[0]:
        return False
    try:
        blob = base64.b64decode("".join(lines[1:-1]), validate=True)
    except binascii.Error:
        return False  # not readable: ssh says what is wrong with it
    # openssh-key-v1: the magic, then the cipher's name as a length-prefixed string; "none" when clear.
    if not blob.startswith(_OPENSSH_MAGIC):
        return False
    start = len(_OPENSSH_MAGIC) + 4
    size = int.from_bytes(blob[len(_OPENSSH_MAGIC) : start], "big")
    cipher = blob[start : start + size]
    return 0 < size == len(cipher) and cipher != b"none"  # a cut name: ssh says what is wrong


def parse_known_hosts(text: str) -> str:
    """known_hosts lines as ssh reads them, or ValueError for a line that is not `<hosts> <type> <key>`
    (a fingerprint pasted instead, say)."""
    lines = _lines(text)
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if fields[0].startswith("@"):  # @cert-authority or @revoked before the hosts
            fields = fields[1:]
        if not line.startswith("#") and len(fields) < 3:
            raise ValueError(f"line {number} is not a known_hosts line of hosts, key type and key")
    if not any(not line.startswith("#") for line in lines):
        raise ValueError("holds no host key")
    return "\n".join(lines) + "\n"


def unset(groups: Iterable[tuple[str, ...]], is_set: Callable[[str], bool]) -> list[tuple[str, ...]]:
    """The groups of which no variable is set."""
    return [group for group in groups if not any(is_set(name) for name in group)]


def push_before(commit: str | None) -> str | None:
    """The `before` of a push to read history down to; None for a new branch (forty zeros, or unset)."""
    return None if commit in (None, NULL_SHA) else commit


def missing(command: str, is_set: Callable[[str], bool]) -> list[tuple[str, ...]]:
    """What `command` needs and lacks: the groups of `REQUIRED[command]` of which no variable is set."""
    return unset(REQUIRED[command], is_set)
