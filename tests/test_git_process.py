"""The one way the tool runs git (`git_import.git.process`): real processes and real process groups.

The primitive takes any command line, so most tests run `sh`, whose background `sleep` stands for what
git starts (a remote helper, ssh, index-pack): a process of git's group that git does not wait for.
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from git_import.git.process import (
    ConfigGitError,
    GitEnv,
    GitError,
    GitProcess,
    classify,
    git_argv,
    run,
    zsplit,
)
from git_import.git.repo import Repo
from git_import.local.gitserver import GitHTTPServer
from git_import.local.sample import RepoBuilder

from conftest import group_members, wait_for

# Prints the pid of a background sleep, then waits: a group of (at least) the shell and two sleeps.
SPAWNS = "sleep 100 & echo $!; sleep 100"


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def group_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[2])


@pytest.fixture
def git_env() -> Iterator[GitEnv]:
    with GitEnv(timeout=60) as env:
        yield env


# --- running to the end ----------------------------------------------------------------------------


def test_run_returns_the_status_and_stdout(git_env: GitEnv) -> None:
    assert run(sh("printf 'a\\0b'"), git_env, what="printing") == (0, b"a\0b")
    assert run(sh("exit 1"), git_env, what="asking", ok=(0, 1)) == (1, b"")
    assert run(sh("exit 3"), git_env, what="asking", ok=None) == (3, b"")


def test_input_larger_than_a_pipe_reaches_stdin(git_env: GitEnv) -> None:
    data = bytes(range(256)) * 8192  # 2 MB: git could block writing before it read it all
    assert run(["cat"], git_env, what="copying", input=data) == (0, data)


def test_a_failure_carries_the_command_its_status_and_last_lines_scrubbed(git_env: GitEnv) -> None:
    script = (
        "echo 'Cloning from https://user:hunter22@example.com/r.git' >&2;"
        "printf 'Receiving objects:  50%% (1/2)\\r' >&2;"
        "echo 'error: RPC failed; HTTP 503 curl 22 The requested URL returned error: 503' >&2;"
        "exit 128"
    )
    with pytest.raises(GitError) as caught:
        run(sh(script + " # https://user:hunter22@example.com/r.git"), git_env, what="cloning main")
    error = caught.value
    assert error.message == (
        "cloning main failed: Cloning from https://***@example.com/r.git"
        " / error: RPC failed; HTTP 503 curl 22 The requested URL returned error: 503"
    )
    assert error.transient and error.status == 128
    assert error.command[:2] == ("sh", "-c") and "https://***@example.com/r.git" in error.command[2]
    assert error.tail == (
        "Cloning from https://***@example.com/r.git",
        "error: RPC failed; HTTP 503 curl 22 The requested URL returned error: 503",
    )  # the progress line is left out
    assert "hunter22" not in repr((error.message, error.command, error.tail))


def test_refused_access_is_a_setting_to_fix(git_env: GitEnv) -> None:
    script = "echo \"fatal: Authentication failed for 'https://example.com/r.git/'\" >&2; exit 128"
    with pytest.raises(ConfigGitError) as caught:
        run(sh(script), git_env, what="cloning main")
    assert caught.value.exit_code == 2 and not caught.value.transient
    assert "REPOSITORY_TOKEN" in str(caught.value)


def test_git_failing_is_reported_in_its_words(git_env: GitEnv, tmp_path: Path) -> None:
    argv = git_argv("rev-parse", "HEAD", git_dir=tmp_path / "missing.git")
    with pytest.raises(GitError, match=r"^rev-parse failed: fatal: not a git repository") as caught:
        run(argv, git_env, what="rev-parse")
    assert caught.value.status == 128 and not caught.value.transient
    assert caught.value.command == tuple(argv)


@pytest.mark.parametrize(
    "line",
    [
        "fatal: unable to access 'https://example.com/r.git/': Operation too slow. "
        "Less than 1 bytes/sec transferred the last 60 seconds",
        "error: RPC failed; curl 28 Operation too slow. Less than 1 bytes/sec transferred the last 60 seconds",
    ],
    ids=["ref discovery", "rpc"],
)
def test_a_stall_is_transient_whichever_request_it_cut(line: str) -> None:
    error = classify("cloning main", [line])
    assert error.transient and not isinstance(error, ConfigGitError)


# --- the deadline, stop and interruption kill the whole group ---------------------------------------


def test_the_deadline_kills_the_whole_group() -> None:
    with GitEnv(timeout=0.5) as env, GitProcess(sh(SPAWNS), env, what="waiting", stdout=True) as git:
        pgid = git.proc.pid
        assert group_of(int(git.stdout.readline())) == pgid  # the background sleep is in git's group
        with pytest.raises(GitError, match=r"^waiting took more than 0.5 s$") as caught:
            git.finish()
    assert caught.value.transient and caught.value.status is None
    wait_for(lambda: group_members(pgid) == [], f"left running: {group_members(pgid)}")


def test_the_deadline_stops_a_stalled_clone_and_its_remote_helper(
    repo: RepoBuilder, git_server: GitHTTPServer, tmp_path: Path
) -> None:
    repo.commit("Initial commit", {"README.md": "# Workers\n"})
    repo.publish(git_server.root / "workers.git")
    git_server.faults.stall_next = 5  # the server answers, then sends nothing
    with (
        GitEnv(timeout=2) as env,
        Repo.start_clone(tmp_path / "r.git", git_server.url("workers.git"), env) as git,
    ):
        pgid = git.proc.pid
        wait_for(lambda: len(group_members(pgid)) >= 2, "git started its remote helper")
        with pytest.raises(GitError, match=r"^cloning the default branch took more than 2 s$"):
            git.wait()
    wait_for(lambda: group_members(pgid) == [], f"left running: {group_members(pgid)}")


def test_stop_from_another_thread_kills_the_group_and_no_git_starts_after(git_env: GitEnv) -> None:
    failures: list[BaseException] = []

    def wait(git: GitProcess) -> None:
        try:
            git.finish()
        except GitError as exc:
            failures.append(exc)

    with GitProcess(sh(SPAWNS), git_env, what="fetching", stdout=True) as git:
        pgid = git.proc.pid
        git.stdout.readline()
        waiter = threading.Thread(target=wait, args=(git,))
        waiter.start()
        git_env.stop()
        waiter.join()
    (failure,) = failures
    assert isinstance(failure, GitError) and failure.message == "fetching was stopped"
    assert not failure.transient  # stopped on purpose: not to be tried again
    wait_for(lambda: group_members(pgid) == [], f"left running: {group_members(pgid)}")
    with pytest.raises(GitError, match=r"^listing refs was stopped$"):
        GitProcess(["true"], git_env, what="listing refs")


def test_a_failure_of_the_caller_kills_the_group(git_env: GitEnv) -> None:
    with pytest.raises(RuntimeError), GitProcess(sh(SPAWNS), git_env, what="reading", stdout=True) as git:
        pgid = git.proc.pid
        git.stdout.readline()
        raise RuntimeError("the caller failed")
    wait_for(lambda: group_members(pgid) == [], f"left running: {group_members(pgid)}")


def test_a_reader_that_has_what_it_needs_stops_git_quietly(git_env: GitEnv) -> None:
    started = time.monotonic()
    with GitProcess(sh("printf 'one\\0two\\0'; sleep 100"), git_env, what="reading", stdout=True) as git:
        pgid = git.proc.pid
        assert next(zsplit(git.stdout)) == b"one"
    assert time.monotonic() - started < 30
    wait_for(lambda: group_members(pgid) == [], f"left running: {group_members(pgid)}")


def test_ctrl_c_in_the_waiting_thread_kills_the_group() -> None:
    """Git's group is out of a terminal's reach: Ctrl-C reaches Python alone, which kills the group."""
    code = textwrap.dedent(
        f"""
        from git_import.git.process import GitEnv, GitProcess
        with GitEnv() as env, GitProcess(["sh", "-c", {SPAWNS!r}], env, what="waiting") as git:
            print(git.proc.pid, flush=True)
            git.finish()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stderr is not None
        pgid = int(child.stdout.readline())
        wait_for(lambda: len(group_members(pgid)) >= 3, "the shell started its sleeps")
        child.send_signal(signal.SIGINT)  # to Python alone, as a terminal's Ctrl-C now reaches it
        assert child.wait(30) == -signal.SIGINT  # ended by the KeyboardInterrupt, as Python does
        assert "KeyboardInterrupt" in child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    wait_for(lambda: group_members(pgid) == [], f"left running: {group_members(pgid)}")


# --- zsplit ----------------------------------------------------------------------------------------


class Chunks(io.RawIOBase):
    """A stream that hands out these chunks, one a read, as a pipe would."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        if not self.chunks:
            return 0
        chunk = self.chunks.pop(0)
        buffer[: len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize(
    ("output", "records"),
    [
        (b"", []),
        (b"\0", []),
        (b"one", [b"one"]),
        (b"one\0two\0", [b"one", b"two"]),  # ls-tree: each record ends with NUL
        (b"one\0two", [b"one", b"two"]),  # log: NUL between records
        (b"one\0\0two\0", [b"one", b"two"]),
    ],
)
def test_zsplit_of_bytes(output: bytes, records: list[bytes]) -> None:
    assert list(zsplit(output)) == records


def test_zsplit_of_a_stream_joins_records_cut_between_reads() -> None:
    stream = io.BufferedReader(Chunks(b"on", b"e\0t", b"wo", b"\0thr", b"ee"))
    assert list(zsplit(stream)) == [b"one", b"two", b"three"]


def test_zsplit_of_a_stream_yields_records_as_they_come() -> None:
    stream = io.BufferedReader(Chunks(b"one\0tw", b"o\0"))
    records = zsplit(stream)
    assert next(records) == b"one"
    assert stream.raw.chunks == [b"o\0"]  # type: ignore[attr-defined]  # the rest is not read yet
    assert list(records) == [b"two"]
