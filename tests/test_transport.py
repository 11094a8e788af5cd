"""The HTTP transport under arkindex-client (git_import/transport.py) against what real deployments put
between the tool and Arkindex: HTTPS with a private CA, a proxy, a redirecting front, idle connections
closed by the server."""

from __future__ import annotations

import http.client
import json
import select
import shutil
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from git_import.arkindex import ArkindexAPI
from git_import.local.emulator import Emulator
from git_import.local.emulator.schema import SCHEMA_PATH, openapi_schema
from git_import.local.gitserver import GitHTTPServer
from git_import.local.sample import RepoBuilder, worker_yaml
from git_import.settings import Settings

from conftest import Documented, Ponos, make_ponos

NO_CA_BUNDLE = {"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ""}  # requests' own bundle (certifi)

# An API URL answered by a redirect: the line as the README's trigger table shows it.
REDIRECTED = (
    "the Arkindex API answered GET /api/v1/process/<uuid>/ with a redirect (<status>) to <url> (set "
    "ARKINDEX_API_URL to the URL the API is served at, as the redirect shows); nothing was created"
)


def documented_messages() -> list[str]:
    """The trigger's bad inputs checked here, as the README's table shows them (tests/test_readme_tables.py)."""
    return [REDIRECTED]


def pushed(repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer, host: str = "127.0.0.1") -> dict:
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    repo.commit("Hello", {"arkindex/hello.yml": worker_yaml("hello", "Hello", "Says hello")})
    repo.commit("Hello again", {"arkindex/hello.yml": worker_yaml("hello", "Hello", "Says hello again")})
    repo.publish(git_root / "workers.git")
    url = git_server.url("workers.git").replace("127.0.0.1", host)
    return {"REPOSITORY_URL": url, "REPOSITORY_REF": "refs/heads/main", "REPOSITORY_BEFORE": base}


# --- HTTPS ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (a private CA, as an in-house Arkindex has): (cert, key)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"]
    subprocess.run(
        [
            "openssl",
            *request,
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def https_emulator(certificate: tuple[Path, Path]) -> Iterator[Emulator]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, certificate))
    with Emulator(tls=context) as emu:
        yield emu


def test_the_whole_chain_runs_over_https_with_the_ca_bundle_given(
    https_emulator: Emulator,
    certificate: tuple[Path, Path],
    tmp_path: Path,
    repo: RepoBuilder,
    git_root: Path,
    git_server: GitHTTPServer,
) -> None:
    assert https_emulator.url.startswith("https://")
    ponos = make_ponos(https_emulator, tmp_path / "data", pushed(repo, git_root, git_server))
    ca = {"REQUESTS_CA_BUNDLE": str(certificate[0])}

    trigger = ponos.run_trigger(ca)
    assert trigger.code == 0, trigger.output
    children = ponos.children()
    assert len(children) == 2
    child = ponos.run_child(children[-1], ca)
    assert child.code == 0, child.output
    assert [w["slug"] for w in https_emulator.workers()] == ["hello"]


def test_an_untrusted_certificate_is_refused_and_nothing_is_created(
    https_emulator: Emulator, tmp_path: Path, repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer
) -> None:
    # The schema from a file: the first request to the server is the transport's own (RetrieveProcess).
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(openapi_schema()))
    ponos = make_ponos(https_emulator, tmp_path / "data", pushed(repo, git_root, git_server))

    trigger = ponos.run_trigger(
        {**NO_CA_BUNDLE, "ARKINDEX_API_SCHEMA_URL": str(schema), "RETRY_ATTEMPTS": "1"}
    )

    assert trigger.code == 1, trigger.output
    assert "retrieving process" in trigger.output and "CERTIFICATE_VERIFY_FAILED" in trigger.output
    assert ponos.children() == []
    assert https_emulator.requests == []  # refused at the handshake: no request was ever read


# --- a proxy, a redirecting front -----------------------------------------------------------------------

Reply = tuple[int, list[tuple[str, str]], bytes]  # status, headers, body


class _Loopback(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 that answers each request with `answer(handler, body)` and records
    `<method> <target>` of each; a context manager serving from a thread of its own."""

    daemon_threads = True

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler, bytes], Reply]) -> None:
        super().__init__(("127.0.0.1", 0), _LoopbackHandler)
        self.answer = answer
        self.seen: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def __enter__(self) -> _Loopback:
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _LoopbackHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Loopback

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._reply()

    def do_POST(self) -> None:
        self._reply()

    def _reply(self) -> None:
        self.server.seen.append(f"{self.command} {self.path}")
        status, headers, body = self.server.answer(
            self, self.rfile.read(int(self.headers["Content-Length"] or 0))
        )
        self.send_response(status)
        for key, value in [*headers, ("Content-Length", str(len(body)))]:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


def forward(request: BaseHTTPRequestHandler, body: bytes) -> Reply:
    """A forward proxy's answer: the request sent on to the absolute URL it names."""
    target = urlsplit(request.path)
    headers = {
        k: v for k, v in request.headers.items() if k.lower() not in ("proxy-connection", "connection")
    }
    conn = http.client.HTTPConnection(target.netloc, timeout=30)
    conn.request(request.command, target.path + (f"?{target.query}" if target.query else ""), body, headers)
    answer = conn.getresponse()
    content = answer.read()
    conn.close()
    kept = ("connection", "transfer-encoding", "content-length")
    return answer.status, [(k, v) for k, v in answer.getheaders() if k.lower() not in kept], content


def redirect_but_the_schema(request: BaseHTTPRequestHandler, body: bytes) -> Reply:
    """A front that serves the emulator's schema and redirects every other request to another host."""
    if request.path.startswith(SCHEMA_PATH):
        return 200, [("Content-Type", "application/json")], json.dumps(openapi_schema()).encode()
    return 301, [("Location", f"https://arkindex.example.com{request.path}")], b""


def test_api_calls_go_through_the_proxy_the_environment_names(
    ponos: Ponos, repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer
) -> None:
    # The Git server is named `localhost` and kept out of the proxy; the API is reached at 127.0.0.1.
    settings = pushed(repo, git_root, git_server, host="localhost")
    with _Loopback(forward) as proxy:
        address = proxy.url.rstrip("/")
        proxied = {
            "HTTP_PROXY": address,
            "http_proxy": address,
            "NO_PROXY": "localhost",
            "no_proxy": "localhost",
        }
        result = ponos.run_trigger({**settings, **proxied})

    assert result.code == 0, result.output
    assert len(ponos.children()) == 2
    api = urlsplit(ponos.emulator.url).netloc
    assert sum(1 for s in proxy.seen if s.startswith(f"GET http://{api}/api/v1/process/")) == 1
    assert sum(1 for s in proxy.seen if s == f"POST http://{api}/api/v1/task/") == 2


def test_an_api_url_that_redirects_is_a_setting_to_fix_exit_2(
    ponos: Ponos, repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer
) -> None:
    with _Loopback(redirect_but_the_schema) as front:
        result = ponos.run_trigger({**pushed(repo, git_root, git_server), "ARKINDEX_API_URL": front.url})

    assert result.code == 2, result.output
    errors = [line.split(" ERROR ", 1)[1].strip() for line in result.output.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.output
    process = ponos.process["id"]
    where = f"https://arkindex.example.com/api/v1/process/{process}/"
    values = {"<uuid>": process, "<status>": "301", "<url>": where}
    assert Documented(REDIRECTED, values).match(errors[0]) is not None, errors[0]
    assert not [seen for seen in front.seen if seen.startswith("POST")]


# --- idle connections -----------------------------------------------------------------------------------


def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_retry(
    ponos: Ponos, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ponos.env.items():
        monkeypatch.setenv(name, value)
    api = ArkindexAPI(Settings())
    assert api.retrieve_process(ponos.process["id"])["id"] == ponos.process["id"]
    session = api.client_for("RetrieveProcess").session
    (conn,) = session._local.conns.values()  # this thread's keep-alive connection

    ponos.emulator.close_connections()
    # Wait until the server's close reached this end (a request sent before would meet a reset).
    assert select.select([conn.sock], [], [], 10)[0], "the server did not close the connection"

    assert api.retrieve_process(ponos.process["id"])["id"] == ponos.process["id"]
    assert api.retries == 0
    assert session._local.conns[urlsplit(ponos.emulator.url).netloc] is not conn
