"""The one way this tool runs git: :class:`GitProcess`, and :func:`run` for a command run to its end.

Safety rules held here for every git process:
- credentials reach git through an askpass program kept outside the repository, which reads the token
  from the git process' environment; never through argv, the remote URL or `.git/config`;
- an SSH key and known_hosts are files of that same private folder, named to ssh through variables it
  expands itself, so that neither their content nor their path is in any process' argv; host keys are
  checked against the given known_hosts alone, or accepted on first sight into that private file
  (never the user's ~/.ssh);
- hooks, terminal prompts, system/global configuration, credential helpers, LFS smudging and
  submodule recursion are off; only network transports (plus `file` when allowed) may be used;
- every message that can carry a URL or a command line is scrubbed before it is raised or logged;
- no git process outlives what it was started for: each runs in a process group of its own, killed
  whole at its deadline (``GIT_TIMEOUT``), when it is stopped, or when its caller fails or is
  interrupted, so that no remote helper is left writing into a folder being removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from git_import import logs
from git_import.errors import ConfigError, FatalError
from git_import.redact import SECRET_SETTINGS, scrub

logger = logging.getLogger(__name__)

_ASKPASS = """#!/bin/sh
# Answers git's credential prompts from the environment of the git process; holds no secret itself.
case "$1" in
  Username*) printf '%s\\n' "$GIT_IMPORT_USERNAME" ;;
  *) printf '%s\\n' "$GIT_IMPORT_PASSWORD" ;;
esac
"""

# The tool's secret settings, kept out of the environment of git processes.
_SECRET_ENV = SECRET_SETTINGS

# Failures worth another try: the network or the server, never authentication or a missing object.
# A stall (GIT_STALL_TIMEOUT, as http.lowSpeedTime) is one: curl says "Operation too slow", which git
# wraps in "RPC failed; curl 28" for a POST but prints bare for the ref discovery GET.
_TRANSIENT = re.compile(
    r"(?i)(couldn't connect|could not connect|connection (refused|reset|timed out)|failed to connect"
    r"|operation timed out|timed out|operation too slow|early eof|unexpected disconnect|the remote end hung up"
    r"|transfer closed|rpc failed|http/2 stream|curl \d+|gnutls|ssl_read|recv failure|empty reply"
    r"|returned error: 5\d\d|error: 5\d\d|http code 5\d\d|internal server error|bad gateway"
    r"|service unavailable|gateway timeout|invalid index-pack output|fetch-pack: invalid"
    r"|protocol error: bad pack header|index-pack failed|could not resolve host|temporary failure"
    r"|not responding|kex_exchange_identification|connection closed by)"  # ssh: keepalive, a server busy
)
_AUTH = re.compile(
    r"(?i)(authentication failed|could not read (username|password)|terminal prompts disabled"
    r"|returned error: 40[13]|http code 40[13]|access denied|invalid credentials)"
)
# What ssh says when a setting of its own is wrong; it names no setting, the error does.
_SSH_REFUSED = re.compile(r"(?i)permission denied \([^)]*publickey")
_SSH_KEY_UNREADABLE = re.compile(r'(?i)^load key "[^"]*": (?P<reason>.+)$')  # the line names the key's path
_SSH_HOST_KEY = re.compile(r"(?i)host key verification failed")
_SSH_HOST_CHANGED = re.compile(r"(?i)host key for (?P<host>\S+) has changed")
_SSH_HOST_UNKNOWN = re.compile(r"(?i)host key is known for (?P<host>\S+) ")
# A local path that names no folder gets "repository '<path>' does not exist" from `git clone`, where a
# file:// URL gets "does not appear to be a git repository": one answer for both.
_NOT_FOUND = re.compile(
    r"(?i)(repository .* not found|repository '.*' does not exist|returned error: 404"
    r"|does not appear to be a git repository)"
)
# Progress lines of a transfer: shown while it runs, but they say nothing about why it failed.
_PROGRESS = ("remote: Counting", "remote: Compressing", "Receiving", "Resolving")
TAIL_LINES = 20  # lines of git's stderr kept for the error message


class GitError(FatalError):
    """A git command failed; the message is scrubbed and names the operation.

    `command` and `tail` (git's last lines on stderr, progress left out) are scrubbed here; `status` is
    git's exit status, None when git did not end by itself (stopped, out of time) or did not run."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        hint: str | None = None,
        command: Sequence[str] = (),
        status: int | None = None,
        tail: Sequence[str] = (),
    ) -> None:
        super().__init__(message, hint=hint)
        self.transient = transient
        self.command = tuple(scrub(arg) for arg in command)
        self.status = status
        self.tail = tuple(scrub(line) for line in tail)


class ConfigGitError(GitError, ConfigError):
    """A git failure caused by a setting (access refused, no such repository): exit status 2."""

    exit_code = ConfigError.exit_code


def classify(
    what: str, tail: Sequence[str], *, command: Sequence[str] = (), status: int | None = None
) -> GitError:
    """The error for git failing with these last lines: a setting to fix, a transient failure, or neither."""
    lines = [scrub(line) for line in tail if line.strip()]
    found = {"command": command, "status": status, "tail": lines}
    text = "\n".join(lines)
    detail = " / ".join(lines[-3:]) if lines else "no message from git"
    if (ssh := _ssh_error(what, lines)) is not None:
        message, hint = ssh
        return ConfigGitError(message, hint=hint, **found)
    if _AUTH.search(text):
        return ConfigGitError(
            f"{what}: the Git server refused access ({_saying(_AUTH, lines)})",
            hint="check REPOSITORY_TOKEN (a token with read access to the repository) and REPOSITORY_USERNAME",
            **found,
        )
    if _NOT_FOUND.search(text):
        return ConfigGitError(
            f"{what}: repository not found ({_saying(_NOT_FOUND, lines)})",
            hint="check REPOSITORY_URL, and REPOSITORY_TOKEN for a private repository",
            **found,
        )
    return GitError(f"{what} failed: {detail}", transient=bool(_TRANSIENT.search(text)), **found)


def _ssh_error(what: str, lines: Sequence[str]) -> tuple[str, str] | None:
    """(message, hint) when ssh refused to go on because of REPOSITORY_SSH_KEY or
    REPOSITORY_SSH_KNOWN_HOSTS; None otherwise. Checked before the rest: ssh's refusals end in git's
    generic "Could not read from remote repository"."""
    if any(_SSH_HOST_KEY.search(line) for line in lines):
        if host := _first(_SSH_HOST_CHANGED, lines, "host"):
            return (
                f"{what}: the SSH host key of {host} does not match REPOSITORY_SSH_KNOWN_HOSTS",
                "check REPOSITORY_SSH_KNOWN_HOSTS: if the host's key was changed on purpose, give its new "
                "key there; otherwise the connection may be intercepted",
            )
        host = _first(_SSH_HOST_UNKNOWN, lines, "host") or "the SSH host"
        return (
            f"{what}: REPOSITORY_SSH_KNOWN_HOSTS holds no key for {host}",
            "add the host's known_hosts line to REPOSITORY_SSH_KNOWN_HOSTS, checked against the "
            "fingerprint the host publishes",
        )
    if reason := _first(_SSH_KEY_UNREADABLE, lines, "reason"):
        return (
            f"{what}: ssh could not read the private key of REPOSITORY_SSH_KEY ({reason})",
            "set REPOSITORY_SSH_KEY to the whole content of a private key file without a passphrase",
        )
    if refusal := _first(_SSH_REFUSED, lines, 0):
        return (
            f"{what}: the Git server refused SSH access ({refusal})",
            "set REPOSITORY_SSH_KEY to a private key whose public key the Git server accepts, such as a "
            "deploy key with read access to the repository",
        )
    return None


def _first(pattern: re.Pattern[str], lines: Sequence[str], group: int | str) -> str | None:
    """A group of the first line `pattern` matches (0: the whole line)."""
    for line in lines:
        if match := pattern.search(line):
            return line if group == 0 else match[group]
    return None


def _saying(pattern: re.Pattern[str], lines: Sequence[str]) -> str:
    """The lines that say why, for a failure `pattern` recognised: git's last lines may be the generic
    "Could not read from remote repository. / Please make sure you have the correct access rights"."""
    return " / ".join(line for line in lines if pattern.search(line)) or " / ".join(lines[-3:])


def zsplit(output: bytes | IO[bytes]) -> Iterator[bytes]:
    """The records of git's `-z` output (NUL-separated, empty ones dropped): from bytes, or from a
    stream, read as git writes it, so that a reader can stop git once it has what it needs."""
    if isinstance(output, bytes):
        chunks: Iterable[bytes] = (output,)
    else:
        chunks = iter(lambda: output.read1(65536), b"")  # type: ignore[attr-defined]
    pending = b""
    for chunk in chunks:
        *records, pending = (pending + chunk).split(b"\0")
        yield from (record for record in records if record)
    if pending:
        yield pending


def git_argv(*args: str, git_dir: Path | None = None) -> list[str]:
    """A git command line; its configuration comes through the environment (:class:`GitEnv`)."""
    return ["git", f"--git-dir={git_dir}", *args] if git_dir is not None else ["git", *args]


class GitEnv:
    """The environment and configuration every git process of one run gets, and those processes.

    Use as a context manager: the askpass program, the SSH key and known_hosts live in a private
    temporary folder removed on exit, after every git process still running in it was stopped."""

    def __init__(
        self,
        *,
        username: str = "oauth2",
        token: str | None = None,
        allow_local: bool = False,
        stall_timeout: int = 60,
        timeout: float = 1800,
        ssh_key: str | None = None,
        ssh_known_hosts: str | None = None,
    ) -> None:
        self.username = username
        self.token = token
        self.allow_local = allow_local
        self.stall_timeout = stall_timeout
        self.timeout = timeout
        self.ssh_key = ssh_key  # a private key's content, each line ended by a newline
        self.ssh_known_hosts = ssh_known_hosts
        self._dir: Path | None = None
        self.env: dict[str, str] = {}
        self._running: set[GitProcess] = set()
        self._stopped = False
        self._lock = threading.Lock()

    def same_as(self, other: GitEnv) -> bool:
        """Whether git runs the same way under `other`: same credentials, transports and time limits."""
        return self._params() == other._params()

    def _params(self) -> tuple[object, ...]:
        return (
            self.username,
            self.token,
            self.allow_local,
            self.stall_timeout,
            self.timeout,
            self.ssh_key,
            self.ssh_known_hosts,
        )

    def __enter__(self) -> GitEnv:
        self._dir = Path(tempfile.mkdtemp(prefix="git-import-auth-"))  # mode 0700
        try:
            askpass = self._dir / "askpass.sh"
            askpass.write_text(_ASKPASS)
            askpass.chmod(stat.S_IRWXU)
            self.env = self._environment(askpass)
            self.env.update(self._ssh_files(self._dir))
        except BaseException:
            self.__exit__()  # a key half written is removed too
            raise
        self._stopped = False
        return self

    def _ssh_files(self, folder: Path) -> dict[str, str]:
        """Write the key and known_hosts in the private folder; the variables through which ssh finds them."""
        # Written even when empty: with accept-new, ssh adds the host's key there, not in ~/.ssh.
        files = {
            "GIT_IMPORT_SSH_KNOWN_HOSTS": _private_file(folder / "known_hosts", self.ssh_known_hosts or "")
        }
        if self.ssh_key:
            files["GIT_IMPORT_SSH_KEY"] = _private_file(folder / "ssh_key", self.ssh_key)
        return {name: str(path) for name, path in files.items()}

    def _ssh_command(self) -> str:
        """GIT_SSH_COMMAND. Git runs it through a shell: the `${…}` are quoted for ssh to expand from
        its environment, so that the files' paths are in no argv (ssh >= 8.4 expands them)."""
        options = [
            "BatchMode=yes",  # no prompt: a refused key or host key fails at once
            f"StrictHostKeyChecking={'yes' if self.ssh_known_hosts else 'accept-new'}",
            "UserKnownHostsFile=${GIT_IMPORT_SSH_KNOWN_HOSTS}",
            "GlobalKnownHostsFile=/dev/null",  # the given known_hosts alone: the same on every machine
            # The stall limit, where ssh can tell: a connection that does not open, or a server that
            # answers no keepalive (http.lowSpeedTime's counterpart; git's ssh transport has none).
            f"ConnectTimeout={self.stall_timeout}",
            f"ServerAliveInterval={max(1, self.stall_timeout // 3)}",
            "ServerAliveCountMax=2",
        ]
        if self.ssh_key:
            options += ["IdentityFile=${GIT_IMPORT_SSH_KEY}", "IdentitiesOnly=yes", "IdentityAgent=none"]
        return " ".join(["ssh", *(f"-o {shlex.quote(option)}" for option in options)])

    def _environment(self, askpass: Path) -> dict[str, str]:
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
                "GIT_SSH_COMMAND": self._ssh_command(),
                "GIT_IMPORT_USERNAME": self.username,
                "GIT_IMPORT_PASSWORD": self.token or "",
                "LC_ALL": "C",
                "GIT_ALLOW_PROTOCOL": "http:https:ssh" + (":file" if self.allow_local else ""),
            }
        )
        # Configuration through the environment: git passes it on to every git process it starts.
        config = self._config()
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for i, (key, value) in enumerate(config.items()):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        return env

    def _config(self) -> dict[str, str]:
        return {
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

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def stop(self) -> None:
        """Stop every git process running under this environment, and refuse to start any other.

        Git runs out of a terminal's reach (its own process group): a thread waiting on git is
        interrupted by Ctrl-C and stops it, but git waited on by another thread must be stopped here."""
        with self._lock:
            self._stopped = True
            running = list(self._running)
        for process in running:
            process.stop()

    @contextlib.contextmanager
    def _starting(self, process: GitProcess) -> Iterator[None]:
        # Held while git and its watcher start, so that stop() either refuses it or finds it whole.
        with self._lock:
            if self._stopped:
                raise GitError(f"{process.what} was stopped", command=process.argv)
            yield
            self._running.add(process)

    def _ended(self, process: GitProcess) -> None:
        with self._lock:
            self._running.discard(process)


def _private_file(path: Path, content: str) -> Path:
    """A new file that only this user may read, written before anyone else could open it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, stat.S_IRUSR | stat.S_IWUSR)
    with open(fd, "w", encoding="utf-8") as file:
        file.write(content)
    return path


class GitProcess:
    """One git process (or any command: tests run `sh` through it), from its start to its end.

    It runs in a process group of its own, which is killed whole (git and the remote helpers, ssh or
    index-pack it started) at the deadline (``GitEnv.timeout`` seconds after the start), by
    :meth:`stop`, or when the code using it fails or is interrupted (use it as a context manager). A
    watcher thread reads git's stderr as it comes, so that git never blocks on it: it keeps the last
    lines for the error message and the latest progress line, enforces the deadline, and reaps git.

    `input` is given to git's stdin (through a file: git may write before it has read it all);
    `stdout`: git's stdout is a pipe, :attr:`stdout`, for the caller to read (else discarded);
    `watch=False` (:func:`run`): no watcher thread; the caller reads both pipes with :meth:`collect`,
    which does the watcher's work in the calling thread."""

    def __init__(
        self,
        argv: Sequence[str],
        git_env: GitEnv,
        *,
        what: str,
        input: bytes | None = None,
        stdout: bool = False,
        watch: bool = True,
    ) -> None:
        self.argv = list(argv)
        self.what = what
        self.timeout = git_env.timeout
        self.timed_out = self.stopped = False
        self.latest = ""  # the latest line git wrote on stderr, progress included
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._reaped = False
        self._done = threading.Event()  # set once git is reaped
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()  # a kill and the reaping of git, one at a time
        self._git_env = git_env
        with contextlib.ExitStack() as stack:
            stdin: int | IO[bytes] = subprocess.DEVNULL
            if input is not None:
                stdin = stack.enter_context(tempfile.TemporaryFile())
                stdin.write(input)
                stdin.seek(0)
            with git_env._starting(self):
                self.proc = subprocess.Popen(
                    self.argv,
                    stdin=stdin,
                    stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    env=git_env.env,
                    start_new_session=True,
                )
                self.started = time.monotonic()
                self.stdout: IO[bytes] = self.proc.stdout  # type: ignore[assignment]
                if watch:
                    self._watcher = threading.Thread(target=self._watch, name="git-watcher", daemon=True)
                    self._watcher.start()

    # --- the watcher thread (or the caller's, without one) --------------------------------------
    def _watch(self, out: list[bytes] | None = None) -> None:
        """Read git's stderr (and its stdout into `out`, when given) until they close, within the
        deadline; then reap git."""
        stderr = self.proc.stderr
        assert stderr is not None
        open_fds = {stderr.fileno()} | ({self.stdout.fileno()} if out is not None else set())
        poller = select.poll()
        for fd in open_fds:
            poller.register(fd, select.POLLIN)
        pending = b""
        deadline = self.started + self.timeout
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0 and not self.timed_out:
                self._kill(timed_out=True)  # its pipes close once the whole group is gone
            for fd, _ in poller.poll(None if self.timed_out else max(0.0, left) * 1000):
                chunk = os.read(fd, 65536)
                if not chunk:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                elif fd == stderr.fileno():
                    pending = self._keep_lines(pending + chunk)
                else:
                    out.append(chunk)  # type: ignore[union-attr]
        self._keep_lines(pending + b"\n")
        stderr.close()
        self._reap()

    def collect(self) -> bytes:
        """Without a watcher (`watch=False`): git's whole stdout, read in this thread with its stderr.

        A short command then starts no thread: starting and joining one waits for the GIL, which
        another thread busy in Python (the trigger's main thread importing the API layer while the
        selection runs) holds up to a switch interval each time."""
        assert self._watcher is None
        out: list[bytes] = []
        try:
            self._watch(out)
        except BaseException:
            self._kill()
            raise
        return b"".join(out)

    def _keep_lines(self, data: bytes) -> bytes:
        *lines, rest = re.split(rb"[\r\n]", data)
        for part in lines:
            line = part.decode(errors="replace").strip()
            if line:
                self.latest = line
                if not line.startswith(_PROGRESS):
                    self._tail.append(line)
        return rest

    def _reap(self) -> None:
        # Wait for git's end without reaping it: until it is reaped its pid, which is also its group's
        # id, cannot be given to another process, so a kill meanwhile cannot reach a stranger.
        if hasattr(os, "waitid"):
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)
        with self._lock:
            self.proc.wait()
            self._reaped = True
        self._git_env._ended(self)
        self._done.set()

    def _kill(self, *, timed_out: bool = False, stopped: bool = False) -> None:
        with self._lock:
            if self._reaped:
                return
            self.timed_out |= timed_out
            self.stopped |= stopped
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    # --- for the caller -------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop git if it still runs, and wait until it is gone (what it wrote is the caller's to remove)."""
        self._kill(stopped=True)
        self._join()

    def ended(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds (None: no limit) for git's end; whether it ended.

        An exception meanwhile (Ctrl-C in the waiting thread) kills git first."""
        try:
            return self._join(timeout)
        except BaseException:
            self._kill()
            raise

    def _join(self, timeout: float | None = None) -> bool:
        if self._watcher is None:  # the caller's thread reaps it (`collect`, `__exit__`)
            return self._done.wait(timeout)
        self._watcher.join(timeout)
        return not self._watcher.is_alive()

    def error(self) -> GitError:
        """Why git failed: stopped, out of time, or what its last lines say."""
        if self.stopped:  # on purpose (Ctrl-C, a clone no longer wanted): not to be retried
            return GitError(f"{self.what} was stopped", command=self.argv)
        if self.timed_out:
            return GitError(f"{self.what} took more than {self.timeout} s", transient=True, command=self.argv)
        return classify(self.what, list(self._tail), command=self.argv, status=self.proc.returncode)

    def finish(self, ok: Collection[int] | None = (0,)) -> int:
        """Wait for git's end and return its exit status; raise :meth:`error` when git was killed (by
        the deadline or :meth:`stop`) or its status is not in `ok` (None: any status)."""
        self.ended()
        status = self.proc.returncode
        killed = status == -signal.SIGKILL and (self.stopped or self.timed_out)
        if killed or (ok is not None and status not in ok):
            raise self.error()
        return status

    def wait(self) -> None:
        """:meth:`finish` a transfer, logging its latest progress line every ``PROGRESS_INTERVAL``
        seconds as a plain line (no carriage return) while waiting."""
        while not self.ended(max(logs.PROGRESS_INTERVAL, 0.5)):
            if self.latest:
                logger.info("%s: %s", self.what, scrub(self.latest))
        self.finish()

    def __enter__(self) -> GitProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        # Git still running here is not needed any more (its reader has what it wanted) or its caller
        # failed: stop it, without calling it stopped.
        self._kill()
        if self._watcher is None and not self._done.is_set():
            # Killed: its pipes close. Reap it here (what `collect` had left, if it was interrupted).
            if self.proc.stderr is not None and not self.proc.stderr.closed:
                self._watch([])
            else:
                self._reap()
        self._join()
        if self.stdout is not None:
            self.stdout.close()


def run(
    argv: Sequence[str],
    git_env: GitEnv,
    *,
    what: str,
    input: bytes | None = None,
    ok: Collection[int] | None = (0,),
) -> tuple[int, bytes]:
    """Run git to its end: (its exit status, its stdout); a status not in `ok` raises :class:`GitError`."""
    with GitProcess(argv, git_env, what=what, input=input, stdout=True, watch=False) as git:
        out = git.collect()
        return git.finish(ok), out


@contextlib.contextmanager
def short_gil_slices() -> Iterator[None]:
    """A 0.5 ms switch interval while a thread runs short git commands and another imports modules.

    Each git command that ends hands its thread back to Python, which then waits for the GIL up to the
    switch interval (5 ms by default) while the importing thread holds it. The trigger's selection and
    the revision task's fetch overlap the API layer's import this way (figures: CHANGELOG)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
