"""Git operations: one small method per question asked of git, each through :mod:`git_import.git.process`.

Nothing here catches a git failure: a :class:`GitError` travels up unchanged (to a retry, or to the
one handler of the command line).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from git_import.git.process import ConfigGitError, GitEnv, GitError, GitProcess, git_argv, run, zsplit
from git_import.rules.commit import Commit
from git_import.rules.commit import parse_log_record as _parse_log_record
from git_import.rules.urls import ssh_host

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from git_import.settings import Settings

__all__ = [
    "Commit",
    "ConfigGitError",
    "GitEnv",
    "GitError",
    "GitProcess",
    "Repo",
    "clone_what",
    "git_env_for",
]


# One commit a record (records separated by NUL with `-z`): hash, author, author date, subject.
_LOG_FORMAT = "%H%x1f%an%x1f%aI%x1f%s"
# --no-mailmap: reading .mailmap would fetch a whole tree into a tree-less clone.
_FIRST_PARENT_LOG = (
    "log",
    "--first-parent",
    "-z",
    "--no-show-signature",
    "--no-mailmap",
    f"--format={_LOG_FORMAT}",
)

# `--diff-merges=first-parent`: a merge shows what it brought to the first-parent line; `-t`: the
# trees themselves too, as a non-recursive `ls-tree` lists a folder where a file is expected.
_FIRST_PARENT_RAW = (
    "log",
    "--first-parent",
    "--diff-merges=first-parent",
    "--raw",
    "-t",
    "-z",
    "--no-abbrev",
    "--no-renames",
    "--no-mailmap",
    "--no-show-signature",
    "--format=%H",
)
# (new mode, new oid, status letter, path) of one `git log --raw` line; a deletion has mode 000000.
RawChange = tuple[str, str, str, str]


def clone_what(branch: str | None) -> str:
    """How logs and errors name a clone of `branch` (None: the default branch)."""
    return f"cloning {branch or 'the default branch'}"


class Repo:
    """A bare repository in a temporary folder, with one remote `origin`."""

    def __init__(self, path: Path, git_env: GitEnv) -> None:
        self.path = path
        self.git_env = git_env

    # --- running git ------------------------------------------------------------------------
    def _argv(self, args: Iterable[str]) -> list[str]:
        return git_argv(*args, git_dir=self.path)

    def run(self, *args: str, what: str, input: bytes | None = None, check: bool = True) -> bytes:
        """Run git to its end and return its stdout; a failure raises a scrubbed :class:`GitError`."""
        return run(self._argv(args), self.git_env, what=what, input=input, ok=(0,) if check else None)[1]

    def _start(self, *args: str, what: str, input: bytes | None = None) -> GitProcess:
        """Start git with its stdout to be read as it comes: use as a context manager."""
        return GitProcess(self._argv(args), self.git_env, what=what, input=input, stdout=True)

    def _transfer(self, *args: str, what: str) -> None:
        """Run a transfer, logging git's progress as periodic plain lines."""
        with GitProcess(self._argv(args), self.git_env, what=what) as git:
            git.wait()

    # --- setting up -------------------------------------------------------------------------
    @classmethod
    def init(cls, path: Path, url: str, git_env: GitEnv) -> Repo:
        path.mkdir(parents=True, exist_ok=True)
        repo = cls(path, git_env)
        repo.run("init", "--quiet", "--bare", what="git init")
        repo.run("remote", "add", "origin", "--", url, what="git remote add")
        return repo

    @classmethod
    def clone(
        cls,
        path: Path,
        url: str,
        git_env: GitEnv,
        *,
        branch: str | None = None,
        filter: str | None = None,
        depth: int | None = None,
    ) -> Repo:
        """One `git clone --bare --single-branch`: the ref lookup and the fetch in one process, no checkout."""
        with cls.start_clone(path, url, git_env, branch=branch, filter=filter, depth=depth) as git:
            git.wait()
        return cls(path, git_env)

    @staticmethod
    def start_clone(
        path: Path,
        url: str,
        git_env: GitEnv,
        *,
        branch: str | None = None,
        filter: str | None = None,
        depth: int | None = None,
    ) -> GitProcess:
        """Start the clone of :meth:`clone` in the background: `wait()` for it, or `stop()` it."""
        args = ["clone", "--bare", "--no-tags", "--single-branch", "--progress"]
        if branch:
            args.append(f"--branch={branch}")
        if filter:
            args.append(f"--filter={filter}")
        if depth:
            args.append(f"--depth={depth}")
        return GitProcess(git_argv(*args, "--", url, str(path)), git_env, what=clone_what(branch))

    # --- the remote -------------------------------------------------------------------------
    def ls_remote(self, *patterns: str) -> tuple[dict[str, str], str | None]:
        """Refs of the remote matching the patterns (name → hash) and what HEAD points to."""
        out = self.run("ls-remote", "--symref", "origin", *patterns, what="listing the remote's refs")
        refs: dict[str, str] = {}
        head_target = None
        for line in out.decode(errors="replace").splitlines():
            left, _, name = line.partition("\t")
            if left.startswith("ref: "):
                if name == "HEAD":
                    head_target = left[len("ref: ") :]
                continue
            refs[name] = left
        return refs, head_target

    def fetch(
        self, *refspecs: str, filter: str | None = None, depth: int | None = None, what: str = "fetch"
    ) -> None:
        args = ["fetch", "--no-tags", "--no-write-fetch-head", "--no-auto-gc", "--progress"]
        if filter:
            args.append(f"--filter={filter}")
        if depth:
            args.append(f"--depth={depth}")
        self._transfer(*args, "origin", *refspecs, what=what)

    def fetch_objects(self, oids: list[str], what: str) -> None:
        """Fetch several missing objects (blobs) in one request, as a partial clone's lazy fetch does."""
        if not oids:
            return
        self.run(
            "-c",
            "fetch.negotiationAlgorithm=noop",
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-auto-gc",
            "--filter=blob:none",
            "--stdin",
            "origin",
            input="".join(f"{oid}\n" for oid in oids).encode(),
            what=what,
        )

    # --- refs and commits -------------------------------------------------------------------
    def local_refs(self) -> list[tuple[str, str]]:
        """(ref name, commit) of every local ref, tags peeled to their commit."""
        out = self.run(
            "for-each-ref", "--format=%(refname) %(objectname) %(*objectname)", what="listing refs"
        ).decode()
        refs = []
        for line in out.splitlines():
            name, oid, *peeled = line.split(" ")
            refs.append((name, peeled[0] if peeled and peeled[0] else oid))
        return refs

    def rev_parse_commit(self, rev: str) -> str | None:
        """The commit `rev` names, or None when there is none."""
        out = self.run(
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            f"{rev}^{{commit}}",
            what="rev-parse",
            check=False,
        )
        value = out.decode().strip()
        return value or None

    def _rev_list_held(self, *args: str) -> bytes | None:
        """`git rev-list --missing=allow-any ARGS`, asking no server: its output, or None when the clone
        lacks a commit the arguments name. A partial clone fetches a missing object on demand, except
        under rev-list's `--missing`, which turns that off (and `merge-base` has no such option)."""
        argv = self._argv(["rev-list", "--missing=allow-any", *args])
        status, out = run(argv, self.git_env, what="git rev-list", ok=(0, 128))
        return out if status == 0 else None

    def has_commit(self, oid: str) -> bool:
        """Whether the clone holds commit `oid`, asking no server."""
        return self._rev_list_held("--no-walk", "--end-of-options", oid) is not None

    def holds_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether the clone holds commit `ancestor` and it is `descendant` or one of its ancestors, in
        one git process that asks no server. `rev-list ANCESTOR ^DESCENDANT` lists nothing exactly when
        the ancestor is reachable, walking from `descendant` down to it (the push, not the history)."""
        out = self._rev_list_held("--max-count=1", "--end-of-options", ancestor, f"^{descendant}")
        return out is not None and not out.strip()

    def shallow_commits(self) -> set[str]:
        """The commits whose parents a shallow clone left out; none when it holds the whole history.

        git keeps them in the `shallow` file of the repository, one hash per line
        (gitrepository-layout(5)); reading it costs no git process."""
        try:
            return set((self.path / "shallow").read_text().split())
        except FileNotFoundError:
            return set()

    def rev_list(self, *revs: str) -> list[str]:
        """The commits `git rev-list REVS` lists, newest first (`^X` excludes X and its ancestors)."""
        return self.run("rev-list", "--end-of-options", *revs, what="git rev-list").decode().split()

    def first_parent_end(self, target: str, exclude: str) -> tuple[str, list[str]] | None:
        """The last commit of the first-parent walk from `target` down to `exclude` (excluded), with
        its parents as the clone knows them; None when the walk lists nothing, or when the clone lacks
        `exclude` (asking no server)."""
        out = self._rev_list_held("--first-parent", "--parents", "--end-of-options", target, f"^{exclude}")
        lines = out.decode().splitlines() if out is not None else []
        if not lines:
            return None
        last, *parents = lines[-1].split()
        return last, parents

    # --- history ----------------------------------------------------------------------------
    def first_parent_log(
        self,
        target: str,
        *,
        exclude: str | None = None,
        paths: list[str] | None = None,
        limit: int | None = None,
    ) -> list[Commit]:
        """Commits on the first-parent line from `target` (newest first), optionally limited to paths."""
        args = list(_FIRST_PARENT_LOG)
        if limit:
            args.append(f"--max-count={limit}")
        args += ["--end-of-options", target]
        if exclude:
            args.append(f"^{exclude}")
        if paths:
            args += ["--", *paths]
        out = self.run(*args, what="reading the commit history")
        return [commit for record in zsplit(out) if (commit := _parse_log_record(record)) is not None]

    def range_trees(self, target: str, before: str) -> list[str]:
        """The root trees of the first-parent commits from `target` down to `before`, both included."""
        return [tree for _, tree in self.commit_trees(target, before)]

    def commit_trees(self, target: str, before: str | None = None) -> list[tuple[str, str]]:
        """(commit, root tree) of the first-parent commits from `target` down to `before`, both included,
        newest first; of `target` alone without `before`. Reads commits only, never a tree."""
        # --boundary adds `before` itself; --no-mailmap, since reading .mailmap would fetch a whole tree.
        walk = (
            ["--boundary", "--end-of-options", target, f"^{before}"]
            if before
            else ["--no-walk", "--end-of-options", target]
        )
        out = self.run("log", "--first-parent", "--no-mailmap", "--format=%H %T", *walk, what="listing trees")
        return [(commit, tree) for commit, tree in (line.split(" ") for line in out.decode().splitlines())]

    def first_parent_changes(
        self, target: str, exclude: str, paths: list[str]
    ) -> list[tuple[str, list[RawChange]]]:
        """What each first-parent commit from `target` down to `exclude` (excluded) changed under
        `paths`, against its first parent: (commit, [(new mode, new oid, status, path)]), newest first,
        trees included (`-t`), commits that changed nothing there left out. One process for the whole
        range, reading trees only (no rename detection, which would read blobs)."""
        out = self.run(
            *_FIRST_PARENT_RAW,
            "--end-of-options",
            target,
            f"^{exclude}",
            "--",
            *paths,
            what="listing changes",
        )
        commits: list[tuple[str, list[RawChange]]] = []
        records = iter(out.split(b"\0"))
        for record in records:
            # `--format=%H` ends with the NUL of -z; a newline then starts the commit's raw lines.
            text = record.lstrip(b"\n")
            if text.startswith(b":"):
                _, new_mode, _, new_oid, status = text[1:].decode().split(" ")
                path = next(records).decode("utf-8", errors="surrogateescape")
                commits[-1][1].append((new_mode, new_oid, status[:1], path))
            elif text:
                commits.append((text.decode(), []))
        return commits

    # --- files ------------------------------------------------------------------------------
    def ls_tree(self, commit: str, *paths: str, recursive: bool = False) -> list[tuple[str, str, str, str]]:
        """(mode, type, oid, path) of the entries at these paths; reads trees only, never blobs."""
        args = ["ls-tree", "-z", "--full-tree"]
        if recursive:
            args.append("-r")
        args += ["--end-of-options", commit, *paths]
        entries = []
        for record in zsplit(self.run(*args, what="listing files")):
            meta, _, path = record.partition(b"\t")
            mode, kind, oid = meta.decode().split(" ")
            entries.append((mode, kind, oid, path.decode("utf-8", errors="surrogateescape")))
        return entries

    def read_blobs(self, oids: list[str], max_size: int | None = None) -> Iterator[tuple[str, bytes | int]]:
        """Contents of many blobs from one `git cat-file --batch` process, read as git writes them.

        A blob over `max_size` bytes is not kept: its size (an int) comes instead of its content, so that
        a huge file costs no memory before it is refused."""
        if not oids:
            return
        with self._start(
            "cat-file", "--batch", what="reading files", input="".join(f"{oid}\n" for oid in oids).encode()
        ) as git:
            stdout = git.stdout

            def read(count: int) -> bytes:
                data = stdout.read(count)
                if len(data) < count:
                    raise EOFError
                return data

            try:
                for _ in oids:
                    header = stdout.readline().decode(errors="replace").split()
                    if not header:
                        raise EOFError
                    if len(header) < 3:
                        raise GitError(f"object {header[0]} is missing from the clone")
                    size = int(header[2])
                    if max_size is not None and size > max_size:
                        left = size + 1
                        while left:
                            left -= len(read(min(left, 1 << 20)))
                        yield header[0], size
                    else:
                        yield header[0], read(size + 1)[:size]
            except EOFError:  # git ended midway: why, it says on stderr
                git.ended()
                raise git.error() from None


def git_env_for(settings: Settings) -> GitEnv:
    """The git environment the settings ask for. Each run builds it once (the early clone builds its
    own, silently), and so says once that an SSH host's key goes unchecked."""
    host = ssh_host(settings.repository_url or "")
    if host and not settings.repository_ssh_known_hosts:
        logger.warning(
            "REPOSITORY_SSH_KNOWN_HOSTS is not set: the SSH host key of %s is not verified, whatever key "
            "it shows is accepted; set REPOSITORY_SSH_KNOWN_HOSTS to its known_hosts line",
            host,
        )
    return GitEnv(
        username=settings.repository_username,
        token=settings.token,
        allow_local=settings.repository_allow_local,
        stall_timeout=settings.git_stall_timeout,
        timeout=settings.git_timeout,
        ssh_key=settings.ssh_key,
        ssh_known_hosts=settings.repository_ssh_known_hosts,
    )
