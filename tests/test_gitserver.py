"""Tests of the Git smart-HTTP test server (real git client, real git http-backend)."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from git_import.local.gitserver import GitFaults, GitHTTPServer, _read_cgi_head

GIT = shutil.which("git")
pytestmark = pytest.mark.skipif(GIT is None, reason="git is not installed")

TIMEOUT = 60
USERNAME = "oauth2"
TOKEN = "s3cret-t0ken-value"


def base_env(home: Path) -> dict[str, str]:
    """An environment isolating git from the user's configuration and any credential prompt."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GIT_") and key not in ("SSH_ASKPASS", "HTTP_PROXY", "http_proxy")
    }
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        NO_PROXY="*",
        no_proxy="*",
    )
    return env


def git(
    *args: str, cwd: Path | None = None, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    assert GIT is not None
    result = subprocess.run(
        [GIT, "-c", "credential.helper=", "-c", "protocol.version=2", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def commit_all(work: Path, message: str, env: dict[str, str]) -> None:
    git("add", "-A", cwd=work, env=env)
    git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", message, cwd=work, env=env)


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Source work trees and a served root holding `workers.git` (small) and `big.git` (~400 KB random)."""
    base = tmp_path_factory.mktemp("gitserver")
    env = base_env(base)
    root = base / "served"
    root.mkdir()

    small = base / "small"
    git("init", "-q", "-b", "main", str(small), env=env)
    (small / "README.md").write_text("# workers\n")
    commit_all(small, "first", env)
    (small / "worker.py").write_text("print('hello')\n" * 50)
    (small / "data.txt").write_text("some data\n")
    commit_all(small, "second", env)
    git("clone", "-q", "--bare", str(small), str(root / "workers.git"), env=env)

    big = base / "big"
    git("init", "-q", "-b", "main", str(big), env=env)
    (big / "random.bin").write_bytes(os.urandom(400_000))
    commit_all(big, "random data", env)
    git("clone", "-q", "--bare", str(big), str(root / "big.git"), env=env)
    return {"base": base, "root": root, "small": small, "big": big}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return base_env(home)


@pytest.fixture
def server(repos: dict[str, Path]) -> Iterator[GitHTTPServer]:
    with GitHTTPServer(repos["root"]) as srv:
        yield srv


def test_url_and_context_manager(repos: dict[str, Path]) -> None:
    server = GitHTTPServer(repos["root"])
    with pytest.raises(RuntimeError):
        _ = server.base_url
    with server as started:
        assert started is server
        assert server.base_url.startswith("http://127.0.0.1:")
        assert not server.base_url.endswith("/")
        assert server.url("workers.git") == f"{server.base_url}/workers.git"
    server.stop()  # idempotent


def test_clone_protocol_v2(
    server: GitHTTPServer, repos: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    dest = tmp_path / "clone"
    result = git("clone", server.url("workers.git"), str(dest), env={**env, "GIT_TRACE_PACKET": "1"})
    assert "git< version 2" in result.stderr
    assert (dest / "worker.py").read_text() == (repos["small"] / "worker.py").read_text()
    head = git("rev-parse", "HEAD", cwd=dest, env=env).stdout
    assert head == git("rev-parse", "HEAD", cwd=repos["small"], env=env).stdout

    methods = [(r["method"], r["path"], r["query"], r["status"]) for r in server.requests]
    assert methods[0] == ("GET", "/workers.git/info/refs", "service=git-upload-pack", 200)
    assert ("POST", "/workers.git/git-upload-pack", "", 200) in methods
    assert all(r["authorization"] is False for r in server.requests)


def test_partial_clone_then_fetch_blob_by_id(
    server: GitHTTPServer, repos: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    blob = git("rev-parse", "HEAD:worker.py", cwd=repos["small"], env=env).stdout.strip()
    dest = tmp_path / "partial"
    git("clone", "--filter=blob:none", "--no-checkout", server.url("workers.git"), str(dest), env=env)
    assert git("config", "remote.origin.promisor", cwd=dest, env=env).stdout.strip() == "true"
    missing = git("rev-list", "--objects", "--missing=print", "--all", cwd=dest, env=env).stdout
    assert f"?{blob}" in missing.split()

    git("fetch", "origin", blob, cwd=dest, env=env)
    missing = git("rev-list", "--objects", "--missing=print", "--all", cwd=dest, env=env).stdout
    assert f"?{blob}" not in missing.split()
    content = git("cat-file", "-p", blob, cwd=dest, env=env).stdout
    assert content == (repos["small"] / "worker.py").read_text()


def test_push(repos: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "served"
    root.mkdir()
    git("clone", "-q", "--bare", str(repos["root"] / "workers.git"), str(root / "push.git"), env=env)
    with GitHTTPServer(root) as server:
        work = tmp_path / "work"
        git("clone", "-q", server.url("push.git"), str(work), env=env)
        (work / "new.txt").write_text("pushed\n")
        commit_all(work, "pushed commit", env)
        git("push", "origin", "HEAD:main", "HEAD:refs/heads/other", cwd=work, env=env)
        assert any(r["path"] == "/push.git/git-receive-pack" and r["status"] == 200 for r in server.requests)
    local = git("rev-parse", "HEAD", cwd=work, env=env).stdout
    assert git("rev-parse", "main", cwd=root / "push.git", env=env).stdout == local
    assert git("rev-parse", "other", cwd=root / "push.git", env=env).stdout == local


def test_large_push_with_chunked_request_body(
    repos: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    root = tmp_path / "served"
    root.mkdir()
    git("init", "-q", "--bare", "-b", "main", str(root / "empty.git"), env=env)
    with GitHTTPServer(root) as server:
        # A pack larger than http.postBuffer is streamed with Transfer-Encoding: chunked.
        result = git(
            "-c",
            "http.postBuffer=65536",
            "push",
            server.url("empty.git"),
            "main",
            cwd=repos["big"],
            env={**env, "GIT_TRACE_CURL": "1", "GIT_TRACE_CURL_NO_DATA": "1"},
        )
        assert "Transfer-Encoding: chunked" in result.stderr
    assert (
        git("rev-parse", "main", cwd=root / "empty.git", env=env).stdout
        == git("rev-parse", "main", cwd=repos["big"], env=env).stdout
    )
    git("fsck", "--no-progress", cwd=root / "empty.git", env=env)


def test_gzip_request_body(env: dict[str, str], tmp_path: Path) -> None:
    # Many refs make the fetch request larger than 1 KiB, which git sends gzip-compressed.
    work = tmp_path / "many"
    git("init", "-q", "-b", "main", str(work), env=env)
    for index in range(40):
        (work / "f.txt").write_text(f"{index}\n")
        commit_all(work, f"c{index}", env)
        git("branch", f"branch-with-a-long-name-{index:03d}", cwd=work, env=env)
    root = tmp_path / "served"
    root.mkdir()
    git("clone", "-q", "--bare", str(work), str(root / "many.git"), env=env)
    with GitHTTPServer(root) as server:
        dest = tmp_path / "clone"
        result = git(
            "clone",
            "--mirror",
            server.url("many.git"),
            str(dest),
            env={**env, "GIT_TRACE_CURL": "1", "GIT_TRACE_CURL_NO_DATA": "1"},
        )
        assert "Content-Encoding: gzip" in result.stderr
    branches = git("for-each-ref", "--format=%(refname)", "refs/heads", cwd=dest, env=env).stdout.split()
    assert len(branches) == 41


def test_cgi_head_is_parsed_for_relay() -> None:
    """Status becomes the status line, hop-by-hop headers are dropped (the server frames the body)."""
    out = io.BytesIO(
        b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\nbody"
    )
    head = _read_cgi_head(out)
    assert head is not None
    assert (head.status, head.reason, head.content_length) == (404, "Not Found", 4)
    assert head.headers == [("Content-Type", "text/plain")]
    assert out.read() == b"body"

    plain = _read_cgi_head(io.BytesIO(b"Content-Type: x\n\n"))
    assert plain is not None and (plain.status, plain.reason, plain.content_length) == (200, None, None)
    assert _read_cgi_head(io.BytesIO(b"Content-Type: x\r\n")) is None  # output ended inside the headers
    with pytest.raises(ValueError):
        _read_cgi_head(io.BytesIO(b"Status: nope\r\n\r\n"))


def test_missing_repository_is_404(server: GitHTTPServer, env: dict[str, str], tmp_path: Path) -> None:
    result = git("clone", server.url("nope.git"), str(tmp_path / "x"), env=env, check=False)
    assert result.returncode != 0
    assert server.requests[0]["status"] == 404


def write_askpass(tmp_path: Path, username: str, password: str) -> Path:
    script = tmp_path / "askpass.sh"
    script.write_text(
        f'#!/bin/sh\ncase "$1" in\n  Username*) echo {username} ;;\n  *) echo {password} ;;\nesac\n'
    )
    script.chmod(0o700)
    return script


def test_token_auth(repos: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    with GitHTTPServer(repos["root"], username=USERNAME, token=TOKEN) as server:
        url = server.url("workers.git")
        assert TOKEN not in url

        denied = git("clone", url, str(tmp_path / "denied"), env=env, check=False)
        assert denied.returncode != 0
        assert not (tmp_path / "denied").exists()
        assert server.requests[0]["status"] == 401
        assert server.requests[0]["authorization"] is False

        wrong_password = {**env, "GIT_ASKPASS": str(write_askpass(tmp_path, USERNAME, "wrong"))}
        assert git("clone", url, str(tmp_path / "w1"), env=wrong_password, check=False).returncode != 0
        wrong_user = {**env, "GIT_ASKPASS": str(write_askpass(tmp_path, "someone", TOKEN))}
        assert git("clone", url, str(tmp_path / "w2"), env=wrong_user, check=False).returncode != 0
        assert any(r["authorization"] and r["status"] == 401 for r in server.requests)

        server.reset_counters()
        good = {**env, "GIT_ASKPASS": str(write_askpass(tmp_path, USERNAME, TOKEN))}
        git("clone", url, str(tmp_path / "ok"), env=good)
        assert (tmp_path / "ok" / "worker.py").exists()
        statuses = [(r["status"], r["authorization"]) for r in server.requests]
        assert statuses[0] == (401, False)
        assert all(auth for status, auth in statuses if status == 200)
        assert sum(1 for status, _ in statuses if status == 200) >= 3

        for entry in server.requests:
            assert set(entry) == {"method", "path", "query", "status", "authorization", "bytes"}
            assert isinstance(entry["authorization"], bool)
        assert TOKEN not in repr(server.requests)


def test_token_without_username(repos: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    with GitHTTPServer(repos["root"], token=TOKEN) as server:
        good = {**env, "GIT_ASKPASS": str(write_askpass(tmp_path, "anyone", TOKEN))}
        git("ls-remote", server.url("workers.git"), env=good)


def test_bytes_sent_and_reset(server: GitHTTPServer, env: dict[str, str], tmp_path: Path) -> None:
    assert server.bytes_sent == 0
    git("clone", "-q", server.url("big.git"), str(tmp_path / "c1"), env=env)
    first = server.bytes_sent
    assert first > 400_000  # random data does not compress
    assert first == sum(r["bytes"] for r in server.requests)

    git("ls-remote", server.url("workers.git"), env=env)
    assert server.bytes_sent > first

    server.reset_counters()
    assert server.bytes_sent == 0
    assert server.requests == []
    git("ls-remote", server.url("workers.git"), env=env)
    assert 0 < server.bytes_sent < first


def test_fail_next(server: GitHTTPServer, env: dict[str, str], tmp_path: Path) -> None:
    server.faults.fail_next = 1
    failed = git("clone", server.url("workers.git"), str(tmp_path / "c1"), env=env, check=False)
    assert failed.returncode != 0
    assert "503" in failed.stderr
    assert server.faults.fail_next == 0
    assert server.requests[0]["status"] == 503
    assert server.requests[0]["bytes"] > 0

    git("clone", server.url("workers.git"), str(tmp_path / "c2"), env=env)
    assert (tmp_path / "c2" / "worker.py").exists()


def test_drop_mid_pack(repos: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    faults = GitFaults(drop_mid_pack=1, drop_after_bytes=4096)
    with GitHTTPServer(repos["root"], faults=faults) as server:
        failed = git("clone", server.url("big.git"), str(tmp_path / "c1"), env=env, check=False)
        assert failed.returncode != 0
        assert faults.drop_mid_pack == 0
        cut = [r for r in server.requests if r["bytes"] == 4096]
        assert len(cut) == 1 and cut[0]["path"] == "/big.git/git-upload-pack"
        assert server.bytes_sent < 50_000

        git("clone", server.url("big.git"), str(tmp_path / "c2"), env=env)
        assert (tmp_path / "c2" / "random.bin").read_bytes() == (repos["big"] / "random.bin").read_bytes()


def test_drop_mid_pack_spares_short_responses(server: GitHTTPServer, env: dict[str, str]) -> None:
    server.faults.drop_mid_pack = 1
    server.faults.drop_after_bytes = 1_000_000
    git("ls-remote", server.url("workers.git"), env=env)  # v2 ls-refs: a short upload-pack POST
    assert server.faults.drop_mid_pack == 1


def test_stall_with_low_speed_limit(repos: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    faults = GitFaults(stall_next=1, stall_seconds=30.0)
    server = GitHTTPServer(repos["root"], faults=faults).start()
    try:
        started = time.monotonic()
        failed = git(
            "-c",
            "http.lowSpeedLimit=1000",
            "-c",
            "http.lowSpeedTime=1",
            "clone",
            server.url("workers.git"),
            str(tmp_path / "c1"),
            env=env,
            check=False,
        )
        assert failed.returncode != 0
        assert time.monotonic() - started < 20  # git gave up, the server was still stalling
        assert faults.stall_next == 0
    finally:
        # The stalled handler is still waiting (30 s): stop() must end it promptly.
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 3
        assert not server._connections
    stalled = [r for r in server.requests if r["path"] == "/workers.git/git-upload-pack"]
    assert len(stalled) == 1 and stalled[0]["status"] == 200 and stalled[0]["bytes"] == 0


def test_short_stall_then_recovery(server: GitHTTPServer, env: dict[str, str], tmp_path: Path) -> None:
    server.faults.stall_next = 1
    server.faults.stall_seconds = 0.2
    failed = git("clone", server.url("workers.git"), str(tmp_path / "c1"), env=env, check=False)
    assert failed.returncode != 0
    git("clone", server.url("workers.git"), str(tmp_path / "c2"), env=env)


def test_command_line(repos: dict[str, Path], env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "git_import.local.gitserver", str(repos["root"]), "--token", TOKEN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        denied = git("ls-remote", f"{base_url}/workers.git", env=env, check=False)
        assert denied.returncode != 0
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, stderr
        assert TOKEN not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
