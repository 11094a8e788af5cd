"""Life in a container (issue 12): the tool as PID 1 of its own PID namespace, stopped by SIGTERM as
Ponos and `docker stop` do, and a data folder mounted read-only.

Each run starts `unshare --pid --fork python -m git_import …`, as a container runtime starts its
command: the tool is PID 1 there, where the kernel drops a signal with no handler. The signal is sent
from outside, as `docker stop` does. Needs root (CI runs as root) and util-linux's `unshare`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from git_import.local.emulator import Emulator
from git_import.local.gitserver import GitFaults, GitHTTPServer
from git_import.local.sample import RepoBuilder, worker_yaml

from conftest import (
    Ponos,
    clean_env,
    fast_history,
    group_members,
    make_ponos,
    revision_env,
    run_tool,
    wait_for,
)

STOP_WITHIN = 15.0  # seconds: the bound from the signal to the exit

# New PID and mount namespaces need root, as CI has; on a developer's machine without it these are
# skipped, and say why.
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (unshare --pid, mount), as CI runs")


def run_with_read_only_data(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The tool with PONOS_DATA mounted read-only, in a private mount namespace (as a container's
    read-only volume; root may write anywhere else, so permissions alone would not do)."""
    Path(env["PONOS_DATA"]).mkdir(parents=True, exist_ok=True)
    script = 'mount -t tmpfs -o ro,size=1m tmpfs "$PONOS_DATA" && exec "$@"'
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, "sh", sys.executable, "-m", "git_import", *args],
        env={**clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def start_as_pid1(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    full_env = {**clean_env(), "PYTHONUNBUFFERED": "1", **env}
    with log.open("wb") as out:
        return subprocess.Popen(
            ["unshare", "--pid", "--fork", sys.executable, "-m", "git_import", *args],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: every process it leaves is found
        )


def tool_pid(unshare: subprocess.Popen[bytes]) -> int:
    """The tool's PID as seen from here: the one child `unshare --fork` made (PID 1 inside)."""
    children: list[str] = []

    def found() -> bool:
        nonlocal children
        children = Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children").read_text().split()
        return bool(children)

    wait_for(found, "unshare started the tool", timeout=10)
    pid = int(children[0])
    nspid = next(
        line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("NSpid:")
    )
    assert nspid.split()[-1] == "1", f"the tool is not PID 1 of its namespace: {nspid}"
    return pid


def stop_and_wait(unshare: subprocess.Popen[bytes], signum: int = signal.SIGTERM) -> tuple[int, float]:
    pid = tool_pid(unshare)
    started = time.monotonic()
    os.kill(pid, signum)
    code = unshare.wait(timeout=STOP_WITHIN + 5)
    return code, time.monotonic() - started


@pytest.fixture
def slow_process(
    emulator: Emulator, git_root: Path, git_server: GitHTTPServer, tmp_path: Path
) -> tuple[Ponos, list[str]]:
    """A push of 30 commits to a process whose CreateTask takes 0.2 s: a fan-out of several seconds."""
    hashes = fast_history(git_root / "workers.git", 30)
    ponos = make_ponos(
        emulator,
        tmp_path / "data",
        {
            "REPOSITORY_URL": git_server.url("workers.git"),
            "REPOSITORY_BEFORE": hashes[0],
            "FAN_OUT_CONCURRENCY": "2",
        },
    )
    emulator.faults.create_task_delay = 0.2
    return ponos, hashes[1:]


@pytest.mark.parametrize(
    ("signum", "code", "word"), [(signal.SIGTERM, 143, "stopped"), (signal.SIGINT, 130, "interrupted")]
)
def test_signal_during_the_fan_out_as_pid_1(
    slow_process: tuple[Ponos, list[str]], tmp_path: Path, signum: int, code: int, word: str
) -> None:
    """The trigger stops sending, lets the tries in flight end, writes its plan, says what is left to
    do, and exits 143 (130 for SIGINT); a second run creates the rest, none twice."""
    ponos, commits = slow_process
    log = tmp_path / "trigger.log"
    tool = start_as_pid1(["trigger"], ponos.env, log)
    wait_for(lambda: len(ponos.children()) >= 4, "the fan-out started")

    exit_code, took = stop_and_wait(tool, signum)

    output = log.read_text()
    assert exit_code == code, output
    assert took < STOP_WITHIN
    created = len(ponos.children())
    assert 4 <= created < len(commits)
    name = signal.Signals(signum).name
    expected = f"{word} by {name}: {created} of {len(commits)} tasks created; run the process again to create the rest"
    assert expected in output, output
    assert "Traceback" not in output
    plan = ponos.plan()
    states = [revision["task"]["state"] for revision in plan["revisions"]]
    assert states.count("created") == created
    assert set(states) == {"created", "new"}
    assert group_members(tool.pid) == []

    again = ponos.run_trigger({})
    assert again.code == 0, again.output
    slugs = sorted(task["slug"] for task in ponos.children())
    assert slugs == sorted(f"import-{c}" for c in commits)


def test_sigterm_during_a_stalled_clone_as_pid_1(
    emulator: Emulator, git_root: Path, git_server: GitHTTPServer, tmp_path: Path
) -> None:
    """Stopped while git waits on a server that sends nothing: every git process goes, at once."""
    hashes = fast_history(git_root / "workers.git", 3)
    ponos = make_ponos(emulator, tmp_path / "data", {"REPOSITORY_URL": git_server.url("workers.git")})
    stop_while_git_stalls(git_server, ["trigger"], {**ponos.env, "REPOSITORY_BEFORE": hashes[0]}, tmp_path)
    assert ponos.children() == []


def stop_while_git_stalls(
    git_server: GitHTTPServer, argv: list[str], env: dict[str, str], tmp_path: Path
) -> str:
    """Start the tool as PID 1 against a Git server that sends nothing, and SIGTERM it once git reached
    the server. Checks what every such stop leaves: exit 143 within the bound, one line saying so and
    no traceback, no process of its group, no temporary folder. Returns the tool's output."""
    git_server.faults = GitFaults(stall_next=5, stall_seconds=60)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    log = tmp_path / "stalled.log"
    tool = start_as_pid1(argv, {**env, "TMPDIR": str(tmpdir)}, log)
    wait_for(lambda: any(r["method"] == "POST" for r in list(git_server.requests)), "git reached the server")

    exit_code, took = stop_and_wait(tool)

    output = log.read_text()
    assert exit_code == 143, output
    assert took < STOP_WITHIN
    assert "stopped by SIGTERM" in output and "Traceback" not in output
    assert group_members(tool.pid) == []
    assert list(tmpdir.iterdir()) == []
    return output


def test_read_only_data_folder_is_refused_before_anything_is_created(
    slow_process: tuple[Ponos, list[str]], tmp_path: Path
) -> None:
    """PONOS_DATA mounted read-only (a private mount namespace, as a container's volume would be): one
    line naming PONOS_DATA, exit 2, no task created, no traceback."""
    ponos, _ = slow_process
    ponos.emulator.faults.create_task_delay = 0.0
    proc = run_with_read_only_data(["trigger"], ponos.env)

    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, proc.stderr
    assert "PONOS_DATA" in errors[0] and "uid 1000" in errors[0] and "nothing was created" in errors[0]
    assert "Traceback" not in proc.stderr
    assert ponos.children() == []


def test_data_folder_under_a_file_is_refused(slow_process: tuple[Ponos, list[str]], tmp_path: Path) -> None:
    ponos, _ = slow_process
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_tool(["trigger"], {**ponos.env, "PONOS_DATA": str(blocker / "data")})
    assert result.code == 2, result.output
    assert "PONOS_DATA: cannot write the task's artifacts" in result.output
    assert ponos.children() == []


def test_plan_file_is_whole(slow_process: tuple[Ponos, list[str]]) -> None:
    """Written to a temporary file then renamed: no temporary file is left beside it."""
    ponos, commits = slow_process
    ponos.emulator.faults.create_task_delay = 0.0
    result = ponos.run_trigger({})
    assert result.code == 0, result.output
    folder = Path(ponos.env["PONOS_DATA"]) / "current"
    assert [p.name for p in folder.iterdir()] == ["import-plan.json"]
    assert len(json.loads((folder / "import-plan.json").read_text())["revisions"]) == len(commits)


# --- the revision task -----------------------------------------------------------------------------


def many_workers(repo: RepoBuilder, git_root: Path, count: int) -> str:
    """A served commit declaring `count` workers; returns its hash."""
    repo.commit(
        "Workers",
        {f"arkindex/w{i:02d}.yml": worker_yaml(f"w{i:02d}", f"W {i}", "A worker") for i in range(count)},
    )
    repo.publish(git_root / "workers.git")
    return repo.head()


def test_sigterm_during_registration_as_pid_1(
    emulator: Emulator,
    repo: RepoBuilder,
    git_root: Path,
    git_server: GitHTTPServer,
    tmp_path: Path,
) -> None:
    """The revision task stops between workers: those under way end, the report lists what was
    registered and says what is left, exit 143; a second run registers the rest."""
    commit = many_workers(repo, git_root, 12)
    ponos = make_ponos(emulator, tmp_path / "data", {})
    env = {
        **revision_env(ponos, git_server.url("workers.git"), commit, PONOS_DATA=str(ponos.data)),
        "WORKER_CONCURRENCY": "2",
    }
    emulator.faults.latency = 0.15  # every API request: a registration of several seconds
    tool = start_as_pid1(["revision", commit], env, tmp_path / "r.log")
    wait_for(lambda: len(emulator.versions()) >= 2, "registration started")

    exit_code, took = stop_and_wait(tool)

    output = (tmp_path / "r.log").read_text()
    assert exit_code == 143, output
    assert took < STOP_WITHIN
    report = json.loads((ponos.data / "current" / "import-report.json").read_text())
    registered = len(report["workers"])
    assert registered == len(emulator.versions())
    assert 2 <= registered < 12
    line = (
        f"stopped by SIGTERM: {registered} of 12 workers registered; run the task again to register the rest"
    )
    assert line in output and report["errors"][-1]["message"] == line
    emulator.faults.latency = 0.0
    again = run_tool(["revision", commit], env)
    assert again.code == 0, again.output
    assert len(emulator.versions()) == 12


def test_sigterm_during_a_stalled_revision_fetch_as_pid_1(
    emulator: Emulator,
    repo: RepoBuilder,
    git_root: Path,
    git_server: GitHTTPServer,
    tmp_path: Path,
) -> None:
    """The fetch runs in a thread while the main thread imports the API layer: stopped while git waits
    on a server that sends nothing, every git process goes at once, nothing is registered, and the
    report says the task was stopped."""
    commit = many_workers(repo, git_root, 1)
    ponos = make_ponos(emulator, tmp_path / "data", {})
    env = revision_env(ponos, git_server.url("workers.git"), commit, PONOS_DATA=str(ponos.data))
    stop_while_git_stalls(git_server, ["revision", commit], env, tmp_path)
    assert emulator.workers() == []
    report = json.loads((ponos.data / "current" / "import-report.json").read_text())
    assert report["workers"] == [] and report["errors"][-1]["message"] == "stopped by SIGTERM"


def test_revision_with_a_read_only_data_folder(
    emulator: Emulator,
    repo: RepoBuilder,
    git_root: Path,
    git_server: GitHTTPServer,
    tmp_path: Path,
) -> None:
    commit = many_workers(repo, git_root, 1)
    ponos = make_ponos(emulator, tmp_path / "data", {})
    env = revision_env(ponos, git_server.url("workers.git"), commit, PONOS_DATA=str(ponos.data))
    requests_before = len(emulator.requests)
    proc = run_with_read_only_data(["revision", commit], env)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "PONOS_DATA" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(emulator.requests) == requests_before
