"""Shared fixtures: the emulator and a Git smart-HTTP server on 127.0.0.1, real repositories, and a
runner that starts the tool as Ponos would (a child process with the Ponos environment)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from git_import.local.emulator import Emulator
from git_import.local.gitserver import GitHTTPServer
from git_import.local.sample import RepoBuilder, worker_yaml
from git_import.settings import SETTING_PREFIXES

REPO_TOKEN = "glpat-S3CRET-repo-token-4242"  # distinctive, so leaks are easy to find


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass(frozen=True)
class Documented:
    """An error line as README.md's bad-input tables show it: `text`, with `<…>` for the parts that vary.

    `values` says what each of those placeholders stands for in a test's run: its exact text, or None for
    words that are not the tool's (git's, ssh's, the YAML parser's, Arkindex's answer), which match any
    text. Text between `<` and `>` that `values` does not name is the tool's own, to match as it is.
    """

    text: str
    values: Mapping[str, str | None] = field(default_factory=dict)

    def match(self, line: str) -> dict[str, str] | None:
        """What each free placeholder stands for in `line`, or None when `line` is not this message."""
        if not self.values:
            return {} if line == self.text else None
        names = sorted(self.values, key=len, reverse=True)
        groups = {name: f"v{i}" for i, name in enumerate(names)}
        pattern, seen = [], set()
        for i, part in enumerate(re.split(f"({'|'.join(map(re.escape, names))})", self.text)):
            if i % 2 == 0:
                pattern.append(re.escape(part))
            elif (value := self.values[part]) is not None:
                pattern.append(re.escape(value))
            else:  # a placeholder seen twice stands for the same text twice
                pattern.append(f"(?P={groups[part]})" if part in seen else f"(?P<{groups[part]}>.+)")
                seen.add(part)
        found = re.fullmatch("".join(pattern), line)
        if found is None:
            return None
        return {name: found[group] for name, group in groups.items() if name in seen}


def clean_env() -> dict[str, str]:
    """The test process' environment without any setting the tool reads."""
    return {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}


def run_tool(args: list[str], env: dict[str, str], timeout: float = 120) -> Result:
    """Run `arkindex-git-import ARGS` in a child process with exactly `env` (plus PATH and HOME)."""
    full_env = {**clean_env(), "PYTHONUNBUFFERED": "1", **env}
    proc = subprocess.run(
        [sys.executable, "-m", "git_import", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture
def git_root(tmp_path: Path) -> Path:
    root = tmp_path / "served"
    root.mkdir()
    return root


@pytest.fixture
def git_server(git_root: Path) -> Iterator[GitHTTPServer]:
    with GitHTTPServer(git_root) as server:
        yield server


@pytest.fixture
def private_git_server(tmp_path: Path) -> Iterator[GitHTTPServer]:
    root = tmp_path / "private"
    root.mkdir()
    with GitHTTPServer(root, username="oauth2", token=REPO_TOKEN) as server:
        yield server


@pytest.fixture
def repo(tmp_path: Path) -> RepoBuilder:
    """A working repository; `repo.publish(git_root / "workers.git")` serves it."""
    return RepoBuilder(tmp_path / "work")


@dataclass
class Ponos:
    """A repository process with its trigger task on the emulator, and the environment Ponos gives."""

    emulator: Emulator
    process: dict
    trigger: dict
    data: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            **self.trigger["env"],  # the process environment and the task token, as the server gives them
            "PONOS_PROCESS": self.process["id"],
            "PONOS_TASK": self.trigger["id"],
            "PONOS_DATA": str(self.data),
            "ARKINDEX_API_URL": self.emulator.url,
            "ARKINDEX_TASK_TOKEN": self.trigger["token"],
            "IMPORT_IMAGE": "registry.example.com/git-import:1.0",
            "RETRY_BASE_DELAY": "0.01",
        }

    def run_trigger(self, extra: dict[str, str], args: tuple[str, ...] = ()) -> Result:
        return run_tool(["trigger", *args], {**self.env, **extra})

    def plan(self) -> dict:
        return json.loads((self.data / "current" / "import-plan.json").read_text())

    def children(self) -> list[dict]:
        return [t for t in self.emulator.tasks(self.process["id"]) if t["id"] != self.trigger["id"]]

    def run_child(self, task: dict, extra: dict[str, str] | None = None) -> Result:
        """Run a task the trigger created, with its env from the server, as the Ponos agent would."""
        command = task["command"].split()
        assert command[0] == "arkindex-git-import"
        env = {
            **task["env"],
            "PONOS_PROCESS": self.process["id"],
            "PONOS_TASK": task["id"],
            "PONOS_DATA": str(self.data / task["id"]),
            "ARKINDEX_API_URL": self.emulator.url,
            "RETRY_BASE_DELAY": "0.01",
            **(extra or {}),
        }
        return run_tool(command[1:], env)


@pytest.fixture
def ponos(emulator: Emulator, tmp_path: Path) -> Ponos:
    process = emulator.create_process(name="Repository import", mode="repository", env={})
    trigger = emulator.create_task(process["id"], slug="import", command="arkindex-git-import trigger")
    return Ponos(emulator, process, trigger, tmp_path / "data")


def make_ponos(emulator: Emulator, data: Path, process_env: dict[str, str]) -> Ponos:
    """A process whose environment holds the repository settings (given to every task, children too)."""
    process = emulator.create_process(name="Repository import", mode="repository", env=process_env)
    trigger = emulator.create_task(process["id"], slug="import", command="arkindex-git-import trigger")
    return Ponos(emulator, process, trigger, data)


def group_members(pgid: int) -> list[str]:
    """The live processes of process group `pgid` (zombies waiting to be reaped do not count)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(name)
    return members


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll an observable condition (processes, a server's requests), bounded in time."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def fast_history(bare: Path, count: int) -> list[str]:
    """A bare repository whose `main` holds a root commit then `count` commits, built in one
    `git fast-import`; returns every hash, oldest (the root) first."""
    subprocess.run(["git", "init", "--quiet", "--bare", str(bare)], check=True)
    stream = []
    for i in range(count + 1):
        content = worker_yaml("hello", "Hello", f"Version {i}").encode()
        stamp = 1767225600 + i
        message = f"Change {i}\n".encode()
        stream += [
            b"commit refs/heads/main\n",
            b"author Ada Worker <ada@example.com> %d +0000\n" % stamp,
            b"committer Ada Worker <ada@example.com> %d +0000\n" % stamp,
            b"data %d\n" % len(message),
            message,
            b"M 100644 inline arkindex/hello.yml\n",
            b"data %d\n" % len(content),
            content,
            b"\n",
        ]
    subprocess.run(
        ["git", f"--git-dir={bare}", "fast-import", "--quiet"],
        input=b"".join(stream),
        check=True,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull},
    )
    subprocess.run(["git", f"--git-dir={bare}", "symbolic-ref", "HEAD", "refs/heads/main"], check=True)
    out = subprocess.run(
        ["git", f"--git-dir={bare}", "rev-list", "--reverse", "main"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    hashes = out.split()
    assert len(hashes) == count + 1
    return hashes


def revision_env(ponos: Ponos, url: str, commit: str, **extra: str) -> dict[str, str]:
    """Seed the task the trigger would have created for `commit` and return its environment, as the
    Ponos agent gives it (each call a new task: a rerun is one)."""
    task = ponos.emulator.create_task(
        ponos.process["id"],
        slug=f"import-{commit}-{len(ponos.emulator.tasks(ponos.process['id']))}",  # a rerun is a new task
        parents=[ponos.trigger["id"]],
        command=f"arkindex-git-import revision {commit}",
        env={"REPOSITORY_REVISION": commit, "REPOSITORY_REF": "refs/heads/main"},
        state="running",
    )
    return {
        **task["env"],
        "PONOS_PROCESS": ponos.process["id"],
        "PONOS_TASK": task["id"],
        "PONOS_DATA": str(ponos.data / task["id"]),
        "ARKINDEX_API_URL": ponos.emulator.url,
        "REPOSITORY_URL": url,
        "RETRY_BASE_DELAY": "0.01",
        **extra,
    }
