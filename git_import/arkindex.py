"""The Arkindex API layer: every call goes through `arkindex-client`, by operationId.

Every fact about the API that this code depends on, confirmed or assumed, is listed in
docs/arkindex-api.md; the code that depends on an [assumed] one is here (and in the emulator's schema,
`git_import/local/emulator/schema.py`), so a real instance that differs needs a change here only:
- which token each operation uses (`credential_for`);
- the forms of a duplicate task slug (`is_duplicate_slug`), of a duplicate worker version on
  Arkindex up to 1.11.1 (`is_duplicate_version`) and of a tag held by another version (`tag_error`);
- `RetrieveProcess` lists the process' tasks with their `slug` and `run`, so a re-run finds what exists.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from arkindex import ArkindexClient
from arkindex.exceptions import ArkindexConflictError, ErrorResponse, SchemaError
from requests.adapters import HTTPAdapter

from git_import.errors import ConfigError, FatalError
from git_import.redact import scrub
from git_import.retry import RetryPolicy, retry_after_seconds
from git_import.settings import Settings
from git_import.transport import lean_session

logger = logging.getLogger(__name__)

RETRIEVE_PROCESS = "RetrieveProcess"
CREATE_TASK = "CreateTask"
CREATE_WORKER = "CreateWorker"
UPDATE_WORKER = "PartialUpdateWorker"
IMPORT_VERSION = "ImportWorkerVersion"
RETRIEVE_VERSION = "RetrieveWorkerVersion"
UPDATE_VERSION = "PartialUpdateWorkerVersion"
LIST_VERSIONS = "ListWorkerVersions"

# Ponos operations: the running task's own token (`Ponos` scheme) (docs/arkindex-api.md).
TASK_OPERATIONS = frozenset({RETRIEVE_PROCESS, CREATE_TASK})
# Worker registration: real instances may refuse a task token there (Arkindex backend #1451, #1531),
# so a user token set in the process environment (ARKINDEX_API_TOKEN) is preferred.
WORKER_OPERATIONS = frozenset(
    {CREATE_WORKER, UPDATE_WORKER, IMPORT_VERSION, RETRIEVE_VERSION, UPDATE_VERSION, LIST_VERSIONS}
)
WORKER_TOKEN_HINT = (
    "set ARKINDEX_API_TOKEN in the process environment to a user token whose account has the permission "
    "to create workers and worker versions"
)

_TRANSIENT_EXCEPTIONS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


def _transient(exc: BaseException) -> bool:
    """Worth another try: a 5xx or 429 answer, a dropped connection, a schema not fetched for either."""
    if isinstance(exc, ErrorResponse):
        return exc.status_code == 429 or exc.status_code >= 500
    if isinstance(exc, SchemaError):
        return isinstance(exc.__cause__, (*_TRANSIENT_EXCEPTIONS, requests.HTTPError))
    return isinstance(exc, _TRANSIENT_EXCEPTIONS)


class APIError(FatalError):
    """An API call failed for good; the message names the operation and the server's answer."""

    def __init__(
        self, message: str, *, status: int | None = None, content: Any = None, hint: str | None = None
    ):
        super().__init__(message, hint=hint)
        self.status = status
        self.content = content


class TransientAPIError(APIError):
    """One try failed in a way worth another (5xx, 429, a dropped connection): the fan-out schedules it."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class APIConfigError(APIError, ConfigError):
    exit_code = ConfigError.exit_code


@dataclass(frozen=True)
class Credential:
    """A token, the scheme it is sent with, and the setting it comes from (for messages: never the token)."""

    token: str = field(repr=False)
    scheme: str
    source: str

    def __str__(self) -> str:
        return f"{self.source} ({self.scheme})"


def credential_for(settings: Settings, operation: str) -> Credential:
    """The token an operation is called with (docs/arkindex-api.md, "Which token for which operation").

    Ponos operations use the task token; worker operations use ARKINDEX_API_TOKEN when it is set, since
    real instances may refuse a task token there. Either falls back on the other token. The scheme is
    `Ponos` for the task token and `Token` for a user token; ARKINDEX_API_AUTH_SCHEME overrides the
    scheme of ARKINDEX_API_TOKEN, or of the task token when it is the only one, as `arkindex-client`'s
    `options_from_env` does with its one token."""
    task, user = settings.arkindex_task_token, settings.arkindex_api_token
    override = settings.arkindex_api_auth_scheme
    prefer_user = operation not in TASK_OPERATIONS
    if user is not None and (prefer_user or task is None):
        return Credential(user.get_secret_value(), override or "Token", "ARKINDEX_API_TOKEN")
    if task is None:
        raise ConfigError(
            "neither ARKINDEX_TASK_TOKEN nor ARKINDEX_API_TOKEN is set",
            hint="Ponos sets ARKINDEX_TASK_TOKEN; by hand, set ARKINDEX_API_TOKEN",
        )
    scheme = (override if user is None else None) or "Ponos"
    return Credential(task.get_secret_value(), scheme, "ARKINDEX_TASK_TOKEN")


def _standard_errors(content: Any) -> list[dict[str, Any]]:
    """The `errors` of an answer in the standard Arkindex format, else []."""
    if isinstance(content, dict) and isinstance(content.get("errors"), list):
        return [error for error in content["errors"] if isinstance(error, dict)]
    return []


def _attr_names(error: dict[str, Any]) -> list[str]:
    attr = error.get("attr")
    return [str(a) for a in attr] if isinstance(attr, list) else [str(attr)] if attr else []


def is_duplicate_slug(exc: BaseException) -> bool:
    """Whether CreateTask was refused because the slug exists in the process run, in any form a server
    uses [assumed]: a 409; a 400 on the `slug` field (`{"slug": [...]}` or a standard error whose attr
    is `slug`); or an object-level `unique` error (standard format with attr null, or Django REST
    framework's `non_field_errors`), since slug uniqueness is CreateTask's only unique rule."""
    if not isinstance(exc, ErrorResponse):
        return False
    if exc.status_code == 409:
        return True
    if exc.status_code != 400 or not isinstance(exc.content, dict):
        return False
    content = exc.content
    if "slug" in content:
        return True
    if any(
        "unique" in str(message) or "slug" in str(message)
        for message in content.get("non_field_errors") or []
    ):
        return True
    for error in _standard_errors(content):
        names = _attr_names(error)
        if "slug" in names or (error.get("code") == "unique" and names in ([], ["non_field_errors"])):
            return True
    return False


def is_duplicate_version(exc: BaseException) -> bool:
    """Arkindex up to 1.11.1 answers a second ImportWorkerVersion for a revision URL with a 400 whose
    error has code `unique` and mentions "revision URL", with no `existing_id` [known: arkindex-cli 0.5.0]."""
    return (
        isinstance(exc, ErrorResponse)
        and exc.status_code == 400
        and any(
            error.get("code") == "unique" and "revision URL" in str(error.get("detail"))
            for error in _standard_errors(exc.content)
        )
    )


def is_tag_taken(exc: BaseException) -> bool:
    """A 400 refusing a tag that another version of the worker holds [known: tags are unique per worker,
    Arkindex backend #1775; the error's shape is assumed: on the `tag` field, standard or plain]."""
    if not isinstance(exc, ErrorResponse) or exc.status_code != 400 or not isinstance(exc.content, dict):
        return False
    if "tag" in exc.content and not _standard_errors(exc.content):
        return True
    return any("tag" in _attr_names(error) for error in _standard_errors(exc.content))


def describe(exc: BaseException) -> str:
    if isinstance(exc, ErrorResponse):
        return scrub(f"HTTP {exc.status_code}: {exc.content}")
    return scrub(f"{type(exc).__name__}: {exc}")


def _settle_environment(session: requests.Session, url: str) -> None:
    """Read proxies and CA bundle from the environment once, not on every request.

    `requests` scans the whole environment for proxy settings on each request, which costs more
    than the rest of a CreateTask call on the client side; the values cannot change during a run."""
    session.proxies.update(requests.utils.get_environ_proxies(url))
    if session.verify is True:
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            session.verify = bundle
    session.trust_env = False


class ArkindexAPI:
    """A client for the operations this tool uses, with bounded, jittered retries of transient failures.

    `arkindex-client` retries 5xx itself with 3 to 16 s waits; we call its `single_request` instead and retry
    5xx, 429 (honouring `Retry-After`) and dropped connections under the tool's retry policy
    (:mod:`git_import.retry`), so that delays are bounded and counted. Authentication and validation
    errors are never retried.
    """

    def __init__(self, settings: Settings, *, pool_size: int = 10) -> None:
        settings.require_api()
        self.settings = settings
        self.pool_size = pool_size
        self.attempts = max(1, settings.retry_attempts)
        self.base_delay = settings.retry_base_delay
        self.policy = RetryPolicy(self.attempts, self.base_delay)
        self._local = threading.local()
        # One client per token, made when an operation first needs it: a stage uses one kind of
        # operation, so each run loads the schema once.
        self._clients: dict[Credential, ArkindexClient] = {}
        self._clients_lock = threading.Lock()
        logger.info(
            "API tokens: %s and %s use %s; worker operations use %s",
            RETRIEVE_PROCESS,
            CREATE_TASK,
            credential_for(settings, RETRIEVE_PROCESS),
            credential_for(settings, CREATE_WORKER),
        )

    def client_for(self, operation: str) -> ArkindexClient:
        credential = credential_for(self.settings, operation)
        with self._clients_lock:
            client = self._clients.get(credential)
            if client is None:
                client = self._clients[credential] = self._new_client(credential)
        return client

    def _new_client(self, credential: Credential) -> ArkindexClient:
        settings = self.settings
        client = self._retry(
            "loading the API schema",
            lambda: ArkindexClient(
                token=credential.token,
                auth_scheme=credential.scheme,
                base_url=settings.arkindex_api_url,
                schema_url=settings.arkindex_api_schema_url,
            ),
        )
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(10, self.pool_size))
        client.session.mount("http://", adapter)
        client.session.mount("https://", adapter)
        client.session.hooks["response"].append(self._remember_response)
        _settle_environment(client.session, settings.arkindex_api_url or "")
        # The schema came through requests; the calls go through the lean transport (transport.py)
        # unless the environment routes the API through a proxy.
        client.session = lean_session(client.session, settings.arkindex_api_url or "") or client.session
        return client

    # --- retries ----------------------------------------------------------------------------
    @property
    def retries(self) -> int:
        """API calls tried again so far, every thread included."""
        return self.policy.retries

    def _remember_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._local.retry_after = response.headers.get("Retry-After")

    def _retry(self, what: str, call: Callable[[], Any]) -> Any:
        """`call()` under the retry policy; what failed for good is raised as the caller expects it."""

        def attempt() -> Any:
            self._local.retry_after = None  # the Retry-After of this try's answer, not an earlier one's
            return call()

        try:
            return self.policy.call(
                what,
                attempt,
                transient=_transient,
                describe=describe,
                retry_after=lambda exc: self._local.retry_after,
            )
        except _TRANSIENT_EXCEPTIONS as exc:
            raise APIError(
                f"{what}: the Arkindex API could not be reached after {self.attempts} tries ({describe(exc)})",
                hint="check ARKINDEX_API_URL and the network, then retry the task",
            ) from None
        except SchemaError as exc:
            cause = exc.__cause__
            raise APIError(
                f"could not load the OpenAPI schema of the Arkindex API ({scrub(exc)}: {describe(cause or exc)})",
                hint="check ARKINDEX_API_URL (and ARKINDEX_API_SCHEMA_URL if set)",
            ) from None

    def _call(self, operation: str, what: str, **params: Any) -> Any:
        """One operation with the token it takes, transient failures retried; errors raised as they come."""
        client = self.client_for(operation)
        return self._retry(what, lambda: client.single_request(operation, **params))

    def request(self, operation: str, what: str, **params: Any) -> Any:
        try:
            return self._call(operation, what, **params)
        except ErrorResponse as exc:
            raise self._error(operation, what, exc) from None

    def _error(self, operation: str, what: str, exc: ErrorResponse) -> APIError:
        if exc.status_code in (401, 403):
            credential = credential_for(self.settings, operation)
            if operation in TASK_OPERATIONS:
                hint = "check ARKINDEX_TASK_TOKEN (or ARKINDEX_API_TOKEN) and that it belongs to this process"
            elif credential.source == "ARKINDEX_TASK_TOKEN":
                hint = WORKER_TOKEN_HINT
            else:
                hint = "check ARKINDEX_API_TOKEN: its account needs the permission to create workers and worker versions"
            return APIConfigError(
                f"{what}: Arkindex refused {credential} for {operation} ({describe(exc)})",
                status=exc.status_code,
                content=exc.content,
                hint=hint,
            )
        if exc.status_code == 429 or exc.status_code >= 500:
            # Transient answers reach here only once every try was spent on them.
            return APIError(
                f"{what}: {operation} still failed after {self.attempts} tries ({describe(exc)})",
                status=exc.status_code,
                content=exc.content,
                hint="the Arkindex API is failing or overloaded: retry the task later, or raise RETRY_ATTEMPTS",
            )
        return APIError(
            f"{what}: {operation} failed ({describe(exc)})", status=exc.status_code, content=exc.content
        )

    # --- operations -------------------------------------------------------------------------
    def retrieve_process(self, process_id: uuid.UUID) -> dict[str, Any]:
        what = f"retrieving process {process_id}"
        try:
            return self._call(RETRIEVE_PROCESS, what, id=str(process_id))
        except ErrorResponse as exc:
            if exc.status_code == 404:
                raise APIConfigError(
                    f"process {process_id} was not found on Arkindex",
                    status=404,
                    hint="check PONOS_PROCESS and that the token can see that process",
                ) from None
            raise self._error(RETRIEVE_PROCESS, what, exc) from None

    def existing_tasks(self, process: dict[str, Any], task_id: Any = None) -> dict[str, str]:
        """Slug → task ID of the tasks in the run of `task_id` (the running task), else the latest run.

        [assumed] Slugs are unique within a process run, so only that run's tasks can collide."""
        tasks = process.get("tasks") or []
        runs = [task.get("run", 0) for task in tasks if str(task.get("id")) == str(task_id)]
        run = runs[0] if runs else max((task.get("run", 0) for task in tasks), default=0)
        return {task["slug"]: str(task["id"]) for task in tasks if task.get("run", 0) == run}

    def create_task(self, body: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
        """One try at creating a task: (task, True); or (None, False) when its slug already exists in the
        process run (`({"id": …}, False)` when the server names the existing task).

        No retry here: a transient failure raises :class:`TransientAPIError`, and the fan-out tries other
        revisions while this one waits for its next try."""
        what = f"creating task {body['slug']}"
        client = self.client_for(CREATE_TASK)
        self._local.retry_after = None
        try:
            return client.single_request(CREATE_TASK, body=body), True
        except ErrorResponse as exc:
            if is_duplicate_slug(exc):
                existing = exc.content.get("existing_id") if isinstance(exc.content, dict) else None
                return ({"id": existing} if existing else None), False
            if not _transient(exc):
                raise self._error(CREATE_TASK, what, exc) from None
            error: BaseException = exc
        except _TRANSIENT_EXCEPTIONS as exc:
            error = exc
        retry_after = retry_after_seconds(self._local.retry_after)
        raise TransientAPIError(f"{what}: {describe(error)}", retry_after=retry_after) from None

    def create_worker(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.request(CREATE_WORKER, f"creating or retrieving worker {body['slug']}", body=body)

    def update_worker(self, worker_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request(UPDATE_WORKER, f"updating worker {worker_id}", id=worker_id, body=body)

    def import_version(self, worker_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Import a worker version: (version, True); or the existing one for that revision URL and False.

        The existing version comes from the 409's `existing_id`, or, from Arkindex up to 1.11.1, whose
        400 names none, from the worker's versions (as arkindex-cli 0.5.0 `get_or_create_version`)."""
        what = f"importing a version of worker {worker_id}"
        try:
            return self._call(IMPORT_VERSION, what, id=worker_id, body=body), True
        except ArkindexConflictError as exc:
            existing = str(exc.content["existing_id"])
        except ErrorResponse as exc:
            if is_duplicate_version(exc):
                return self.find_version(worker_id, body["revision_url"]), False
            raise self._tag_error(exc, body.get("tag")) or self._error(IMPORT_VERSION, what, exc) from None
        return self.request(RETRIEVE_VERSION, f"retrieving worker version {existing}", id=existing), False

    def versions(self, worker_id: str) -> Iterator[dict[str, Any]]:
        """Every version of a worker, page after page (page-number or cursor pagination: the `next` URL's
        query says which)."""
        what = f"listing the versions of worker {worker_id}"
        params: dict[str, str] = {}
        while True:
            data = self.request(LIST_VERSIONS, what, id=worker_id, **params)
            yield from data.get("results") or []
            query = parse_qs(urlsplit(data.get("next") or "").query)
            params = {key: query[key][0] for key in ("page", "cursor") if key in query}
            if not params:
                return

    def find_version(self, worker_id: str, revision_url: str) -> dict[str, Any]:
        for version in self.versions(worker_id):
            if version.get("revision_url") == revision_url:
                return version
        raise APIError(
            f"worker {worker_id}: Arkindex says a version exists for {revision_url}, but no version of "
            "the worker has that revision URL",
            hint="retry the task; if it fails again, the worker's versions need a look on Arkindex",
        )

    def update_version(self, version_id: str, body: dict[str, Any]) -> dict[str, Any]:
        what = f"updating worker version {version_id}"
        try:
            return self._call(UPDATE_VERSION, what, id=version_id, body=body)
        except ErrorResponse as exc:
            raise self._tag_error(exc, body.get("tag")) or self._error(UPDATE_VERSION, what, exc) from None

    @staticmethod
    def _tag_error(exc: ErrorResponse, tag: str | None) -> APIError | None:
        if not tag or not is_tag_taken(exc):
            return None
        holder = exc.content.get("existing_id") if isinstance(exc.content, dict) else None
        return APIError(
            f"tag {tag!r} is already on another version of this worker"
            + (f" (version {holder})" if holder else "")
            + f": Arkindex keeps a tag on one version per worker ({describe(exc)})",
            status=exc.status_code,
            content=exc.content,
            hint="remove the tag from the other version on Arkindex, or move the Git tag back, then retry the task",
        )
