"""The OpenAPI 3 schema the emulator serves: our **[assumed]** reconstruction of the Arkindex API.

This module is the single place where the emulator's API facts live (see docs/arkindex-api.md).
What is known from Arkindex's own release notes and published packages:

- the operationIds (``RetrieveProcess``, ``CreateTask``, ``CreateWorker``, ``PartialUpdateWorker``,
  ``ImportWorkerVersion``, ``ListWorkerVersions``, ``RetrieveWorkerVersion``,
  ``PartialUpdateWorkerVersion``);
- that ``ListWorkerVersions`` is paginated by page number (``arkindex-cli`` 0.5.0 pages through it);
- that ``CreateTask`` takes ``process_id`` (formerly ``workflow_id``);
- that ``RetrieveProcess`` returns ``farm`` and ``tasks``;
- the worker registration bodies as ``arkindex-cli`` 0.5.0 sends them.

What is **assumed** (reconstructed, to be corrected here if a real instance differs):

- every URL path below (a real client takes paths from the instance's own schema, so paths matter only
  inside the emulator);
- the remaining ``CreateTask`` body fields, their limits and the response shapes.

Request bodies are declared *inline* (no ``$ref``) so that ``arkindex-client`` names the body field
``body``: callers write ``client.request("CreateTask", body={...})``.
"""

from __future__ import annotations

from typing import Any

API_PREFIX = "/api/v1/"
SCHEMA_PATH = "/api/v1/openapi/"

#: (operationId, HTTP method, path) of every operation the emulator implements.
OPERATIONS: tuple[tuple[str, str, str], ...] = (
    ("RetrieveProcess", "GET", "/api/v1/process/{id}/"),
    ("CreateTask", "POST", "/api/v1/task/"),
    ("CreateWorker", "POST", "/api/v1/workers/"),
    ("PartialUpdateWorker", "PATCH", "/api/v1/workers/{id}/"),
    ("ImportWorkerVersion", "POST", "/api/v1/workers/{id}/versions/import/"),
    ("ListWorkerVersions", "GET", "/api/v1/workers/{id}/versions/"),
    ("RetrieveWorkerVersion", "GET", "/api/v1/workers/versions/{id}/"),
    ("PartialUpdateWorkerVersion", "PATCH", "/api/v1/workers/versions/{id}/"),
)

MAX_SLUG_LENGTH = 250
MAX_IMAGE_LENGTH = 250

TASK_STATES = ("unscheduled", "pending", "running", "completed", "failed", "error", "stopping", "stopped")


def _uuid() -> dict[str, Any]:
    return {"type": "string", "format": "uuid"}


def _str(*, nullable: bool = False, max_length: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if max_length is not None:
        schema["maxLength"] = max_length
    if nullable:
        schema["nullable"] = True
    return schema


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _id_param(description: str) -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "description": description, "schema": _uuid()}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    # Inline schema on purpose: arkindex-client then names the body field "body".
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_schema() -> dict[str, Any]:
    """Build a fresh copy of the schema (callers and the client may mutate it)."""
    shapes = _shapes()
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Arkindex API (git-import emulator)",
            "version": "emulated",
            "description": "Assumed subset of the Arkindex REST API; see git_import/local/emulator/schema.py.",
        },
        "paths": {
            **_ponos_paths(shapes),
            **_worker_paths(shapes),
            **_version_list_path(shapes),
            **_version_paths(shapes),
        },
    }


def _shapes() -> dict[str, Any]:
    """The response shapes, by name: process, task, worker, version, and the error response."""
    return {
        "process": _process_shape(),
        "task": _obj(
            {
                "id": _uuid(),
                "process_id": _uuid(),
                "slug": _str(),
                "parents": {"type": "array", "items": _uuid()},
                "image": _str(),
                "command": _str(nullable=True),
                "env": _env(),
                "run": {"type": "integer"},
                "depth": {"type": "integer"},
                "state": _task_state(),
            }
        ),
        "worker": _obj(
            {
                "id": _uuid(),
                "name": _str(),
                "slug": _str(),
                "type": _str(),
                "description": _str(),
                "repository_url": _str(),
            }
        ),
        "version": _obj(
            {
                "id": _uuid(),
                "worker_id": _uuid(),
                "revision_url": _str(),
                "docker_image_iid": _str(),
                "yaml": _str(),
                "branch": _str(nullable=True),
                "tag": _str(nullable=True),
                "state": _str(),
                "created": {"type": "string", "format": "date-time"},
            }
        ),
        "errors": {
            "description": "Validation error",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    }


def _process_shape() -> dict[str, Any]:
    farm = _obj({"id": _uuid(), "name": _str()})
    farm["nullable"] = True
    process_task = _obj(
        {
            "id": _uuid(),
            "slug": _str(),
            "state": _task_state(),
            "run": {"type": "integer"},
            "depth": {"type": "integer"},
            "parents": {"type": "array", "items": _uuid()},
        }
    )
    return _obj(
        {
            "id": _uuid(),
            "name": _str(nullable=True),
            "mode": _str(),
            "state": _task_state(),
            "corpus": {"type": "string", "format": "uuid", "nullable": True},
            "farm": farm,
            "tasks": {"type": "array", "items": process_task},
            "created": {"type": "string", "format": "date-time"},
        }
    )


def _task_state() -> dict[str, Any]:
    return {"type": "string", "enum": list(TASK_STATES)}


def _env() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": {"type": "string"}}


def _ponos_paths(shapes: dict[str, Any]) -> dict[str, Any]:
    """RetrieveProcess and CreateTask."""
    create_task_body = _obj(
        {
            "process_id": _uuid(),
            "slug": _str(max_length=MAX_SLUG_LENGTH),
            "parents": {"type": "array", "items": _uuid(), "minItems": 1},
            "image": _str(max_length=MAX_IMAGE_LENGTH),
            "command": _str(nullable=True),
            "env": _env(),
            "has_docker_socket": {"type": "boolean", "default": False},
        },
        ["process_id", "slug", "parents", "image"],
    )
    return {
        "/api/v1/process/{id}/": {
            "get": {
                "operationId": "RetrieveProcess",
                "description": "Retrieve a process with its farm and tasks.",
                "tags": ["process"],
                "parameters": [_id_param("Process ID")],
                "responses": {"200": _response("The process", shapes["process"])},
            },
        },
        "/api/v1/task/": {
            "post": {
                "operationId": "CreateTask",
                "description": "Create a task in a process; only a Ponos task may call it.",
                "tags": ["ponos"],
                "requestBody": _body(create_task_body),
                "responses": {"201": _response("The created task", shapes["task"]), "400": shapes["errors"]},
            },
        },
    }


def _worker_paths(shapes: dict[str, Any]) -> dict[str, Any]:
    """CreateWorker and PartialUpdateWorker."""
    worker = shapes["worker"]
    create_fields = ["name", "type", "slug", "description", "repository_url"]
    return {
        "/api/v1/workers/": {
            "post": {
                "operationId": "CreateWorker",
                "description": "Create a worker, or retrieve the one with that slug and repository.",
                "tags": ["process"],
                "requestBody": _body(_obj({name: _str() for name in create_fields}, create_fields)),
                "responses": {
                    "200": _response("The existing worker", worker),
                    "201": _response("The created worker", worker),
                    "400": shapes["errors"],
                },
            },
        },
        "/api/v1/workers/{id}/": {
            "patch": {
                "operationId": "PartialUpdateWorker",
                "description": "Update a worker's name, type or description.",
                "tags": ["process"],
                "parameters": [_id_param("Worker ID")],
                "requestBody": _body(_obj({"name": _str(), "type": _str(), "description": _str()})),
                "responses": {"200": _response("The worker", worker), "400": shapes["errors"]},
            },
        },
    }


def _version_list_path(shapes: dict[str, Any]) -> dict[str, Any]:
    """ListWorkerVersions, paginated by page number as Django REST framework's PageNumberPagination."""
    link = {"type": "string", "format": "uri", "nullable": True}
    page = _obj(
        {
            "count": {"type": "integer"},
            "next": link,
            "previous": link,
            "results": {"type": "array", "items": shapes["version"]},
        },
        ["count", "results"],
    )
    page_param = {
        "name": "page",
        "in": "query",
        "required": False,
        "description": "A page number within the paginated result set.",
        "schema": {"type": "integer"},
    }
    return {
        "/api/v1/workers/{id}/versions/": {
            "get": {
                "operationId": "ListWorkerVersions",
                "description": "List a worker's versions, newest first.",
                "tags": ["process"],
                "x-paginated": True,
                "parameters": [_id_param("Worker ID"), page_param],
                "responses": {"200": _response("A page of the worker's versions", page)},
            },
        },
    }


def _version_paths(shapes: dict[str, Any]) -> dict[str, Any]:
    """ImportWorkerVersion, RetrieveWorkerVersion and PartialUpdateWorkerVersion."""
    version = shapes["version"]
    import_body = _obj(
        {
            "yaml": _str(),
            "revision_url": _str(),
            "docker_image_iid": _str(),
            "branch": _str(nullable=True),
            "tag": _str(nullable=True),
        },
        ["yaml", "revision_url", "docker_image_iid"],
    )
    return {
        "/api/v1/workers/{id}/versions/import/": {
            "post": {
                "operationId": "ImportWorkerVersion",
                "description": "Create a worker version from its YAML configuration.",
                "tags": ["process"],
                "parameters": [_id_param("Worker ID")],
                "requestBody": _body(import_body),
                "responses": {
                    "201": _response("The created version", version),
                    "400": shapes["errors"],
                    "409": {"description": "A version already exists for this revision URL"},
                },
            },
        },
        "/api/v1/workers/versions/{id}/": {
            "get": {
                "operationId": "RetrieveWorkerVersion",
                "description": "Retrieve a worker version.",
                "tags": ["process"],
                "parameters": [_id_param("Worker version ID")],
                "responses": {"200": _response("The version", version)},
            },
            "patch": {
                "operationId": "PartialUpdateWorkerVersion",
                "description": "Update a worker version's tag or branch.",
                "tags": ["process"],
                "parameters": [_id_param("Worker version ID")],
                "requestBody": _body(_obj({"tag": _str(nullable=True), "branch": _str(nullable=True)})),
                "responses": {"200": _response("The version", version), "400": shapes["errors"]},
            },
        },
    }
