"""A small Git smart-HTTP server for tests, demos and benchmarks.

It serves every bare repository under a root directory through the real ``git http-backend``
(spawned as a CGI program, one process per request) from a stdlib :mod:`http.server` running in
a background thread on 127.0.0.1.

* Protocol v2 works (the ``Git-Protocol`` request header is passed to the backend).
* Served repositories allow partial clone (``uploadpack.allowFilter``), fetching any object by id
  (``uploadpack.allowAnySHA1InWant``) and pushes (``http.receivepack``); the configuration is given
  to the backend through ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``, so the
  repositories themselves are left untouched.
* Request bodies may be ``Content-Length`` delimited or chunked, gzip-compressed or not (gzip is
  handled by ``http-backend`` itself through ``HTTP_CONTENT_ENCODING``); response bodies are
  streamed (chunked transfer encoding), never buffered whole.
* Optional HTTP Basic authentication (``token``), checked on every request; the Authorization header
  value is never stored nor logged.
* Fault injection (:class:`GitFaults`): 503 answers, packs cut mid-transfer, stalled responses.

Usage::

    with GitHTTPServer(root, token="secret") as server:
        subprocess.run(["git", "clone", server.url("workers.git"), dest])

or from a shell (prints the base URL, serves until Ctrl-C)::

    python -m git_import.local.gitserver ROOT [--port N] [--token T] [--username U]
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hmac
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["GitFaults", "GitHTTPServer", "main"]

log = logging.getLogger(__name__)

#: Configuration given to every backend process (and the upload-pack/receive-pack it runs).
BACKEND_CONFIG: tuple[tuple[str, str], ...] = (
    ("uploadpack.allowFilter", "true"),
    ("uploadpack.allowAnySHA1InWant", "true"),
    ("uploadpack.allowReachableSHA1InWant", "true"),
    ("http.receivepack", "true"),
)

#: An older host's configuration: no filters, no unadvertised objects.
STRICT_BACKEND_CONFIG: tuple[tuple[str, str], ...] = (
    ("uploadpack.allowFilter", "false"),
    ("uploadpack.allowAnySHA1InWant", "false"),
    ("uploadpack.allowReachableSHA1InWant", "false"),
    ("uploadpack.allowTipSHA1InWant", "false"),
    ("http.receivepack", "true"),
)

_IO_CHUNK = 64 * 1024
_STDERR_KEEP = 16 * 1024
# Environment variables of the parent process never passed to the backend: they would change what
# git does (GIT_DIR, GIT_CONFIG_*...) or forge CGI meta-variables.
_CGI_NAMES = frozenset(
    {
        "AUTH_TYPE",
        "CONTENT_LENGTH",
        "CONTENT_TYPE",
        "GATEWAY_INTERFACE",
        "PATH_INFO",
        "PATH_TRANSLATED",
        "QUERY_STRING",
        "REMOTE_ADDR",
        "REMOTE_HOST",
        "REMOTE_USER",
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "SERVER_SOFTWARE",
    }
)


@dataclass
class GitFaults:
    """Faults to inject, mutable while the server runs.

    * ``fail_next``: the next N requests (any) answer 503 with a short text body.
    * ``drop_mid_pack``: the next N upload-pack POST responses are cut (socket closed) after
      ``drop_after_bytes`` bytes of body. A response that ends before reaching that many bytes (e.g. the
      protocol v2 ``ls-refs`` answer) is not cut and does not consume the fault.
    * ``stall_next``: the next N upload-pack POST responses (protocol v2 ``ls-refs`` included) send
      their headers then nothing more until the server stops or ``stall_seconds`` pass, then close.
    * ``stall_discovery``: the same, for the next N ref discovery GETs (``info/refs``): git reports
      a stall there in other words than in a POST.
    """

    fail_next: int = 0
    drop_mid_pack: int = 0
    drop_after_bytes: int = 2048
    stall_next: int = 0
    stall_discovery: int = 0
    stall_seconds: float = 30.0


class _ClientGone(Exception):
    """The request body ended early (client disconnected or malformed chunked encoding)."""


@dataclass(frozen=True)
class _RequestBody:
    """How a request body is delimited: chunked, or ``length`` bytes (0: no body)."""

    chunked: bool
    length: int

    @property
    def present(self) -> bool:
        return self.chunked or self.length > 0


@dataclass
class _Backend:
    """One running ``git http-backend`` and the threads draining its stderr and feeding its stdin."""

    proc: subprocess.Popen[bytes]
    body_complete: bool  # the whole request body reached the backend (or there was none)
    threads: list[threading.Thread] = field(default_factory=list)
    stderr_tail: bytearray = field(default_factory=bytearray)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], git: GitHTTPServer) -> None:
        self.git = git
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "git-import-gitserver/1"
    timeout = 300  # seconds without progress on the socket before giving up on a client
    server: _Server

    _entry: dict[str, Any] | None = None
    _body_bytes: int = 0
    _chunked: bool = False

    # -- connection bookkeeping -------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.server.git._register_connection(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.git._unregister_connection(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        # Only the request line and status are ever logged, never headers.
        log.debug("%s - " + format, self.address_string(), *args)

    def send_response(self, code: int, message: str | None = None) -> None:
        if self._entry is not None:
            self.server.git._update(self._entry, status=code)
        super().send_response(code, message)

    # -- entry points -----------------------------------------------------------------------
    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        git = self.server.git
        split = urlsplit(self.path)
        path, query = split.path, split.query
        self._body_bytes = 0
        self._chunked = False
        # Recorded when the request arrives, updated *before* each write: once the client has seen
        # (the end of) a response, its entry and ``bytes_sent`` are up to date.
        self._entry = {
            "method": self.command,
            "path": path,
            "query": query,
            "status": 0,
            "authorization": "Authorization" in self.headers,
            "bytes": 0,
        }
        git._record(self._entry)
        try:
            self._dispatch(git, path, query)
        finally:
            self._entry = None

    def _dispatch(self, git: GitHTTPServer, path: str, query: str) -> None:
        if git._take_fault("fail_next"):
            self._send_text(503, "Service temporarily unavailable (injected fault)\n")
            return
        user: str | None = None
        if git.token is not None:
            user = self._authenticated_user(git)
            if user is None:
                self._send_text(401, "Authentication required\n", {"WWW-Authenticate": 'Basic realm="git"'})
                return
        upload_pack_post = self.command == "POST" and path.endswith("/git-upload-pack")
        if upload_pack_post and git._take_fault("stall_next"):
            self._stall(git, "application/x-git-upload-pack-result")
            return
        if self.command == "GET" and path.endswith("/info/refs") and git._take_fault("stall_discovery"):
            self._stall(git, "application/x-git-upload-pack-advertisement")
            return
        self._run_backend(git, path, query, user, may_drop=upload_pack_post)

    # -- helpers ----------------------------------------------------------------------------
    def _authenticated_user(self, git: GitHTTPServer) -> str | None:
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        if not sep:
            return None
        assert git.token is not None
        ok = hmac.compare_digest(password.encode(), git.token.encode())
        if git.username is not None:
            ok = hmac.compare_digest(user.encode(), git.username.encode()) and ok
        return user if ok else None

    def _request_has_body(self) -> bool:
        if self.headers.get("Transfer-Encoding"):
            return True
        try:
            return int(self.headers.get("Content-Length") or 0) > 0
        except ValueError:
            return True

    def _send_text(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self._request_has_body():
            # The request body is not read: the connection cannot be reused.
            self.send_header("Connection", "close")
        self.end_headers()
        self._count(len(body))
        self.wfile.write(body)

    def _count(self, n: int) -> None:
        """Account for ``n`` body bytes about to be sent."""
        self._body_bytes += n
        if self._entry is not None:
            self.server.git._update(self._entry, add_bytes=n)

    def _write_body(self, data: bytes) -> None:
        if not data:
            return
        self._count(len(data))
        if self._chunked:
            self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        else:
            self.wfile.write(data)

    def _abort_connection(self) -> None:
        self.close_connection = True
        _shutdown_socket(self.connection)

    def _stall(self, git: GitHTTPServer, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        if self.request_version != "HTTP/1.0":
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        git._stop_event.wait(max(0.0, float(git.faults.stall_seconds)))
        self._abort_connection()

    def _read_exactly(self, length: int, truncated: str) -> Iterator[bytes]:
        """`length` bytes of the request body, in pieces of at most _IO_CHUNK."""
        remaining = length
        while remaining > 0:
            data = self.rfile.read1(min(_IO_CHUNK, remaining))  # type: ignore[attr-defined]
            if not data:
                raise _ClientGone(truncated)
            remaining -= len(data)
            yield data

    def _iter_request_body(self, body: _RequestBody) -> Iterator[bytes]:
        rfile = self.rfile
        if not body.chunked:
            yield from self._read_exactly(body.length, "request body truncated")
            return
        while True:
            line = rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise _ClientGone("bad chunk header")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _ClientGone("bad chunk size") from None
            if size == 0:
                self._skip_trailers()
                return
            yield from self._read_exactly(size, "chunk truncated")
            if rfile.readline(3) not in (b"\r\n", b"\n"):
                raise _ClientGone("missing chunk terminator")

    def _skip_trailers(self) -> None:
        """Read the trailers of a chunked body, up to the empty line that ends it."""
        while True:
            trailer = self.rfile.readline(65537)
            if not trailer.endswith(b"\n"):
                raise _ClientGone("bad chunk trailer")
            if trailer in (b"\r\n", b"\n"):
                return

    def _run_backend(
        self, git: GitHTTPServer, path: str, query: str, user: str | None, *, may_drop: bool
    ) -> None:
        body = self._request_body()
        if body is None:
            return
        backend = self._start_backend(git, self._cgi_env(git, path, query, user, body), body)
        if backend is None:
            return
        killed = False
        try:
            killed = not self._relay_response(git, backend.proc, may_drop=may_drop)
        except (OSError, ValueError) as exc:  # client went away, bad CGI output...
            log.debug("response to %s %s aborted: %s", self.command, path, exc)
            killed = True
            self.close_connection = True
        finally:
            self._end_backend(git, backend, path, killed=killed)

    def _request_body(self) -> _RequestBody | None:
        """How the request body is delimited; None, after a 400 answer, when Content-Length is invalid."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return _RequestBody(chunked=True, length=0)
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self._send_text(400, "Bad Content-Length\n")
            self.close_connection = True
            return None
        return _RequestBody(chunked=False, length=length)

    def _cgi_env(
        self, git: GitHTTPServer, path: str, query: str, user: str | None, body: _RequestBody
    ) -> dict[str, str]:
        env = git._backend_env()
        env.update(
            {
                "REQUEST_METHOD": self.command,
                "PATH_INFO": unquote(path),
                "QUERY_STRING": query,
                "REMOTE_ADDR": self.client_address[0],
                "SERVER_PROTOCOL": self.request_version,
                "GATEWAY_INTERFACE": "CGI/1.1",
            }
        )
        if user is not None:
            env["REMOTE_USER"] = user
        if content_type := self.headers.get("Content-Type"):
            env["CONTENT_TYPE"] = content_type
        if (git_protocol := self.headers.get("Git-Protocol")) and not git.strict:
            env["GIT_PROTOCOL"] = git_protocol
            env["HTTP_GIT_PROTOCOL"] = git_protocol
        if encoding := self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = encoding  # http-backend inflates gzip bodies itself
        # Without CONTENT_LENGTH (chunked request), http-backend reads its input until EOF.
        if not body.chunked and (self.command == "POST" or body.length):
            env["CONTENT_LENGTH"] = str(body.length)
        return env

    def _start_backend(self, git: GitHTTPServer, env: dict[str, str], body: _RequestBody) -> _Backend | None:
        """Spawn http-backend with threads draining its stderr and feeding it the request body; None,
        after a 500 answer, when it cannot be run."""
        try:
            proc = subprocess.Popen(
                [git._git, "http-backend"],
                stdin=subprocess.PIPE if body.present else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=git.root,
                start_new_session=True,  # its own process group, to kill upload-pack & co with it
            )
        except OSError as exc:
            log.error("cannot run git http-backend: %s", exc)
            self._send_text(500, "Cannot run git http-backend\n")
            self.close_connection = self.close_connection or body.present
            return None
        git._register_proc(proc)
        backend = _Backend(proc, body_complete=not body.present)
        backend.threads.append(
            threading.Thread(target=_drain, args=(proc.stderr, backend.stderr_tail), daemon=True)
        )
        if body.present:
            backend.threads.append(threading.Thread(target=self._feed, args=(backend, body), daemon=True))
        for thread in backend.threads:
            thread.start()
        return backend

    def _end_backend(self, git: GitHTTPServer, backend: _Backend, path: str, *, killed: bool) -> None:
        """Reap the backend (killing it first when its response was cut) and its threads."""
        proc = backend.proc
        if killed:
            _kill(proc)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _kill(proc)
            killed = True
            proc.wait()
        self._join(backend.threads)
        git._unregister_proc(proc)
        if not backend.body_complete:
            self.close_connection = True
        if proc.returncode and not killed:
            log.warning(
                "git http-backend %s %s exited with %s: %s",
                self.command,
                path,
                proc.returncode,
                backend.stderr_tail.decode(errors="replace").strip(),
            )

    def _join(self, threads: list[threading.Thread]) -> None:
        for thread in threads:
            thread.join(timeout=5)
        if any(thread.is_alive() for thread in threads):
            # The feeder is blocked reading a body the client never finishes sending.
            self._abort_connection()
            for thread in threads:
                thread.join(timeout=5)

    def _feed(self, backend: _Backend, body: _RequestBody) -> None:
        stdin = backend.proc.stdin
        assert stdin is not None
        try:
            for block in self._iter_request_body(body):
                stdin.write(block)
            backend.body_complete = True
        except (OSError, ValueError, _ClientGone) as exc:
            log.debug("request body not fully passed to http-backend: %s", exc)
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _relay_response(self, git: GitHTTPServer, proc: subprocess.Popen[bytes], *, may_drop: bool) -> bool:
        """Send the CGI response of ``proc``; False when the response was cut (the backend must be killed)."""
        stdout = proc.stdout
        assert stdout is not None
        head = _read_cgi_head(stdout)
        if head is None:
            log.warning("git http-backend ended without complete CGI headers")
            self._send_text(502, "Bad gateway: no response from git http-backend\n")
            self.close_connection = True
            return False
        self._send_head(head)
        return self._relay_body(git, stdout, head.content_length, may_drop=may_drop)

    def _send_head(self, head: _CgiHead) -> None:
        """Status line and headers; the body is framed by its length, by chunks, or (HTTP/1.0) by closing."""
        self.send_response(head.status, head.reason)
        for name, value in head.headers:
            self.send_header(name, value)
        if head.content_length is not None:
            self.send_header("Content-Length", str(head.content_length))
        elif self.request_version == "HTTP/1.0":
            self.send_header("Connection", "close")  # close-delimited body
        else:
            self.send_header("Transfer-Encoding", "chunked")
            self._chunked = True
        self.end_headers()

    def _relay_body(
        self, git: GitHTTPServer, stdout: Any, content_length: int | None, *, may_drop: bool
    ) -> bool:
        """Copy the backend's body to the client; False when a ``drop_mid_pack`` fault cut it."""
        remaining = content_length
        drop_at = -1
        while remaining is None or remaining > 0:
            data = stdout.read1(_IO_CHUNK)
            if not data:
                break
            if remaining is not None:
                data = data[:remaining]
                remaining -= len(data)
            if may_drop and drop_at < 0 and git.faults.drop_mid_pack > 0:
                drop_at = max(0, int(git.faults.drop_after_bytes))
            if 0 <= drop_at <= self._body_bytes + len(data):
                cut_at, may_drop, drop_at = drop_at, False, -1
                # Another response may have taken the fault meanwhile: this one then goes out whole.
                if git._take_fault("drop_mid_pack"):
                    self._write_cut(data, cut_at)
                    return False
            self._write_body(data)
        if remaining:
            # The backend sent less than it announced: the client cannot trust this connection.
            self._abort_connection()
            return True
        if self._chunked:
            self.wfile.write(b"0\r\n\r\n")
        elif content_length is None:
            self.close_connection = True
        return True

    def _write_cut(self, data: bytes, cut_at: int) -> None:
        """Send ``data`` only up to body byte ``cut_at``, then drop the connection."""
        keep = data[: max(0, cut_at - self._body_bytes)]
        self._count(len(keep))
        if self._chunked:  # announce the whole chunk, send only part of it
            self.wfile.write(b"%x\r\n" % len(data) + keep)
        else:
            self.wfile.write(keep)
        log.info("injected fault: response cut after %d bytes", self._body_bytes)
        self._abort_connection()


@dataclass
class _CgiHead:
    """The header block of a CGI response."""

    status: int = 200
    reason: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)  # to relay as they are
    content_length: int | None = None


def _read_cgi_head(stdout: Any) -> _CgiHead | None:
    """Read the CGI headers up to their blank line; None when the output ends before it.

    Hop-by-hop headers are dropped: this server frames the body itself. A malformed Status or
    Content-Length raises ValueError.
    """
    head = _CgiHead()
    while True:
        line = stdout.readline(65536)
        if not line.endswith(b"\n"):
            return None
        line = line.rstrip(b"\r\n")
        if not line:
            return head
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip(), value.strip()
        lname = name.lower()
        if lname == "status":
            code, _, text = value.partition(" ")
            head.status, head.reason = int(code), (text.strip() or None)
        elif lname == "content-length":
            head.content_length = int(value)
        elif lname not in ("connection", "transfer-encoding", "keep-alive"):
            head.headers.append((name, value))


def _drain(stream: Any, keep: bytearray) -> None:
    """Read ``stream`` to EOF, keeping its last bytes in ``keep``."""
    try:
        while data := stream.read1(_IO_CHUNK):
            keep += data
            if len(keep) > _STDERR_KEEP:
                del keep[: len(keep) - _STDERR_KEEP]
    except (OSError, ValueError):
        pass
    finally:
        stream.close()


@dataclass(frozen=True)
class _Serving:
    """What start() sets up: the bound server, the thread serving it, and its URL."""

    httpd: _Server
    thread: threading.Thread
    base_url: str


class GitHTTPServer:
    """Serves the bare repositories under ``root`` over Git smart HTTP (``root/"x.git"`` at ``url("x.git")``).

    When ``token`` is set, every request needs HTTP Basic authentication with password ``token`` (and
    user ``username`` when given), otherwise it gets a 401 with ``WWW-Authenticate: Basic realm="git"``.
    """

    def __init__(
        self,
        root: Path,
        *,
        username: str | None = None,
        token: str | None = None,
        faults: GitFaults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        strict: bool = False,
    ) -> None:
        """`strict=True` serves like an older host: protocol v0 only, no partial clone, and no fetching
        of objects by id unless a ref advertises them."""
        self.root = Path(root).resolve()
        self.strict = strict
        self.username = username
        self.token = token
        self.faults = faults if faults is not None else GitFaults()
        self.host = host
        self.port = port
        # What the handlers record (under _lock), for tests and benchmarks to read.
        self.bytes_sent = 0
        self.requests: list[dict[str, Any]] = []
        self._git = shutil.which("git") or "git"
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stop_event = threading.Event()
        # What stop() must end: open client connections and running backends.
        self._connections: set[socket.socket] = set()
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._serving: _Serving | None = None
        self._stopped = False

    # -- public API -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (no trailing slash); only available once started."""
        if self._serving is None:
            raise RuntimeError("GitHTTPServer is not started")
        return self._serving.base_url

    def url(self, name: str) -> str:
        """URL of the repository ``name`` (path relative to the root, e.g. ``"workers.git"``)."""
        return f"{self.base_url}/{name.lstrip('/')}"

    def start(self) -> GitHTTPServer:
        """Bind and serve in a daemon thread; returns ``self``."""
        if self._stopped:
            raise RuntimeError("GitHTTPServer cannot be restarted once stopped")
        if self._serving is not None:
            return self
        if not self.root.is_dir():
            raise FileNotFoundError(f"repository root {self.root} is not a directory")
        httpd = _Server((self.host, self.port), self)
        host, port = httpd.server_address[:2]
        url_host = f"[{host}]" if ":" in str(host) else str(host)
        self.port = int(port)
        thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="git-http-server", daemon=True
        )
        self._serving = _Serving(httpd, thread, f"http://{url_host}:{port}")
        thread.start()
        log.debug("git HTTP server for %s listening on %s", self.root, self._serving.base_url)
        return self

    def stop(self) -> None:
        """Stop serving; ends in-flight (including stalled) responses promptly. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._stop_event.set()
        serving = self._serving
        if serving is None:
            return
        serving.httpd.shutdown()
        serving.httpd.server_close()
        with self._lock:
            connections = list(self._connections)
            procs = list(self._procs)
        for conn in connections:
            _shutdown_socket(conn)
        for proc in procs:
            _kill(proc, close_output=False)
        serving.thread.join(timeout=5)
        with self._idle:
            self._idle.wait_for(lambda: not self._connections, timeout=5)

    def reset_counters(self) -> None:
        """Zero ``bytes_sent`` and empty ``requests``."""
        with self._lock:
            self.bytes_sent = 0
            self.requests.clear()

    def __enter__(self) -> GitHTTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- used by the request handler --------------------------------------------------------
    def _backend_env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("GIT_", "HTTP_")) and key not in _CGI_NAMES
        }
        env["GIT_PROJECT_ROOT"] = str(self.root)
        env["GIT_HTTP_EXPORT_ALL"] = "1"
        config = STRICT_BACKEND_CONFIG if self.strict else BACKEND_CONFIG
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for index, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        return env

    def _take_fault(self, name: str) -> bool:
        with self._lock:
            faults = self.faults
            count = getattr(faults, name)
            if count > 0:
                setattr(faults, name, count - 1)
                log.info("injecting fault %s", name)
                return True
            return False

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)

    def _update(self, entry: dict[str, Any], *, status: int | None = None, add_bytes: int = 0) -> None:
        with self._lock:
            if status is not None:
                entry["status"] = status
            entry["bytes"] += add_bytes
            self.bytes_sent += add_bytes

    def _track(self, items: set[Any], item: Any) -> bool:
        """Add ``item`` to what stop() ends; False when stop() has already run, so the caller ends it.

        Both happen under the lock, so an item is ended either here or by stop(), never missed.
        """
        with self._lock:
            items.add(item)
            return not self._stopped

    def _register_connection(self, conn: socket.socket) -> None:
        if not self._track(self._connections, conn):
            _shutdown_socket(conn)

    def _unregister_connection(self, conn: socket.socket) -> None:
        with self._idle:
            self._connections.discard(conn)
            self._idle.notify_all()

    def _register_proc(self, proc: subprocess.Popen[bytes]) -> None:
        if not self._track(self._procs, proc):
            _kill(proc, close_output=False)

    def _unregister_proc(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.discard(proc)


def _kill(proc: subprocess.Popen[bytes], *, close_output: bool = True) -> None:
    """Kill the backend and what it started (upload-pack, pack-objects...), then close its output.

    Only the thread reading the output may close it (``close_output``).
    """
    if proc.returncode is None:  # not reaped yet: its pid (= process group id) cannot have been reused
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
    if close_output and proc.stdout is not None:
        with contextlib.suppress(OSError, ValueError):
            proc.stdout.close()


def _shutdown_socket(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


def main(argv: list[str] | None = None) -> int:
    """Serve ``ROOT`` until interrupted, printing the base URL on the first line of stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m git_import.local.gitserver",
        description="Serve bare Git repositories over smart HTTP.",
    )
    parser.add_argument("root", type=Path, help="directory holding the bare repositories (e.g. ROOT/x.git)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--token", default=None, help="require HTTP Basic auth with this password")
    parser.add_argument("--username", default=None, help="with --token, also require this user name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Explicitly: a shell's background job or `nohup` starts it with SIGINT ignored, and Ctrl-C or a
    # test's interrupt would then never reach it.
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    server = GitHTTPServer(
        args.root, username=args.username, token=args.token, host=args.host, port=args.port
    )
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
