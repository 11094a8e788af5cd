"""Push events as input: a GitLab or GitHub push webhook payload (JSON) named by REPOSITORY_EVENT.

Pure: takes the parsed payload, returns the repository settings it implies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from git_import.errors import ConfigError
from git_import.rules.urls import NULL_SHA


def _first(*values: Any) -> str | None:
    for value in values:
        if isinstance(value, str) and value:
            return value
    return None


def settings_from_event(payload: Any) -> dict[str, str]:
    """Map a push payload to REPOSITORY_* settings (field name → value); absent values are left out.

    GitLab: `object_kind` push or tag_push, `before`, `after`, `checkout_sha`, `ref`,
    `project.git_http_url`. GitHub: `ref`, `before`, `after`, `deleted`, `head_commit.id`,
    `repository.clone_url`. For a tag push the commit is `checkout_sha` / `head_commit.id`, since
    `after` may name the annotated tag object rather than the commit.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("ref"), str):
        raise ConfigError(
            "REPOSITORY_EVENT does not hold a push event (no `ref` field)",
            hint="give the JSON body of a GitLab or GitHub push (or tag push) webhook",
        )
    kind = payload.get("object_kind")
    if kind is not None and kind not in ("push", "tag_push"):
        raise ConfigError(
            f"REPOSITORY_EVENT holds a GitLab {kind!r} event, not a push",
            hint="give the JSON body of a push or tag push webhook",
        )
    project = payload.get("project") if isinstance(payload.get("project"), dict) else {}
    repository = payload.get("repository") if isinstance(payload.get("repository"), dict) else {}
    head_commit = payload.get("head_commit") if isinstance(payload.get("head_commit"), dict) else {}
    ref = payload["ref"]
    after = _first(payload.get("after"))
    deleted = payload.get("deleted") is True or after == NULL_SHA
    if ref.startswith("refs/tags/") and not deleted:
        after = _first(payload.get("checkout_sha"), head_commit.get("id"), after)
    settings = {
        "repository_url": _first(
            project.get("git_http_url"), repository.get("git_http_url"), repository.get("clone_url")
        ),
        "repository_ref": ref,
        "repository_before": _first(payload.get("before")),
        "repository_after": NULL_SHA if deleted else after,
    }
    return {key: value for key, value in settings.items() if value}


def read_event(path: Path) -> dict[str, str]:
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"REPOSITORY_EVENT names {path}, which does not exist",
            hint="give the path of the push event file",
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"REPOSITORY_EVENT file {path} is not readable JSON ({exc})",
            hint="give the JSON body of a GitLab or GitHub push webhook",
        ) from None
    return settings_from_event(payload)
