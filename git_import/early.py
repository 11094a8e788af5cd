"""The trigger's clone, started while the settings layer loads.

Importing pydantic-settings and validating the settings take about 0.15 s of every trigger's start,
during which the clone, which only waits on git and the network, could already run. So the trigger
command starts the clone from the raw environment before it imports the settings layer, and the
trigger uses that clone only if the validated settings ask for exactly the same one (URL, branch,
depth, credentials and SSH key and known hosts, transports, time limits); otherwise the clone is stopped and removed, and the
trigger clones as it would have. Nothing here decides anything: each variable is read through the
rules the settings use (`rules.env`, `rules.urls`), and an environment this module cannot read as
plainly as the settings would (a push event file, local paths, a full tag ref, a value those rules
refuse, a setting the trigger needs and lacks) starts no early clone. It logs nothing before the
trigger takes the clone; a failure is raised, scrubbed, when the trigger takes it, exactly as the
trigger's own clone would have raised it.

This module must not import the settings layer (pydantic): that import is what it overlaps.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from git_import.errors import ConfigError
from git_import.git.repo import GitEnv, GitError, GitProcess, Repo, clone_what
from git_import.rules import env
from git_import.rules.urls import NULL_SHA, check_ref, check_repository_url, clone_branch

# Commits only, even with a path filter: the trigger fetches the trees of the pushed range alone.
CLONE_FILTER = "tree:0"

# The first clone of a push holds the ref's last SHALLOW_DEPTH commits: a push is nearly always far
# shorter, and the clone then costs the push, not the history (on a 200,000-commit history, 0.15 s
# against 3 s for the whole). The trigger clones the whole history when they do not suffice to select
# exactly (`trigger.history_suffices`).
SHALLOW_DEPTH = 1000


def clone_depth(before: str | None) -> int:
    """The first clone's depth: the ref's last SHALLOW_DEPTH commits, down to `before` in nearly every
    push; or, without `before` (a new branch), the target alone."""
    return SHALLOW_DEPTH if before else 1


class EarlyClone:
    """A clone of the trigger's repository running in the background, in its own temporary folder."""

    def __init__(self, url: str, branch: str | None, depth: int | None, git_env: GitEnv) -> None:
        self.url, self.branch, self.depth = url, branch, depth
        self.git_env = git_env
        self._dir: Path | None = None
        self._transfer: GitProcess | None = None
        self._closed = False
        self._lock = threading.Lock()  # close() may come from two threads: the second waits for the first
        git_env.__enter__()
        try:
            self._dir = Path(tempfile.mkdtemp(prefix="git-import-early-"))
            self._transfer = Repo.start_clone(
                self._dir / "repo.git",
                url,
                git_env,
                branch=branch,
                filter=CLONE_FILTER,
                depth=depth,
            )  # out of a terminal's reach, as every git process: close() stops it, Ctrl-C included
        except BaseException:
            self.close()
            raise

    @classmethod
    def start(cls, environ: Mapping[str, str], *, dry_run: bool = False) -> EarlyClone | None:
        """Start the clone the environment asks for; None when it cannot be read without the settings.

        Each variable is read through the settings' own rules (`rules.env`, `rules.urls`): a value they
        would refuse, or a setting the command needs and lacks, starts no clone and contacts no server."""

        def get(name: str) -> str | None:
            return env.value(environ, name)

        if get("REPOSITORY_EVENT"):
            return None  # read by the settings alone
        if env.missing("trigger --dry-run" if dry_run else "trigger", lambda name: get(name) is not None):
            return None  # the settings will refuse to run: contact no server first
        try:
            if (allow_local := get("REPOSITORY_ALLOW_LOCAL")) and env.parse_bool(allow_local):
                return None  # local paths, for development: not worth the overlap
            url = check_repository_url(get("REPOSITORY_URL") or "", allow_local=False)
            branch = clone_branch(check_ref(ref) if (ref := get("REPOSITORY_REF")) else None)
            before, after = (
                env.parse_hash(text) if (text := get(name)) else None
                for name in ("REPOSITORY_BEFORE", "REPOSITORY_AFTER")
            )
            git_env = GitEnv(
                username=get("REPOSITORY_USERNAME") or env.DEFAULT_USERNAME,
                token=get("REPOSITORY_TOKEN"),
                stall_timeout=env.GIT_STALL_TIMEOUT.parse(get("GIT_STALL_TIMEOUT")),
                timeout=env.GIT_TIMEOUT.parse(get("GIT_TIMEOUT")),
                # Normalised as the settings normalise them, so that the two environments compare equal.
                ssh_key=env.parse_ssh_key(key) if (key := get("REPOSITORY_SSH_KEY")) else None,
                ssh_known_hosts=env.parse_known_hosts(known)
                if (known := get("REPOSITORY_SSH_KNOWN_HOSTS"))
                else None,
            )
        except (ValueError, ConfigError):  # the settings will say what is wrong
            return None
        if branch is False or after == NULL_SHA:
            return None  # a full ref only a fetch names exactly; a deleted ref: nothing to clone
        try:
            return cls(url, branch, clone_depth(env.push_before(before)), git_env)
        except OSError:
            return None

    def take(
        self, path: Path, url: str, branch: str | None, depth: int | None, git_env: GitEnv
    ) -> Repo | None:
        """The finished clone, moved to `path`, if it is the one asked for; else None (and the clone is
        stopped and removed). A failure of git is raised as the same clone by the caller would raise it."""
        stopped = GitError(f"{clone_what(branch)} was stopped")
        try:
            transfer, folder = self._transfer, self._dir
            if self._closed or transfer is None or folder is None:
                raise stopped  # closed meanwhile (Ctrl-C): no clone is to start now
            if (url, branch, depth) != (self.url, self.branch, self.depth) or not git_env.same_as(
                self.git_env
            ):
                return None
            transfer.wait()
            try:
                os.replace(folder / "repo.git", path)
            except OSError:
                if self._closed:
                    raise stopped from None
                return None  # another file system: the caller clones again
            return Repo(path, git_env)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the clone if it runs, remove its folder and its credentials helper. Idempotent."""
        self._closed = True
        with self._lock:  # git stopped before its folder is removed, whichever thread gets here first
            transfer, self._transfer = self._transfer, None
            if transfer is not None:
                transfer.stop()
            folder, self._dir = self._dir, None
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.git_env.__exit__(None, None, None)
