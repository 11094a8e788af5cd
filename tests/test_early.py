"""The trigger's early clone: started from the raw environment while the settings layer loads, taken
only when the settings ask for that very clone, and stopped whole otherwise. Real git, real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from git_import.early import SHALLOW_DEPTH, EarlyClone, clone_depth
from git_import.git.repo import GitEnv, GitError, git_env_for
from git_import.local.gitserver import GitHTTPServer
from git_import.local.sample import RepoBuilder, worker_yaml
from git_import.rules.urls import clone_branch
from git_import.settings import SETTING_PREFIXES, load_settings

from conftest import REPO_TOKEN, Ponos, clean_env, group_members, make_ponos, wait_for

NULL_SHA = "0" * 40


@pytest.fixture
def tmpdir_(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The temporary folder of this test alone, so that what is left there can be checked."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder


@pytest.fixture
def pushed(repo: RepoBuilder, git_server: GitHTTPServer) -> dict[str, str]:
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    tip = repo.commit("Add hello", {"arkindex/hello.yml": worker_yaml("hello", "Hello")})
    repo.publish(git_server.root / "workers.git")
    return {"url": git_server.url("workers.git"), "base": base, "tip": tip}


def ponos_env(url: str, **extra: str) -> dict[str, str]:
    """What Ponos gives a trigger: every setting it needs (rules.env.REQUIRED), so none is missing."""
    return {
        "PONOS_PROCESS": str(uuid.uuid4()),
        "PONOS_TASK": str(uuid.uuid4()),
        "ARKINDEX_API_URL": "http://127.0.0.1:9/",  # never called: the early clone reads git alone
        "ARKINDEX_TASK_TOKEN": "task-token",
        "REPOSITORY_URL": url,
        **extra,
    }


def left_behind(folder: Path, *, but: GitEnv | None = None) -> list[str]:
    """What is in `folder`, except the credentials helper folder of `but`."""
    keep = {but._dir.name} if but is not None and but._dir is not None else set()
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_the_clone_the_settings_ask_for_is_taken(
    pushed: dict[str, str], tmpdir_: Path, tmp_path: Path
) -> None:
    early = EarlyClone.start(ponos_env(pushed["url"], REPOSITORY_BEFORE=pushed["base"]))
    assert early is not None
    with GitEnv() as git_env:
        repo = early.take(tmp_path / "repo.git", pushed["url"], None, SHALLOW_DEPTH, git_env)
        assert repo is not None
        assert repo.git_env is git_env  # later git commands run with the trigger's own credentials helper
        assert repo.local_refs() == [("refs/heads/main", pushed["tip"])]
        assert left_behind(tmpdir_, but=git_env) == []  # its folder and its credentials helper are gone


@pytest.mark.parametrize(
    ("asked", "why"),
    [
        ({"depth": 1}, "a new branch needs the target alone"),
        ({"depth": None}, "the whole history"),
        ({"branch": "other"}, "another branch"),
        ({"git_env": {"token": REPO_TOKEN}}, "other credentials"),
        ({"git_env": {"stall_timeout": 5}}, "other time limits"),
    ],
)
def test_a_clone_the_settings_do_not_ask_for_is_dropped(
    pushed: dict[str, str], tmpdir_: Path, tmp_path: Path, asked: dict, why: str
) -> None:
    early = EarlyClone.start(ponos_env(pushed["url"], REPOSITORY_BEFORE=pushed["base"]))
    assert early is not None
    with GitEnv(**asked.get("git_env", {})) as git_env:
        taken = early.take(
            tmp_path / "repo.git",
            pushed["url"],
            asked.get("branch"),
            asked.get("depth", SHALLOW_DEPTH),
            git_env,
        )
        assert taken is None, why
        assert not (tmp_path / "repo.git").exists()
        assert left_behind(tmpdir_, but=git_env) == []


def test_a_failed_clone_is_raised_when_taken(
    git_server: GitHTTPServer, tmpdir_: Path, tmp_path: Path
) -> None:
    url = git_server.url("missing.git")
    early = EarlyClone.start(ponos_env(url))
    assert early is not None
    with GitEnv() as git_env, pytest.raises(GitError, match="repository not found"):
        early.take(tmp_path / "repo.git", url, None, 1, git_env)
    assert left_behind(tmpdir_) == []


def test_closing_stops_a_running_clone_and_all_its_processes(
    pushed: dict[str, str], git_server: GitHTTPServer, tmpdir_: Path
) -> None:
    git_server.faults.stall_next = 5  # the server answers, then sends nothing
    early = EarlyClone.start(ponos_env(pushed["url"]))
    assert early is not None
    assert early._transfer is not None
    pgid = early._transfer.proc.pid
    wait_for(lambda: any(r["method"] == "POST" for r in list(git_server.requests)), "git reached the server")
    assert len(group_members(pgid)) >= 2  # git clone and the remote helper it started, waiting
    early.close()
    # SIGKILL to the whole group: every member ends (the kernel finishes each one asynchronously).
    wait_for(lambda: group_members(pgid) == [], f"git processes left running: {group_members(pgid)}")
    assert left_behind(tmpdir_) == []
    early.close()  # idempotent


@pytest.mark.parametrize(
    "env",
    [
        {"REPOSITORY_URL": ""},
        {"REPOSITORY_EVENT": "/tmp/push.json"},
        {"REPOSITORY_ALLOW_LOCAL": "1"},
        {"REPOSITORY_AFTER": NULL_SHA},
        {"REPOSITORY_REF": "refs/tags/v1"},
        {"REPOSITORY_REF": "-upload-pack=touch"},
        {"GIT_TIMEOUT": "soon"},
        {"REPOSITORY_URL": "https://user:secret@example.com/workers.git"},
        {"REPOSITORY_URL": "ext::sh -c touch% /tmp/pwned"},
        {"PONOS_PROCESS": ""},
        {"ARKINDEX_API_URL": ""},
        {"ARKINDEX_TASK_TOKEN": ""},
        {"REPOSITORY_BEFORE": "abc123"},
        {"REPOSITORY_ALLOW_LOCAL": "maybe"},
        {"GIT_STALL_TIMEOUT": "0"},
        {"REPOSITORY_SSH_KEY": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJ1bGVz ada@laptop"},
        {"REPOSITORY_SSH_KNOWN_HOSTS": "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"},
    ],
    ids=[
        "no-url",
        "push-event",
        "local-paths",
        "deleted-ref",
        "full-tag-ref",
        "option-like-ref",
        "bad-number",
        "credentials-in-url",
        "ext-transport",
        "no-process",
        "no-api-url",
        "no-token",
        "short-hash",
        "bad-bool",
        "number-out-of-bounds",
        "public-ssh-key",
        "fingerprint-as-known-hosts",
    ],
)
def test_no_early_clone_without_a_plain_environment(
    pushed: dict[str, str], git_server: GitHTTPServer, tmpdir_: Path, env: dict[str, str]
) -> None:
    assert EarlyClone.start({**ponos_env(pushed["url"]), **env}) is None
    assert git_server.requests == []
    assert left_behind(tmpdir_) == []


def test_a_dry_run_needs_no_process(pushed: dict[str, str], tmpdir_: Path) -> None:
    early = EarlyClone.start({"REPOSITORY_URL": pushed["url"]}, dry_run=True)
    assert early is not None
    early.close()
    assert left_behind(tmpdir_) == []


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"REPOSITORY_USERNAME": "ada", "REPOSITORY_TOKEN": "tok-early-1234", "GIT_TIMEOUT": " 90 "},
        {"REPOSITORY_ALLOW_LOCAL": "off", "GIT_STALL_TIMEOUT": "+5", "REPOSITORY_REF": "refs/heads/main"},
        {"REPOSITORY_BEFORE": "A" * 40, "REPOSITORY_AFTER": "", "WORKER_UPDATE": "no"},
        {
            # As a one-line variable or a Windows paste may hold them: read as the settings read them.
            "REPOSITORY_SSH_KEY": "-----BEGIN OPENSSH PRIVATE KEY-----\r\n  b3BlbnNzaC1rZXktdjEAAAAA\r\n"
            "-----END OPENSSH PRIVATE KEY-----",
            "REPOSITORY_SSH_KNOWN_HOSTS": "[git.example.com]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\\n",
        },
    ],
    ids=["defaults", "credentials-and-limits", "spelled-differently", "upper-case-hash", "ssh-key-and-hosts"],
)
def test_the_early_clone_reads_the_environment_as_the_settings_do(
    pushed: dict[str, str], tmpdir_: Path, monkeypatch: pytest.MonkeyPatch, extra: dict[str, str]
) -> None:
    """Same rules and defaults on both sides: the clone started early is the one the settings ask for."""
    environ = ponos_env(pushed["url"], **extra)
    early = EarlyClone.start(environ)
    assert early is not None
    try:
        for name in os.environ:
            if name.startswith(SETTING_PREFIXES):
                monkeypatch.delenv(name)
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        settings = load_settings("trigger")
        assert (early.url, early.branch, early.depth) == (
            settings.repository_url,
            clone_branch(settings.repository_ref),
            clone_depth(settings.before),
        )
        assert early.git_env.same_as(git_env_for(settings))
    finally:
        early.close()


def test_the_clone_starts_before_pydantic_is_imported(pushed: dict[str, str], tmp_path: Path) -> None:
    """Overlapping the settings layer's import is the early clone's whole point."""
    spy = (
        "import sys\n"
        "from git_import.git.repo import Repo\n"
        "start = Repo.start_clone\n"
        "def spy(*args, **kwargs):\n"
        "    loaded = sorted(m for m in sys.modules if m.split('.')[0].startswith('pydantic'))\n"
        "    print('imported when the clone started:', loaded, flush=True)\n"
        "    return start(*args, **kwargs)\n"
        "Repo.start_clone = staticmethod(spy)\n"
        "from git_import.cli import main\n"
        "sys.exit(main(['trigger', '--dry-run']))\n"
    )
    env = {**clean_env(), "REPOSITORY_URL": pushed["url"], "REPOSITORY_BEFORE": pushed["base"]}
    result = subprocess.run(
        [sys.executable, "-c", spy], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    first = next(line for line in result.stdout.splitlines() if line.startswith("imported when"))
    assert first == "imported when the clone started: []", result.stdout


# --- the trigger, run as Ponos runs it -------------------------------------------------------------


def test_a_trigger_run_clones_once(ponos: Ponos, pushed: dict[str, str], git_server: GitHTTPServer) -> None:
    result = ponos.run_trigger({"REPOSITORY_URL": pushed["url"], "REPOSITORY_BEFORE": pushed["base"]})
    assert result.code == 0, result.output
    assert ponos.plan()["summary"]["created"] == 1
    advertisements = [
        r for r in git_server.requests if r["method"] == "GET" and r["path"].endswith("/info/refs")
    ]
    assert len(advertisements) == 1, git_server.requests


def test_a_wrong_setting_leaves_no_clone_behind(
    emulator, pushed: dict[str, str], git_server: GitHTTPServer, tmp_path: Path
) -> None:
    ponos = make_ponos(emulator, tmp_path / "data", {})
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    git_server.faults.stall_next = 5  # a clone that would not end on its own
    result = ponos.run_trigger(
        {
            "REPOSITORY_URL": pushed["url"],
            "REPOSITORY_BEFORE": pushed["base"],
            "FAN_OUT_CONCURRENCY": "99",
            "TMPDIR": str(tmpdir),
        }
    )
    assert result.code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "FAN_OUT_CONCURRENCY" in errors[0], result.stderr
    assert list(tmpdir.iterdir()) == []
    assert ponos.children() == []


def test_ctrl_c_during_the_clone_stops_it(
    ponos: Ponos, pushed: dict[str, str], git_server: GitHTTPServer, tmp_path: Path
) -> None:
    """The early clone runs in its own process group, out of a terminal's reach: Ctrl-C must stop it."""
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    git_server.faults.stall_next = 5
    git_server.faults.stall_seconds = 60
    env = {
        **clean_env(),
        "PYTHONUNBUFFERED": "1",
        **ponos.env,
        "REPOSITORY_URL": pushed["url"],
        "REPOSITORY_BEFORE": pushed["base"],
        "TMPDIR": str(tmpdir),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "git_import", "trigger"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # wait until the trigger waits on its clone
            if "cloning" in line:
                break
        wait_for(
            lambda: any(r["method"] == "POST" for r in list(git_server.requests)), "git reached the server"
        )
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        assert code == 130
        assert time.monotonic() - started < 30  # well before the stalled server would have let go
        assert "interrupted" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = sorted(str(p.relative_to(tmpdir)) for p in tmpdir.rglob("*"))
    assert left == [], left
