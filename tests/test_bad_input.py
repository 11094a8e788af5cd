"""Bad input to the trigger (issue 5): each is refused with one clear line naming the setting and the
fix, exit status 2, and nothing created on Arkindex. The exact lines are the ones documented in
the README, which a test keeps in step.
"""

from __future__ import annotations

import functools
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from git_import.local.gitserver import GitHTTPServer
from git_import.local.sample import RepoBuilder, worker_yaml

from conftest import Ponos, Result, run_tool

DOC = Path(__file__).resolve().parent.parent / "README.md"
OTHER_UUID = "00000000-0000-4000-8000-000000000000"

# Hints shared by several messages, as the tool prints them.
URL_CREDENTIALS = (
    "REPOSITORY_URL holds credentials, which would leak into logs and the clone's configuration "
    "(remove them from the URL and set REPOSITORY_TOKEN (and REPOSITORY_USERNAME) instead)"
)
URL_LOCAL = (
    "REPOSITORY_URL is a local path or file:// URL, which is refused by default (use the repository's "
    "https:// or ssh:// URL, or set REPOSITORY_ALLOW_LOCAL=1 for local testing)"
)
MAX_REVISIONS = "MAX_REVISIONS: must be at least 1 (set MAX_REVISIONS to a whole number of at least 1)"
# git refusing the clone, `{git}` what git said.
GIT_REFUSED = (
    "cloning the default branch: the Git server refused access ({git}) "
    "(check REPOSITORY_TOKEN (a token with read access to the repository) and REPOSITORY_USERNAME)"
)
NOT_FOUND_HINT = "(check REPOSITORY_URL, and REPOSITORY_TOKEN for a private repository)"
GIT_NOT_FOUND = "cloning the default branch: repository not found ({git}) " + NOT_FOUND_HINT
SSH_KEY_FIX = (
    "(set REPOSITORY_SSH_KEY to the whole content of a private key file without a passphrase, such as a "
    "deploy key's, not the .pub file)"
)


@functools.cache
def key_with_a_passphrase() -> str:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "id_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret-phrase", "-f", str(path)], check=True
        )
        return path.read_text()


@dataclass
class Served:
    """The repository the trigger is pointed at: `main` (3 commits) and `other` (1 commit off the first),
    served as is (`url`) and behind REPOSITORY_TOKEN (`private_url`)."""

    url: str
    private_url: str
    main: list[str]
    other: str
    marker: Path  # a file that a command smuggled into a setting would create


# The README's placeholders for the parts of a message that vary from run to run.
PLACEHOLDERS = Served("<url>", "<url>", ["<hash>"] * 3, "<hash>", Path("<marker>"))
PROCESS_PLACEHOLDER, GIT_PLACEHOLDER = "<uuid>", "<git's message>"
GIT_SAID = "\0"  # stands for git's own words in a line to match


@dataclass
class Case:
    id: str
    env: Callable[[Served], dict[str, str]]
    # The exact error line before "; nothing was created", `{placeholders}` filled from Served, `{process}`
    # the PONOS_PROCESS of the run, and `{git}` git's own words (any text).
    message: str
    drop: tuple[str, ...] = ()  # settings of the Ponos environment to remove

    def line(self, served: Served, process: str, git: str) -> str:
        filled = self.message.format(
            url=served.url, main=served.main, other=served.other, process=process, git=git
        )
        return f"{filled}; nothing was created"

    def matches(self, line: str, served: Served, process: str) -> bool:
        parts = self.line(served, process, GIT_SAID).split(GIT_SAID)
        return re.fullmatch("(.+)".join(map(re.escape, parts)), line) is not None

    def documented(self) -> str:
        """The line as the README shows it, with `<…>` for the parts that vary."""
        return self.line(PLACEHOLDERS, PROCESS_PLACEHOLDER, GIT_PLACEHOLDER)


CASES = [
    Case(
        "PONOS_PROCESS malformed",
        lambda s: {"PONOS_PROCESS": "not-a-uuid"},
        "PONOS_PROCESS: is not a valid UUID "
        "(set PONOS_PROCESS (or ARKINDEX_PROCESS_ID) to the UUID of the process running this task)",
    ),
    Case(
        "ARKINDEX_PROCESS_ID malformed",
        lambda s: {"ARKINDEX_PROCESS_ID": "1234"},
        "PONOS_PROCESS: is not a valid UUID "
        "(set PONOS_PROCESS (or ARKINDEX_PROCESS_ID) to the UUID of the process running this task)",
        drop=("PONOS_PROCESS",),
    ),
    Case(
        "PONOS_TASK malformed",
        lambda s: {"PONOS_TASK": "42"},
        "PONOS_TASK: is not a valid UUID (set PONOS_TASK to the UUID of the running task)",
    ),
    Case(
        "REPOSITORY_URL missing",
        lambda s: {},
        "REPOSITORY_URL is not set "
        "(set REPOSITORY_URL to the repository's HTTP(S) or SSH clone URL, without credentials)",
        drop=("REPOSITORY_URL",),
    ),
    Case(
        "PONOS_WORKFLOW only",
        lambda s: {"PONOS_WORKFLOW": OTHER_UUID},
        "PONOS_WORKFLOW is set but PONOS_PROCESS is not: the Ponos agent no longer provides PONOS_WORKFLOW "
        "since Arkindex merged workflows into processes "
        "(set PONOS_PROCESS (or ARKINDEX_PROCESS_ID) to the process UUID, or update the agent)",
        drop=("PONOS_PROCESS",),
    ),
    Case(
        "URL with user and password",
        lambda s: {"REPOSITORY_URL": "https://ada:hunter2@gitlab.example.com/group/workers.git"},
        URL_CREDENTIALS,
    ),
    Case(
        "URL with a token as user",
        lambda s: {"REPOSITORY_URL": "https://glpat-abc123@gitlab.example.com/group/workers.git"},
        URL_CREDENTIALS,
    ),
    Case(
        "ssh URL with a password",
        lambda s: {"REPOSITORY_URL": "ssh://git:hunter2@gitlab.example.com/group/workers.git"},
        URL_CREDENTIALS,
    ),
    Case(
        "scp-like URL with a password",
        lambda s: {"REPOSITORY_URL": "git:hunter2@gitlab.example.com:group/workers.git"},
        URL_CREDENTIALS,
    ),
    Case(
        "URL with a token in its query",
        lambda s: {"REPOSITORY_URL": "https://gitlab.example.com/group/workers.git?private_token=abc123"},
        "REPOSITORY_URL has a query string or fragment, which could carry credentials and would leak into "
        "logs (give the plain clone URL and set REPOSITORY_TOKEN for a private repository)",
    ),
    Case(
        "ext:: transport",
        lambda s: {"REPOSITORY_URL": f"ext::sh -c touch% {s.marker}"},
        "REPOSITORY_URL uses the 'ext::' remote helper transport, which can run commands "
        "(give an https:// or ssh:// clone URL)",
    ),
    Case(
        "fd:: transport",
        lambda s: {"REPOSITORY_URL": "fd::0"},
        "REPOSITORY_URL uses the 'fd::' remote helper transport, which can run commands "
        "(give an https:// or ssh:// clone URL)",
    ),
    Case(
        "URL starting with -",
        lambda s: {"REPOSITORY_URL": f"--upload-pack=touch {s.marker}"},
        "REPOSITORY_URL starts with '-', which git would read as an option "
        "(give an https:// or ssh:// clone URL)",
    ),
    Case(
        "URL with a space",
        lambda s: {"REPOSITORY_URL": f"{s.url} --upload-pack=touch"},
        "REPOSITORY_URL holds a control character or space (give the clone URL on one line, without spaces)",
    ),
    Case(
        "ref starting with -",
        lambda s: {"REPOSITORY_URL": s.url, "REPOSITORY_REF": "--upload-pack=touch"},
        "REPOSITORY_REF '--upload-pack=touch' is not a valid branch, tag or ref name "
        "(give a branch name such as 'main', a tag, or a full ref such as 'refs/heads/main')",
    ),
    Case(
        "local path",
        lambda s: {"REPOSITORY_URL": str(s.marker.parent / "served" / "workers.git")},
        URL_LOCAL,
    ),
    Case(
        "file:// URL",
        lambda s: {"REPOSITORY_URL": f"file://{s.marker.parent / 'served' / 'workers.git'}"},
        URL_LOCAL,
    ),
    Case(
        "SSH key that is a public key",
        lambda s: {
            "REPOSITORY_SSH_KEY": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJ1bGVzIGFyZSBydWxlcw ada@laptop"
        },
        f"REPOSITORY_SSH_KEY: holds a public key, not a private key {SSH_KEY_FIX}",
    ),
    Case(
        "SSH key behind a passphrase",
        lambda s: {"REPOSITORY_SSH_KEY": key_with_a_passphrase()},
        f"REPOSITORY_SSH_KEY: is protected by a passphrase, which the tool cannot type {SSH_KEY_FIX}",
    ),
    Case(
        "SSH key that is a path",
        lambda s: {"REPOSITORY_SSH_KEY": "/home/ada/.ssh/id_ed25519"},
        "REPOSITORY_SSH_KEY: is not a whole private key file (from its -----BEGIN line to its -----END line) "
        + SSH_KEY_FIX,
    ),
    Case(
        "known hosts that are a fingerprint",
        lambda s: {"REPOSITORY_SSH_KNOWN_HOSTS": "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"},
        "REPOSITORY_SSH_KNOWN_HOSTS: line 1 is not a known_hosts line of hosts, key type and key "
        "(set REPOSITORY_SSH_KNOWN_HOSTS to the host's known_hosts lines, as ssh-keyscan prints them)",
    ),
    Case(
        "ref that does not exist",
        lambda s: {"REPOSITORY_URL": s.url, "REPOSITORY_REF": "no-such-branch"},
        "REPOSITORY_REF 'no-such-branch' does not exist in the repository "
        "(give an existing branch or tag, or leave REPOSITORY_REF empty for the default branch)",
    ),
    Case(
        "REPOSITORY_AFTER that does not exist",
        lambda s: {"REPOSITORY_URL": s.url, "REPOSITORY_AFTER": "1" * 40},
        "REPOSITORY_AFTER 1111111111111111111111111111111111111111 does not exist in the repository "
        "(give the hash of a pushed commit, or leave REPOSITORY_AFTER empty to import the ref's tip)",
    ),
    Case(
        "REPOSITORY_AFTER that does not exist, with REPOSITORY_REF and REPOSITORY_BEFORE",
        lambda s: {
            "REPOSITORY_URL": s.url,
            "REPOSITORY_REF": "main",
            "REPOSITORY_BEFORE": s.main[0],
            "REPOSITORY_AFTER": "1" * 40,
        },
        "REPOSITORY_AFTER 1111111111111111111111111111111111111111 does not exist in the repository "
        "(give the hash of a pushed commit, or leave REPOSITORY_AFTER empty to import the ref's tip)",
    ),
    Case(
        "REPOSITORY_BEFORE not an ancestor",
        lambda s: {"REPOSITORY_URL": s.url, "REPOSITORY_REF": "main", "REPOSITORY_BEFORE": s.other},
        "REPOSITORY_BEFORE {other} is not an ancestor of the target {main[2]} (give the commit the branch "
        "pointed to before the push, or leave REPOSITORY_BEFORE empty to import the target alone)",
    ),
    Case(
        "REPOSITORY_BEFORE not a full hash",
        lambda s: {"REPOSITORY_URL": s.url, "REPOSITORY_BEFORE": "abc123"},
        "REPOSITORY_BEFORE: not a full 40-character commit hash "
        "(give the full 40-character hash of the commit before the push, or leave it empty)",
    ),
    Case(
        "empty repository",
        lambda s: {"REPOSITORY_URL": s.url.replace("workers.git", "empty.git")},
        "the repository is empty: it has no branch to import "
        "(push a commit to the repository, or check REPOSITORY_URL)",
    ),
    Case(
        "repository token wrong",
        lambda s: {"REPOSITORY_URL": s.private_url, "REPOSITORY_TOKEN": "glpat-WRONG-token-1234"},
        GIT_REFUSED,
    ),
    Case("repository token missing", lambda s: {"REPOSITORY_URL": s.private_url}, GIT_REFUSED),
    Case(
        "repository that does not exist",
        lambda s: {"REPOSITORY_URL": s.url.replace("workers.git", "nope.git")},
        GIT_NOT_FOUND,
    ),
    Case(
        "local repository that does not exist",
        lambda s: {
            "REPOSITORY_URL": str(s.marker.parent / "served" / "nope.git"),
            "REPOSITORY_ALLOW_LOCAL": "1",
        },
        GIT_NOT_FOUND,
    ),
    Case(
        "file:// URL of a repository that does not exist",
        lambda s: {
            "REPOSITORY_URL": f"file://{s.marker.parent / 'served' / 'nope.git'}",
            "REPOSITORY_ALLOW_LOCAL": "1",
        },
        GIT_NOT_FOUND,
    ),
    Case("MAX_REVISIONS zero", lambda s: {"REPOSITORY_URL": s.url, "MAX_REVISIONS": "0"}, MAX_REVISIONS),
    Case("MAX_REVISIONS negative", lambda s: {"REPOSITORY_URL": s.url, "MAX_REVISIONS": "-5"}, MAX_REVISIONS),
    Case(
        "RETRY_ATTEMPTS out of range",
        lambda s: {"REPOSITORY_URL": s.url, "RETRY_ATTEMPTS": "0"},
        "RETRY_ATTEMPTS: must be from 1 to 100 (set RETRY_ATTEMPTS to a whole number from 1 to 100)",
    ),
    Case(
        "process unknown to Arkindex",
        lambda s: {"REPOSITORY_URL": s.url, "PONOS_PROCESS": OTHER_UUID},
        "process {process} was not found on Arkindex "
        "(check PONOS_PROCESS and that the token can see that process)",
    ),
    Case(
        "task token refused",
        lambda s: {"REPOSITORY_URL": s.url, "ARKINDEX_TASK_TOKEN": "not-the-task-token"},
        "retrieving process {process}: Arkindex refused ARKINDEX_TASK_TOKEN (Ponos) for RetrieveProcess "
        "(HTTP 401: {{'detail': 'Invalid token.'}}) "
        "(check ARKINDEX_TASK_TOKEN (or ARKINDEX_API_TOKEN) and that it belongs to this process)",
    ),
]


def documented_messages() -> list[str]:
    """The error lines the cases check against the tool's output, as the README's trigger table shows
    them (tests/test_readme_tables.py checks that every row of the table is one of them)."""
    return [case.documented() for case in CASES]


@pytest.fixture
def served(
    repo: RepoBuilder,
    git_root: Path,
    git_server: GitHTTPServer,
    private_git_server: GitHTTPServer,
    tmp_path: Path,
) -> Served:
    main = [
        repo.commit(f"Change {i}", {"arkindex/hello.yml": worker_yaml("hello", "Hello", f"V{i}")})
        for i in range(3)
    ]
    repo.git("checkout", "--quiet", "-b", "other", main[0])
    other = repo.commit("Elsewhere", {"README.md": "# Elsewhere\n"})
    repo.git("checkout", "--quiet", "main")
    repo.publish(git_root / "workers.git")
    repo.publish(private_git_server.root / "workers.git")
    subprocess.run(["git", "init", "--quiet", "--bare", str(git_root / "empty.git")], check=True)
    return Served(
        git_server.url("workers.git"), private_git_server.url("workers.git"), main, other, tmp_path / "pwned"
    )


def error_lines(result: Result) -> list[str]:
    return [line.split(" ERROR ", 1)[1].strip() for line in result.output.splitlines() if " ERROR " in line]


def assert_nothing_created(ponos: Ponos) -> None:
    assert ponos.children() == []
    assert [r for r in ponos.emulator.requests if r["method"] != "GET"] == []
    assert not (ponos.data / "current").exists()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_clear_line_exit_2_and_nothing_created(
    ponos: Ponos, served: Served, case: Case
) -> None:
    env = {**ponos.env, "REPOSITORY_URL": served.url, **case.env(served)}
    for name in case.drop:
        env.pop(name, None)

    result = run_tool(["trigger"], env)

    assert result.code == 2, result.output
    assert "Traceback" not in result.output
    lines = error_lines(result)
    assert len(lines) == 1, result.output
    assert "retrying" not in result.output
    assert case.matches(lines[0], served, env.get("PONOS_PROCESS", "")), (
        f"{lines[0]!r} is not the documented {case.documented()!r}"
    )
    assert_nothing_created(ponos)
    assert not served.marker.exists(), "a command smuggled into a setting ran"


@pytest.mark.parametrize("form", ["path", "file://"])
def test_local_repository_is_allowed_with_repository_allow_local(
    ponos: Ponos, served: Served, git_root: Path, form: str
) -> None:
    bare = git_root / "workers.git"
    url = str(bare) if form == "path" else f"file://{bare}"

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_ALLOW_LOCAL": "1"})

    assert result.code == 0, result.output
    assert [t["slug"] for t in ponos.children()] == [f"import-{served.main[-1]}"]


@pytest.mark.parametrize("form", ["path", "file://"])
def test_a_mistyped_local_repository_is_not_found_whatever_its_form(
    ponos: Ponos, served: Served, git_root: Path, tmp_path: Path, form: str
) -> None:
    """`git clone` says "repository '<path>' does not exist" for a path, "does not appear to be a git
    repository" for a file:// URL: one answer, exit 2, not retried, for the trigger and a revision."""
    missing = git_root / "nope.git"
    url = str(missing) if form == "path" else f"file://{missing}"
    env = {**ponos.env, "REPOSITORY_URL": url, "REPOSITORY_ALLOW_LOCAL": "1"}
    hint = NOT_FOUND_HINT

    trigger = run_tool(["trigger"], env)
    assert_nothing_created(ponos)
    revision = run_tool(["revision", served.main[-1]], {**env, "PONOS_DATA": str(tmp_path / "revision")})

    for result, what, end in [
        (trigger, "cloning the default branch", f"{hint}; nothing was created"),
        (revision, f"fetching revision {served.main[-1]}", hint),
    ]:
        assert result.code == 2, result.output
        assert "retrying" not in result.output
        (line,) = error_lines(result)
        assert line.startswith(f"{what}: repository not found (fatal: ") and line.endswith(end), line
        assert str(missing) in line


def test_every_bad_input_is_documented_with_its_message() -> None:
    doc = DOC.read_text()
    for case in CASES:
        assert f"`{case.documented()}`" in doc, f"the README lacks the message of {case.id!r}"


# --- every missing or invalid setting in one run ----------------------------------------------------

MISSING = {
    "REPOSITORY_URL": "REPOSITORY_URL is not set "
    "(set REPOSITORY_URL to the repository's HTTP(S) or SSH clone URL, without credentials)",
    "PONOS_PROCESS": "PONOS_PROCESS is not set "
    "(set PONOS_PROCESS (or ARKINDEX_PROCESS_ID) to the UUID of the process running this task)",
    "PONOS_TASK": "PONOS_TASK is not set (set PONOS_TASK to the UUID of the running task)",
    "ARKINDEX_API_URL": "ARKINDEX_API_URL is not set "
    "(set ARKINDEX_API_URL to the base URL of the Arkindex instance)",
    "token": "neither ARKINDEX_TASK_TOKEN nor ARKINDEX_API_TOKEN is set "
    "(Ponos sets ARKINDEX_TASK_TOKEN: outside Ponos, set ARKINDEX_API_TOKEN to a user API token)",
    "REPOSITORY_REVISION": "REPOSITORY_REVISION is not set "
    "(give the commit hash as `arkindex-git-import revision <hash>` or set REPOSITORY_REVISION)",
}
A_URL = "https://gitlab.example.com/group/workers.git"  # never reached: the settings stop the run first


def test_one_trigger_run_names_every_missing_setting(tmp_path: Path) -> None:
    """The issue's four runs (PONOS_PROCESS, then PONOS_TASK, then ARKINDEX_API_URL, then the token) in one."""
    result = run_tool(["trigger"], {"REPOSITORY_URL": A_URL, "PONOS_DATA": str(tmp_path)})

    assert result.code == 2, result.output
    assert "Traceback" not in result.output
    names = ("PONOS_PROCESS", "PONOS_TASK", "ARKINDEX_API_URL", "token")
    listed = "; ".join(MISSING[name] for name in names)
    assert error_lines(result) == [f"4 settings are missing or invalid: {listed}; nothing was created"]


def test_one_revision_run_names_every_missing_setting(tmp_path: Path) -> None:
    result = run_tool(["revision"], {"PONOS_DATA": str(tmp_path)})

    assert result.code == 2, result.output
    names = ("REPOSITORY_URL", "REPOSITORY_REVISION", "ARKINDEX_API_URL", "token")
    listed = "; ".join(MISSING[name] for name in names)
    assert error_lines(result) == [f"4 settings are missing or invalid: {listed}"]


def test_invalid_and_missing_settings_are_named_together(ponos: Ponos) -> None:
    env = {**ponos.env, "REPOSITORY_URL": A_URL, "MAX_REVISIONS": "0"}
    del env["PONOS_TASK"]

    result = run_tool(["trigger"], env)

    assert result.code == 2, result.output
    assert error_lines(result) == [
        f"2 settings are missing or invalid: {MAX_REVISIONS}; {MISSING['PONOS_TASK']}; nothing was created"
    ]
    assert_nothing_created(ponos)


def test_a_revision_argument_that_is_no_hash_is_named_with_what_is_missing(tmp_path: Path) -> None:
    result = run_tool(["revision", "abc123"], {"REPOSITORY_URL": A_URL, "PONOS_DATA": str(tmp_path)})

    assert result.code == 2, result.output
    assert error_lines(result) == [
        "3 settings are missing or invalid: REPOSITORY_REVISION: not a full 40-character commit hash "
        "(give the full 40-character hash of the commit to import); "
        f"{MISSING['ARKINDEX_API_URL']}; {MISSING['token']}"
    ]


def test_a_dry_run_needs_only_the_repository_url(tmp_path: Path) -> None:
    result = run_tool(["trigger", "--dry-run"], {"PONOS_DATA": str(tmp_path)})

    assert result.code == 2, result.output
    assert error_lines(result) == [f"{MISSING['REPOSITORY_URL']}; nothing was created"]
