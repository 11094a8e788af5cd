"""Git access: each operation is a small function over the real `git` binary, with `-z` parsing.

Safety rules held here for every git process:
- credentials reach git through an askpass program kept outside the repository, which reads the token
  from the git process' environment; never through argv, the remote URL or `.git/config`;
- hooks, terminal prompts, system/global configuration, credential helpers, LFS smudging and
  submodule recursion are off; only network transports (plus `file` when allowed) may be used;
- every message that can carry a URL or a command line is scrubbed before it is raised or logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from git_import import logs
from git_import.errors import ConfigError, FatalError
from git_import.redact import scrub

if TYPE_CHECKING:
    from git_import.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

_ASKPASS = """#!/bin/sh
# Answers git's credential prompts from the environment of the git process; holds no secret itself.
case "$1" in
  Username*) printf '%s\\n' "$GIT_IMPORT_USERNAME" ;;
  *) printf '%s\\n' "$GIT_IMPORT_PASSWORD" ;;
esac
"""

# The tool's secret settings, kept out of the environment of git processes.
_SECRET_ENV = frozenset({"REPOSITORY_TOKEN", "ARKINDEX_TASK_TOKEN", "ARKINDEX_API_TOKEN"})

# Failures worth another try: the network or the server, never authentication or a missing object.
_TRANSIENT = re.compile(
    r"(?i)(couldn't connect|could not connect|connection (refused|reset|timed out)|failed to connect"
    r"|operation timed out|timed out|early eof|unexpected disconnect|the remote end hung up"
    r"|transfer closed|rpc failed|http/2 stream|curl \d+|gnutls|ssl_read|recv failure|empty reply"
    r"|returned error: 5\d\d|error: 5\d\d|http code 5\d\d|internal server error|bad gateway"
    r"|service unavailable|gateway timeout|invalid index-pack output|fetch-pack: invalid"
    r"|protocol error: bad pack header|index-pack failed|could not resolve host|temporary failure)"
)
_AUTH = re.compile(
    r"(?i)(authentication failed|could not read (username|password)|terminal prompts disabled"
    r"|returned error: 40[13]|http code 40[13]|permission denied \(publickey|access denied|invalid credentials)"
)
_NOT_FOUND = re.compile(
    r"(?i)(repository .* not found|returned error: 404|does not appear to be a git repository)"
)


class GitError(FatalError):
    """A git command failed; the message is scrubbed and names the operation."""

    def __init__(self, message: str, *, transient: bool = False, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.transient = transient


@dataclass(frozen=True)
class Commit:
    hash: str
    author: str
    date: str
    summary: str


# One commit a record (records separated by NUL with `-z`): hash, author, author date, subject.
_LOG_FORMAT = "%H%x1f%an%x1f%aI%x1f%s"
# --no-mailmap: reading .mailmap would fetch a whole tree into a tree-less clone.
_FIRST_PARENT_LOG = (
    "log",
    "--first-parent",
    "-z",
    "--no-show-signature",
    "--no-mailmap",
    f"--format={_LOG_FORMAT}",
)


def _parse_log_record(record: bytes) -> Commit | None:
    text = record.decode(errors="replace").strip("\n")
    if not text:
        return None
    commit, author, date, summary = text.split("\x1f", 3)
    return Commit(commit, author, date, summary)


class GitEnv:
    """The environment and configuration every git process of one run gets.

    Use as a context manager: the askpass program lives in a private temporary folder removed on exit.
    """

    def __init__(
        self,
        *,
        username: str = "oauth2",
        token: str | None = None,
        allow_local: bool = False,
        stall_timeout: int = 60,
        timeout: int = 1800,
    ) -> None:
        self.username = username
        self.token = token
        self.allow_local = allow_local
        self.stall_timeout = stall_timeout
        self.timeout = timeout
        self._dir: Path | None = None
        self.env: dict[str, str] = {}

    def same_as(self, other: GitEnv) -> bool:
        """Whether git runs the same way under `other`: same credentials, transports and time limits."""
        return self._params() == other._params()

    def _params(self) -> tuple[object, ...]:
        return (self.username, self.token, self.allow_local, self.stall_timeout, self.timeout)

    def __enter__(self) -> GitEnv:
        self._dir = Path(tempfile.mkdtemp(prefix="git-import-auth-"))
        askpass = self._dir / "askpass.sh"
        askpass.write_text(_ASKPASS)
        askpass.chmod(stat.S_IRWXU)
        # Git gets the token once, in GIT_IMPORT_PASSWORD for the askpass program: not the tool's own
        # secret settings, which git and the programs it runs (ssh, remote helpers) have no use for.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GIT_", "SSH_ASKPASS")) and k.upper() not in _SECRET_ENV
        }
        env.update(
            {
                "GIT_TERMINAL_PROMPT": "0",
                "GIT_ASKPASS": str(askpass),
                "SSH_ASKPASS": str(askpass),
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull,
                "GIT_LFS_SKIP_SMUDGE": "1",
                "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
                "GIT_IMPORT_USERNAME": self.username,
                "GIT_IMPORT_PASSWORD": self.token or "",
                "LC_ALL": "C",
                "GIT_ALLOW_PROTOCOL": "http:https:ssh" + (":file" if self.allow_local else ""),
            }
        )
        config = {
            "core.hooksPath": os.devnull,
            "core.fsmonitor": "false",
            "credential.helper": "",
            "protocol.version": "2",
            "submodule.recurse": "false",
            "fetch.recurseSubmodules": "false",
            "gc.auto": "0",
            "maintenance.auto": "false",
            "http.lowSpeedLimit": "1",
            "http.lowSpeedTime": str(self.stall_timeout),
            "advice.detachedHead": "false",
            "init.defaultBranch": "main",
            "filter.lfs.smudge": "",
            "filter.lfs.process": "",
            "filter.lfs.required": "false",
        }
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for i, (key, value) in enumerate(config.items()):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        self.env = env
        return self

    def __exit__(self, *exc: object) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _describe_failure(what: str, stderr: str) -> GitError:
    text = scrub(stderr.strip())
    lines = [line for line in text.splitlines() if line.strip()]
    detail = " / ".join(lines[-3:]) if lines else "no message from git"
    if _AUTH.search(text):
        return ConfigGitError(
            f"{what}: the Git server refused access ({detail})",
            hint="check REPOSITORY_TOKEN (a token with read access to the repository) and REPOSITORY_USERNAME",
        )
    if _NOT_FOUND.search(text):
        return ConfigGitError(
            f"{what}: repository not found ({detail})",
            hint="check REPOSITORY_URL, and REPOSITORY_TOKEN for a private repository",
        )
    return GitError(f"{what} failed: {detail}", transient=bool(_TRANSIENT.search(text)))


@contextlib.contextmanager
def _deadline(proc: subprocess.Popen[bytes], timeout: float) -> Iterator[threading.Event]:
    """Kill `proc` if it outlives `timeout` seconds; the event tells whether that happened."""
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    try:
        yield expired
    finally:
        timer.cancel()


class ConfigGitError(GitError, ConfigError):
    """A git failure caused by a setting (access refused, no such repository): exit status 2."""

    exit_code = ConfigError.exit_code


class Transfer:
    """A git transfer running in the background: its progress is read as it comes, and reported as
    periodic plain lines (no carriage returns) while someone waits for it.

    `own_group`: git and the processes it starts get a process group of their own, which
    :meth:`cancel` stops whole (none is left writing into a folder being removed); a terminal's
    Ctrl-C then no longer reaches them, so whoever starts such a transfer must cancel it."""

    def __init__(self, argv: list[str], git_env: GitEnv, *, own_group: bool = False) -> None:
        self.timeout = git_env.timeout
        self.started = time.monotonic()
        self.own_group = own_group
        self.cancelled = False
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=git_env.env,
            start_new_session=own_group,
        )
        self._tail: list[str] = []
        self._latest = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stderr = self.proc.stderr
        assert stderr is not None
        buffer = b""
        while chunk := stderr.read1(65536):  # type: ignore[attr-defined]
            buffer += chunk
            *parts, buffer = re.split(rb"[\r\n]", buffer)
            for part in parts:
                line = part.decode(errors="replace").strip()
                if not line:
                    continue
                self._latest = line
                if not line.startswith(("remote: Counting", "remote: Compressing", "Receiving", "Resolving")):
                    self._tail.append(line)
                    del self._tail[:-20]
        if buffer.strip():
            self._tail.append(buffer.decode(errors="replace").strip())

    def wait(self, what: str) -> None:
        """Wait for the end of the transfer, logging its progress; a failure raises a scrubbed :class:`GitError`."""
        last_report = time.monotonic()
        while True:
            # The reader ends when git closes its stderr, that is when it exits: joining it returns at
            # once then, where Popen.wait(timeout) would poll with sleeps of up to 50 ms.
            self._reader.join(timeout=0.5)
            if not self._reader.is_alive():
                self.proc.wait()
                break
            now = time.monotonic()
            if now - self.started > self.timeout:
                self.cancel()
                raise GitError(f"{what} took more than {self.timeout} s", transient=True) from None
            if now - last_report >= logs.PROGRESS_INTERVAL and self._latest:
                logger.info("%s: %s", what, scrub(self._latest))
                last_report = now
        self._reader.join(5)
        if self.cancelled:  # stopped on purpose (Ctrl-C, a clone no longer wanted): not to be retried
            raise GitError(f"{what} was stopped")
        if self.proc.returncode != 0:
            raise _describe_failure(what, "\n".join(self._tail))

    def cancel(self) -> None:
        """Stop the transfer if it still runs (what it wrote is the caller's to remove)."""
        if self.proc.poll() is None:
            self.cancelled = True
            if self.own_group:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
        self.proc.wait()
        self._reader.join(5)


def clone_what(branch: str | None) -> str:
    """How logs and errors name a clone of `branch` (None: the default branch)."""
    return f"cloning {branch or 'the default branch'}"


class Repo:
    """A bare repository in a temporary folder, with one remote `origin`."""

    def __init__(self, path: Path, git_env: GitEnv) -> None:
        self.path = path
        self.git_env = git_env

    # --- running git ------------------------------------------------------------------------
    def _argv(self, args: Iterable[str]) -> list[str]:
        return ["git", f"--git-dir={self.path}", *args]

    def run(self, *args: str, what: str, input: bytes | None = None, check: bool = True) -> bytes:
        """Run git and return its stdout; a failure raises a scrubbed :class:`GitError`."""
        try:
            proc = subprocess.run(
                self._argv(args),
                input=input,
                capture_output=True,
                env=self.git_env.env,
                timeout=self.git_env.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise GitError(f"{what} took more than {self.git_env.timeout} s", transient=True) from None
        if check and proc.returncode != 0:
            raise _describe_failure(what, proc.stderr.decode(errors="replace"))
        return proc.stdout

    def run_with_progress(self, *args: str, what: str) -> None:
        """Run a long transfer, logging git's progress as periodic plain lines (no carriage returns)."""
        Transfer(self._argv(args), self.git_env).wait(what)

    # --- operations -------------------------------------------------------------------------
    @classmethod
    def init(cls, path: Path, url: str, git_env: GitEnv) -> Repo:
        path.mkdir(parents=True, exist_ok=True)
        repo = cls(path, git_env)
        repo.run("init", "--quiet", "--bare", what="git init")
        repo.run("remote", "add", "origin", "--", url, what="git remote add")
        return repo

    @classmethod
    def clone(
        cls,
        path: Path,
        url: str,
        git_env: GitEnv,
        *,
        branch: str | None = None,
        filter: str | None = None,
        depth: int | None = None,
    ) -> Repo:
        """One `git clone --bare --single-branch`: the ref lookup and the fetch in one process, no checkout."""
        cls.start_clone(path, url, git_env, branch=branch, filter=filter, depth=depth).wait(
            clone_what(branch)
        )
        return cls(path, git_env)

    @staticmethod
    def start_clone(
        path: Path,
        url: str,
        git_env: GitEnv,
        *,
        branch: str | None = None,
        filter: str | None = None,
        depth: int | None = None,
        own_group: bool = False,
    ) -> Transfer:
        """Start the clone of :meth:`clone` in the background; wait for it with ``clone_what(branch)``."""
        args = ["git", "clone", "--bare", "--no-tags", "--single-branch", "--progress"]
        if branch:
            args.append(f"--branch={branch}")
        if filter:
            args.append(f"--filter={filter}")
        if depth:
            args.append(f"--depth={depth}")
        return Transfer([*args, "--", url, str(path)], git_env, own_group=own_group)

    def local_refs(self) -> list[tuple[str, str]]:
        """(ref name, commit) of every local ref, tags peeled to their commit."""
        out = self.run(
            "for-each-ref", "--format=%(refname) %(objectname) %(*objectname)", what="listing refs"
        ).decode()
        refs = []
        for line in out.splitlines():
            name, oid, *peeled = line.split(" ")
            refs.append((name, peeled[0] if peeled and peeled[0] else oid))
        return refs

    def ls_remote(self, *patterns: str) -> tuple[dict[str, str], str | None]:
        """Refs of the remote matching the patterns (name → hash) and what HEAD points to."""
        out = self.run("ls-remote", "--symref", "origin", *patterns, what="listing the remote's refs")
        refs: dict[str, str] = {}
        head_target = None
        for line in out.decode(errors="replace").splitlines():
            left, _, name = line.partition("\t")
            if left.startswith("ref: "):
                if name == "HEAD":
                    head_target = left[len("ref: ") :]
                continue
            refs[name] = left
        return refs, head_target

    def fetch(
        self, *refspecs: str, filter: str | None = None, depth: int | None = None, what: str = "fetch"
    ) -> None:
        args = ["fetch", "--no-tags", "--no-write-fetch-head", "--no-auto-gc", "--progress"]
        if filter:
            args.append(f"--filter={filter}")
        if depth:
            args.append(f"--depth={depth}")
        self.run_with_progress(*args, "origin", *refspecs, what=what)

    def fetch_objects(self, oids: list[str], what: str) -> None:
        """Fetch several missing objects (blobs) in one request, as a partial clone's lazy fetch does."""
        if not oids:
            return
        self.run(
            "-c",
            "fetch.negotiationAlgorithm=noop",
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-auto-gc",
            "--filter=blob:none",
            "--stdin",
            "origin",
            input="".join(f"{oid}\n" for oid in oids).encode(),
            what=what,
        )

    def rev_parse_commit(self, rev: str) -> str | None:
        out = self.run(
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            f"{rev}^{{commit}}",
            what="rev-parse",
            check=False,
        )
        value = out.decode().strip()
        return value or None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        proc = subprocess.run(
            self._argv(["merge-base", "--is-ancestor", ancestor, descendant]),
            capture_output=True,
            env=self.git_env.env,
            check=False,
        )
        if proc.returncode not in (0, 1):
            raise _describe_failure("git merge-base", proc.stderr.decode(errors="replace"))
        return proc.returncode == 0

    def first_parent_log(
        self,
        target: str,
        *,
        exclude: str | None = None,
        paths: list[str] | None = None,
        limit: int | None = None,
    ) -> list[Commit]:
        """Commits on the first-parent line from `target` (newest first), optionally limited to paths."""
        args = list(_FIRST_PARENT_LOG)
        if limit:
            args.append(f"--max-count={limit}")
        args += ["--end-of-options", target]
        if exclude:
            args.append(f"^{exclude}")
        if paths:
            args += ["--", *paths]
        out = self.run(*args, what="reading the commit history")
        commits = []
        for record in out.split(b"\0"):
            commit = _parse_log_record(record)
            if commit is not None:
                commits.append(commit)
        return commits

    def first_parent_until(self, target: str, stop: str) -> list[Commit] | None:
        """The first-parent commits from `target` down to `stop` (excluded), newest first; None when
        `stop` is not on that line.

        git's output is read as it comes and git is stopped once `stop` shows up: the time is that of
        the range, not of the whole history. `stop` itself is never given to git, so a commit missing
        from the clone is never fetched on demand."""
        argv = self._argv([*_FIRST_PARENT_LOG, "--end-of-options", target])
        what = "reading the commit history"
        with tempfile.TemporaryFile() as stderr:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=self.git_env.env
            )
            commits: list[Commit] = []
            found = False
            stdout = proc.stdout
            assert stdout is not None
            with _deadline(proc, self.git_env.timeout) as timed_out:
                try:
                    pending = b""
                    while not found:
                        chunk = stdout.read1(65536)
                        if not chunk:
                            break
                        *records, pending = (pending + chunk).split(b"\0")
                        for record in records:
                            commit = _parse_log_record(record)
                            if commit is None:
                                continue
                            if commit.hash == stop:
                                found = True
                                break
                            commits.append(commit)
                finally:
                    if found or sys.exc_info()[0] is not None:
                        proc.kill()  # the rest of the history is not needed
                    stdout.close()
                    code = proc.wait()
            if found:
                return commits
            if timed_out.is_set():
                raise GitError(f"{what} took more than {self.git_env.timeout} s", transient=True)
            if code != 0:
                stderr.seek(0)
                raise _describe_failure(what, stderr.read().decode(errors="replace"))
            return None

    def ls_tree(self, commit: str, *paths: str, recursive: bool = False) -> list[tuple[str, str, str, str]]:
        """(mode, type, oid, path) of the entries at these paths; reads trees only, never blobs."""
        args = ["ls-tree", "-z", "--full-tree"]
        if recursive:
            args.append("-r")
        args += ["--end-of-options", commit, *paths]
        out = self.run(*args, what="listing files")
        entries = []
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, path = record.partition(b"\t")
            mode, kind, oid = meta.decode().split(" ")
            entries.append((mode, kind, oid, path.decode("utf-8", errors="surrogateescape")))
        return entries

    def read_blobs(self, oids: list[str], max_size: int | None = None) -> Iterator[tuple[str, bytes | int]]:
        """Contents of many blobs from one `git cat-file --batch` process, read as git writes them.

        A blob over `max_size` bytes is not kept: its size (an int) comes instead of its content, so that
        a huge file costs no memory before it is refused."""
        if not oids:
            return
        what = "reading files"
        with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stderr:
            stdin.write("".join(f"{oid}\n" for oid in oids).encode())
            stdin.seek(0)
            proc = subprocess.Popen(
                self._argv(["cat-file", "--batch"]),
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=self.git_env.env,
            )
            stdout = proc.stdout
            assert stdout is not None

            def read(count: int) -> bytes:
                data = stdout.read(count)
                if len(data) < count:
                    raise EOFError
                return data

            ended_early = False
            with _deadline(proc, self.git_env.timeout) as timed_out:
                try:
                    for _ in oids:
                        header = stdout.readline().decode(errors="replace").split()
                        if not header:
                            raise EOFError
                        if len(header) < 3:
                            raise GitError(f"object {header[0]} is missing from the clone")
                        size = int(header[2])
                        if max_size is not None and size > max_size:
                            left = size + 1
                            while left:
                                left -= len(read(min(left, 1 << 20)))
                            yield header[0], size
                        else:
                            yield header[0], read(size + 1)[:size]
                except EOFError:
                    ended_early = True
                finally:
                    stdout.close()
                    proc.wait()
            if timed_out.is_set():
                raise GitError(f"{what} took more than {self.git_env.timeout} s", transient=True)
            if ended_early:
                stderr.seek(0)
                raise _describe_failure(what, stderr.read().decode(errors="replace"))


def backoff_delays(attempts: int, base: float, cap: float = 30.0) -> Iterator[float]:
    """Full-jitter exponential backoff: the delays before tries 2..attempts."""
    for attempt in range(1, attempts):
        high = min(cap, base * 2 ** (attempt - 1))
        yield random.uniform(min(base / 2, high), high)


def with_retries(
    action: Callable[[], T],
    *,
    attempts: int,
    base_delay: float,
    what: str,
    cleanup: Callable[[], object] | None = None,
) -> T:
    """Run `action()`; retry transient git failures with jittered backoff, calling `cleanup()` first."""
    delays = backoff_delays(attempts, base_delay)
    tries = 0
    while True:
        tries += 1
        try:
            return action()
        except GitError as exc:
            if not exc.transient:
                raise
            delay = next(delays, None)
            if delay is None:
                raise GitError(
                    f"{what} failed {tries} times; last error: {exc.message}",
                    hint="the Git server or the network is failing: retry the task later",
                ) from None
            logger.warning(
                "%s failed (try %d of %d), retrying in %.1f s: %s", what, tries, attempts, delay, exc.message
            )
            if cleanup is not None:
                cleanup()
            time.sleep(delay)


def git_env_for(settings: Settings) -> GitEnv:
    return GitEnv(
        username=settings.repository_username,
        token=settings.token,
        allow_local=settings.repository_allow_local,
        stall_timeout=settings.git_stall_timeout,
        timeout=settings.git_timeout,
    )
