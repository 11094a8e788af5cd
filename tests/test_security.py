"""Credentials and git safety (issue 5): the repository token reaches git only through the askpass
program's environment, never argv, the remote URL, `.git/config`, output, artifacts or leftovers; git
runs with hooks, prompts, LFS smudging and submodule recursion off; messages are scrubbed.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path

import pytest

from git_import.git.repo import GitEnv
from git_import.local.emulator import Emulator
from git_import.local.gitserver import GitFaults, GitHTTPServer
from git_import.local.sample import RepoBuilder, worker_yaml
from git_import.redact import MASK, ScrubFilter, register_secret, scrub

from conftest import REPO_TOKEN, Ponos, Result, make_ponos

REAL_GIT = "/usr/bin/git"

# Records every git call the tool makes: its argv (one line a call), then in another log the git
# settings of its environment, the names of the variables holding the token, and the clone's
# configuration as the call found it.
WRAPPER = """#!/bin/sh
printf '%s\\n' "$*" >> {argv_log}
{{
  echo "--- call"
  env | grep -E '^(GIT_TERMINAL_PROMPT|GIT_CONFIG_[A-Z_0-9]+|GIT_LFS_SKIP_SMUDGE|GIT_ALLOW_PROTOCOL)='
  env | grep -F -f {token_file} | cut -d= -f1 | sed 's/^/HOLDS_TOKEN /'
  for arg in "$@"; do
    case "$arg" in
      --git-dir=*) dir="${{arg#--git-dir=}}"; [ -f "$dir/config" ] && {{ echo "CONFIG"; cat "$dir/config"; }} ;;
    esac
  done
}} >> {env_log}
exec {real_git} "$@"
"""


@pytest.fixture
def git_spy(tmp_path: Path) -> dict[str, Path]:
    """A `git` wrapper first on PATH, and where it writes."""
    spy = tmp_path / "spy"
    (spy / "bin").mkdir(parents=True)
    paths = {
        "bin": spy / "bin",
        "argv": spy / "argv.log",
        "env": spy / "env.log",
        "token": spy / "token.txt",
    }
    paths["token"].write_text(REPO_TOKEN + "\n")
    wrapper = paths["bin"] / "git"
    wrapper.write_text(
        WRAPPER.format(
            argv_log=paths["argv"], env_log=paths["env"], token_file=paths["token"], real_git=REAL_GIT
        )
    )
    wrapper.chmod(stat.S_IRWXU)
    return paths


def calls(env_log: Path) -> list[dict]:
    """Each git call's environment settings, token holders and configuration snapshot."""
    result = []
    for block in env_log.read_text().split("--- call\n")[1:]:
        head, _, config = block.partition("CONFIG\n")
        env: dict[str, str] = {}
        holders = []
        for line in head.splitlines():
            if line.startswith("HOLDS_TOKEN "):
                holders.append(line.split(" ", 1)[1])
            elif "=" in line:
                key, _, value = line.partition("=")
                env[key] = value
        git_config = {
            env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"]
            for i in range(int(env.get("GIT_CONFIG_COUNT", "0")))
        }
        result.append({"env": env, "config": git_config, "holders": holders, "clone_config": config})
    return result


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file() or path.is_symlink()]


def assert_no_token(text: str, where: str) -> None:
    assert REPO_TOKEN not in text, f"the token leaked into {where}"


def test_full_import_never_exposes_the_repository_token(
    emulator: Emulator,
    repo: RepoBuilder,
    private_git_server: GitHTTPServer,
    git_spy: dict[str, Path],
    tmp_path: Path,
) -> None:
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    repo.commit("Add hello", {"arkindex/hello.yml": worker_yaml("hello", "Hello")})
    repo.commit("Add goodbye", {"arkindex/goodbye.yml": worker_yaml("goodbye", "Goodbye")})
    repo.publish(private_git_server.root / "private.git")
    url = private_git_server.url("private.git")
    # As on Arkindex: the repository settings, token included, are in the process environment, which
    # the server gives to every task, children included.
    ponos = make_ponos(emulator, tmp_path / "data", {"REPOSITORY_URL": url, "REPOSITORY_TOKEN": REPO_TOKEN})
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    spied = {"PATH": f"{git_spy['bin']}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(tmpdir)}

    results: list[tuple[str, Result]] = [("trigger", ponos.run_trigger({"REPOSITORY_BEFORE": base, **spied}))]
    assert results[0][1].code == 0, results[0][1].output
    children = ponos.children()
    assert len(children) == 2
    for task in children:
        result = ponos.run_child(task, spied)
        assert result.code == 0, result.output
        results.append((task["slug"], result))
    assert len(emulator.versions()) == 3  # hello twice, goodbye once: the token worked

    # Output of every task.
    for name, result in results:
        assert_no_token(result.stdout, f"the stdout of {name}")
        assert_no_token(result.stderr, f"the stderr of {name}")
    # Artifacts: the plan and every report.
    artifacts = files_under(ponos.data)
    assert {p.name for p in artifacts} >= {"import-plan.json", "import-report.json"}
    for path in artifacts:
        assert_no_token(path.read_text(errors="replace"), str(path))
    # What reached the API: task bodies carry no secret.
    for request in emulator.requests:
        assert_no_token(repr(request["body"]), f"the {request['operation']} request")
    # The tool removed its clones and its askpass folder; nothing it left holds the token.
    assert files_under(tmpdir) == [] and list(tmpdir.iterdir()) == []

    # Every git process: argv, clone configuration, environment.
    argv = git_spy["argv"].read_text()
    assert_no_token(argv, "the argv of a git process")
    assert argv.count("\n") >= 6  # the spy saw the trigger's and the children's git calls
    assert f"remote add origin -- {url}\n" in argv  # the remote URL is the plain one
    env_log = git_spy["env"].read_text()
    assert_no_token(env_log, "a clone's configuration")
    spied_calls = calls(git_spy["env"])
    assert len(spied_calls) == argv.count("\n")
    snapshots = [c["clone_config"] for c in spied_calls if c["clone_config"]]
    assert snapshots and all(f"url = {url}\n" in s for s in snapshots if "[remote" in s)
    assert all("@" not in line for s in snapshots for line in s.splitlines() if "url =" in line)
    for call in spied_calls:
        env, config = call["env"], call["config"]
        assert env["GIT_TERMINAL_PROMPT"] == "0"
        assert env["GIT_LFS_SKIP_SMUDGE"] == "1"
        assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_CONFIG_GLOBAL"] == os.devnull
        assert "ext" not in env["GIT_ALLOW_PROTOCOL"].split(":")
        assert "file" not in env["GIT_ALLOW_PROTOCOL"].split(":")
        assert config["core.hooksPath"] == os.devnull
        assert config["credential.helper"] == ""
        assert config["submodule.recurse"] == "false"
        assert config["fetch.recurseSubmodules"] == "false"
        assert config["filter.lfs.smudge"] == "" and config["filter.lfs.process"] == ""
        # The token is in one variable only, read by the askpass program (not REPOSITORY_TOKEN).
        assert call["holders"] in ([], ["GIT_IMPORT_PASSWORD"])
    assert any(call["holders"] == ["GIT_IMPORT_PASSWORD"] for call in spied_calls)


def test_failing_git_server_messages_carry_no_token(
    emulator: Emulator,
    repo: RepoBuilder,
    private_git_server: GitHTTPServer,
    git_spy: dict[str, Path],
    tmp_path: Path,
) -> None:
    """A run that fails for good reports the URL and git's words, never the token."""
    repo.commit("Initial commit", {"README.md": "# Workers\n"})
    repo.publish(private_git_server.root / "private.git")
    url = private_git_server.url("private.git")
    ponos: Ponos = make_ponos(
        emulator, tmp_path / "data", {"REPOSITORY_URL": url, "REPOSITORY_TOKEN": REPO_TOKEN}
    )
    private_git_server.faults = GitFaults(fail_next=100)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()

    result = ponos.run_trigger(
        {
            "RETRY_ATTEMPTS": "2",
            "TMPDIR": str(tmpdir),
            "PATH": f"{git_spy['bin']}{os.pathsep}{os.environ['PATH']}",
        }
    )

    assert result.code == 1, result.output
    assert url.split("//")[1] in result.output  # the message names the repository...
    assert_no_token(result.output, "the output")  # ...but not the token
    assert_no_token(git_spy["argv"].read_text(), "the argv of a git process")
    assert list(tmpdir.iterdir()) == []


# --- the git environment ---------------------------------------------------------------------------


def test_git_env_keeps_the_token_out_of_files_and_other_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPOSITORY_TOKEN", REPO_TOKEN)
    monkeypatch.setenv("ARKINDEX_TASK_TOKEN", "task-token-5678")
    monkeypatch.setenv("GIT_DIR", "/elsewhere")  # an inherited git variable is not obeyed

    with GitEnv(username="oauth2", token=REPO_TOKEN) as git_env:
        env = git_env.env
        askpass = Path(env["GIT_ASKPASS"])
        assert askpass.exists()
        assert_no_token(askpass.read_text(), "the askpass program")
        assert [k for k, v in env.items() if REPO_TOKEN in v] == ["GIT_IMPORT_PASSWORD"]
        assert "ARKINDEX_TASK_TOKEN" not in env and "GIT_DIR" not in env
        assert env["GIT_TERMINAL_PROMPT"] == "0"
        assert env["GIT_ALLOW_PROTOCOL"] == "http:https:ssh"
        keys = {
            env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"]
            for i in range(int(env["GIT_CONFIG_COUNT"]))
        }
        assert keys["core.hooksPath"] == os.devnull
        assert keys["submodule.recurse"] == "false"
    assert not askpass.exists()  # removed with its folder


# --- scrubbing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kept", "hidden"),
    [
        (
            "fatal: unable to access 'https://user:hunter2@gitlab.example.com/group/repo.git/': 403",
            "https://***@gitlab.example.com/group/repo.git/",
            "hunter2",
        ),
        ("cloning https://glpat-abcdef123@host/repo.git", "https://***@host/repo.git", "glpat-abcdef123"),
        ("remote: http://oauth2:p@ss@host:8080/x", "http://***@host:8080/x", "p@ss"),
        ("Authorization: Basic b2F1dGgyOnRvaw==", "Authorization: Basic ***", "b2F1dGgyOnRvaw=="),
        ("headers {'Authorization': 'Ponos 0123abcd'}", "'Authorization': 'Ponos ***'", "0123abcd"),
        ('{"authorization": "Token deadbeef", "x": 1}', '"authorization": "Token ***"', "deadbeef"),
        ("-c http.extraHeader=Authorization: Bearer xyz789", "Bearer ***", "xyz789"),
    ],
)
def test_scrub_masks_credentials_in_urls_and_headers(text: str, kept: str, hidden: str) -> None:
    out = scrub(text)
    assert kept in out
    assert hidden not in out


def test_scrub_keeps_plain_urls_and_addresses() -> None:
    text = "fetching https://gitlab.example.com/group/repo.git for ada@example.com?x=a@b"
    assert scrub(text) == text


def test_registered_secrets_are_masked_anywhere_even_url_encoded() -> None:
    secret = "tok/en+S3cret-registered"
    register_secret(secret)
    assert scrub(f"error near {secret}!") == f"error near {MASK}!"
    assert scrub("https://host/repo.git?t=tok%2Fen%2BS3cret-registered") == f"https://host/repo.git?t={MASK}"
    register_secret("ab")  # too short to mask safely: ignored
    assert scrub("about") == "about"


def test_log_records_and_tracebacks_are_scrubbed() -> None:
    register_secret(REPO_TOKEN)
    record = logging.LogRecord(
        "git_import", logging.ERROR, __file__, 1, "clone of %s failed", ("https://u:pw@h/x",), None
    )
    try:
        raise RuntimeError(f"git said {REPO_TOKEN}")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    assert ScrubFilter().filter(record)
    assert record.getMessage() == "clone of https://***@h/x failed"
    assert record.exc_text and REPO_TOKEN not in record.exc_text and MASK in record.exc_text
