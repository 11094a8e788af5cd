"""The embedded Arkindex emulator, exercised through the real arkindex-client over HTTP."""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from arkindex import ArkindexClient
from arkindex.exceptions import (
    ArkindexConflictError,
    ArkindexServerError,
    ArkindexValidationError,
    ErrorResponse,
)

from git_import.local.emulator import Emulator, Faults, Modes
from git_import.local.emulator.__main__ import build_parser, modes_from_args, usage_text
from git_import.local.emulator.schema import OPERATIONS, openapi_schema

PROCESS_ENV = {"REPOSITORY_URL": "https://git.example.com/group/repo", "GIT_TOKEN": "s3cret"}


@pytest.fixture
def emu():
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def process(emu):
    return emu.create_process(env=PROCESS_ENV)


@pytest.fixture
def import_task(emu, process):
    return emu.create_task(process["id"], slug="import")


def ponos_client(emu: Emulator, task: dict) -> ArkindexClient:
    return ArkindexClient(token=task["token"], auth_scheme="Ponos", base_url=emu.url)


@pytest.fixture
def client(emu, import_task):
    return ponos_client(emu, import_task)


def task_body(process: dict, parent: dict, slug: str = "worker-build", **extra) -> dict:
    return {
        "process_id": process["id"],
        "slug": slug,
        "parents": [parent["id"]],
        "image": "docker:24",
        **extra,
    }


def error_of(excinfo: pytest.ExceptionInfo) -> tuple[int, object]:
    exc = excinfo.value
    assert isinstance(exc, ErrorResponse)
    return exc.status_code, exc.content


# --- schema -----------------------------------------------------------------------------------


def test_schema_loads_in_client(emu):
    client = ArkindexClient(base_url=emu.url)
    assert set(client.document.links) == {op for op, _, _ in OPERATIONS}
    for operation, method, path in OPERATIONS:
        link = client.document.links[operation]
        assert (link.method, link.url) == (method, path)
        body_fields = [f.name for f in link.fields if f.location == "body"]
        assert body_fields == (["body"] if method in ("POST", "PATCH") else [])


def test_schema_served_with_any_query_string(emu):
    response = requests.get(emu.url + "api/v1/openapi/?format=json&x=1", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == openapi_schema()


def test_schema_not_subject_to_faults(emu):
    emu.faults.error_rate = 1.0
    emu.faults.drop_rate = 1.0
    ArkindexClient(base_url=emu.url)  # loads fine
    assert emu.stats["errors_injected"] == emu.stats["drops_injected"] == 0


def test_emulator_functions_stay_short():
    """Each step of the emulator reads on one screen: no function over 60 lines."""
    package = Path(__file__).resolve().parents[1] / "git_import" / "local" / "emulator"
    long = [
        f"{source.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for source in sorted(package.glob("*.py"))
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60
    ]
    assert long == []


def test_url_requires_start():
    emulator = Emulator()
    with pytest.raises(RuntimeError):
        _ = emulator.url


# --- RetrieveProcess --------------------------------------------------------------------------


def test_retrieve_process(emu, process, import_task, client):
    data = client.request("RetrieveProcess", id=process["id"])
    assert data["id"] == process["id"]
    assert data["mode"] == "repository"
    assert data["state"] == "running"
    assert set(data["farm"]) == {"id", "name"}
    assert data["tasks"] == [
        {"id": import_task["id"], "slug": "import", "state": "running", "run": 0, "depth": 0, "parents": []}
    ]
    assert "env" not in data
    assert "s3cret" not in json.dumps(data)


def test_retrieve_process_state_follows_tasks(emu, process, import_task, client):
    emu.set_task_state(import_task["id"], "completed")
    assert client.request("RetrieveProcess", id=process["id"])["state"] == "completed"
    no_farm = emu.create_process(farm=False)
    data = client.request("RetrieveProcess", id=no_farm["id"])
    assert data["farm"] is None
    assert data["state"] == "unscheduled"
    assert data["tasks"] == []


@pytest.mark.parametrize("process_id", ["4f0b5a7e-0000-4000-8000-000000000000", "not-a-uuid"])
def test_retrieve_process_not_found(client, process_id):
    with pytest.raises(ErrorResponse) as excinfo:
        client.single_request("RetrieveProcess", id=process_id)
    assert error_of(excinfo) == (404, {"detail": "Not found."})


# --- authentication ---------------------------------------------------------------------------


def test_no_auth_is_401(emu, process):
    anonymous = ArkindexClient(base_url=emu.url)
    with pytest.raises(ErrorResponse) as excinfo:
        anonymous.single_request("RetrieveProcess", id=process["id"])
    assert error_of(excinfo) == (401, {"detail": "Authentication credentials were not provided."})


def test_unknown_token_is_401(emu, process):
    stranger = ArkindexClient(token="0" * 40, auth_scheme="Ponos", base_url=emu.url)
    with pytest.raises(ErrorResponse) as excinfo:
        stranger.single_request("RetrieveProcess", id=process["id"])
    assert error_of(excinfo) == (401, {"detail": "Invalid token."})


def test_user_token_works_but_not_for_create_task(emu, process, import_task):
    user = ArkindexClient(token=emu.create_user_token(), auth_scheme="Token", base_url=emu.url)
    assert user.request("RetrieveProcess", id=process["id"])["id"] == process["id"]
    with pytest.raises(ErrorResponse) as excinfo:
        user.single_request("CreateTask", body=task_body(process, import_task))
    status, content = error_of(excinfo)
    assert status == 403
    assert set(content) == {"detail"}
    assert emu.requests[-1]["auth_scheme"] == "Token"
    assert emu.requests[-1]["task_id"] is None


def test_task_token_under_the_wrong_scheme_is_401(emu, process, import_task):
    confused = ArkindexClient(token=import_task["token"], auth_scheme="Token", base_url=emu.url)
    with pytest.raises(ErrorResponse) as excinfo:
        confused.single_request("RetrieveProcess", id=process["id"])
    assert error_of(excinfo)[0] == 401


# --- CreateTask -------------------------------------------------------------------------------


def test_create_task_happy_path(emu, process, import_task, client):
    created = client.request(
        "CreateTask", body=task_body(process, import_task, env={"WORKER": "a", "REPOSITORY_URL": "override"})
    )
    assert set(created) == {
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
    }
    assert created["process_id"] == process["id"]
    assert created["parents"] == [import_task["id"]]
    assert (created["depth"], created["run"], created["state"]) == (1, 0, "unscheduled")
    assert created["command"] is None
    assert created["env"] == {**PROCESS_ENV, "WORKER": "a", "REPOSITORY_URL": "override"}
    assert "ARKINDEX_TASK_TOKEN" not in created["env"]

    stored = emu.task_by_slug(process["id"], "worker-build")
    assert stored["id"] == created["id"]
    token = stored["env"]["ARKINDEX_TASK_TOKEN"]
    assert token == stored["token"]
    assert token != import_task["token"]

    # The child's token authenticates as the child task.
    child = ArkindexClient(token=token, auth_scheme="Ponos", base_url=emu.url)
    grandchild = child.request(
        "CreateTask", body=task_body(process, stored, slug="grandchild", command="run")
    )
    assert grandchild["depth"] == 2
    assert grandchild["command"] == "run"
    assert emu.requests[-1]["task_id"] == created["id"]
    assert emu.requests[-1]["operation"] == "CreateTask"
    assert [t["slug"] for t in emu.tasks(process["id"])] == ["import", "worker-build", "grandchild"]
    assert token not in json.dumps(emu.requests)


def test_create_task_copies_run_from_parents(emu, process):
    retried = emu.create_task(process["id"], slug="import", run=1)
    client = ponos_client(emu, retried)
    created = client.request("CreateTask", body=task_body(process, retried, slug="child"))
    assert (created["run"], created["depth"]) == (1, 1)


def test_create_task_unknown_fields_ignored(emu, process, import_task, client):
    created = client.request("CreateTask", body=task_body(process, import_task, workflow_id="x", priority=3))
    assert created["slug"] == "worker-build"


def test_create_task_old_caller_gets_process_id_required(process, import_task, client):
    body = {"workflow_id": process["id"], "slug": "x", "parents": [import_task["id"]], "image": "img"}
    with pytest.raises(ErrorResponse) as excinfo:
        client.single_request("CreateTask", body=body)
    assert error_of(excinfo) == (400, {"process_id": ["This field is required."]})


def test_create_task_validation_errors(process, import_task, client):
    with pytest.raises(ErrorResponse) as excinfo:
        client.single_request("CreateTask", body={"process_id": process["id"]})
    status, content = error_of(excinfo)
    assert status == 400
    assert content == {
        "slug": ["This field is required."],
        "image": ["This field is required."],
        "parents": ["This field is required."],
    }

    bad = task_body(process, import_task, slug="s" * 251, env={"A": 1}, has_docker_socket="maybe")
    bad["parents"] = []
    with pytest.raises(ErrorResponse) as excinfo:
        client.single_request("CreateTask", body=bad)
    status, content = error_of(excinfo)
    assert status == 400
    assert set(content) == {"slug", "parents", "env", "has_docker_socket"}


def test_create_task_unknown_process_and_parent(process, import_task, client):
    missing = "4f0b5a7e-0000-4000-8000-000000000000"
    with pytest.raises(ErrorResponse) as excinfo:
        client.single_request("CreateTask", body={**task_body(process, import_task), "process_id": missing})
    status, content = error_of(excinfo)
    assert status == 400
    assert list(content) == ["process_id"]
    with pytest.raises(ErrorResponse) as excinfo:
        client.single_request("CreateTask", body={**task_body(process, import_task), "parents": [missing]})
    status, content = error_of(excinfo)
    assert status == 400
    assert missing in content["parents"][0]


def duplicate_slug_answer(mode: str, slug: str, existing_id: str) -> tuple[int, dict]:
    """What CreateTask answers for a slug already in run 0, in each duplicate_slug mode."""
    detail = f"A task with the slug {slug} already exists in run 0."
    return {
        "field": (400, {"slug": [f"A task with the slug '{slug}' already exists in this process run."]}),
        "non_field": (
            400,
            {"non_field_errors": ["The fields process_id, run, slug must make a unique set."]},
        ),
        "object": (
            400,
            {"type": "validation_error", "errors": [{"attr": None, "code": "unique", "detail": detail}]},
        ),
        "conflict": (
            409,
            {
                "type": "client_error",
                "errors": [{"attr": None, "code": "unique", "detail": detail}],
                "existing_id": existing_id,
            },
        ),
    }[mode]


DUPLICATE_SLUG_ERRORS = {
    "field": ErrorResponse,
    "non_field": ErrorResponse,
    "object": ArkindexValidationError,
    "conflict": ArkindexConflictError,
}


def test_create_task_duplicate_slug_default_is_field_error(emu, process, import_task, client):
    assert emu.modes == Modes()
    existing = client.request("CreateTask", body=task_body(process, import_task, slug="dup"))
    with pytest.raises(ErrorResponse) as excinfo:
        client.single_request("CreateTask", body=task_body(process, import_task, slug="dup"))
    assert error_of(excinfo) == duplicate_slug_answer("field", "dup", existing["id"])
    assert len(emu.tasks(process["id"])) == 2


@pytest.mark.parametrize("mode", sorted(DUPLICATE_SLUG_ERRORS))
def test_create_task_duplicate_slug(emu, process, import_task, client, mode):
    emu.modes.duplicate_slug = mode
    existing = client.request("CreateTask", body=task_body(process, import_task, slug="dup"))
    with pytest.raises(DUPLICATE_SLUG_ERRORS[mode]) as excinfo:
        client.single_request("CreateTask", body=task_body(process, import_task, slug="dup"))
    assert error_of(excinfo) == duplicate_slug_answer(mode, "dup", existing["id"])
    assert len(emu.tasks(process["id"])) == 2


def test_create_task_parent_from_another_process(emu, process, import_task, client):
    other = emu.create_process()
    foreign = emu.create_task(other["id"], slug="import")
    with pytest.raises(ErrorResponse) as excinfo:
        client.single_request("CreateTask", body=task_body(process, foreign))
    status, content = error_of(excinfo)
    assert status == 400
    assert list(content) == ["parents"]


def test_create_task_in_another_process_is_403(emu, import_task, client):
    other = emu.create_process()
    foreign = emu.create_task(other["id"], slug="import")
    with pytest.raises(ErrorResponse) as excinfo:
        client.single_request("CreateTask", body=task_body(other, foreign))
    assert error_of(excinfo)[0] == 403
    assert len(emu.tasks(other["id"])) == 1


def test_create_task_parents_from_several_runs(emu, process, import_task, client):
    retried = emu.create_task(process["id"], slug="import", run=1)
    body = task_body(process, import_task)
    body["parents"].append(retried["id"])
    with pytest.raises(ErrorResponse) as excinfo:
        client.single_request("CreateTask", body=body)
    status, content = error_of(excinfo)
    assert status == 400
    assert list(content) == ["parents"]


def test_create_task_slug_unique_under_concurrency(emu, process, import_task):
    clients = [ponos_client(emu, import_task) for _ in range(8)]
    outcomes: list[int] = []
    barrier = threading.Barrier(len(clients))

    def attempt(client: ArkindexClient) -> None:
        barrier.wait()
        try:
            client.single_request("CreateTask", body=task_body(process, import_task, slug="same"))
            outcomes.append(201)
        except ErrorResponse as exc:
            outcomes.append(exc.status_code)

    threads = [threading.Thread(target=attempt, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [201] + [400] * 7
    assert len([t for t in emu.tasks(process["id"]) if t["slug"] == "same"]) == 1


# --- workers and versions ---------------------------------------------------------------------

WORKER = {
    "name": "Recognizer",
    "type": "recognizer",
    "slug": "recognizer",
    "description": "",
    "repository_url": "https://git.example.com/group/repo",
}


def version_body(revision: str = "a", **extra) -> dict:
    return {
        "yaml": "slug: recognizer\ntype: recognizer\n",
        "revision_url": "https://git.example.com/group/repo/commit/" + (revision * 40)[:40],
        "docker_image_iid": "sha256:1234",
        **extra,
    }


def user_client(emu: Emulator) -> ArkindexClient:
    return ArkindexClient(token=emu.create_user_token(), auth_scheme="Token", base_url=emu.url)


def test_worker_operations_refuse_task_token_in_that_mode(emu, process, client):
    # By default a task token may call them.
    worker = client.request("CreateWorker", body=WORKER)
    version = client.request("ImportWorkerVersion", id=worker["id"], body=version_body("a"))

    emu.modes.task_token_on_workers = False
    calls = [
        ("CreateWorker", {"body": WORKER}),
        ("PartialUpdateWorker", {"id": worker["id"], "body": {"name": "New"}}),
        ("ImportWorkerVersion", {"id": worker["id"], "body": version_body("b")}),
        ("RetrieveWorkerVersion", {"id": version["id"]}),
        ("PartialUpdateWorkerVersion", {"id": version["id"], "body": {"tag": "v1"}}),
        ("ListWorkerVersions", {"id": worker["id"]}),
        # Permissions come before lookups: an unknown worker is refused too, not a 404.
        ("PartialUpdateWorker", {"id": "4f0b5a7e-0000-4000-8000-000000000000", "body": {"name": "x"}}),
    ]
    recorded = len(emu.requests)
    for operation, kwargs in calls:
        with pytest.raises(ErrorResponse) as excinfo:
            client.single_request(operation, **kwargs)
        assert error_of(excinfo) == (403, {"detail": "You do not have permission to perform this action."})
    assert (len(emu.requests), len(emu.versions())) == (recorded, 1)

    user = user_client(emu)
    for operation, kwargs in calls[:-1]:
        user.request(operation, **kwargs)
    assert [r["auth_scheme"] for r in emu.requests[recorded:]] == ["Token"] * 6
    assert len(emu.versions()) == 2
    # Ponos operations still take the task token.
    assert client.request("RetrieveProcess", id=process["id"])["id"] == process["id"]


def test_create_worker_and_update(emu, client):
    worker = client.request("CreateWorker", body=WORKER)
    assert {k: worker[k] for k in WORKER} == WORKER
    assert emu.requests[-1]["status"] == 201
    again = client.request("CreateWorker", body={**WORKER, "name": "Other"})
    assert again == worker
    assert emu.requests[-1]["status"] == 200

    with pytest.raises(ErrorResponse) as excinfo:
        client.single_request("CreateWorker", body={**WORKER, "repository_url": "https://elsewhere/repo"})
    status, content = error_of(excinfo)
    assert status == 400
    assert list(content) == ["slug"]

    updated = client.request("PartialUpdateWorker", id=worker["id"], body={"name": "New", "description": "d"})
    assert (updated["name"], updated["description"], updated["type"]) == ("New", "d", "recognizer")
    assert emu.workers() == [updated]


def test_create_worker_requires_fields(client):
    with pytest.raises(ErrorResponse) as excinfo:
        client.single_request("CreateWorker", body={"name": "x"})
    status, content = error_of(excinfo)
    assert status == 400
    assert set(content) == {"type", "slug", "description", "repository_url"}


def test_unknown_worker_and_version_404(client):
    missing = "4f0b5a7e-0000-4000-8000-000000000000"
    for operation, body in (
        ("PartialUpdateWorker", {"name": "x"}),
        ("ImportWorkerVersion", {"yaml": "a: 1", "revision_url": "u", "docker_image_iid": "i"}),
        ("PartialUpdateWorkerVersion", {"tag": "x"}),
    ):
        with pytest.raises(ErrorResponse) as excinfo:
            client.single_request(operation, id=missing, body=body)
        assert error_of(excinfo)[0] == 404
    with pytest.raises(ErrorResponse) as excinfo:
        client.single_request("RetrieveWorkerVersion", id=missing)
    assert error_of(excinfo)[0] == 404


def test_worker_versions(emu, client):
    worker = client.request("CreateWorker", body=WORKER)
    body = {
        "yaml": "slug: recognizer\ntype: recognizer\n",
        "revision_url": "https://git.example.com/group/repo/commit/" + "a" * 40,
        "docker_image_iid": "sha256:1234",
        "branch": "main",
    }
    version = client.request("ImportWorkerVersion", id=worker["id"], body=body)
    assert version["worker_id"] == worker["id"]
    assert (version["branch"], version["tag"], version["state"]) == ("main", None, "available")

    with pytest.raises(ArkindexConflictError) as excinfo:
        client.request("ImportWorkerVersion", id=worker["id"], body=body)
    assert excinfo.value.status_code == 409
    assert excinfo.value.content["existing_id"] == version["id"]

    assert client.request("RetrieveWorkerVersion", id=version["id"]) == version
    tagged = client.request("PartialUpdateWorkerVersion", id=version["id"], body={"tag": "v1.0"})
    assert (tagged["tag"], tagged["branch"]) == ("v1.0", "main")
    assert emu.versions() == [tagged]


DUPLICATE_VERSION = {
    "409": (
        409,
        ArkindexConflictError,
        {
            "type": "client_error",
            "errors": [
                {
                    "attr": None,
                    "code": "unique",
                    "detail": "A worker version already exists for this revision URL.",
                }
            ],
        },
    ),
    "400": (
        400,
        ArkindexValidationError,
        {
            "type": "validation_error",
            "errors": [
                {
                    "attr": None,
                    "code": "unique",
                    "detail": "A worker version with this revision URL already exists for this worker.",
                }
            ],
        },
    ),
}


@pytest.mark.parametrize("mode", [None, "409", "400"])
def test_duplicate_version_answer(emu, client, mode):
    if mode is None:
        mode = "409"  # the default
    else:
        emu.modes.version_duplicate = mode
    worker = client.request("CreateWorker", body=WORKER)
    version = client.request("ImportWorkerVersion", id=worker["id"], body=version_body("a"))
    status, error_class, content = DUPLICATE_VERSION[mode]
    with pytest.raises(error_class) as excinfo:
        client.single_request("ImportWorkerVersion", id=worker["id"], body=version_body("a", tag="v2"))
    if mode == "409":
        content = {**content, "existing_id": version["id"]}
    assert error_of(excinfo) == (status, content)
    # What arkindex-cli 0.5.0 recognises, in either form; it then pages ListWorkerVersions for the 400.
    error = excinfo.value.content["errors"][0]
    assert error["code"] == "unique" and "revision URL" in error["detail"]
    assert emu.versions() == [version]
    # Another worker may import the same revision.
    other = client.request("CreateWorker", body={**WORKER, "slug": "other"})
    assert (
        client.request("ImportWorkerVersion", id=other["id"], body=version_body("a"))["worker_id"]
        == other["id"]
    )


@pytest.mark.parametrize("unique", [False, True])
def test_tags_unique_per_worker_in_that_mode(emu, client, unique):
    assert Modes().unique_tags is False
    emu.modes.unique_tags = unique
    worker = client.request("CreateWorker", body=WORKER)
    other = client.request("CreateWorker", body={**WORKER, "slug": "other"})
    first = client.request("ImportWorkerVersion", id=worker["id"], body=version_body("a", tag="v1"))
    second = client.request("ImportWorkerVersion", id=worker["id"], body=version_body("b"))
    # Always fine: the same tag on another worker, the tag again on its own version, no tag at all.
    client.request("ImportWorkerVersion", id=other["id"], body=version_body("a", tag="v1"))
    assert client.request("PartialUpdateWorkerVersion", id=first["id"], body={"tag": "v1"})["tag"] == "v1"
    client.request("ImportWorkerVersion", id=worker["id"], body=version_body("c", tag=None))

    taken = (
        400,
        {
            "type": "validation_error",
            "errors": [
                {
                    "attr": ["tag"],
                    "code": "unique",
                    "detail": "A worker version with the tag v1 already exists for this worker.",
                }
            ],
        },
    )
    attempts = [
        ("ImportWorkerVersion", {"id": worker["id"], "body": version_body("d", tag="v1")}),
        ("PartialUpdateWorkerVersion", {"id": second["id"], "body": {"tag": "v1", "branch": "main"}}),
    ]
    for operation, kwargs in attempts:
        if unique:
            with pytest.raises(ArkindexValidationError) as excinfo:
                client.single_request(operation, **kwargs)
            assert error_of(excinfo) == taken
        else:
            assert client.single_request(operation, **kwargs)["tag"] == "v1"
    tags = [v["tag"] for v in emu.versions() if v["worker_id"] == worker["id"]]
    assert tags == (["v1", None, None] if unique else ["v1", "v1", None, "v1"])


def test_list_worker_versions_pages(emu, client):
    emu.modes.page_size = 2
    worker = client.request("CreateWorker", body=WORKER)
    other = client.request("CreateWorker", body={**WORKER, "slug": "other"})
    client.request("ImportWorkerVersion", id=other["id"], body=version_body("f"))
    created = [client.request("ImportWorkerVersion", id=worker["id"], body=version_body(c)) for c in "abcde"]
    newest_first = created[::-1]

    before = len(emu.requests)
    assert list(client.paginate("ListWorkerVersions", id=worker["id"])) == newest_first
    assert [r["operation"] for r in emu.requests[before:]] == ["ListWorkerVersions"] * 3
    assert list(client.paginate("ListWorkerVersions", id=worker["id"], page=2)) == newest_first[2:]

    # Django REST framework's links: absolute, and page 1 is the URL without a page number.
    url = f"{emu.url}api/v1/workers/{worker['id']}/versions/"
    pages = [client.single_request("ListWorkerVersions", id=worker["id"], page=n) for n in (1, 2, 3)]
    assert pages == [
        {"count": 5, "next": url + "?page=2", "previous": None, "results": newest_first[0:2]},
        {"count": 5, "next": url + "?page=3", "previous": url, "results": newest_first[2:4]},
        {"count": 5, "next": None, "previous": url + "?page=2", "results": newest_first[4:]},
    ]
    assert client.single_request("ListWorkerVersions", id=worker["id"]) == pages[0]
    assert client.single_request("ListWorkerVersions", id=worker["id"], page="last") == pages[2]
    assert pages[0]["results"][0] == client.request("RetrieveWorkerVersion", id=created[-1]["id"])

    for page in (0, 4, "two"):
        with pytest.raises(ErrorResponse) as excinfo:
            client.single_request("ListWorkerVersions", id=worker["id"], page=page)
        assert error_of(excinfo) == (404, {"detail": "Invalid page."})
    with pytest.raises(ErrorResponse) as excinfo:
        client.single_request("ListWorkerVersions", id="4f0b5a7e-0000-4000-8000-000000000000")
    assert error_of(excinfo) == (404, {"detail": "Not found."})


def test_list_worker_versions_default_page_size(emu, client):
    assert Modes().page_size == 20
    worker = client.request("CreateWorker", body=WORKER)
    empty = client.single_request("ListWorkerVersions", id=worker["id"])
    assert empty == {"count": 0, "next": None, "previous": None, "results": []}
    assert list(client.paginate("ListWorkerVersions", id=worker["id"])) == []
    for n in range(21):
        client.request("ImportWorkerVersion", id=worker["id"], body=version_body(f"{n:040x}"))
    first = client.single_request("ListWorkerVersions", id=worker["id"])
    assert (first["count"], len(first["results"]), first["next"]) == (
        21,
        20,
        f"{emu.url}api/v1/workers/{worker['id']}/versions/?page=2",
    )
    assert len(list(client.paginate("ListWorkerVersions", id=worker["id"]))) == 21


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"revision_url": "u", "docker_image_iid": "i"}, "yaml"),
        ({"yaml": "- a list\n", "revision_url": "u", "docker_image_iid": "i"}, "yaml"),
        ({"yaml": "a: [unclosed", "revision_url": "u", "docker_image_iid": "i"}, "yaml"),
        ({"yaml": "a: 1", "docker_image_iid": "i"}, "revision_url"),
        ({"yaml": "a: 1", "revision_url": "u"}, "docker_image_iid"),
    ],
)
def test_import_worker_version_validation(client, body, field):
    worker = client.request("CreateWorker", body=WORKER)
    with pytest.raises(ErrorResponse) as excinfo:
        client.single_request("ImportWorkerVersion", id=worker["id"], body=body)
    status, content = error_of(excinfo)
    assert status == 400
    assert list(content) == [field]


# --- faults -----------------------------------------------------------------------------------


def test_fail_next_server_error(emu, process, client):
    emu.fail_next("RetrieveProcess", count=2, status=502)
    for _ in range(2):
        with pytest.raises(ArkindexServerError) as excinfo:
            client.single_request("RetrieveProcess", id=process["id"])
        assert excinfo.value.status_code == 502
    assert client.single_request("RetrieveProcess", id=process["id"])["id"] == process["id"]
    assert emu.stats["errors_injected"] == 2
    assert [r["operation"] for r in emu.requests] == ["RetrieveProcess"]


def test_fail_next_rate_limit_with_retry_after(emu, process, import_task, client):
    emu.fail_next("CreateTask", status=429, retry_after=7)
    response = requests.post(
        emu.url + "api/v1/task/",
        json=task_body(process, import_task),
        headers={"Authorization": f"Ponos {import_task['token']}"},
        timeout=5,
    )
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert emu.stats["rate_limited"] == 1
    assert client.request("CreateTask", body=task_body(process, import_task))["slug"] == "worker-build"


def test_fail_next_unknown_operation(emu):
    with pytest.raises(ValueError, match="RetrieveWorkflow"):
        emu.fail_next("RetrieveWorkflow")


def test_error_rate_respects_operations(emu, process, import_task, client):
    emu.faults.error_rate = 1.0
    emu.faults.error_statuses = (503,)
    emu.faults.operations = frozenset({"CreateTask"})
    assert client.single_request("RetrieveProcess", id=process["id"])["id"] == process["id"]
    with pytest.raises(ArkindexServerError) as excinfo:
        client.single_request("CreateTask", body=task_body(process, import_task))
    assert excinfo.value.status_code == 503
    assert excinfo.value.content["type"] == "server_error"
    assert len(emu.tasks()) == 1


def test_seeded_errors_are_reproducible(process, import_task):
    def pattern(seed: int) -> list[int]:
        with Emulator(faults=Faults(error_rate=0.5, seed=seed)) as emulator:
            p = emulator.create_process()
            task = emulator.create_task(p["id"])
            client = ponos_client(emulator, task)
            outcomes = []
            for _ in range(20):
                try:
                    client.single_request("RetrieveProcess", id=p["id"])
                    outcomes.append(200)
                except ErrorResponse as exc:
                    outcomes.append(exc.status_code)
            return outcomes

    first = pattern(42)
    assert first == pattern(42)
    assert 200 in first
    assert any(status >= 500 for status in first)


def test_drop_before_processing(emu, process, import_task, client):
    emu.faults.drop_rate = 1.0
    with pytest.raises(requests.exceptions.ConnectionError):
        client.single_request("CreateTask", body=task_body(process, import_task))
    assert len(emu.tasks()) == 1
    assert emu.stats["drops_injected"] == 1
    emu.faults.drop_rate = 0.0
    assert client.single_request("RetrieveProcess", id=process["id"])["id"] == process["id"]


def test_drop_after_commit(emu, process, import_task, client):
    emu.faults.drop_after_rate = 1.0
    assert client.single_request("RetrieveProcess", id=process["id"])  # reads are never dropped after
    with pytest.raises(requests.exceptions.ConnectionError):
        client.single_request("CreateTask", body=task_body(process, import_task))
    assert emu.task_by_slug(process["id"], "worker-build") is not None
    assert [r["operation"] for r in emu.requests] == ["RetrieveProcess"]


@pytest.mark.parametrize("mode", sorted(DUPLICATE_SLUG_ERRORS))
def test_duplicate_race(emu, process, import_task, client, mode):
    emu.modes.duplicate_slug = mode
    emu.faults.duplicate_race_rate = 1.0
    with pytest.raises(DUPLICATE_SLUG_ERRORS[mode]) as excinfo:
        client.single_request("CreateTask", body=task_body(process, import_task, slug="raced"))
    assert emu.stats["races_injected"] == 1
    raced = emu.task_by_slug(process["id"], "raced")
    assert error_of(excinfo) == duplicate_slug_answer(mode, "raced", raced["id"])
    assert raced["parents"] == [import_task["id"]]
    assert raced["image"] == "docker:24"


def test_max_streak_lets_a_slug_through(emu, process, import_task, client):
    """With every request failing, one CreateTask slug still gets through on its third try."""
    answer = requests.put(
        emu.url + "_emulator/faults",
        json={"error_rate": 1.0, "error_statuses": [503], "max_streak": 2},
        timeout=5,
    )
    assert answer.json()["max_streak"] == 2

    def outcome(slug: str) -> int:
        try:
            return client.single_request("CreateTask", body=task_body(process, import_task, slug=slug))[
                "slug"
            ]
        except ErrorResponse as exc:
            return exc.status_code

    # Each slug counts its own streak: the other slug's faults do not spare "a".
    assert [outcome("a"), outcome("b"), outcome("a"), outcome("a")] == [503, 503, 503, "a"]
    assert emu.stats["streaks_cut"] == 1
    # Going through reset the streak of "a"; other operations count by path.
    assert outcome("a") == 503
    with pytest.raises(ArkindexServerError):
        client.single_request("RetrieveProcess", id=process["id"])
    emu.faults.max_streak = None
    assert [outcome("b"), outcome("b")] == [503, 503]


def test_max_streak_counts_answers_lost_after_commit(emu, process, import_task, client):
    emu.faults.drop_after_rate = 1.0
    emu.faults.max_streak = 1
    with pytest.raises(requests.exceptions.ConnectionError):
        client.single_request("CreateTask", body=task_body(process, import_task, slug="lost"))
    # The retry is spared: its answer arrives (the slug is taken, by the first try).
    with pytest.raises(ErrorResponse) as excinfo:
        client.single_request("CreateTask", body=task_body(process, import_task, slug="lost"))
    assert excinfo.value.status_code == 400
    assert [t["slug"] for t in emu.tasks(process["id"])] == ["import", "lost"]


def test_faults_never_touch_admin(emu):
    emu.faults.error_rate = emu.faults.drop_rate = 1.0
    assert requests.get(emu.url + "_emulator/state", timeout=5).status_code == 200


# --- admin endpoints, lifecycle, CLI ----------------------------------------------------------


def test_admin_endpoints(emu):
    admin = emu.url + "_emulator/"
    process = requests.post(admin + "processes", json={"name": "P", "env": {"K": "v"}}, timeout=5).json()
    assert process["name"] == "P"
    task = requests.post(
        admin + "tasks", json={"process_id": process["id"], "slug": "import"}, timeout=5
    ).json()
    assert task["token"]
    assert task["env"]["K"] == "v"

    duplicate = requests.post(
        admin + "tasks", json={"process_id": process["id"], "slug": "import"}, timeout=5
    )
    assert duplicate.status_code == 400

    token = requests.post(admin + "tokens", timeout=5).json()["token"]
    user = ArkindexClient(token=token, auth_scheme="Token", base_url=emu.url)
    assert user.request("RetrieveProcess", id=process["id"])["tasks"][0]["id"] == task["id"]

    faults = requests.put(admin + "faults", json={"latency": 0.001, "operations": ["CreateTask"]}, timeout=5)
    assert faults.json()["operations"] == ["CreateTask"]
    assert emu.faults.operations == frozenset({"CreateTask"})
    assert requests.put(admin + "faults", json={"typo": 1}, timeout=5).status_code == 400

    state = requests.get(admin + "state", timeout=5)
    assert state.headers["Content-Type"] == "application/json"
    assert task["token"] not in state.text
    assert [t["slug"] for t in state.json()["tasks"]] == ["import"]
    assert requests.patch(admin + f"tasks/{task['id']}", json={"state": "completed"}, timeout=5).ok
    assert emu.tasks()[0]["state"] == "completed"

    recorded = requests.get(admin + "requests", timeout=5).json()
    assert [r["operation"] for r in recorded] == ["RetrieveProcess"]
    assert token not in json.dumps(recorded)


def test_unknown_route_and_method(emu):
    assert requests.get(emu.url + "api/v1/nothing/", timeout=5).status_code == 404
    assert requests.get(emu.url + "api/v1/task/", timeout=5).status_code == 405


def test_stop_with_open_keepalive_connection(emu, process, client):
    client.request("RetrieveProcess", id=process["id"])  # leaves a keep-alive connection open
    emu.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        client.single_request("RetrieveProcess", id=process["id"])


def test_usage_text_mentions_admin_endpoints():
    text = usage_text("http://127.0.0.1:8000/")
    assert "http://127.0.0.1:8000/_emulator/processes" in text
    assert "http://127.0.0.1:8000/_emulator/modes" in text
    assert "--workers-refuse-task-token" in text
    assert "ARKINDEX_TASK_TOKEN" in text
    assert "Modes: task_token_on_workers=True version_duplicate=409 duplicate_slug=field" in text


def test_mode_flags():
    parser = build_parser()
    assert modes_from_args(parser.parse_args([])) == Modes()
    args = parser.parse_args(
        [
            "--workers-refuse-task-token",
            "--version-duplicate",
            "400",
            "--duplicate-slug",
            "conflict",
            "--unique-tags",
            "--page-size",
            "3",
        ]
    )
    assert modes_from_args(args) == Modes(
        task_token_on_workers=False,
        version_duplicate="400",
        duplicate_slug="conflict",
        unique_tags=True,
        page_size=3,
    )
    help_text = parser.format_help()
    for flag in (
        "--version-duplicate {409,400}",
        "--duplicate-slug {field,non_field,object,conflict}",
        "--page-size N",
    ):
        assert flag in help_text
    for bad in (["--page-size", "0"], ["--version-duplicate", "500"], ["--duplicate-slug", "slug"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_main_serves_until_interrupted():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "git_import.local.emulator",
            "--port",
            "0",
            "--create-task-delay",
            "0.01",
            "--workers-refuse-task-token",
            "--duplicate-slug",
            "object",
            "--page-size",
            "5",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        first_line = proc.stdout.readline()
        url = first_line.rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:")
        header = [proc.stdout.readline() for _ in range(2)]
        assert header[1].startswith(
            "Modes: task_token_on_workers=False version_duplicate=409 duplicate_slug=object"
        )
        ArkindexClient(base_url=url)
        assert requests.get(url + "_emulator/faults", timeout=5).json()["create_task_delay"] == 0.01
        assert requests.get(url + "_emulator/modes", timeout=5).json() == {
            "task_token_on_workers": False,
            "version_duplicate": "409",
            "duplicate_slug": "object",
            "unique_tags": False,
            "page_size": 5,
        }
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_put_faults_parses_each_field_by_its_type(emu):
    admin = emu.url + "_emulator/faults"
    answer = requests.put(admin, json={"error_statuses": [502], "seed": 7}, timeout=5)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["error_statuses"], emu.faults.seed) == ([502], 7)

    for body, message in (
        ({"error_rate": "high"}, 'error_rate: expected a number, got "high"'),
        ({"seed": True}, "seed: expected an integer, got true"),
        ({"error_statuses": [503, "x"]}, 'error_statuses item: expected an integer, got "x"'),
        ({"operations": ["Nope"]}, "Unknown operations: Nope"),
        # The string field that used to fail with "could not convert string to float" is now a mode.
        (
            {"duplicate_error": "non_field"},
            'duplicate_error is now the mode duplicate_slug: PUT /_emulator/modes {"duplicate_slug": ...}',
        ),
    ):
        # A rejected request changes nothing, not even its valid fields.
        answer = requests.put(admin, json={"latency": 9.0, **body}, timeout=5)
        assert (answer.status_code, answer.json()) == (400, {"detail": message})
    assert emu.faults.latency == 0.0


def test_modes_checked_when_set():
    modes = Modes()
    with pytest.raises(
        ValueError, match="duplicate_slug: expected one of field, non_field, object, conflict"
    ):
        modes.duplicate_slug = "nope"
    with pytest.raises(TypeError, match="unique_tags: expected true or false"):
        Modes(unique_tags=1)
    with pytest.raises(ValueError, match="page_size: expected an integer of at least 1"):
        modes.page_size = 0
    with pytest.raises(AttributeError, match="Unknown mode 'typo'"):
        modes.typo = True
    assert modes == Modes()


def test_put_modes(emu):
    admin = emu.url + "_emulator/modes"
    defaults = {
        "task_token_on_workers": True,
        "version_duplicate": "409",
        "duplicate_slug": "field",
        "unique_tags": False,
        "page_size": 20,
    }
    assert requests.get(admin, timeout=5).json() == defaults
    answer = requests.put(admin, json={"duplicate_slug": "object", "unique_tags": True}, timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {**defaults, "duplicate_slug": "object", "unique_tags": True}
    assert emu.modes == Modes(duplicate_slug="object", unique_tags=True)

    for body, message in (
        ({"typo": 1}, "Unknown mode fields: typo; known: " + ", ".join(defaults)),
        ({"page_size": "5"}, 'page_size: expected an integer, got "5"'),
        ({"page_size": 0}, "page_size: expected an integer of at least 1, got 0"),
        ({"unique_tags": "yes"}, 'unique_tags: expected true or false, got "yes"'),
        ({"version_duplicate": 400}, "version_duplicate: expected a string, got 400"),
        ({"version_duplicate": "500"}, 'version_duplicate: expected one of 409, 400, got "500"'),
    ):
        # A rejected request changes nothing, not even its valid fields.
        answer = requests.put(admin, json={"duplicate_slug": "conflict", **body}, timeout=5)
        assert (answer.status_code, answer.json()) == (400, {"detail": message})
    assert emu.modes == Modes(duplicate_slug="object", unique_tags=True)
