"""Push events as input (REPOSITORY_EVENT): real GitLab and GitHub payload shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from git_import.errors import ConfigError
from git_import.events import settings_from_event
from git_import.local.gitserver import GitHTTPServer
from git_import.local.sample import RepoBuilder, worker_yaml

from conftest import Ponos, run_tool

PAYLOADS = Path(__file__).parent / "payloads"
NULL = "0" * 40


def payload(name: str, **values: str) -> dict:
    text = (PAYLOADS / name).read_text()
    for key, value in values.items():
        text = text.replace(key, value)
    return json.loads(text)


def write_event(tmp_path: Path, name: str, **values: str) -> Path:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload(name, **values)))
    return path


@pytest.fixture
def pushed(repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer) -> tuple[str, list[str]]:
    commits = [repo.commit(f"commit {i}", {"arkindex/w.yml": worker_yaml("w", f"W {i}")}) for i in range(4)]
    repo.publish(git_root / "workers.git")
    return git_server.url("workers.git"), commits


def test_gitlab_push_maps_to_settings() -> None:
    got = settings_from_event(
        payload("gitlab_push.json", BEFORE="a" * 40, AFTER="b" * 40, HTTP_URL="https://h/g/r.git")
    )
    assert got == {
        "repository_url": "https://h/g/r.git",
        "repository_ref": "refs/heads/main",
        "repository_before": "a" * 40,
        "repository_after": "b" * 40,
    }


def test_tag_push_uses_the_commit_not_the_tag_object() -> None:
    got = settings_from_event(
        payload("gitlab_tag_push.json", TAG_OBJECT="c" * 40, AFTER="b" * 40, HTTP_URL="https://h/g/r.git")
    )
    assert got["repository_after"] == "b" * 40
    assert got["repository_ref"] == "refs/tags/v1.0.0"
    assert got["repository_before"] == NULL


def test_not_a_push_event_is_refused() -> None:
    with pytest.raises(ConfigError, match="REPOSITORY_EVENT"):
        settings_from_event({"object_kind": "merge_request", "ref": "x"})
    with pytest.raises(ConfigError, match="no `ref`"):
        settings_from_event({"zen": "Keep it logically awesome."})


def test_gitlab_push_event_drives_the_trigger(
    ponos: Ponos, pushed: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, commits = pushed
    event = write_event(
        tmp_path, "gitlab_push.json", BEFORE=commits[1], AFTER=commits[3], HTTP_URL=url, WEB_URL="x"
    )
    result = ponos.run_trigger({"REPOSITORY_EVENT": str(event)})
    assert result.code == 0, result.output
    assert sorted(t["slug"] for t in ponos.children()) == sorted(f"import-{c}" for c in commits[2:])
    assert [r["hash"] for r in ponos.plan()["revisions"]] == commits[2:]
    assert ponos.plan()["ref"] == "refs/heads/main"


def test_explicit_settings_win_over_the_event(
    ponos: Ponos, pushed: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, commits = pushed
    event = write_event(
        tmp_path, "github_push.json", BEFORE=commits[1], AFTER=commits[3], HTTP_URL=url, WEB_URL="x"
    )
    result = ponos.run_trigger({"REPOSITORY_EVENT": str(event), "REPOSITORY_BEFORE": commits[0]})
    assert result.code == 0, result.output
    assert len(ponos.children()) == 3


def test_github_tag_push_imports_the_tagged_commit(
    repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer, ponos: Ponos, tmp_path: Path
) -> None:
    first = repo.commit("one", {"arkindex/w.yml": worker_yaml("w", "W")})
    repo.commit("two")
    repo.git("tag", "-a", "-m", "release", "v1.0.0", first)
    repo.publish(git_root / "workers.git")
    data = payload(
        "github_push.json", BEFORE=NULL, AFTER=first, HTTP_URL=git_server.url("workers.git"), WEB_URL="x"
    )
    data["ref"] = "refs/tags/v1.0.0"
    event = tmp_path / "tag.json"
    event.write_text(json.dumps(data))
    result = ponos.run_trigger({"REPOSITORY_EVENT": str(event)})
    assert result.code == 0, result.output
    (child,) = ponos.children()
    assert child["slug"] == f"import-{first}"
    assert child["env"]["REPOSITORY_REF"] == "refs/tags/v1.0.0"


def test_branch_deletion_imports_nothing(ponos: Ponos, pushed: tuple[str, list[str]], tmp_path: Path) -> None:
    url, commits = pushed
    event = write_event(tmp_path, "github_delete.json", BEFORE=commits[3], HTTP_URL=url, WEB_URL="x")
    result = ponos.run_trigger({"REPOSITORY_EVENT": str(event)})
    assert result.code == 0, result.output
    assert "nothing to import" in result.stderr
    assert ponos.children() == []


def test_missing_event_file_is_a_setting_error(tmp_path: Path) -> None:
    result = run_tool(["trigger", "--dry-run"], {"REPOSITORY_EVENT": str(tmp_path / "nope.json")})
    assert result.code == 2
    assert "REPOSITORY_EVENT" in result.stderr
