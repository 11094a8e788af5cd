"""The plan of tasks: one per chosen revision, with what became of it. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from git_import.rules.commit import Commit
from git_import.rules.selection import Selection
from git_import.rules.urls import task_slug

NEW = "new"  # would be created (dry run) or not created yet
CREATED = "created"
EXISTING = "already there"
FAILED = "failed"
LEFT_OUT = "left out"


@dataclass
class PlanItem:
    revision: Commit
    slug: str
    state: str = NEW
    task_id: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **_revision_json(self.revision),
            "task": {"slug": self.slug, "state": self.state, "id": self.task_id, "error": self.error},
        }


@dataclass
class Plan:
    repository_url: str
    ref: str | None
    target: str
    before: str | None
    paths: list[str]
    selection: Selection
    items: list[PlanItem] = field(default_factory=list)

    @property
    def left_out(self) -> list[Commit]:
        return self.selection.left_out

    def count(self, state: str) -> int:
        return sum(1 for item in self.items if item.state == state)

    @property
    def complete(self) -> bool:
        """Every planned task exists."""
        return all(item.state in (CREATED, EXISTING) for item in self.items)

    def to_json(self) -> dict[str, Any]:
        return {
            "repository_url": self.repository_url,
            "ref": self.ref,
            "target": self.target,
            "before": self.before,
            "paths": self.paths,
            "selection": self.selection.mode,
            "warnings": self.selection.warnings,
            "revisions": [item.to_json() for item in self.items],
            "left_out": {
                "count": len(self.left_out),
                "revisions": [{**_revision_json(c), "state": LEFT_OUT} for c in self.left_out],
            },
            "summary": {
                "planned": len(self.items),
                "created": self.count(CREATED),
                "already_there": self.count(EXISTING),
                "new": self.count(NEW),
                "failed": self.count(FAILED),
                "left_out": len(self.left_out),
            },
        }

    def render_table(self) -> str:
        """A table people can read: one row a revision, oldest first, left-out ones included."""
        rows = [(c, task_slug(c.hash), LEFT_OUT) for c in self.left_out]
        rows += [(item.revision, item.slug, item.state) for item in self.items]
        header = ("COMMIT", "DATE", "AUTHOR", "SUMMARY", "TASK SLUG", "STATE")
        table = [header] + [
            (c.hash[:10], c.date[:10], _clip(c.author, 20), _clip(c.summary, 50), slug, state)
            for c, slug, state in rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines = [
            f"Repository {self.repository_url}, ref {self.ref or '(none)'}, target {self.target[:10]}",
            f"Selection: {self.selection.mode}"
            + (f", paths {', '.join(self.paths)}" if self.paths else "")
            + (f", {len(self.left_out)} left out by MAX_REVISIONS" if self.left_out else ""),
        ]
        lines += [f"Warning: {w}" for w in self.selection.warnings]
        lines.append("")
        lines += ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in table]
        lines.append("")
        lines.append(
            f"{len(self.items)} revision(s) planned: {self.count(NEW)} new, {self.count(CREATED)} created, "
            f"{self.count(EXISTING)} already there, {len(self.left_out)} left out"
        )
        return "\n".join(lines)


def build_plan(
    *,
    repository_url: str,
    ref: str | None,
    target: str,
    before: str | None,
    paths: list[str],
    selection: Selection,
    existing: dict[str, str],
) -> Plan:
    """One item per chosen revision; those whose slug is in `existing` (slug → task ID) are already there."""
    plan = Plan(repository_url, ref, target, before, paths, selection)
    for commit in selection.chosen:
        slug = task_slug(commit.hash)
        if slug in existing:
            plan.items.append(PlanItem(commit, slug, EXISTING, existing[slug]))
        else:
            plan.items.append(PlanItem(commit, slug))
    return plan


def _revision_json(commit: Commit) -> dict[str, str]:
    return {"hash": commit.hash, "summary": commit.summary, "author": commit.author, "date": commit.date}


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
