"""Pure rules on repository URLs, refs and slugs: no I/O, tested directly."""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

from git_import.errors import ConfigError

NETWORK_SCHEMES = ("https", "http", "ssh")
# scp-like syntax: [user@]host:path, where host has no slash and path does not start with //
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/:\s]+)@)?(?P<host>[^@/:\s]+):(?!//)(?P<path>[^\s]+)$")
_FULL_HASH = re.compile(r"^[0-9a-f]{40}$")

# The `before` of a push that creates a ref, the `after` of one that deletes it.
NULL_SHA = "0" * 40
_BAD_REF_CHARS = re.compile(r"[\x00-\x20~^:?*\[\\\x7f]")
_CONTROL_CHARS = re.compile(r"[\x00-\x20\x7f]")

TASK_SLUG_PREFIX = "import-"


def task_slug(commit: str) -> str:
    """The slug of the task that imports one revision: stable, so a re-run finds it."""
    return f"{TASK_SLUG_PREFIX}{commit}"


WHERE = "REPOSITORY_URL"
_CREDENTIALS = (
    f"{WHERE} holds credentials, which would leak into logs and the clone's configuration",
    "remove them from the URL and set REPOSITORY_TOKEN (and REPOSITORY_USERNAME) instead",
)


def check_repository_url(url: str, *, allow_local: bool = False) -> str:
    """Return the URL git may clone, or raise :class:`ConfigError` for a URL that is unsafe or unusable."""
    url = url.strip()
    if not url:
        raise ConfigError(f"{WHERE} is empty", hint="set it to the repository's clone URL")
    _refuse_injection(url)
    _refuse_credentials(url)
    split = urlsplit(url)
    # Without `://`, `host:path` is git's scp-like syntax, not a scheme.
    scheme = split.scheme.lower() if "://" in url else ""
    if scheme in ("http", "https", "ssh"):
        _check_network_url(split, scheme)
        return url
    if scheme == "file" or (not scheme and not _SCP_LIKE.match(url)):
        if allow_local:
            return url
        raise ConfigError(
            f"{WHERE} is a local path or file:// URL, which is refused by default",
            hint="use the repository's https:// or ssh:// URL, or set REPOSITORY_ALLOW_LOCAL=1 for local testing",
        )
    if not scheme:
        match = _SCP_LIKE.match(url)
        assert match is not None
        if ":" in (match["user"] or ""):
            raise ConfigError(f"{WHERE} holds a password", hint="remove it from the URL")
        return url
    raise ConfigError(
        f"{WHERE} uses the unsupported scheme '{scheme}://'",
        hint="give an https://, http:// or ssh:// clone URL",
    )


def _refuse_injection(url: str) -> None:
    """What would make git run something else than a fetch: an option, a command-running transport."""
    if url.startswith("-"):
        raise ConfigError(
            f"{WHERE} starts with '-', which git would read as an option",
            hint="give an https:// or ssh:// clone URL",
        )
    if "::" in url.split("/", 1)[0]:
        transport = url.split("::", 1)[0]
        raise ConfigError(
            f"{WHERE} uses the '{transport}::' remote helper transport, which can run commands",
            hint="give an https:// or ssh:// clone URL",
        )
    if _CONTROL_CHARS.search(url):
        raise ConfigError(
            f"{WHERE} holds a control character or space",
            hint="give the clone URL on one line, without spaces",
        )


def _refuse_credentials(url: str) -> None:
    """user:password@host, with or without a scheme (`user:pw@host:path` is not scp-like)."""
    authority = url.split("://", 1)[1] if "://" in url else url
    authority = re.split(r"[/?#]", authority, maxsplit=1)[0]
    if "@" in authority and ":" in authority.rsplit("@", 1)[0]:
        raise ConfigError(_CREDENTIALS[0], hint=_CREDENTIALS[1])


def _check_network_url(split: SplitResult, scheme: str) -> None:
    if split.query or split.fragment:
        raise ConfigError(
            f"{WHERE} has a query string or fragment, which could carry credentials and would leak into logs",
            hint="give the plain clone URL and set REPOSITORY_TOKEN for a private repository",
        )
    if scheme == "ssh" and split.password is not None:
        raise ConfigError(
            f"{WHERE} holds a password, which would leak into logs",
            hint="remove it from the URL; SSH access uses a key",
        )
    if scheme != "ssh" and "@" in split.netloc:
        raise ConfigError(_CREDENTIALS[0], hint=_CREDENTIALS[1])
    if not split.hostname:
        example = "ssh://git@host/group/repo.git" if scheme == "ssh" else "https://gitlab.com/group/repo.git"
        raise ConfigError(f"{WHERE} has no host", hint=f"give a URL like {example}")


def ssh_host(url: str) -> str | None:
    """The host of an SSH remote (`ssh://` or scp-like) as known_hosts names it: `host`, or
    `[host]:port` off port 22; None for any other URL."""
    url = url.strip()
    if "://" not in url:
        match = _SCP_LIKE.match(url)
        return match["host"] if match else None
    split = urlsplit(url)
    if split.scheme.lower() != "ssh" or not split.hostname:
        return None
    try:
        port = split.port
    except ValueError:  # not a port: git will say so
        port = None
    return f"[{split.hostname}]:{port}" if port and port != 22 else split.hostname


def web_url(repository_url: str) -> str:
    """The repository's web page: `git@host:group/repo.git` → `https://host/group/repo`."""
    url = repository_url.strip()
    split = urlsplit(url)
    if split.scheme in ("http", "https"):
        host = split.hostname or ""
        if split.port:
            host = f"{host}:{split.port}"
        base = f"{split.scheme}://{host}{split.path}"
    elif split.scheme == "ssh":
        base = f"https://{split.hostname}{split.path}"
    elif (match := _SCP_LIKE.match(url)) and "://" not in url:
        path = match["path"].lstrip("/")
        base = f"https://{match['host']}/{path}"
    else:
        # Local repositories (development only): keep the path as it is.
        base = url
    base = base.rstrip("/")
    if base.endswith(".git"):
        base = base[: -len(".git")]
    return base


def revision_url(repository_url: str, commit: str) -> str:
    """The web URL of one commit, as Arkindex stores it on a worker version."""
    return f"{web_url(repository_url)}/commit/{commit}"


def is_full_hash(value: str) -> bool:
    return bool(_FULL_HASH.match(value))


def check_ref(ref: str) -> str:
    """Refuse refs that git would misread (options, revision syntax)."""
    ref = ref.strip()
    if (
        not ref
        or ref.startswith("-")
        or _BAD_REF_CHARS.search(ref)
        or ".." in ref
        or ref.endswith((".", "/", ".lock"))
    ):
        raise ConfigError(
            f"REPOSITORY_REF {ref!r} is not a valid branch, tag or ref name",
            hint="give a branch name such as 'main', a tag, or a full ref such as 'refs/heads/main'",
        )
    return ref


def clone_branch(ref: str | None) -> str | bool | None:
    """The `git clone --branch` value for a ref (None: the default branch), or False when only a
    fetch of the full ref can name it exactly (a full tag ref, or another namespace)."""
    if ref is None or ref == "HEAD":
        return None
    if ref.startswith("refs/heads/"):
        return ref[len("refs/heads/") :]
    if ref.startswith("refs/"):
        return False
    return ref


def branch_and_tag(ref: str | None) -> tuple[str | None, str | None]:
    """Split a full ref into the branch or tag a worker version carries."""
    if not ref:
        return None, None
    if ref.startswith("refs/heads/"):
        return ref[len("refs/heads/") :], None
    if ref.startswith("refs/tags/"):
        return None, ref[len("refs/tags/") :]
    if ref.startswith("refs/"):
        return None, None
    return ref, None


def check_pathspecs(paths: list[str]) -> list[str]:
    for path in paths:
        if path.startswith("-"):
            raise ConfigError(
                f"REPOSITORY_PATHS entry {path!r} starts with '-'",
                hint="give paths relative to the repository root, separated by commas",
            )
    return paths
