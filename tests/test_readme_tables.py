"""The README's bad-input tables cannot drift from the tool: every message row is a line that a test
checks against the tool's real output, and every line those tests check is a row.

The tests that run the tool expose the lines their cases check, as the README shows them (`<…>` for
the parts that vary), built from the very case data they run (`documented_messages`):
tests/test_bad_input.py and tests/test_ssh.py for the trigger, tests/test_revision.py and
tests/test_real_instances.py for the per-revision import. The lines the section's text quotes (the
closing line of a revision with bad files, a tag taken) are checked the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import test_bad_input
import test_real_instances
import test_revision
import test_ssh
import test_transport

from conftest import Documented

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- bad-inputs:start -->", "<!-- bad-inputs:end -->"


@dataclass(frozen=True)
class Table:
    heading: str  # the `### ` line the table follows
    name: str
    sources: tuple[Callable[[], list[str]], ...]  # the documented lines of the tests that run the tool

    def checked(self) -> set[str]:
        return {line for source in self.sources for line in source()}


TABLES = [
    Table(
        "### The trigger (`arkindex-git-import trigger`)",
        "trigger",
        (
            test_bad_input.documented_messages,
            test_ssh.documented_messages,
            test_transport.documented_messages,
        ),
    ),
    Table(
        "### The per-revision import (`arkindex-git-import revision <hash>`)",
        "revision",
        (test_revision.documented_messages, test_real_instances.documented_messages),
    ),
]
HEADER = "| bad input | example | message | exit |"
# Lines the section's prose quotes, as the tests that check them against the tool's output document them.
QUOTED = {
    "the closing line of a revision with bad files": test_revision.CLOSING,
    "a worker's tag taken by another version": test_real_instances.TAG_TAKEN,
}


@dataclass(frozen=True)
class Row:
    number: int  # the line of README.md
    bad_input: str
    message: str  # the message column without its code span's backticks
    exit: str

    def __str__(self) -> str:
        return f"README.md line {self.number} ({self.bad_input}): {self.message}"


def code_span(cell: str) -> str | None:
    """The text of `cell` when it is one code span (`` `text` `` or ``` `` text `` ```), else None."""
    for ticks in ("``", "`"):
        if len(cell) > 2 * len(ticks) and cell.startswith(ticks) and cell.endswith(ticks):
            text = cell[len(ticks) : -len(ticks)]
            if ticks == "``" and text.startswith(" ") and text.endswith(" "):
                text = text[1:-1]  # the one space that lets a `` span start or end with a backtick
            if ticks not in text:  # a span ends at the first run of its own backticks
                return text
    return None


def section() -> list[tuple[int, str]]:
    """The numbered lines between the README's bad-input markers."""
    lines = README.read_text().splitlines()
    assert lines.count(START) == 1 and lines.count(END) == 1, f"README.md lacks the lines {START} and {END}"
    start, end = lines.index(START), lines.index(END)
    return [(number, line) for number, line in enumerate(lines, 1) if start < number - 1 < end]


def table_rows(heading: str) -> list[Row]:
    """The message rows of the table that follows `heading` in the bad-input section."""
    lines = section()
    headings = [i for i, (_, line) in enumerate(lines) if line == heading]
    assert len(headings) == 1, f"the bad-input section of README.md has no heading {heading!r}"
    rows = []
    for number, line in lines[headings[0] + 1 :]:
        if line.startswith("### "):
            break
        if not line.startswith("|") or line == HEADER or set(line) <= set("|-: "):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        assert len(cells) == 4, f"README.md line {number}: {len(cells)} columns, not 4 (a '|' in a cell?)"
        message = code_span(cells[2])
        assert message is not None, f"README.md line {number}: the message column is not one code span"
        rows.append(Row(number, cells[0], message, cells[3]))
    assert rows, f"the table under {heading!r} in README.md has no row"
    return rows


@pytest.mark.parametrize("table", TABLES, ids=[table.name for table in TABLES])
def test_every_row_of_the_table_is_a_line_a_test_checks_against_the_tool(table: Table) -> None:
    checked = table.checked()
    unchecked = [row for row in table_rows(table.heading) if row.message not in checked]
    assert not unchecked, (
        f"{len(unchecked)} row(s) of README.md's {table.name} table are checked by no test, so they may "
        "no longer be what the tool prints. For each, add a case that produces it to the tests of the "
        f"table ({', '.join(source.__module__ + '.py' for source in table.sources)}), or fix the row "
        "to the line the tool prints:\n" + "\n".join(map(str, unchecked))
    )


@pytest.mark.parametrize("table", TABLES, ids=[table.name for table in TABLES])
def test_every_line_the_tests_check_is_a_row_of_the_table(table: Table) -> None:
    documented = {row.message for row in table_rows(table.heading)}
    missing = sorted(table.checked() - documented)
    assert not missing, (
        f"{len(missing)} line(s) that the tests check are not in README.md's {table.name} table: add a "
        "row for each (its message column as below, in backticks), or fix the case's documented form to "
        "the row's:\n" + "\n".join(missing)
    )


def prose_spans() -> set[str]:
    """The one-backtick code spans of the section's text outside its tables (a line break in a span is a
    space, as Markdown renders it)."""
    prose = "\n".join(line for _, line in section() if not line.startswith("|"))
    return {" ".join(span.split("\n")) for span in re.findall(r"(?<!`)`([^`]+)`(?!`)", prose)}


def test_the_lines_the_prose_quotes_are_lines_a_test_checks_against_the_tool() -> None:
    spans = prose_spans()
    missing = [f"{what}: {line}" for what, line in QUOTED.items() if line not in spans]
    assert not missing, (
        "README.md's bad-input section no longer quotes these lines, which tests check against the "
        "tool's output: quote each as below (fix the README's line), or, if the tool's line changed, its "
        "test's documented form and then the README:\n" + "\n".join(missing)
    )


@pytest.mark.parametrize("table", TABLES, ids=[table.name for table in TABLES])
def test_every_row_says_exit_status_2(table: Table) -> None:
    """Every case of the tests above checks exit status 2: a row saying otherwise is checked by none."""
    wrong = [row for row in table_rows(table.heading) if row.exit != "2"]
    assert not wrong, "rows whose exit column is not 2:\n" + "\n".join(f"{row} | {row.exit}" for row in wrong)


# --- the parsing and matching the check relies on ---------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "text"),
    [
        ("`a <file>: b`", "a <file>: b"),
        ("``a `workers` list``", "a `workers` list"),
        ("`` `a` ``", "`a`"),
        ("`a` and `b`", None),
        ("a", None),
        ("``", None),
    ],
)
def test_a_message_cell_is_one_code_span(cell: str, text: str | None) -> None:
    assert code_span(cell) == text


def test_a_documented_line_matches_what_its_placeholders_stand_for() -> None:
    message = Documented(
        "<file>: bad (run `check <file>`, then see arkindex/<slug>.yml: <why>)",
        {"<file>": "arkindex/a.yml", "<why>": None},
    )
    line = "arkindex/a.yml: bad (run `check arkindex/a.yml`, then see arkindex/<slug>.yml: git said no)"
    assert message.match(line) == {"<why>": "git said no"}
    assert message.match(line.replace("check arkindex/a.yml", "check arkindex/b.yml")) is None
    assert message.match(line.replace("<slug>", "hello")) is None  # text the values do not name is literal
    assert message.match(line.replace(": git said no)", ": )")) is None  # a free part is never empty
    assert Documented("exact (no placeholder)").match("exact (no placeholder)") == {}
