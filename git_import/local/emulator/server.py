"""An embedded, Arkindex-compatible HTTP server for tests, the demo and the benchmark.

It speaks the subset of the Arkindex REST API described in docs/arkindex-api.md (the paths and
shapes are declared in :mod:`git_import.local.emulator.schema`), over real HTTP on a local port, so that
the real ``arkindex-client`` can talk to it. State lives in memory behind one lock.

Faults (errors, dropped connections, latency, a racing concurrent trigger) can be injected at
random through :class:`Faults` or deterministically through :meth:`Emulator.fail_next`.
:class:`Modes` switch to behaviours seen on real Arkindex instances (which token the worker
operations take, how duplicates are answered, unique tags, the page size).

Admin endpoints, outside the OpenAPI schema, live under ``/_emulator/``:

- ``GET /_emulator/state``: processes, tasks (without tokens), workers, versions;
- ``POST /_emulator/processes``: body like :meth:`Emulator.create_process` keyword arguments;
- ``POST /_emulator/tasks``: body ``{"process_id", "slug", ...}`` like :meth:`Emulator.create_task`;
  answers the task with its ``token``;
- ``PATCH /_emulator/tasks/<id>``: body ``{"state": ...}``;
- ``POST /_emulator/tokens``: answers ``{"token": ...}``, a user token (``Token`` scheme);
- ``PUT /_emulator/faults``: any fields of :class:`Faults`; answers the faults in effect;
- ``PUT /_emulator/modes``: any fields of :class:`Modes`; answers the modes in effect (an unknown
  field or a wrong value: 400 and nothing changes);
- ``GET /_emulator/faults``, ``GET /_emulator/modes``: the faults, the modes in effect;
- ``GET /_emulator/requests``: the accepted API requests.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import random
import re
import secrets
import socket
import ssl
import sys
import threading
import time
import traceback
import typing
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import yaml

from git_import.local.emulator.schema import (
    MAX_IMAGE_LENGTH,
    MAX_SLUG_LENGTH,
    OPERATIONS,
    SCHEMA_PATH,
    TASK_STATES,
    openapi_schema,
)

__all__ = ["Emulator", "Faults", "Modes"]

OPERATION_IDS = frozenset(op for op, _method, _path in OPERATIONS)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: The operations ``Modes.task_token_on_workers = False`` closes to task tokens.
WORKER_OPERATIONS = frozenset(
    {
        "CreateWorker",
        "PartialUpdateWorker",
        "ImportWorkerVersion",
        "ListWorkerVersions",
        "RetrieveWorkerVersion",
        "PartialUpdateWorkerVersion",
    }
)

# Arkindex/Ponos order of precedence of task states when computing a run's state.
_STATE_PRECEDENCE = (
    "running",
    "failed",
    "error",
    "stopping",
    "stopped",
    "pending",
    "unscheduled",
    "completed",
)

REQUIRED = "This field is required."
NOT_NULL = "This field may not be null."
NOT_BLANK = "This field may not be blank."
NOT_STRING = "Not a valid string."
NOT_FOUND = {"detail": "Not found."}
NOT_AUTHENTICATED = {"detail": "Authentication credentials were not provided."}
INVALID_TOKEN = {"detail": "Invalid token."}
PERMISSION_DENIED = {"detail": "You do not have permission to perform this action."}
INVALID_PAGE = {"detail": "Invalid page."}

TASK_RESPONSE_FIELDS = (
    "id",
    "process_id",
    "slug",
    "parents",
    "image",
    "command",
    "env",
    "run",
    "depth",
    "state",
)


def _compile(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$")


_ROUTES: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (_compile(path), method, operation) for operation, method, path in OPERATIONS
)


@dataclasses.dataclass
class Faults:
    """Faults the emulator injects; mutable at runtime, all off by default."""

    error_rate: float = 0.0  # fraction of API requests answered with a 5xx
    error_statuses: tuple[int, ...] = (500, 502, 503)
    latency: float = 0.0  # seconds added to every API request
    drop_rate: float = 0.0  # fraction of requests closed with no response, before processing
    drop_after_rate: float = 0.0  # fraction of write requests committed, then closed with no response
    duplicate_race_rate: float = 0.0  # CreateTask: another trigger creates the same slug just before
    create_task_delay: float = 0.0  # seconds added to each CreateTask, as a database would
    operations: frozenset[str] | None = None  # operationIds that error/drop/race faults apply to; None: all
    # Most random faults (error, drop, drop after) in a row for one request key: the operation plus the
    # CreateTask slug (one revision's retries), or plus the path for other operations. The next request
    # of that key goes through unfaulted; a request that goes through resets its count. None: no limit.
    # It bounds the tries a client needs, so a benchmark with high fault rates can expect success.
    max_streak: int | None = None
    seed: int | None = None

    def applies_to(self, operation: str) -> bool:
        return self.operations is None or operation in self.operations

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["error_statuses"] = list(self.error_statuses)
        data["operations"] = None if self.operations is None else sorted(self.operations)
        return data


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _parse_fields(cls: type, body: dict[str, Any], what: str) -> dict[str, Any]:
    """The fields of ``body`` for the dataclass ``cls``, each parsed by its declared type.

    Raises ``ValueError`` or ``TypeError`` with a message naming the field, for the admin endpoints'
    400 answers.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(body) - set(names))
    if unknown:
        raise ValueError(f"Unknown {what} fields: {', '.join(unknown)}; known: {', '.join(names)}")
    return {name: _parse_value(name, hints[name], value) for name, value in body.items()}


def _parse_value(name: str, declared: Any, value: Any) -> Any:
    args = typing.get_args(declared)
    if type(None) in args:
        if value is None:
            return None
        (declared,) = [arg for arg in args if arg is not type(None)]
    origin = typing.get_origin(declared) or declared
    if origin in (tuple, frozenset):
        if not isinstance(value, list):
            raise TypeError(f"{name}: expected a list, got {json.dumps(value)}")
        item = typing.get_args(declared)[0]
        return origin(_parse_value(f"{name} item", item, v) for v in value)
    accepted = (int, float) if origin is float else (origin,)
    # JSON true/false are Python bools, which are ints too: only a bool field takes them.
    if not isinstance(value, accepted) or (isinstance(value, bool) and origin is not bool):
        raise TypeError(f"{name}: expected {_TYPE_NAMES[origin]}, got {json.dumps(value)}")
    return origin(value)


#: The values each string field of :class:`Modes` takes.
MODE_CHOICES: dict[str, tuple[str, ...]] = {
    "version_duplicate": ("409", "400"),
    "duplicate_slug": ("field", "non_field", "object", "conflict"),
}


@dataclasses.dataclass
class Modes:
    """Behaviours of real Arkindex instances the emulator can play; mutable at runtime.

    Every default is the emulator's behaviour from before modes existed. Values are checked when set.
    """

    # False: the worker operations refuse a Ponos task token (403), as on instances where task-token
    # authentication is opt-in per endpoint (Arkindex backend issues #1451, #1531); a user token works.
    task_token_on_workers: bool = True
    # A duplicate ImportWorkerVersion (same worker, same revision URL): "409" with the existing version's
    # ID, or "400", the validation error of Arkindex up to 1.11.1, which names no version.
    version_duplicate: str = "409"
    # A CreateTask slug already in the process run: "field" ({"slug": [...]}, our assumption),
    # "non_field" (Django REST framework's unique-together form), "object" (the standard error format,
    # attr null) or "conflict" (409 with the existing task's ID).
    duplicate_slug: str = "field"
    # True: a tag belongs to at most one version of a worker (Arkindex backend issue #1775).
    unique_tags: bool = False
    page_size: int = 20  # ListWorkerVersions

    def __setattr__(self, name: str, value: Any) -> None:
        _check_mode(name, value)
        object.__setattr__(self, name, value)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@functools.cache
def _mode_types() -> dict[str, Any]:
    return typing.get_type_hints(Modes)


def _check_mode(name: str, value: Any) -> None:
    declared = _mode_types()
    if name not in declared:
        raise AttributeError(f"Unknown mode {name!r}; known: {', '.join(declared)}")
    _parse_value(name, declared[name], value)
    choices = MODE_CHOICES.get(name)
    if choices is not None and value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {json.dumps(value)}")
    if name == "page_size" and value < 1:
        raise ValueError(f"page_size: expected an integer of at least 1, got {value}")


class ApiError(Exception):
    """Answer the current request with ``status`` and the JSON ``body``."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


@dataclasses.dataclass
class _Call:
    """One API request, as an operation handler sees it."""

    operation: str
    method: str
    path: str
    params: dict[str, str]  # from the path
    query: dict[str, str]
    body: Any  # the parsed JSON object of a write, else None
    scheme: str  # "Ponos" (a task token) or "Token" (a user token)
    task_id: str | None  # the calling task, for the Ponos scheme
    base_url: str  # "http://<host the client asked for>/"


class _Drop(Exception):
    """Close the connection without answering."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _new_token() -> str:
    return secrets.token_hex(20)


def _parse_uuid(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _json_type(value: Any) -> str:
    return {dict: "dict", list: "list", str: "str", bool: "bool", int: "int", float: "float"}.get(
        type(value), type(value).__name__
    )


def _error_body(kind: str, detail: str, code: str = "error") -> dict[str, Any]:
    return {"type": kind, "errors": [{"attr": None, "code": code, "detail": detail}]}


def _check_yaml(v: _Validator, text: str | None) -> None:
    """A worker version's configuration must be a YAML mapping."""
    if text is None:
        return
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        v.error("yaml", f"Invalid YAML: {exc}")
        return
    if not isinstance(parsed, dict):
        v.error("yaml", "The YAML configuration must be a mapping.")


def _paginate(call: _Call, items: list[Any], page_size: int) -> dict[str, Any]:
    """One page of ``items`` as Django REST framework's PageNumberPagination answers it."""
    pages = max(1, -(-len(items) // page_size))  # an empty list still has its first page
    raw = call.query.get("page")
    try:
        number = 1 if raw is None else pages if raw == "last" else int(raw)
    except ValueError:
        raise ApiError(404, INVALID_PAGE) from None
    if not 1 <= number <= pages:
        raise ApiError(404, INVALID_PAGE)
    start = (number - 1) * page_size
    return {
        "count": len(items),
        "next": _page_link(call, number + 1) if number < pages else None,
        "previous": _page_link(call, number - 1) if number > 1 else None,
        "results": items[start : start + page_size],
    }


def _page_link(call: _Call, number: int) -> str:
    """The request's own absolute URL on another page; page 1 is the URL without ``page``, as in DRF."""
    query = {name: value for name, value in call.query.items() if name != "page"}
    if number > 1:
        query["page"] = str(number)
    url = call.base_url + call.path.lstrip("/")
    return f"{url}?{urlencode(sorted(query.items()))}" if query else url


class _Validator:
    """Collects Django-REST-framework-style field errors: ``{"field": ["message"]}``."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.errors: dict[str, Any] = {}

    def error(self, field: str, message: Any) -> None:
        if isinstance(message, dict):
            self.errors[field] = message
        else:
            self.errors.setdefault(field, []).append(message)

    def string(
        self,
        field: str,
        *,
        required: bool = True,
        nullable: bool = False,
        allow_blank: bool = False,
        max_length: int | None = None,
    ) -> str | None:
        if field not in self.body:
            if required:
                self.error(field, REQUIRED)
            return None
        value = self.body[field]
        if value is None:
            if not nullable:
                self.error(field, NOT_NULL)
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.error(field, NOT_STRING)
            return None
        value = str(value)
        if not value.strip() and not allow_blank:
            self.error(field, NOT_BLANK)
            return None
        if max_length is not None and len(value) > max_length:
            self.error(field, f"Ensure this field has no more than {max_length} characters.")
            return None
        return value

    def boolean(self, field: str, default: bool) -> bool:
        value = self.body.get(field, default)
        if isinstance(value, bool):
            return value
        if value in ("true", "True", 1, "1"):
            return True
        if value in ("false", "False", 0, "0"):
            return False
        self.error(field, "Must be a valid boolean.")
        return default

    def str_dict(self, field: str) -> dict[str, str]:
        value = self.body.get(field)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(field, f'Expected a dictionary of items but got type "{_json_type(value)}".')
            return {}
        bad = {str(key): [NOT_STRING] for key, item in value.items() if not isinstance(item, str)}
        if bad:
            self.error(field, bad)
            return {}
        return dict(value)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    emulator: Emulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ArkindexEmulator/1.0"
    server: _Server

    # --- plumbing -------------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and the
        # peer's delayed ACK add ~40 ms to every response.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.emulator._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.emulator._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default access log on stderr."""
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            return self.rfile.read(int(length))
        except ValueError:
            return b""

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        # Headers and body in one write: one segment, one wake-up of the client.
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(payload)
        self.flush_headers()

    def _drop(self) -> None:
        self.close_connection = True

    def _dispatch(self) -> None:
        raw = self._read_body()
        path = urlsplit(self.path).path
        emulator = self.server.emulator
        try:
            if path == SCHEMA_PATH or path == SCHEMA_PATH.rstrip("/"):
                if self.command != "GET":
                    raise ApiError(405, {"detail": f'Method "{self.command}" not allowed.'}, {"Allow": "GET"})
                self._send(200, openapi_schema())
            elif path.startswith("/_emulator/"):
                status, body = emulator._admin(self.command, path[len("/_emulator/") :], raw)
                self._send(status, body)
            else:
                status, body, headers = emulator._api(self.command, self.path, self.headers, raw)
                self._send(status, body, headers)
        except _Drop:
            self._drop()
        except ApiError as exc:
            self._send(exc.status, exc.body, exc.headers)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self._send(500, _error_body("server_error", "Internal emulator error"))


class Emulator:
    """An in-memory Arkindex-compatible server on a local port (see the module docstring)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        modes: Modes | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls  # a server context: the API is served over HTTPS (tests of the TLS checks)
        self.faults = faults if faults is not None else Faults()
        self.modes = modes if modes is not None else Modes()
        self.requests: list[dict[str, Any]] = []
        # (time.monotonic(), operationId) of every API request as it arrives, faults included.
        self.arrivals: list[tuple[float, str]] = []
        self.stats: dict[str, int] = {
            "errors_injected": 0,
            "drops_injected": 0,
            "races_injected": 0,
            "rate_limited": 0,
            "streaks_cut": 0,  # requests let through unfaulted by max_streak
        }
        self._streaks: dict[str, int] = {}  # request key -> random faults in a row (see Faults.max_streak)
        self._lock = threading.RLock()
        self._processes: dict[str, dict[str, Any]] = {}
        self._tasks: dict[str, dict[str, Any]] = {}
        # Indexes, as a database would have: a process' tasks, and the unique (process, run, slug).
        self._process_tasks: dict[str, list[dict[str, Any]]] = {}
        self._slugs: dict[tuple[str, int, str], str] = {}
        self._workers: dict[str, dict[str, Any]] = {}
        self._versions: dict[str, dict[str, Any]] = {}
        self._task_tokens: dict[str, str] = {}  # token -> task id
        self._user_tokens: set[str] = set()
        self._fail_next: dict[str, list[tuple[int, int | None]]] = {}
        self._rng: random.Random | None = None
        self._rng_key: tuple[int, int | None] | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("The emulator is not started")
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}/"

    def start(self) -> Emulator:
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        if self.tls is not None:
            # The handshake happens in each connection's own thread, on its first read.
            server.socket = self.tls.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        server.emulator = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="arkindex-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        self.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def close_connections(self) -> None:
        """Close every open connection, as a server closes keep-alive connections left idle."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # --- seeding and inspection (Python API) ----------------------------------------------------

    def create_process(
        self,
        *,
        name: str | None = "Repository import",
        mode: str = "repository",
        env: dict[str, str] | None = None,
        corpus: str | None = None,
        farm: bool | dict[str, Any] | None = True,
    ) -> dict[str, Any]:
        """Create a process; returns its full record (including ``env``)."""
        if env is not None and (
            not isinstance(env, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            raise ValueError("env must be a mapping of strings to strings")
        if isinstance(farm, dict):
            farm_value: dict[str, Any] | None = {
                "id": str(farm.get("id") or uuid.uuid4()),
                "name": farm.get("name", "Default farm"),
            }
        elif farm:
            farm_value = {"id": str(uuid.uuid4()), "name": "Default farm"}
        else:
            farm_value = None
        process = {
            "id": str(uuid.uuid4()),
            "name": name,
            "mode": mode,
            "corpus": None if corpus is None else str(corpus),
            "farm": farm_value,
            "env": dict(env or {}),
            "created": _now(),
        }
        with self._lock:
            self._processes[process["id"]] = process
            return self._process_full(process)

    def create_task(
        self,
        process_id: str,
        *,
        slug: str = "import",
        parents: Iterable[str] = (),
        image: str = "arkindex-git-import",
        command: str | None = None,
        env: dict[str, str] | None = None,
        state: str = "running",
        run: int = 0,
    ) -> dict[str, Any]:
        """Seed a task (as Ponos would); returns its full record including its ``token``."""
        if state not in TASK_STATES:
            raise ValueError(f"Unknown task state {state!r}")
        with self._lock:
            process = self._processes.get(str(process_id))
            if process is None:
                raise ValueError(f"Unknown process {process_id}")
            parent_tasks = []
            for parent_id in parents:
                parent = self._tasks.get(str(parent_id))
                if parent is None or parent["process_id"] != process["id"]:
                    raise ValueError(f"Unknown parent task {parent_id} in process {process_id}")
                parent_tasks.append(parent)
            if self._slug_owner(process["id"], run, slug) is not None:
                raise ValueError(f"A task with the slug {slug!r} already exists in run {run} of {process_id}")
            task = self._insert_task(
                process,
                slug=slug,
                parents=parent_tasks,
                image=image,
                command=command,
                env=env or {},
                run=run,
                state=state,
                has_docker_socket=False,
            )
            return copy.deepcopy(task)

    def create_user_token(self) -> str:
        """A token for the ``Token`` scheme, authenticating as a user."""
        token = _new_token()
        with self._lock:
            self._user_tokens.add(token)
        return token

    def fail_next(
        self, operation: str, count: int = 1, status: int = 503, retry_after: int | None = None
    ) -> None:
        """Answer the next ``count`` calls of ``operation`` with ``status`` (plus ``Retry-After`` if given)."""
        if operation not in OPERATION_IDS:
            raise ValueError(f"Unknown operation {operation!r}; known: {sorted(OPERATION_IDS)}")
        if not 400 <= status <= 599:
            raise ValueError("status must be a 4xx or 5xx code")
        with self._lock:
            self._fail_next.setdefault(operation, []).extend([(status, retry_after)] * count)

    def processes(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._process_full(p) for p in self._processes.values()]

    def process(self, process_id: str) -> dict[str, Any] | None:
        with self._lock:
            process = self._processes.get(str(process_id))
            return None if process is None else self._process_full(process)

    def tasks(self, process_id: str | None = None) -> list[dict[str, Any]]:
        """Every task (optionally of one process), in creation order, full records (env, token)."""
        with self._lock:
            tasks = (
                self._tasks.values() if process_id is None else self._process_tasks.get(str(process_id), [])
            )
            return [copy.deepcopy(t) for t in tasks]

    def task_by_slug(self, process_id: str, slug: str) -> dict[str, Any] | None:
        """The most recently created task of that process with that slug, if any."""
        matches = [t for t in self.tasks(process_id) if t["slug"] == slug]
        return matches[-1] if matches else None

    def set_task_state(self, task_id: str, state: str) -> None:
        if state not in TASK_STATES:
            raise ValueError(f"Unknown task state {state!r}")
        with self._lock:
            task = self._tasks.get(str(task_id))
            if task is None:
                raise KeyError(task_id)
            task["state"] = state

    def workers(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._workers.values()))

    def versions(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._versions.values()))

    # --- state helpers (caller holds the lock) --------------------------------------------------

    def _process_state(self, process_id: str) -> str:
        tasks = self._process_tasks.get(process_id, [])
        if not tasks:
            return "unscheduled"
        last_run = max(t["run"] for t in tasks)
        states = {t["state"] for t in tasks if t["run"] == last_run}
        if len(states) == 1:
            return states.pop()
        return next(s for s in _STATE_PRECEDENCE if s in states)

    def _process_view(self, process: dict[str, Any]) -> dict[str, Any]:
        """The RetrieveProcess response: never the env."""
        return {
            "id": process["id"],
            "name": process["name"],
            "mode": process["mode"],
            "state": self._process_state(process["id"]),
            "corpus": process["corpus"],
            "farm": copy.deepcopy(process["farm"]),
            "tasks": [
                {
                    "id": t["id"],
                    "slug": t["slug"],
                    "state": t["state"],
                    "run": t["run"],
                    "depth": t["depth"],
                    "parents": list(t["parents"]),
                }
                for t in self._process_tasks.get(process["id"], [])
            ],
            "created": process["created"],
        }

    def _process_full(self, process: dict[str, Any]) -> dict[str, Any]:
        return {**self._process_view(process), "env": dict(process["env"])}

    @staticmethod
    def _task_public(task: dict[str, Any]) -> dict[str, Any]:
        """A task without its token (nor ``ARKINDEX_TASK_TOKEN`` in its env)."""
        public = {k: copy.deepcopy(v) for k, v in task.items() if k != "token"}
        public["env"].pop("ARKINDEX_TASK_TOKEN", None)
        return public

    def _slug_owner(self, process_id: str, run: int, slug: str) -> str | None:
        """The ID of the task holding that slug in that process run, if any."""
        return self._slugs.get((process_id, run, slug))

    def _insert_task(
        self,
        process: dict[str, Any],
        *,
        slug: str,
        parents: list[dict[str, Any]],
        image: str,
        command: str | None,
        env: dict[str, str],
        run: int,
        state: str,
        has_docker_socket: bool,
    ) -> dict[str, Any]:
        token = _new_token()
        task = {
            "id": str(uuid.uuid4()),
            "process_id": process["id"],
            "slug": slug,
            "parents": [p["id"] for p in parents],
            "image": image,
            "command": command,
            "env": {**process["env"], **env, "ARKINDEX_TASK_TOKEN": token},
            "run": run,
            "depth": max((p["depth"] for p in parents), default=-1) + 1,
            "state": state,
            "has_docker_socket": has_docker_socket,
            "created": _now(),
            "token": token,
        }
        self._tasks[task["id"]] = task
        self._process_tasks.setdefault(process["id"], []).append(task)
        self._slugs[process["id"], run, slug] = task["id"]
        self._task_tokens[token] = task["id"]
        return task

    # --- faults ---------------------------------------------------------------------------------

    def _random(self) -> float:
        # Caller holds the lock. Re-seed when the faults object or its seed changes.
        key = (id(self.faults), self.faults.seed)
        if self._rng is None or key != self._rng_key:
            self._rng = random.Random(self.faults.seed)
            self._rng_key = key
        return self._rng.random()

    def _roll(self, rate: float) -> bool:
        return rate > 0 and (rate >= 1 or self._random() < rate)

    @staticmethod
    def _fault_key(operation: str, path: str, raw: bytes) -> str:
        """What ``Faults.max_streak`` counts on: a CreateTask slug (its retries), else the operation's path."""
        if operation == "CreateTask":
            with contextlib.suppress(ValueError):  # an invalid body is answered 400 later
                body = json.loads(raw or b"null")
                if isinstance(body, dict) and isinstance(body.get("slug"), str):
                    return f"CreateTask {body['slug']}"
        return f"{operation} {path}"

    def _streak_spent(self, key: str) -> bool:
        """Whether ``key`` had its ``max_streak`` faults in a row: spare it (caller holds the lock)."""
        limit = self.faults.max_streak
        return limit is not None and self._streaks.get(key, 0) >= limit

    def _faulted(self, key: str) -> None:
        self._streaks[key] = self._streaks.get(key, 0) + 1

    def _passed(self, key: str) -> None:
        """A request of ``key`` went through unfaulted: its streak starts over."""
        with self._lock:
            self._streaks.pop(key, None)

    def _before(self, operation: str, key: str) -> None:
        """Faults applied before processing: deterministic failures, drops, random errors.

        ``fail_next`` failures are asked for one by one: ``max_streak`` neither spares nor counts them."""
        faults = self.faults
        with self._lock:
            queue = self._fail_next.get(operation)
            if queue:
                status, retry_after = queue.pop(0)
                headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
                if status == 429:
                    self.stats["rate_limited"] += 1
                    wait = f" Expected available in {retry_after} seconds." if retry_after is not None else ""
                    body = _error_body("client_error", f"Request was throttled.{wait}", "throttled")
                else:
                    self.stats["errors_injected"] += 1
                    kind = "server_error" if status >= 500 else "client_error"
                    body = _error_body(kind, "Injected fault")
                raise ApiError(status, body, headers)
            if not faults.applies_to(operation):
                return
            if self._streak_spent(key):
                self.stats["streaks_cut"] += 1
                return
            if self._roll(faults.drop_rate):
                self.stats["drops_injected"] += 1
                self._faulted(key)
                raise _Drop()
            if self._roll(faults.error_rate):
                self.stats["errors_injected"] += 1
                self._faulted(key)
                statuses = tuple(faults.error_statuses) or (500,)
                status = statuses[int(self._random() * len(statuses)) % len(statuses)]
                raise ApiError(status, _error_body("server_error", "Injected fault"))

    # --- API ------------------------------------------------------------------------------------

    def _api(
        self, method: str, target: str, headers: Any, raw: bytes
    ) -> tuple[int, Any, dict[str, str] | None]:
        url = urlsplit(target)
        operation, params = self._route(method, url.path)
        with self._lock:
            self.arrivals.append((time.monotonic(), operation))
        if self.faults.latency > 0:
            time.sleep(self.faults.latency)
        key = self._fault_key(operation, url.path, raw)
        self._before(operation, key)
        try:
            return self._process(operation, method, url, params, headers, raw, key)
        except ApiError:
            self._passed(key)  # answered, if not with success: not a fault
            raise

    def _process(
        self,
        operation: str,
        method: str,
        url: Any,
        params: dict[str, str],
        headers: Any,
        raw: bytes,
        key: str,
    ) -> tuple[int, Any, dict[str, str] | None]:
        """Authenticate, run the operation, then the faults after processing."""
        scheme, task_id = self._authenticate(headers.get("Authorization"))
        self._check_permission(operation, scheme)
        call = _Call(
            operation=operation,
            method=method,
            path=url.path,
            params=params,
            # Django's QueryDict.get: the last value of a repeated name.
            query={name: values[-1] for name, values in parse_qs(url.query, keep_blank_values=True).items()},
            body=self._parse_body(raw) if method in WRITE_METHODS else None,
            scheme=scheme,
            task_id=task_id,
            # Links in answers are absolute, on the host the client asked for, as Django builds them.
            base_url=f"http://{headers.get('Host') or f'{self.host}:{self.port}'}/",
        )
        status, response = getattr(self, f"_op_{operation}")(call)
        self._after(call, status, key)
        return status, response, None

    @staticmethod
    def _route(method: str, path: str) -> tuple[str, dict[str, str]]:
        """The operation and path parameters of a request; 404 or 405 if none."""
        allowed = []
        for pattern, route_method, route_operation in _ROUTES:
            match = pattern.match(path)
            if match:
                if route_method == method:
                    return route_operation, match.groupdict()
                allowed.append(route_method)
        if allowed:
            raise ApiError(405, {"detail": f'Method "{method}" not allowed.'}, {"Allow": ", ".join(allowed)})
        raise ApiError(404, NOT_FOUND)

    def _after(self, call: _Call, status: int, key: str) -> None:
        """A committed write may still lose its answer (drop after); otherwise record the request."""
        faults = self.faults
        with self._lock:
            if (
                call.method in WRITE_METHODS
                and faults.applies_to(call.operation)
                and not self._streak_spent(key)
                and self._roll(faults.drop_after_rate)
            ):
                self.stats["drops_injected"] += 1
                self._faulted(key)
                raise _Drop()
            self._passed(key)
            self.requests.append(
                {
                    "operation": call.operation,
                    "method": call.method,
                    "path": call.path,
                    "status": status,
                    # Parsed from this request's bytes and never stored elsewhere (handlers keep
                    # copies of its values): the log owns it, no copy needed.
                    "body": call.body,
                    "auth_scheme": call.scheme,
                    "task_id": call.task_id,
                }
            )

    def _check_permission(self, operation: str, scheme: str) -> None:
        """Django REST framework checks permissions before it reads the body or looks anything up."""
        if operation in WORKER_OPERATIONS and scheme == "Ponos" and not self.modes.task_token_on_workers:
            raise ApiError(403, PERMISSION_DENIED)

    def _authenticate(self, header: str | None) -> tuple[str, str | None]:
        if not header:
            raise ApiError(401, NOT_AUTHENTICATED, {"WWW-Authenticate": "Token"})
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme not in ("Ponos", "Token"):
            raise ApiError(401, NOT_AUTHENTICATED, {"WWW-Authenticate": "Token"})
        if not token or " " in token:
            raise ApiError(401, {"detail": "Invalid token header."}, {"WWW-Authenticate": "Token"})
        with self._lock:
            if scheme == "Ponos" and token in self._task_tokens:
                return "Ponos", self._task_tokens[token]
            if scheme == "Token" and token in self._user_tokens:
                return "Token", None
        raise ApiError(401, INVALID_TOKEN, {"WWW-Authenticate": "Token"})

    @staticmethod
    def _parse_body(raw: bytes) -> dict[str, Any]:
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, {"detail": f"JSON parse error - {exc}"}) from None
        if not isinstance(body, dict):
            raise ApiError(
                400,
                {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {_json_type(body)}."]},
            )
        return body

    def _op_RetrieveProcess(self, call: _Call) -> tuple[int, Any]:
        process_id = _parse_uuid(call.params["id"])
        with self._lock:
            process = self._processes.get(process_id or "")
            if process is None:
                raise ApiError(404, NOT_FOUND)
            return 200, self._process_view(process)

    def _op_CreateTask(self, call: _Call) -> tuple[int, Any]:
        if call.scheme != "Ponos":
            raise ApiError(403, {"detail": "Only Ponos tasks are allowed to create tasks."})
        v = _Validator(call.body)
        fields = self._validate_task_body(v)
        if self.faults.create_task_delay > 0:
            time.sleep(self.faults.create_task_delay)
        with self._lock:
            process = self._task_process(v, fields.pop("process_id"), call.task_id)
            parents = self._task_parents(v, process, fields.pop("parent_ids"))
            if v.errors:
                raise ApiError(400, v.errors)
            assert process is not None
            return 201, self._create_child_task(process, parents, fields)

    @staticmethod
    def _validate_task_body(v: _Validator) -> dict[str, Any]:
        """Check the body's own fields (no lookup); errors go to ``v``."""
        body = v.body
        process_id = None
        if "process_id" not in body:
            v.error("process_id", REQUIRED)
        elif body["process_id"] is None:
            v.error("process_id", NOT_NULL)
        else:
            process_id = _parse_uuid(body["process_id"])
            if process_id is None:
                v.error("process_id", "Must be a valid UUID.")
        fields = {
            "process_id": process_id,
            "slug": v.string("slug", max_length=MAX_SLUG_LENGTH),
            "image": v.string("image", max_length=MAX_IMAGE_LENGTH),
            "command": v.string("command", required=False, nullable=True, allow_blank=True),
            "env": v.str_dict("env"),
            "has_docker_socket": v.boolean("has_docker_socket", False),
        }
        parent_ids: list[str] = []
        if "parents" not in body:
            v.error("parents", REQUIRED)
        elif not isinstance(body["parents"], list):
            v.error("parents", f'Expected a list of items but got type "{_json_type(body["parents"])}".')
        elif not body["parents"]:
            v.error("parents", "This list may not be empty.")
        else:
            for value in body["parents"]:
                parsed = _parse_uuid(value)
                if parsed is None:
                    v.error("parents", "Must be a valid UUID.")
                elif parsed not in parent_ids:
                    parent_ids.append(parsed)
        fields["parent_ids"] = parent_ids
        return fields

    def _task_process(
        self, v: _Validator, process_id: str | None, task_id: str | None
    ) -> dict[str, Any] | None:
        """The process to create a task in; only the caller's own (caller holds the lock)."""
        if process_id is None:
            return None
        process = self._processes.get(process_id)
        if process is None:
            v.error("process_id", f'Invalid pk "{process_id}" - object does not exist.')
        elif self._tasks[task_id]["process_id"] != process_id:
            raise ApiError(403, {"detail": "You do not have permission to create tasks in this process."})
        return process

    def _task_parents(
        self, v: _Validator, process: dict[str, Any] | None, parent_ids: list[str]
    ) -> list[dict[str, Any]]:
        """The parent tasks: existing, in the process, all in one run (caller holds the lock)."""
        parents = []
        for parent_id in parent_ids:
            parent = self._tasks.get(parent_id)
            if parent is None:
                v.error("parents", f'Invalid pk "{parent_id}" - object does not exist.')
            elif process is not None and parent["process_id"] != process["id"]:
                v.error("parents", f"Task {parent_id} does not belong to process {process['id']}.")
            else:
                parents.append(parent)
        if parents and len({p["run"] for p in parents}) > 1:
            v.error("parents", "All parents must be in the same run.")
        return parents

    def _duplicate_slug(self, slug: str, run: int, existing_id: str) -> ApiError:
        """The answer to a slug already taken in the process run, in the form ``modes.duplicate_slug`` picks."""
        mode = self.modes.duplicate_slug
        if mode == "field":
            return ApiError(
                400, {"slug": [f"A task with the slug '{slug}' already exists in this process run."]}
            )
        if mode == "non_field":
            return ApiError(
                400, {"non_field_errors": ["The fields process_id, run, slug must make a unique set."]}
            )
        detail = f"A task with the slug {slug} already exists in run {run}."
        if mode == "object":
            return ApiError(400, _error_body("validation_error", detail, "unique"))
        return ApiError(409, {**_error_body("client_error", detail, "unique"), "existing_id": existing_id})

    def _create_child_task(
        self, process: dict[str, Any], parents: list[dict[str, Any]], fields: dict[str, Any]
    ) -> dict[str, Any]:
        """Insert the task unless its slug is taken; the CreateTask response (caller holds the lock)."""
        run = parents[0]["run"]
        slug = fields["slug"]
        existing_id = self._slug_owner(process["id"], run, slug)
        if existing_id is not None:
            raise self._duplicate_slug(slug, run, existing_id)
        kwargs = {**fields, "parents": parents, "run": run, "state": "unscheduled"}
        if self.faults.applies_to("CreateTask") and self._roll(self.faults.duplicate_race_rate):
            # Another trigger of the same process created the same task just before us.
            raced = self._insert_task(process, **kwargs)
            self.stats["races_injected"] += 1
            raise self._duplicate_slug(slug, run, raced["id"])
        task = self._insert_task(process, **kwargs)
        # A task's values are strings, numbers and flat containers of strings: copying the
        # containers is a deep copy, at a fraction of copy.deepcopy's cost on every CreateTask.
        response = {key: task[key] for key in TASK_RESPONSE_FIELDS}
        response["parents"] = list(task["parents"])
        response["env"] = {k: v for k, v in task["env"].items() if k != "ARKINDEX_TASK_TOKEN"}
        return response

    def _get_worker(self, worker_id: str) -> dict[str, Any]:
        worker = self._workers.get(_parse_uuid(worker_id) or "")
        if worker is None:
            raise ApiError(404, NOT_FOUND)
        return worker

    def _get_version(self, version_id: str) -> dict[str, Any]:
        version = self._versions.get(_parse_uuid(version_id) or "")
        if version is None:
            raise ApiError(404, NOT_FOUND)
        return version

    def _op_CreateWorker(self, call: _Call) -> tuple[int, Any]:
        v = _Validator(call.body)
        name = v.string("name", max_length=100)
        worker_type = v.string("type", max_length=100)
        slug = v.string("slug", max_length=100)
        description = v.string("description", allow_blank=True)
        repository_url = v.string("repository_url")
        if v.errors:
            raise ApiError(400, v.errors)
        with self._lock:
            for worker in self._workers.values():
                if worker["slug"] == slug:
                    if worker["repository_url"] == repository_url:
                        return 200, dict(worker)
                    raise ApiError(
                        400,
                        {"slug": [f"A worker with the slug '{slug}' already exists for another repository."]},
                    )
            worker = {
                "id": str(uuid.uuid4()),
                "name": name,
                "slug": slug,
                "type": worker_type,
                "description": description,
                "repository_url": repository_url,
            }
            self._workers[worker["id"]] = worker
            return 201, dict(worker)

    def _op_PartialUpdateWorker(self, call: _Call) -> tuple[int, Any]:
        with self._lock:
            worker = self._get_worker(call.params["id"])
        v = _Validator(call.body)
        changes = {}
        for field, allow_blank in (("name", False), ("type", False), ("description", True)):
            value = v.string(field, required=False, allow_blank=allow_blank)
            if value is not None:
                changes[field] = value
        if v.errors:
            raise ApiError(400, v.errors)
        with self._lock:
            worker.update(changes)
            return 200, dict(worker)

    def _op_ImportWorkerVersion(self, call: _Call) -> tuple[int, Any]:
        with self._lock:
            worker = self._get_worker(call.params["id"])
        v = _Validator(call.body)
        fields = {
            "yaml": v.string("yaml"),
            "revision_url": v.string("revision_url"),
            "docker_image_iid": v.string("docker_image_iid"),
            "branch": v.string("branch", required=False, nullable=True),
            "tag": v.string("tag", required=False, nullable=True),
        }
        _check_yaml(v, fields["yaml"])
        if v.errors:
            raise ApiError(400, v.errors)
        with self._lock:
            for version in self._versions.values():
                if version["worker_id"] == worker["id"] and version["revision_url"] == fields["revision_url"]:
                    raise self._duplicate_version(version)
            self._check_tag_free(worker["id"], fields["tag"], None)
            version = {
                "id": str(uuid.uuid4()),
                "worker_id": worker["id"],
                **{key: fields[key] for key in ("revision_url", "docker_image_iid", "yaml", "branch", "tag")},
                "state": "available",
                "created": _now(),
            }
            self._versions[version["id"]] = version
            return 201, dict(version)

    def _duplicate_version(self, existing: dict[str, Any]) -> ApiError:
        """The answer to a second import of a revision, in the form ``modes.version_duplicate`` picks."""
        if self.modes.version_duplicate == "400":
            # Arkindex up to 1.11.1: a plain validation error, which names no version.
            detail = "A worker version with this revision URL already exists for this worker."
            return ApiError(400, _error_body("validation_error", detail, "unique"))
        detail = "A worker version already exists for this revision URL."
        return ApiError(409, {**_error_body("client_error", detail, "unique"), "existing_id": existing["id"]})

    def _check_tag_free(self, worker_id: str, tag: str | None, version_id: str | None) -> None:
        """With ``modes.unique_tags``, refuse a tag another version of the worker holds (caller holds the lock)."""
        if tag is None or not self.modes.unique_tags:
            return
        for version in self._versions.values():
            if version["worker_id"] == worker_id and version["tag"] == tag and version["id"] != version_id:
                detail = f"A worker version with the tag {tag} already exists for this worker."
                raise ApiError(
                    400,
                    {
                        "type": "validation_error",
                        "errors": [{"attr": ["tag"], "code": "unique", "detail": detail}],
                    },
                )

    def _op_ListWorkerVersions(self, call: _Call) -> tuple[int, Any]:
        with self._lock:
            worker = self._get_worker(call.params["id"])
            versions = [dict(v) for v in reversed(self._versions.values()) if v["worker_id"] == worker["id"]]
        return 200, _paginate(call, versions, self.modes.page_size)

    def _op_RetrieveWorkerVersion(self, call: _Call) -> tuple[int, Any]:
        with self._lock:
            return 200, dict(self._get_version(call.params["id"]))

    def _op_PartialUpdateWorkerVersion(self, call: _Call) -> tuple[int, Any]:
        with self._lock:
            version = self._get_version(call.params["id"])
        v = _Validator(call.body)
        changes = {}
        for field in ("tag", "branch"):
            if field in call.body:
                changes[field] = v.string(field, required=False, nullable=True)
        if v.errors:
            raise ApiError(400, v.errors)
        with self._lock:
            self._check_tag_free(version["worker_id"], changes.get("tag"), version["id"])
            version.update(changes)
            return 200, dict(version)

    # --- admin ----------------------------------------------------------------------------------

    def _admin(self, method: str, path: str, raw: bytes) -> tuple[int, Any]:
        path = path.strip("/")
        if path.startswith("tasks/") and method == "PATCH":
            handler, args = self._admin_patch_task, (path[len("tasks/") :], raw)
        else:
            name = self._ADMIN_ROUTES.get((method, path))
            if name is None:
                raise ApiError(404, NOT_FOUND)
            handler, args = getattr(self, name), (raw,)
        try:
            return handler(*args)
        except (ValueError, TypeError) as exc:
            raise ApiError(400, {"detail": str(exc)}) from None
        except KeyError as exc:
            raise ApiError(404, {"detail": f"Not found: {exc}"}) from None

    _ADMIN_ROUTES: dict[tuple[str, str], str] = {
        ("GET", "state"): "_admin_state",
        ("GET", "requests"): "_admin_requests",
        ("POST", "processes"): "_admin_create_process",
        ("POST", "tasks"): "_admin_create_task",
        ("POST", "tokens"): "_admin_create_token",
        ("PUT", "faults"): "_admin_put_faults",
        ("GET", "faults"): "_admin_get_faults",
        ("PUT", "modes"): "_admin_put_modes",
        ("GET", "modes"): "_admin_get_modes",
    }

    def _admin_state(self, raw: bytes) -> tuple[int, Any]:
        with self._lock:
            return 200, {
                "processes": [self._process_full(p) for p in self._processes.values()],
                "tasks": [self._task_public(t) for t in self._tasks.values()],
                "workers": copy.deepcopy(list(self._workers.values())),
                "versions": copy.deepcopy(list(self._versions.values())),
                "stats": dict(self.stats),
            }

    def _admin_requests(self, raw: bytes) -> tuple[int, Any]:
        with self._lock:
            return 200, copy.deepcopy(self.requests)

    def _admin_create_process(self, raw: bytes) -> tuple[int, Any]:
        body = self._parse_body(raw)
        allowed = {"name", "mode", "env", "corpus", "farm"}
        return 201, self.create_process(**{k: v for k, v in body.items() if k in allowed})

    def _admin_create_task(self, raw: bytes) -> tuple[int, Any]:
        body = self._parse_body(raw)
        if "process_id" not in body:
            raise ApiError(400, {"process_id": [REQUIRED]})
        allowed = {"slug", "parents", "image", "command", "env", "state", "run"}
        kwargs = {k: v for k, v in body.items() if k in allowed}
        return 201, self.create_task(body["process_id"], **kwargs)

    def _admin_patch_task(self, task_id: str, raw: bytes) -> tuple[int, Any]:
        body = self._parse_body(raw)
        self.set_task_state(task_id, body.get("state", ""))
        with self._lock:
            return 200, self._task_public(self._tasks[task_id])

    def _admin_create_token(self, raw: bytes) -> tuple[int, Any]:
        return 201, {"token": self.create_user_token()}

    def _admin_put_faults(self, raw: bytes) -> tuple[int, Any]:
        return 200, self._update_faults(self._parse_body(raw))

    def _admin_get_faults(self, raw: bytes) -> tuple[int, Any]:
        return 200, self.faults.to_json()

    def _admin_put_modes(self, raw: bytes) -> tuple[int, Any]:
        values = _parse_fields(Modes, self._parse_body(raw), "mode")
        dataclasses.replace(self.modes, **values)  # checks the values together before any is set
        for key, value in values.items():
            setattr(self.modes, key, value)
        return 200, self.modes.to_json()

    def _admin_get_modes(self, raw: bytes) -> tuple[int, Any]:
        return 200, self.modes.to_json()

    def _update_faults(self, body: dict[str, Any]) -> dict[str, Any]:
        if "duplicate_error" in body:
            raise ValueError(
                'duplicate_error is now the mode duplicate_slug: PUT /_emulator/modes {"duplicate_slug": ...}'
            )
        values = _parse_fields(Faults, body, "fault")
        operations = values.get("operations")
        if operations is not None and not operations <= OPERATION_IDS:
            raise ValueError(f"Unknown operations: {', '.join(sorted(operations - OPERATION_IDS))}")
        # Every field is checked before any is set: a rejected request changes nothing.
        for key, value in values.items():
            setattr(self.faults, key, value)
        return self.faults.to_json()
