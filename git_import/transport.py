"""The HTTP transport under arkindex-client: one keep-alive `http.client` connection per thread and host.

arkindex-client builds every call from the schema, checks its parameters, then hands it to
``session.request(method, url, params=, timeout=, json=)`` of a requests Session, and decodes the
answer. :class:`LeanSession` stands in for that one method. Around each call, requests and urllib3
spend about 0.75 ms of CPU (preparing the request, merging settings, pooling, cookies, header
objects), three times what a keep-alive `http.client` call costs; the fan-out's threads pay it
between an answer and their next request, so it set the fan-out's pace (CHANGELOG, issue 15).

It does what this tool's calls need, and says so when it cannot:
- http and https, TLS checked as the Session's ``verify`` says (requests' CA bundle, a bundle file or
  folder such as ``REQUESTS_CA_BUNDLE``, or off for a development instance, as arkindex-client decides);
- the Session's headers and its token (``Authorization: <scheme> <token>``), JSON bodies, query
  parameters, the (connect, read) timeout; answers are asked for uncompressed;
- no proxy and no client certificate: when the environment gives a proxy for the API URL, or the
  Session has a certificate, :func:`lean_session` returns None and requests stays;
- no redirect: a 3xx answer raises :class:`APIRedirect`, naming the URL it points to;
- a connection the server closed while idle is replaced before it is used; a failure while
  connecting, sending or reading raises requests' ``ConnectionError`` or ``Timeout``, as requests
  would, so the retry policy treats it the same way.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import os
import select
import socket
import ssl
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from requests.structures import CaseInsensitiveDict
from requests.utils import select_proxy

from git_import.errors import ConfigError


class APIRedirect(ConfigError):
    """The API answered with a redirect: ARKINDEX_API_URL is not where the API is served."""


class Answer:
    """What arkindex-client and the response hooks read of an answer (a requests Response's subset)."""

    def __init__(self, url: str, status: int, reason: str, headers: http.client.HTTPMessage, content: bytes):
        self.url = url
        self.status_code = status
        self.reason = reason
        self.headers = headers  # case-insensitive `get`, as requests' headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


def lean_session(session: requests.Session, api_url: str) -> LeanSession | None:
    """A :class:`LeanSession` over `session`, or None when requests must stay (a proxy for the API URL,
    a client certificate); call it once the Session's proxies and CA bundle are settled."""
    if session.cert or select_proxy(api_url, session.proxies):
        return None
    return LeanSession(session)


class LeanSession:
    """``request`` over keep-alive `http.client` connections, one per thread and host; every other
    attribute is the wrapped Session's (arkindex-client reads its headers and auth)."""

    def __init__(self, session: requests.Session) -> None:
        self.session = session
        self._local = threading.local()
        self._tls: ssl.SSLContext | None = None
        self._tls_lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        timeout: float | tuple[float, float] | None = None,
        json: Any = None,
    ) -> Answer:
        target = urlsplit(url)
        path = (target.path or "/") + (f"?{target.query}" if target.query else "")
        query = urlencode([(k, v) for k, v in (params or {}).items() if v is not None], doseq=True)
        if query:
            path += ("&" if target.query else "?") + query
        headers = self._headers()
        body = None
        if json is not None:
            body = jsonlib.dumps(json, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        answer = Answer(
            url, *self._exchange(target.scheme, target.netloc, (method, path, body, headers), connect, read)
        )
        if 300 <= answer.status_code < 400:
            location = answer.headers.get("Location", "?")
            raise APIRedirect(
                f"the Arkindex API answered {method} {target.path} with a redirect ({answer.status_code}) "
                f"to {location}",
                hint="set ARKINDEX_API_URL to the URL the API is served at, as the redirect shows",
            )
        for hook in self.session.hooks.get("response", []):
            hook(answer)
        return answer

    def _headers(self) -> CaseInsensitiveDict[str]:
        headers = CaseInsensitiveDict({k: v for k, v in self.session.headers.items() if isinstance(v, str)})
        headers["Accept-Encoding"] = "identity"  # no gzip to undo: the answers are small JSON
        auth = self.session.auth
        token, scheme = getattr(auth, "token", None), getattr(auth, "scheme", None)
        if token is not None:
            headers["Authorization"] = f"{scheme} {token}"
        return headers

    def _exchange(
        self,
        scheme: str,
        netloc: str,
        request: tuple[str, str, bytes | None, CaseInsensitiveDict[str]],
        connect: float | None,
        read: float | None,
    ) -> tuple[int, str, http.client.HTTPMessage, bytes]:
        """Send one request on this thread's connection to `netloc` and read the whole answer: its
        status, reason, headers and body."""
        conn = self._connection(scheme, netloc, connect, read)
        try:
            method, path, body, headers = request
            conn.request(method, path, body=body, headers=dict(headers.items()))
            response = conn.getresponse()
            content = response.read()
        except TimeoutError as exc:
            self._forget(netloc)
            raise requests.ReadTimeout(f"no answer within {read} s ({exc})") from None
        except (OSError, http.client.HTTPException) as exc:
            self._forget(netloc)
            raise requests.ConnectionError(f"{type(exc).__name__}: {exc}") from None
        if response.will_close:
            self._forget(netloc)
        return response.status, response.reason, response.headers, content

    def _connection(
        self, scheme: str, netloc: str, connect: float | None, read: float | None
    ) -> http.client.HTTPConnection:
        conns: dict[str, http.client.HTTPConnection] = self._local.__dict__.setdefault("conns", {})
        conn = conns.get(netloc)
        if conn is not None and _closed_by_server(conn):
            self._forget(netloc)
            conn = None
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(netloc, timeout=connect, context=self._tls_context())
            else:
                conn = http.client.HTTPConnection(netloc, timeout=connect)
            try:
                conn.connect()
            except TimeoutError as exc:
                raise requests.ConnectTimeout(f"could not connect within {connect} s ({exc})") from None
            except OSError as exc:
                raise requests.ConnectionError(f"{type(exc).__name__}: {exc}") from None
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conns[netloc] = conn
        conn.sock.settimeout(read)
        return conn

    def _forget(self, netloc: str) -> None:
        conn = self._local.__dict__.get("conns", {}).pop(netloc, None)
        if conn is not None:
            conn.close()

    def _tls_context(self) -> ssl.SSLContext:
        with self._tls_lock:
            if self._tls is None:
                self._tls = tls_context(self.session.verify)
            return self._tls


def tls_context(verify: bool | str) -> ssl.SSLContext:
    """The TLS checks requests would make for this `verify`: its own CA bundle (certifi) when True, a
    bundle file or a folder of certificates when a path, none when False."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    where = requests.certs.where() if verify is True else verify
    if os.path.isdir(where):
        return ssl.create_default_context(capath=where)
    return ssl.create_default_context(cafile=where)


def _closed_by_server(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle keep-alive connection can be read from: the server closed it (or broke the
    protocol); either way it cannot carry a request. As urllib3 checks before reusing one."""
    if conn.sock is None:
        return True
    poller = select.poll()
    poller.register(conn.sock, select.POLLIN)
    return bool(poller.poll(0))
