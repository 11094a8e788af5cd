"""The plan of tasks: one per chosen revision, with what became of it. Pure: no I/O."""

from __future__ import annotations

import textwrap
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

    def render_table(self, width: int | None = None) -> str:
        """A table people can read: one row a revision, oldest first, left-out ones included.

        `width`: the terminal's columns, or None (a pipe) for no limit. Rows are fitted to it by
        shrinking, then dropping, the columns a reader can do without; the commit, the task slug and
        the state are never cut, so a table narrower than those three is wider than `width`."""
        rows = [(c, task_slug(c.hash), LEFT_OUT) for c in self.left_out]
        rows += [(item.revision, item.slug, item.state) for item in self.items]
        table = [_HEADER] + [
            (c.hash[:10], c.date[:10], clip(c.author, 20), clip(c.summary, 50), slug, state)
            for c, slug, state in rows
        ]
        shown = _fit([max(len(row[i]) for row in table) for i in range(len(_HEADER))], width)
        lines = [
            f"Repository {self.repository_url}, ref {self.ref or '(none)'}, target {self.target[:10]}",
            f"Selection: {self.selection.mode}"
            + (f", paths {', '.join(self.paths)}" if self.paths else "")
            + (f", {len(self.left_out)} left out by MAX_REVISIONS" if self.left_out else ""),
            *(f"Warning: {w}" for w in self.selection.warnings),
        ]
        lines = [line for text in lines for line in _wrap(text, width)]
        lines.append("")
        lines += [_SEP.join(clip(row[i], w).ljust(w) for i, w in shown.items()).rstrip() for row in table]
        lines.append("")
        lines += _wrap(
            f"{len(self.items)} revision(s) planned: {self.count(NEW)} new, {self.count(CREATED)} created, "
            f"{self.count(EXISTING)} already there, {len(self.left_out)} left out",
            width,
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


def clip(text: str, width: int) -> str:
    """`text` in at most `width` characters, ending with `…` when it was cut (a reader must see it)."""
    if len(text) <= width:
        return text
    return text[: width - 1] + "…" if width > 0 else ""


_HEADER = ("COMMIT", "DATE", "AUTHOR", "SUMMARY", "TASK SLUG", "STATE")
_DATE, _AUTHOR, _SUMMARY = 1, 2, 3
_SEP = "  "
# The columns that shrink to fit a terminal, in the order they give way, each down to a width still
# worth reading (the summary, the most telling, twice: first to a readable width, last to a glimpse);
# then the columns dropped whole, in this order, if the table is still too wide.
_SHRINK = ((_SUMMARY, 24), (_AUTHOR, 8), (_SUMMARY, 12))
_DROP = (_DATE, _AUTHOR, _SUMMARY)


def _fit(natural: list[int], width: int | None) -> dict[int, int]:
    """Column index → width, for the columns shown, so that a row fits `width` if it can."""
    shown = dict(enumerate(natural))
    if width is None:
        return shown

    def over() -> int:
        return sum(shown.values()) + len(_SEP) * (len(shown) - 1) - width

    taken: list[tuple[int, int]] = []
    for column, narrowest in _SHRINK:
        cut = max(0, min(over(), shown[column] - narrowest))
        shown[column] -= cut
        taken.append((column, cut))
    for column in _DROP:
        if over() > 0:
            del shown[column]
    # Dropping a whole column may free more room than was missing: what was taken is given back, the
    # last taken first.
    for column, cut in reversed(taken):
        if column in shown:
            shown[column] += max(0, min(-over(), cut))
    return shown


def _wrap(text: str, width: int | None) -> list[str]:
    """A line of prose wrapped to `width` (continuations indented); a URL or hash is never split."""
    if width is None or len(text) <= width:
        return [text]
    return textwrap.wrap(
        text, width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False
    ) or [text]
