"""Reliability of the trigger (issue 5): transient failures of git and of the API are retried with
bounded, jittered backoff and then reported clearly; authentication and validation errors are never
retried; a killed trigger resumes; racing triggers create no duplicate; a 200-revision soak through a
faulty API ends with exactly 200 tasks.

Everything is real: git over `git http-backend`, the emulator through the real arkindex-client, the
tool run as a child process as Ponos would run it.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from git_import.local.emulator import Emulator, Faults, Modes
from git_import.local.gitserver import GitFaults, GitHTTPServer
from git_import.local.sample import RepoBuilder, worker_yaml

from conftest import REPO_TOKEN, Ponos, Result, clean_env, fast_history, make_ponos

# --- helpers ---------------------------------------------------------------------------------------


def slugs(ponos: Ponos) -> list[str]:
    """The slugs of the tasks the trigger created, sorted (concurrent creation has no set order)."""
    return sorted(task["slug"] for task in ponos.children())


def expected(commits: list[str]) -> list[str]:
    """One task per commit, each exactly once."""
    return sorted(f"import-{c}" for c in commits)


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if " ERROR " in line]


def closing_line(result: Result) -> str:
    return [line for line in result.stderr.splitlines() if line.strip()][-1]


def popen_trigger(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start the trigger as Ponos would, its output to a file (no pipe to fill up)."""
    full_env = {**clean_env(), "PYTHONUNBUFFERED": "1", **env}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "git_import", "trigger"],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll an observable condition (the emulator's state), bounded in time."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@pytest.fixture
def pushed(repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer) -> tuple[str, str, list[str]]:
    """A served repository: (URL, `before`, the 5 commits pushed after it, oldest first), with enough
    history that its commit pack is several kilobytes."""
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    commits = [
        repo.commit(
            f"Change {i}: {'a longer summary line to make the pack bigger ' * 3}",
            {"arkindex/hello.yml": worker_yaml("hello", "Hello", f"Version {i}")},
        )
        for i in range(5)
    ]
    repo.publish(git_root / "workers.git")
    return git_server.url("workers.git"), base, commits


# --- the Git server fails --------------------------------------------------------------------------


def test_git_503_is_retried_then_the_clone_succeeds(
    ponos: Ponos, git_server: GitHTTPServer, pushed: tuple[str, str, list[str]]
) -> None:
    url, base, commits = pushed
    git_server.faults = GitFaults(fail_next=2)

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base})

    assert result.code == 0, result.output
    assert slugs(ponos) == expected(commits)
    assert [r["status"] for r in git_server.requests[:3]] == [503, 503, 200]
    warnings = [line for line in result.stderr.splitlines() if "retrying" in line]
    assert len(warnings) == 2
    assert "try 1 of 5" in warnings[0] and "503" in warnings[0]


def test_git_failing_for_good_gives_up_after_the_set_tries(
    ponos: Ponos, git_server: GitHTTPServer, pushed: tuple[str, str, list[str]]
) -> None:
    url, base, _ = pushed
    git_server.faults = GitFaults(fail_next=100)

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base, "RETRY_ATTEMPTS": "3"})

    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    # Bounded: exactly three tries, each one request.
    assert len(git_server.requests) == 3
    (line,) = error_lines(result.output)
    assert "failed 3 times" in line and "503" in line and "retry the task later" in line
    assert ponos.children() == []


def test_connection_dropped_mid_pack_is_retried_from_a_clean_folder(
    ponos: Ponos, git_server: GitHTTPServer, pushed: tuple[str, str, list[str]], tmp_path: Path
) -> None:
    url, base, commits = pushed
    git_server.faults = GitFaults(drop_mid_pack=1, drop_after_bytes=600)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base, "TMPDIR": str(tmpdir)})

    assert result.code == 0, result.output
    assert git_server.faults.drop_mid_pack == 0, "the pack was never cut"
    cut = [r for r in git_server.requests if r["bytes"] == 600]
    assert len(cut) == 1
    # Then a whole pack was fetched again, bigger than what was cut.
    assert max(r["bytes"] for r in git_server.requests) > 600
    retries = [line for line in result.stderr.splitlines() if "retrying" in line]
    assert len(retries) == 1 and "try 1 of 5" in retries[0]
    # The retry started from an empty folder (it would fail on the half-made clone otherwise) and the
    # whole history was read: every pushed commit has its task.
    assert slugs(ponos) == expected(commits)
    assert list(tmpdir.iterdir()) == []


def test_stalled_clone_is_cut_off_by_the_stall_timeout_and_retried(
    ponos: Ponos, git_server: GitHTTPServer, pushed: tuple[str, str, list[str]]
) -> None:
    url, base, commits = pushed
    git_server.faults = GitFaults(stall_next=1, stall_seconds=120)

    started = time.monotonic()
    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base, "GIT_STALL_TIMEOUT": "1"})
    elapsed = time.monotonic() - started

    assert result.code == 0, result.output
    assert git_server.faults.stall_next == 0, "nothing stalled"
    assert elapsed < 30, f"the stall was not cut off ({elapsed:.1f} s)"
    retries = [line for line in result.stderr.splitlines() if "retrying" in line]
    assert len(retries) == 1 and "too slow" in retries[0].lower()
    assert slugs(ponos) == expected(commits)


# git words a stall in the ref discovery GET ("unable to access '…': Operation too slow") otherwise
# than in an upload-pack POST ("RPC failed; curl 28 Operation too slow"): one transient failure.
STALLS = {
    "stall_discovery": lambda r: r["method"] == "GET" and r["path"].endswith("/info/refs"),
    "stall_next": lambda r: r["method"] == "POST" and r["path"].endswith("/git-upload-pack"),
}


@pytest.mark.parametrize("fault", list(STALLS), ids=["ref discovery GET", "upload-pack POST"])
def test_a_stall_is_retried_up_to_retry_attempts_wherever_it_happens(
    ponos: Ponos, git_server: GitHTTPServer, pushed: tuple[str, str, list[str]], fault: str
) -> None:
    url, base, _ = pushed
    git_server.faults = GitFaults(**{fault: 100}, stall_seconds=120)

    result = ponos.run_trigger(
        {"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base, "GIT_STALL_TIMEOUT": "1", "RETRY_ATTEMPTS": "3"}
    )

    assert result.code == 1, result.output
    # Each try stalls on its first request of that kind and ends there: one such request a try.
    assert len([r for r in git_server.requests if STALLS[fault](r)]) == 3, git_server.requests
    retries = [line for line in result.stderr.splitlines() if "retrying" in line]
    assert len(retries) == 2 and all("operation too slow" in line.lower() for line in retries)
    (line,) = error_lines(result.output)
    assert "failed 3 times" in line and "Operation too slow" in line and "retry the task later" in line
    assert ponos.children() == []


def test_a_revision_whose_ref_discovery_stalls_is_retried(
    ponos: Ponos, git_server: GitHTTPServer, pushed: tuple[str, str, list[str]]
) -> None:
    """Once taken for a host that cannot fetch by id (exit 2): a stall is a try to make again."""
    url, _, commits = pushed
    assert ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": commits[-2]}).code == 0
    (task,) = ponos.children()
    git_server.faults = GitFaults(stall_discovery=1, stall_seconds=120)
    git_server.reset_counters()

    result = ponos.run_child(task, {"GIT_STALL_TIMEOUT": "1"})

    assert result.code == 0, result.output
    assert git_server.faults.stall_discovery == 0
    # The stalled try, the try again, then the fetch of the configuration files.
    discoveries = [r for r in git_server.requests if STALLS["stall_discovery"](r)]
    assert [r["bytes"] == 0 for r in discoveries] == [True, False, False], git_server.requests
    retries = [line for line in result.stderr.splitlines() if "retrying" in line]
    assert len(retries) == 1 and "try 1 of 5" in retries[0] and "operation too slow" in retries[0].lower()


@pytest.mark.parametrize("fault", ["wrong token", "no such repository"])
def test_git_access_and_not_found_errors_are_not_retried(
    ponos: Ponos, repo: RepoBuilder, private_git_server: GitHTTPServer, fault: str
) -> None:
    repo.commit("Initial commit", {"README.md": "# Workers\n"})
    repo.publish(private_git_server.root / "private.git")
    if fault == "wrong token":
        env = {
            "REPOSITORY_URL": private_git_server.url("private.git"),
            "REPOSITORY_TOKEN": "wrong-token-9876",
        }
    else:
        env = {"REPOSITORY_URL": private_git_server.url("missing.git"), "REPOSITORY_TOKEN": REPO_TOKEN}

    result = ponos.run_trigger(env)

    assert result.code == 2, result.output
    assert "retrying" not in result.output
    (line,) = error_lines(result.output)
    assert "REPOSITORY_TOKEN" in line
    # One try: git asks once without credentials and once with them, never more.
    assert len(private_git_server.requests) <= 2
    assert ponos.children() == []


# --- the API fails ---------------------------------------------------------------------------------


def test_api_429_retry_after_is_honoured(ponos: Ponos, pushed: tuple[str, str, list[str]]) -> None:
    url, base, commits = pushed
    ponos.emulator.fail_next("CreateTask", 1, status=429, retry_after=1)

    started = time.monotonic()
    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base, "FAN_OUT_CONCURRENCY": "1"})
    elapsed = time.monotonic() - started

    assert result.code == 0, result.output
    assert ponos.emulator.stats["rate_limited"] == 1
    assert slugs(ponos) == expected(commits)
    # RETRY_BASE_DELAY is 0.01 s: only the server's Retry-After explains a one-second wait.
    assert elapsed >= 1.0
    (warning,) = [line for line in result.stderr.splitlines() if "retrying" in line]
    assert "429" in warning and "retrying in 1.0 s" in warning
    assert "1 API retries" in closing_line(result)


def test_api_5xx_are_retried_and_counted(ponos: Ponos, pushed: tuple[str, str, list[str]]) -> None:
    url, base, commits = pushed
    ponos.emulator.fail_next("RetrieveProcess", 2, status=502)
    ponos.emulator.fail_next("CreateTask", 3, status=503)
    ponos.emulator.fail_next("CreateTask", 1, status=500)

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base})

    assert result.code == 0, result.output
    assert ponos.emulator.stats["errors_injected"] == 6
    assert slugs(ponos) == expected(commits)
    assert "trigger done" in closing_line(result) and "6 API retries" in closing_line(result)


def test_api_5xx_for_good_is_reported_after_the_set_tries(
    ponos: Ponos, pushed: tuple[str, str, list[str]]
) -> None:
    url, base, _ = pushed
    ponos.emulator.fail_next("RetrieveProcess", 50, status=500)

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base, "RETRY_ATTEMPTS": "3"})

    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    assert ponos.emulator.stats["errors_injected"] == 3
    (line,) = error_lines(result.output)
    assert "RetrieveProcess" in line and "after 3 tries" in line and "500" in line
    assert "retry the task later" in line
    assert ponos.children() == []


@pytest.mark.parametrize("status", [401, 403])
def test_api_authentication_errors_are_not_retried(
    ponos: Ponos, pushed: tuple[str, str, list[str]], status: int
) -> None:
    url, base, _ = pushed
    # One failure only: a retry would succeed, so a run that failed made a single request.
    ponos.emulator.fail_next("RetrieveProcess", 1, status=status)

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base})

    assert result.code == 2, result.output
    assert ponos.emulator.stats["errors_injected"] == 1
    assert "retrying" not in result.output
    (line,) = error_lines(result.output)
    assert "ARKINDEX_TASK_TOKEN" in line and str(status) in line
    assert ponos.children() == []


@pytest.mark.parametrize("status", [400])
def test_create_task_refusals_are_not_retried(
    ponos: Ponos, pushed: tuple[str, str, list[str]], status: int
) -> None:
    url, base, commits = pushed
    ponos.emulator.fail_next("CreateTask", 1, status=status)

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base, "FAN_OUT_CONCURRENCY": "1"})

    assert result.code != 0, result.output
    assert "retrying" not in result.output
    assert ponos.emulator.stats["errors_injected"] == 1
    # The refused task was asked for once and is missing; the others were created.
    assert slugs(ponos) == expected(commits[1:])
    plan = ponos.plan()
    assert [r["task"]["state"] for r in plan["revisions"]] == ["failed"] + ["created"] * 4
    assert str(status) in plan["revisions"][0]["task"]["error"]


@pytest.mark.parametrize("status", [401, 403])
def test_create_task_auth_refusal_stops_the_fan_out(
    ponos: Ponos, pushed: tuple[str, str, list[str]], status: int
) -> None:
    """A rejected token or permission would fail every CreateTask: the fan-out stops at once, with one
    error line and exit status 2; the plan is still written, the revisions not tried left new."""
    url, base, _ = pushed
    ponos.emulator.fail_next("CreateTask", 1, status=status)

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base, "FAN_OUT_CONCURRENCY": "1"})

    assert result.code == 2, result.output
    assert "retrying" not in result.output
    assert ponos.emulator.stats["errors_injected"] == 1
    (line,) = error_lines(result.output)
    assert str(status) in line
    assert slugs(ponos) == []
    plan = ponos.plan()
    assert [r["task"]["state"] for r in plan["revisions"]] == ["failed"] + ["new"] * 4
    assert str(status) in plan["revisions"][0]["task"]["error"]


# --- resumption ------------------------------------------------------------------------------------


def test_trigger_killed_mid_fan_out_resumes_without_duplicates(
    emulator: Emulator, git_root: Path, git_server: GitHTTPServer, tmp_path: Path
) -> None:
    hashes = fast_history(git_root / "workers.git", 12)
    base, commits = hashes[0], hashes[1:]
    ponos = make_ponos(emulator, tmp_path / "data", {})
    env = {
        **ponos.env,
        "REPOSITORY_URL": git_server.url("workers.git"),
        "REPOSITORY_BEFORE": base,
        "FAN_OUT_CONCURRENCY": "1",
    }
    emulator.faults.create_task_delay = 0.2

    proc = popen_trigger(env, tmp_path / "first.log")
    try:
        wait_for(lambda: len(ponos.children()) >= 3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    before_rerun = len(ponos.children())
    assert 3 <= before_rerun < 12

    emulator.faults.create_task_delay = 0
    result = ponos.run_trigger({**env, "FAN_OUT_CONCURRENCY": "4"})

    assert result.code == 0, result.output
    assert slugs(ponos) == expected(commits)
    summary = ponos.plan()["summary"]
    assert summary["created"] + summary["already_there"] == 12
    assert summary["already_there"] >= 3
    assert all(r["task"]["id"] for r in ponos.plan()["revisions"])


def test_two_triggers_racing_on_one_process_create_no_duplicate(
    emulator: Emulator, git_root: Path, git_server: GitHTTPServer, tmp_path: Path
) -> None:
    hashes = fast_history(git_root / "workers.git", 10)
    base, commits = hashes[0], hashes[1:]
    ponos = make_ponos(emulator, tmp_path / "data", {})
    env = {
        **ponos.env,
        "REPOSITORY_URL": git_server.url("workers.git"),
        "REPOSITORY_BEFORE": base,
        "FAN_OUT_CONCURRENCY": "2",
    }
    emulator.faults.create_task_delay = 0.05

    procs = [
        popen_trigger({**env, "PONOS_DATA": str(tmp_path / name)}, tmp_path / f"{name}.log")
        for name in ("a", "b")
    ]
    codes = [proc.wait(60) for proc in procs]

    logs = [(tmp_path / f"{name}.log").read_text() for name in ("a", "b")]
    assert codes == [0, 0], logs
    assert slugs(ponos) == expected(commits)
    plans = [json.loads((tmp_path / name / "current" / "import-plan.json").read_text()) for name in "ab"]
    assert sum(plan["summary"]["created"] for plan in plans) == 10
    for plan in plans:
        assert plan["summary"]["created"] + plan["summary"]["already_there"] == 10
        assert plan["summary"]["failed"] == 0


@pytest.mark.parametrize("shape", ["field", "non_field"])
def test_duplicate_slug_answer_counts_as_already_there(
    ponos: Ponos, pushed: tuple[str, str, list[str]], shape: str
) -> None:
    """A slug that another trigger created first: "already there", whether the server's 400 names the
    `slug` field (as assumed) or not (Django's unique-together form): the process is asked then."""
    url, base, commits = pushed
    ponos.emulator.faults = Faults(duplicate_race_rate=0.5, seed=3)
    ponos.emulator.modes = Modes(duplicate_slug=shape)

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base})

    assert result.code == 0, result.output
    raced = ponos.emulator.stats["races_injected"]
    assert 0 < raced < 5
    assert slugs(ponos) == expected(commits)
    plan = ponos.plan()
    assert plan["summary"]["already_there"] == raced
    assert plan["summary"]["created"] == 5 - raced
    # The tasks another trigger created are named in the plan by their IDs.
    ids = {t["slug"]: t["id"] for t in ponos.children()}
    assert {r["task"]["slug"]: r["task"]["id"] for r in plan["revisions"]} == ids


# --- soak ------------------------------------------------------------------------------------------


def test_soak_200_revisions_through_a_faulty_api(
    emulator: Emulator, git_root: Path, git_server: GitHTTPServer, tmp_path: Path
) -> None:
    hashes = fast_history(git_root / "workers.git", 200)
    base, commits = hashes[0], hashes[1:]
    ponos = make_ponos(emulator, tmp_path / "data", {})
    emulator.faults = Faults(
        error_rate=0.3,
        drop_rate=0.025,
        drop_after_rate=0.025,
        operations=frozenset({"CreateTask"}),
        seed=2026,
    )

    result = ponos.run_trigger(
        {
            "REPOSITORY_URL": git_server.url("workers.git"),
            "REPOSITORY_BEFORE": base,
            "MAX_REVISIONS": "200",
            "RETRY_ATTEMPTS": "15",
        }
    )

    assert result.code == 0, result.output[-3000:]
    children = ponos.children()
    assert len(children) == 200
    assert slugs(ponos) == expected(commits)
    stats = emulator.stats
    assert stats["errors_injected"] > 30 and stats["drops_injected"] > 3
    # Every injected error or dropped connection cost one retry, and the closing line says how many.
    retries = stats["errors_injected"] + stats["drops_injected"]
    last = closing_line(result)
    assert "trigger done: 200 revision(s) planned" in last
    match = re.search(r"(\d+) API retries", last)
    assert match and int(match[1]) == retries, last
    summary = ponos.plan()["summary"]
    assert summary["created"] + summary["already_there"] == 200 and summary["failed"] == 0


def test_a_server_failing_every_call_gets_a_pause_but_unlucky_tries_do_not(
    emulator: Emulator, git_root: Path, git_server: GitHTTPServer, tmp_path: Path
) -> None:
    """8 failed tries in a row pause the whole pool for a backoff (a server down is not hammered by the
    other revisions' first tries); fewer do not (random faults must not idle the pool)."""
    hashes = fast_history(git_root / "workers.git", 12)
    ponos = make_ponos(emulator, tmp_path / "data", {})
    emulator.faults = Faults(error_rate=1.0, error_statuses=[503], operations=frozenset({"CreateTask"}))

    result = ponos.run_trigger(
        {
            "REPOSITORY_URL": git_server.url("workers.git"),
            "REPOSITORY_BEFORE": hashes[0],
            "RETRY_ATTEMPTS": "2",
            "RETRY_BASE_DELAY": "1",  # a pause of 0.5 to 1 s
            "FAN_OUT_CONCURRENCY": "4",
        }
    )

    assert result.code == 1, result.output[-3000:]
    summary = ponos.plan()["summary"]
    assert summary["failed"] == summary["planned"] == 12
    times = [t for t, operation in emulator.arrivals if operation == "CreateTask"]
    assert len(times) == 24  # every revision tried twice, no more
    # The first burst: the tries sent before the first pause. The 8th failure pauses the pool; the
    # tries already sent by the other three threads may still come in.
    burst = next(i + 1 for i in range(len(times) - 1) if times[i + 1] - times[i] >= 0.3)
    assert 8 <= burst <= 8 + 3, [round(t - times[0], 2) for t in times]
