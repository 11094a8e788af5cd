"""The Arkindex API layer: every call goes through `arkindex-client`, by operationId.

The facts of the API that are [assumed] in ../shared/CONTRACT.md and that this code depends on are kept
in this module (and in the emulator's schema, `git_import/local/emulator/schema.py`):
- the operationIds below and the bodies they take;
- a duplicate task slug in a process run is answered `400` with an error on the `slug` field;
- `RetrieveProcess` lists the process' tasks with their `slug`, so a re-run can find what exists.
A real instance that differs needs a change here only.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

import requests
from arkindex import ArkindexClient
from arkindex.exceptions import ArkindexConflictError, ErrorResponse, SchemaError
from requests.adapters import HTTPAdapter

from git_import.errors import ConfigError, FatalError
from git_import.redact import scrub
from git_import.retry import RetryPolicy
from git_import.settings import Settings

logger = logging.getLogger(__name__)

RETRIEVE_PROCESS = "RetrieveProcess"
CREATE_TASK = "CreateTask"
CREATE_WORKER = "CreateWorker"
UPDATE_WORKER = "PartialUpdateWorker"
IMPORT_VERSION = "ImportWorkerVersion"
RETRIEVE_VERSION = "RetrieveWorkerVersion"
UPDATE_VERSION = "PartialUpdateWorkerVersion"

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


class APIConfigError(APIError, ConfigError):
    exit_code = ConfigError.exit_code


def is_duplicate_slug(exc: BaseException) -> bool:
    """[assumed] A 400 on the `slug` field of CreateTask means the slug exists in the process run."""
    if not isinstance(exc, ErrorResponse) or exc.status_code != 400:
        return False
    content = exc.content
    if isinstance(content, dict):
        if "slug" in content:
            return True
        for error in content.get("errors") or []:
            attr = error.get("attr") if isinstance(error, dict) else None
            if attr == "slug" or (isinstance(attr, list) and "slug" in attr):
                return True
    return False


def describe(exc: BaseException) -> str:
    if isinstance(exc, ErrorResponse):
        return scrub(f"HTTP {exc.status_code}: {exc.content}")
    return scrub(f"{type(exc).__name__}: {exc}")


class ArkindexAPI:
    """A client for the operations this tool uses, with bounded, jittered retries of transient failures.

    `arkindex-client` retries 5xx itself with 3 to 16 s waits; we call its `single_request` instead and retry
    5xx, 429 (honouring `Retry-After`) and dropped connections under the tool's retry policy
    (:mod:`git_import.retry`), so that delays are bounded and counted. Authentication and validation
    errors are never retried.
    """

    def __init__(self, settings: Settings, *, pool_size: int = 10) -> None:
        settings.require_api()
        self.attempts = max(1, settings.retry_attempts)
        self.base_delay = settings.retry_base_delay
        self.policy = RetryPolicy(self.attempts, self.base_delay)
        self._local = threading.local()
        if settings.arkindex_task_token:
            token, scheme = settings.arkindex_task_token.get_secret_value(), "Ponos"
        else:
            assert settings.arkindex_api_token is not None
            token, scheme = settings.arkindex_api_token.get_secret_value(), "Token"
        self.client = self._retry(
            "loading the API schema",
            lambda: ArkindexClient(
                token=token,
                auth_scheme=scheme,
                base_url=settings.arkindex_api_url,
                schema_url=settings.arkindex_api_schema_url,
            ),
        )
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(10, pool_size))
        self.client.session.mount("http://", adapter)
        self.client.session.mount("https://", adapter)
        self.client.session.hooks["response"].append(self._remember_response)
        self._settle_environment(settings.arkindex_api_url or "")

    def _settle_environment(self, url: str) -> None:
        """Read proxies and CA bundle from the environment once, not on every request.

        `requests` scans the whole environment for proxy settings on each request, which costs more
        than the rest of a CreateTask call on the client side; the values cannot change during a run."""
        session = self.client.session
        session.proxies.update(requests.utils.get_environ_proxies(url))
        if session.verify is True:
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if bundle:
                session.verify = bundle
        session.trust_env = False

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

    def request(self, operation: str, what: str, **params: Any) -> Any:
        try:
            return self._retry(what, lambda: self.client.single_request(operation, **params))
        except ErrorResponse as exc:
            raise self._error(operation, what, exc) from None

    def _error(self, operation: str, what: str, exc: ErrorResponse) -> APIError:
        if exc.status_code in (401, 403):
            return APIConfigError(
                f"{what}: Arkindex refused the credentials ({operation}, {describe(exc)})",
                status=exc.status_code,
                content=exc.content,
                hint="check ARKINDEX_TASK_TOKEN (or ARKINDEX_API_TOKEN) and that it belongs to this process",
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
            return self._retry(what, lambda: self.client.single_request(RETRIEVE_PROCESS, id=str(process_id)))
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
        """Create a task: (task, True); or (None, False) when its slug already exists in the process run."""
        what = f"creating task {body['slug']}"
        try:
            return self._retry(what, lambda: self.client.single_request(CREATE_TASK, body=body)), True
        except ErrorResponse as exc:
            if is_duplicate_slug(exc):
                return None, False
            raise self._error(CREATE_TASK, what, exc) from None

    def create_worker(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.request(CREATE_WORKER, f"creating or retrieving worker {body['slug']}", body=body)

    def update_worker(self, worker_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request(UPDATE_WORKER, f"updating worker {worker_id}", id=worker_id, body=body)

    def import_version(self, worker_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Import a worker version: (version, True); or the existing one for that revision URL and False."""
        what = f"importing a version of worker {worker_id}"
        try:
            version = self._retry(
                what, lambda: self.client.single_request(IMPORT_VERSION, id=worker_id, body=body)
            )
            return version, True
        except ArkindexConflictError as exc:
            existing = str(exc.content["existing_id"])
        except ErrorResponse as exc:
            raise self._error(IMPORT_VERSION, what, exc) from None
        return self.request(RETRIEVE_VERSION, f"retrieving worker version {existing}", id=existing), False

    def update_version(self, version_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request(UPDATE_VERSION, f"updating worker version {version_id}", id=version_id, body=body)
