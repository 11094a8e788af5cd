"""SSH remotes: REPOSITORY_SSH_KEY and REPOSITORY_SSH_KNOWN_HOSTS against a real OpenSSH server on
127.0.0.1 (`tests/sshd.py`) serving a bare repository, with generated host and client keys.

The trigger and its revision tasks run over SSH as Ponos runs them; a host key that does not match and
a key the server refuses are one line each, exit 2, never retried and never waited on; and the key is
found nowhere once the run is over: not in argv (git's or ssh's), git's environment, the output, the
artifacts, the API requests, the temporary folder or the user's ~/.ssh.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sshd import SSHServer, sshd_available

from git_import.git.process import ConfigGitError, classify
from git_import.git.repo import GitEnv, git_env_for
from git_import.local.emulator import Emulator
from git_import.local.sample import RepoBuilder, worker_yaml
from git_import.rules import env
from git_import.rules.urls import ssh_host
from git_import.settings import SETTING_PREFIXES, load_settings

from conftest import Documented, Ponos, Result, make_ponos

pytestmark = pytest.mark.skipif(not sshd_available(), reason="sshd or ssh is missing (.ci/run installs them)")

# The error lines, as the README's trigger table shows them.
HOST_CHANGED = (
    "cloning the default branch: the SSH host key of <host> does not match REPOSITORY_SSH_KNOWN_HOSTS "
    "(check REPOSITORY_SSH_KNOWN_HOSTS: if the host's key was changed on purpose, give its new key there; "
    "otherwise the connection may be intercepted); nothing was created"
)
HOST_UNKNOWN = (
    "cloning the default branch: REPOSITORY_SSH_KNOWN_HOSTS holds no key for <host> (add the host's "
    "known_hosts line to REPOSITORY_SSH_KNOWN_HOSTS, checked against the fingerprint the host publishes); "
    "nothing was created"
)
KEY_REFUSED = (
    "cloning the default branch: the Git server refused SSH access (<user>@<host>: Permission denied "
    "(publickey).) (set REPOSITORY_SSH_KEY to a private key whose public key the Git server accepts, such "
    "as a deploy key with read access to the repository); nothing was created"
)
KEY_UNREADABLE = (
    "cloning the default branch: ssh could not read the private key of REPOSITORY_SSH_KEY (<ssh's reason>) "
    "(set REPOSITORY_SSH_KEY to the whole content of a private key file without a passphrase); "
    "nothing was created"
)


def documented_messages() -> list[str]:
    """The error lines the refusal tests below check against the tool's output, as the README's trigger
    table shows them (tests/test_readme_tables.py checks that every row of the table is one of them)."""
    return [HOST_CHANGED, HOST_UNKNOWN, KEY_REFUSED, KEY_UNREADABLE]


# Records the argv of every git and ssh process, and the names of the variables of their environment
# that hold a line of the key.
SPY = """#!/bin/sh
printf '%s\\n' "$0 $*" >> {log}
env | grep -F -f {key_lines} | cut -d= -f1 | sed 's/^/HOLDS_KEY /' >> {log}
exec {real} "$@"
"""


@dataclass
class Served:
    server: SSHServer
    url: str
    base: str
    commits: list[str]

    @property
    def host(self) -> str:
        return f"[127.0.0.1]:{self.server.port}"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    repo = RepoBuilder(tmp_path / "work")
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    commits = [
        repo.commit("Add hello", {"arkindex/hello.yml": worker_yaml("hello", "Hello")}),
        repo.commit("Add goodbye", {"arkindex/goodbye.yml": worker_yaml("goodbye", "Goodbye")}),
    ]
    root = tmp_path / "ssh-served"
    bare = repo.publish(root / "workers.git")
    # As a hosting service: partial clones, and a commit fetched by its hash.
    for key in ("uploadpack.allowFilter", "uploadpack.allowAnySHA1InWant"):
        subprocess.run(["git", f"--git-dir={bare}", "config", key, "true"], check=True)
    with SSHServer(root, tmp_path / "sshd") as server:
        yield Served(server, server.url("workers.git"), base, commits)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty HOME for the tool (ssh itself reads the passwd entry's home: see `user_ssh`)."""
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


def user_ssh() -> dict[str, float]:
    """The user's real ~/.ssh (ssh's default for known_hosts): each file and its modification time."""
    folder = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ssh"
    return {p.name: p.stat().st_mtime for p in folder.iterdir()} if folder.is_dir() else {}


def ssh_env(served: Served, home: Path, tmpdir: Path, **settings: str) -> dict[str, str]:
    # TMPDIR holds a space and a '%': ssh must find its files there all the same.
    tmpdir.mkdir(exist_ok=True)
    return {
        "REPOSITORY_URL": served.url,
        "HOME": str(home),
        "TMPDIR": str(tmpdir),
        "SSH_AUTH_SOCK": "",
        **settings,
    }


def error_lines(result: Result) -> list[str]:
    return [line.split(" ERROR ", 1)[1].strip() for line in result.output.splitlines() if " ERROR " in line]


def accepted(server: SSHServer) -> int:
    """Connections the server let in so far."""
    return server.log().count("Accepted publickey")


# --- a whole import over SSH -----------------------------------------------------------------------


def test_trigger_and_revisions_over_ssh_leave_the_key_nowhere(
    emulator: Emulator, served: Served, home: Path, tmp_path: Path
) -> None:
    server = served.server
    key_lines = tmp_path / "key-lines.txt"
    body = [line for line in server.client_key.splitlines() if line and not line.startswith("-----")]
    key_lines.write_text("\n".join(body) + "\n")
    spy = tmp_path / "spy"
    spy.mkdir()
    log = tmp_path / "argv.log"
    for program in ("git", "ssh"):
        real = shutil.which(program)
        (spy / program).write_text(SPY.format(log=log, key_lines=key_lines, real=real))
        (spy / program).chmod(stat.S_IRWXU)
    tmpdir = tmp_path / "tmp dir %d"
    settings = {
        "REPOSITORY_URL": served.url,
        "REPOSITORY_SSH_KEY": server.client_key.rstrip("\n"),  # ssh needs the last newline: the tool adds it
        "REPOSITORY_SSH_KNOWN_HOSTS": server.known_hosts,
    }
    ponos = make_ponos(emulator, tmp_path / "data", settings)
    env = {**ssh_env(served, home, tmpdir), "PATH": f"{spy}{os.pathsep}{os.environ['PATH']}"}
    before_ssh = user_ssh()

    result = ponos.run_trigger({**env, "REPOSITORY_BEFORE": served.base})
    assert result.code == 0, result.output
    assert accepted(server) == 1, "the trigger cloned more than once: the early clone was not taken"
    results = [result] + [ponos.run_child(task, env) for task in ponos.children()]

    assert [r.code for r in results] == [0, 0, 0], [r.output for r in results]
    assert len(emulator.versions()) == 3  # hello twice, goodbye once
    assert all("REPOSITORY_SSH_KNOWN_HOSTS" not in r.output for r in results)  # no warning: checked
    leaks = [line for line in body if len(line) >= 8]
    for place, text in [
        *((f"the output of run {i}", r.output) for i, r in enumerate(results)),
        *((str(p), p.read_text(errors="replace")) for p in ponos.data.rglob("*") if p.is_file()),
        *((f"the {r['operation']} request", repr(r["body"])) for r in emulator.requests),
    ]:
        assert not any(line in text for line in leaks), f"the key leaked into {place}"
    argv = log.read_text()
    assert argv.count("\n") >= 6 and "ssh " in argv  # the spies saw git and ssh
    assert "HOLDS_KEY" not in argv, "a variable of git's or ssh's environment holds the key"
    assert not any(line in argv for line in leaks), "the key is in an argv"
    assert "git-import-auth-" not in argv, "the private folder (the key's path) is in an argv"
    assert list(tmpdir.iterdir()) == [], "the key or known_hosts was left behind"
    assert list(home.iterdir()) == [] and user_ssh() == before_ssh


def test_without_known_hosts_the_host_key_is_accepted_with_one_warning(
    emulator: Emulator, served: Served, home: Path, tmp_path: Path
) -> None:
    settings = {"REPOSITORY_URL": served.url, "REPOSITORY_SSH_KEY": served.server.client_key}
    ponos = make_ponos(emulator, tmp_path / "data", settings)
    tmpdir = tmp_path / "tmp"
    before_ssh = user_ssh()

    result = ponos.run_trigger({**ssh_env(served, home, tmpdir), "REPOSITORY_BEFORE": served.commits[0]})

    assert result.code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "REPOSITORY_SSH_KNOWN_HOSTS" in line]
    assert len(warnings) == 1 and " WARNING " in warnings[0], result.stderr
    assert f"the SSH host key of {served.host} is not verified" in warnings[0]
    # The key accepted went to the run's private file, gone with it: never the user's ~/.ssh.
    assert user_ssh() == before_ssh and list(home.iterdir()) == [] and list(tmpdir.iterdir()) == []
    assert len(ponos.children()) == 1


# --- refusals: one line, exit 2, no retry, no wait --------------------------------------------------


def other_public_key(tmp_path: Path) -> str:
    key = tmp_path / "other_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return Path(f"{key}.pub").read_text().split()[1]


def refused_at_once(ponos: Ponos, env: dict[str, str], message: Documented) -> None:
    """The trigger stops at once (no retry, no hang) with exit 2 and the one documented line."""
    started = time.monotonic()
    result = ponos.run_trigger(env)

    assert time.monotonic() - started < 30
    assert result.code == 2, result.output
    (line,) = error_lines(result)
    assert message.match(line) is not None, f"{line!r} is not {message}"
    assert "retrying" not in result.output


@pytest.mark.parametrize("case", ["changed", "unknown"])
def test_a_host_key_that_does_not_match_is_one_line_naming_the_host(
    ponos: Ponos, served: Served, home: Path, tmp_path: Path, case: str
) -> None:
    if case == "changed":  # another key for this very host: a man in the middle, or a new server key
        known = f"{served.host} ssh-ed25519 {other_public_key(tmp_path)}\n"
    else:  # keys of other hosts only
        known = served.server.known_hosts.replace(served.host, "[127.0.0.1]:1")
    env = ssh_env(
        served,
        home,
        tmp_path / "tmp",
        REPOSITORY_SSH_KEY=served.server.client_key,
        REPOSITORY_SSH_KNOWN_HOSTS=known,
    )
    message = Documented(HOST_CHANGED if case == "changed" else HOST_UNKNOWN, {"<host>": served.host})

    refused_at_once(ponos, env, message)
    assert accepted(served.server) == 0
    assert ponos.children() == [] and list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize("case", ["missing", "another key"])
def test_a_refused_key_is_one_line_naming_repository_ssh_key(
    ponos: Ponos, served: Served, home: Path, tmp_path: Path, case: str
) -> None:
    env = ssh_env(served, home, tmp_path / "tmp", REPOSITORY_SSH_KNOWN_HOSTS=served.server.known_hosts)
    if case == "another key":
        other = tmp_path / "refused_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
        env["REPOSITORY_SSH_KEY"] = other.read_text()
    message = Documented(KEY_REFUSED, {"<user>": served.server.user, "<host>": "127.0.0.1"})

    refused_at_once(ponos, env, message)
    assert ponos.children() == [] and list((tmp_path / "tmp").iterdir()) == []


def test_a_key_ssh_cannot_read_is_one_line_naming_repository_ssh_key(
    ponos: Ponos, served: Served, home: Path, tmp_path: Path
) -> None:
    lines = served.server.client_key.splitlines()
    lines[2] = lines[2][:10]  # a line of the key lost in a copy
    env = ssh_env(
        served,
        home,
        tmp_path / "tmp",
        REPOSITORY_SSH_KEY="\n".join(lines),
        REPOSITORY_SSH_KNOWN_HOSTS=served.server.known_hosts,
    )

    result = ponos.run_trigger(env)

    assert result.code == 2, result.output
    (line,) = error_lines(result)
    assert Documented(KEY_UNREADABLE, {"<ssh's reason>": None}).match(line) is not None, line
    assert "git-import-auth-" not in line  # ssh names the key's file: the line does not
    assert "retrying" not in result.output


@pytest.mark.parametrize(
    ("lines", "said"),
    [
        (
            ["Host key for gitlab.example.com has changed and you have requested strict checking."],
            "of gitlab",
        ),
        (
            ["No ED25519 host key is known for [h]:2222 and you have requested strict checking."],
            "for [h]:2222",
        ),
        ([], "no key for the SSH host"),  # ssh named no host: the line still names the setting
    ],
)
def test_a_host_key_refusal_is_a_setting_to_fix(lines: list[str], said: str) -> None:
    tail = [*lines, "Host key verification failed.", "fatal: Could not read from remote repository."]
    error = classify("cloning main", tail)
    assert isinstance(error, ConfigGitError) and not error.transient
    assert said in str(error) and "REPOSITORY_SSH_KNOWN_HOSTS" in str(error)


def test_a_key_ssh_cannot_load_is_named_by_its_setting_not_its_path() -> None:
    tail = [
        'Load key "/tmp/git-import-auth-x/ssh_key": invalid format',
        "git@h: Permission denied (publickey).",
    ]
    error = classify("cloning main", tail)
    assert isinstance(error, ConfigGitError)
    assert str(error).startswith(
        "cloning main: ssh could not read the private key of REPOSITORY_SSH_KEY (invalid"
    )
    assert "git-import-auth" not in str(error)


# --- the rules: what a key and known_hosts may look like ---------------------------------------------


def keygen(tmp_path: Path, kind: str, fmt: str, passphrase: str = "") -> str:
    path = tmp_path / f"{kind}-{fmt}-{bool(passphrase)}"
    args = ["ssh-keygen", "-q", "-t", kind, "-m", fmt, "-N", passphrase, "-f", str(path)]
    subprocess.run(args, check=True, stdin=subprocess.DEVNULL)
    return path.read_text()


@pytest.mark.parametrize(("kind", "fmt"), [("ed25519", "RFC4716"), ("rsa", "PEM"), ("ecdsa", "PKCS8")])
def test_a_private_key_is_taken_and_one_behind_a_passphrase_refused(
    tmp_path: Path, kind: str, fmt: str
) -> None:
    key = keygen(tmp_path, kind, fmt)
    assert env.parse_ssh_key(key) == key
    # Pasted through a Windows clipboard, indented in a YAML block, or set on one line.
    assert env.parse_ssh_key(key.replace("\n", "\r\n")) == key
    assert env.parse_ssh_key("".join(f"    {line}\n" for line in key.splitlines())) == key
    assert env.parse_ssh_key(key.rstrip("\n").replace("\n", "\\n")) == key
    with pytest.raises(ValueError, match=r"^is protected by a passphrase"):
        env.parse_ssh_key(keygen(tmp_path, kind, fmt, passphrase="s3cret-phrase"))
    with pytest.raises(ValueError, match=r"^holds a public key"):
        env.parse_ssh_key(Path(f"{tmp_path / f'{kind}-{fmt}-False'}.pub").read_text())


def test_known_hosts_lines_are_normalised_and_anything_else_refused() -> None:
    line = "[git.example.com]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJ1bGVz"
    assert env.parse_known_hosts(f"  {line}\r\n# a comment\r\n") == f"{line}\n# a comment\n"
    assert env.parse_known_hosts(f"@cert-authority *.example.com {line.split(' ', 1)[1]}").startswith("@cert")
    for text, reason in [("SHA256:uNiVztksCsDh", "line 1 is not"), ("# nothing\n", "holds no host key")]:
        with pytest.raises(ValueError, match=reason):
            env.parse_known_hosts(text)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("ssh://git@gitlab.example.com/group/workers.git", "gitlab.example.com"),
        ("ssh://git@gitlab.example.com:22/group/workers.git", "gitlab.example.com"),
        ("ssh://git@gitlab.example.com:2222/group/workers.git", "[gitlab.example.com]:2222"),
        ("git@gitlab.example.com:group/workers.git", "gitlab.example.com"),
        ("https://gitlab.example.com/group/workers.git", None),
        ("/srv/git/workers.git", None),
        ("file:///srv/git/workers.git", None),
    ],
)
def test_the_ssh_host_is_named_as_known_hosts_names_it(url: str, host: str | None) -> None:
    assert ssh_host(url) == host


# --- the git environment ---------------------------------------------------------------------------


def test_the_key_and_known_hosts_are_private_files_gone_at_exit(tmp_path: Path) -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    with GitEnv(ssh_key=key, ssh_known_hosts="host ssh-ed25519 AAAA\n") as git_env:
        env = git_env.env
        key_file, known_hosts = Path(env["GIT_IMPORT_SSH_KEY"]), Path(env["GIT_IMPORT_SSH_KNOWN_HOSTS"])
        assert key_file.read_text() == key and known_hosts.read_text() == "host ssh-ed25519 AAAA\n"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
        assert key_file.parent == known_hosts.parent == Path(env["GIT_ASKPASS"]).parent
        command = env["GIT_SSH_COMMAND"]
        assert str(key_file.parent) not in command  # ssh expands the variables itself
        assert "StrictHostKeyChecking=yes" in command and "IdentitiesOnly=yes" in command
        assert "BatchMode=yes" in command
        assert [name for name, value in env.items() if "AAAA" in value] == []
    assert not key_file.parent.exists()

    with GitEnv() as git_env:  # neither set: accept-new, into a private file all the same
        assert "StrictHostKeyChecking=accept-new" in git_env.env["GIT_SSH_COMMAND"]
        assert "IdentityFile" not in git_env.env["GIT_SSH_COMMAND"]
        assert Path(git_env.env["GIT_IMPORT_SSH_KNOWN_HOSTS"]).read_text() == ""


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("ssh://git@gitlab.example.com/group/workers.git", "gitlab.example.com"),
        ("ssh://git@gitlab.example.com:2222/group/workers.git", "[gitlab.example.com]:2222"),
        ("git@gitlab.example.com:group/workers.git", "gitlab.example.com"),
        ("https://gitlab.example.com/group/workers.git", None),
    ],
)
def test_the_unverified_host_warning_is_for_ssh_remotes_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, url: str, warned: str | None
) -> None:
    for name in os.environ:
        if name.startswith(SETTING_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REPOSITORY_URL", url)
    with caplog.at_level("WARNING"):
        git_env_for(load_settings())
    messages = [r.getMessage() for r in caplog.records if "REPOSITORY_SSH_KNOWN_HOSTS" in r.getMessage()]
    if warned is None:
        assert messages == []
    else:
        assert len(messages) == 1 and f"the SSH host key of {warned} is not verified" in messages[0]
