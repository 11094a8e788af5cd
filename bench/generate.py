"""Synthetic worker repositories for the benchmark, written with ``git fast-import`` and cached.

A repository of N commits on ``main``: the first commit adds FILES data files of SIZE random bytes
(under ``data/<dir>/``, 50 files a directory) and the worker configuration ``arkindex/worker.yml``;
every later commit rewrites CHANGES random data files with new random bytes (so history has real
weight: about N x CHANGES x SIZE bytes of blobs), and every WORKER_EVERY-th commit also changes the
worker file. Generation is deterministic (seeded) and cached under ``bench/.cache/repos/`` by its
parameters, so a second benchmark run reuses it.

Two more shapes, for other cases: a long history of small commits with a merged side branch
(:class:`HistorySpec`), and one commit declaring many workers (:class:`ManyWorkersSpec`).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

GENERATOR_VERSION = 2  # bump when the layout of the generated repositories changes
FILES_PER_DIR = 50
WORKER_PATH = "arkindex/worker.yml"
BRANCH = "main"
EPOCH = 1_700_000_000

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "LC_ALL": "C",
}


@dataclass(frozen=True)
class RepoSpec:
    commits: int
    files: int
    file_size: int
    worker_every: int
    changes: int = 3
    seed: int = 42

    @property
    def name(self) -> str:
        return (
            f"c{self.commits}-f{self.files}-s{self.file_size}-w{self.worker_every}"
            f"-x{self.changes}-r{self.seed}-v{GENERATOR_VERSION}.git"
        )

    def describe(self) -> str:
        return f"{self.commits} commits, {self.files} files of {self.file_size} B"

    def write(self, dest: Path) -> None:
        generate(self, dest)


def data_path(index: int) -> str:
    return f"data/{index // FILES_PER_DIR:03d}/file-{index:05d}.bin"


def worker_yaml(spec: RepoSpec, version: int) -> bytes:
    # One slug a repository: the emulator (as Arkindex) keeps a worker slug to one repository.
    return worker_config(f"bench-worker-{spec.commits}", f"configuration version {version}")


def worker_config(slug: str, what: str) -> bytes:
    """A valid worker file of the current format (`arkindex/*.yml`)."""
    return (
        f"slug: {slug}\n"
        "display_name: Bench worker\n"
        "type: classifier\n"
        f"description: Synthetic worker, {what}\n"
        "gpu_usage: disabled\n"
    ).encode()


def _inline(path: str, content: bytes) -> bytes:
    return b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(content), content)


def _commit_header(number: int, message: str, branch: str = BRANCH, mark: int | None = None) -> bytes:
    ident = f"Bench Author <bench@example.com> {EPOCH + number * 60} +0000"
    msg = message.encode()
    mark = number + 1 if mark is None else mark
    return (
        f"commit refs/heads/{branch}\nmark :{mark}\nauthor {ident}\ncommitter {ident}\n".encode()
        + b"data %d\n%s\n" % (len(msg), msg)
    )


def _git(*args: str, cwd: Path | None = None, **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, check=True, **kwargs)


def _fast_import(dest: Path) -> subprocess.Popen:  # type: ignore[type-arg]
    """A new bare repository at `dest` and a `git fast-import` writing into it from its stdin."""
    _git("init", "--quiet", "--bare", f"--initial-branch={BRANCH}", str(dest))
    return subprocess.Popen(
        ["git", "-c", "core.compression=1", "-c", "pack.compression=1", "fast-import", "--quiet", "--done"],
        cwd=dest,
        env={**os.environ, **GIT_ENV, "GIT_DIR": str(dest)},
        stdin=subprocess.PIPE,
    )


def _finish(proc: subprocess.Popen, dest: Path) -> None:  # type: ignore[type-arg]
    if proc.wait() != 0:
        raise RuntimeError(f"git fast-import failed with status {proc.returncode}")
    # What a maintained server (e.g. GitLab housekeeping) holds: a commit-graph.
    _git("commit-graph", "write", "--reachable", cwd=dest, stdout=subprocess.DEVNULL)


def generate(spec: RepoSpec, dest: Path) -> None:
    """Write the repository of `spec` as a bare repository at `dest` (which must not exist)."""
    rng = random.Random(spec.seed)
    proc = _fast_import(dest)
    assert proc.stdin is not None
    out = proc.stdin
    worker_version = 0
    try:
        out.write(b"feature done\n")
        header = _commit_header(0, "Initial commit: data files and the worker configuration")
        out.write(header)
        out.write(_inline(WORKER_PATH, worker_yaml(spec, worker_version)))
        for index in range(spec.files):
            out.write(_inline(data_path(index), rng.randbytes(spec.file_size)))
        out.write(b"\n")
        for number in range(1, spec.commits):
            touched = rng.sample(range(spec.files), min(spec.changes, spec.files))
            change_worker = spec.worker_every > 0 and number % spec.worker_every == 0
            message = f"Commit {number}: update {len(touched)} data file(s)"
            if change_worker:
                worker_version += 1
                message += f" and the worker configuration (version {worker_version})"
            out.write(_commit_header(number, message))
            if change_worker:
                out.write(_inline(WORKER_PATH, worker_yaml(spec, worker_version)))
            for index in touched:
                out.write(_inline(data_path(index), rng.randbytes(spec.file_size)))
            out.write(b"\n")
        out.write(b"done\n")
        out.close()
    except BrokenPipeError:
        pass
    _finish(proc, dest)


# --- a long history with a merge ------------------------------------------------------------------


@dataclass(frozen=True)
class HistorySpec:
    """COMMITS first-parent commits on `main`, each rewriting one of FILES small files (a few bytes);
    a side branch of SIDE commits forks at main~FORK and is merged back by the commit main~MERGE, so its
    commits are ancestors of the tip without being on main's first-parent line. The side branch's ref
    is deleted, as after a merge request: only `main` remains."""

    commits: int = 200_000
    files: int = 64
    fork: int = 450  # first-parent distance of the fork point from the tip
    merge: int = 200  # first-parent distance of the merge commit from the tip
    side: int = 5

    @property
    def name(self) -> str:
        shape = f"c{self.commits}-f{self.files}-fork{self.fork}-m{self.merge}-s{self.side}"
        return f"history-{shape}-v{GENERATOR_VERSION}.git"

    def describe(self) -> str:
        return f"{self.commits} small commits, a side branch merged at main~{self.merge}"

    def write(self, dest: Path) -> None:
        if not 0 < self.merge < self.fork < self.commits - 1:
            raise ValueError("a history needs 0 < merge < fork < commits - 1")
        proc = _fast_import(dest)
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # fast-import failed: _finish reports it
            _write_history(self, proc.stdin)
        _finish(proc, dest)
        _git("update-ref", "-d", "refs/heads/side", cwd=dest)

    def side_commit(self, repo: Path) -> str:
        """The side branch's last commit: reachable from the tip only through the merge."""
        return rev_parse(repo, f"{BRANCH}~{self.merge}^2")


def _write_history(spec: HistorySpec, out) -> None:  # type: ignore[no-untyped-def]
    """The fast-import stream of `spec`: main's commit i has mark i + 1, side commit j mark commits + 1 + j."""
    fork_at, merge_at = spec.commits - 1 - spec.fork, spec.commits - 1 - spec.merge
    side_files = [(f"side/{j}.txt", b"side commit %d\n" % j) for j in range(spec.side)]
    chunk: list[bytes] = [b"feature done\n"]
    for number in range(spec.commits):
        message = f"Merge branch 'side' (commit {number})" if number == merge_at else f"Commit {number}"
        chunk.append(_commit_header(number, message))
        if number == 0:
            chunk.append(_inline(WORKER_PATH, worker_config(f"bench-history-{spec.commits}", "history")))
        if number == merge_at:
            chunk.append(b"merge :%d\n" % (spec.commits + spec.side))
            chunk.extend(_inline(path, content) for path, content in side_files)
        chunk.append(_inline(f"data/{number % spec.files:03d}.txt", b"commit %d\n" % number))
        chunk.append(b"\n")
        if number == fork_at:
            for j, (path, content) in enumerate(side_files):
                mark = spec.commits + 1 + j
                chunk.append(_commit_header(number, f"Side commit {j}", branch="side", mark=mark))
                chunk.append(b"from :%d\n" % (mark - 1 if j else number + 1))
                chunk.append(_inline(path, content) + b"\n")
        if len(chunk) > 4000:
            out.write(b"".join(chunk))
            chunk.clear()
    chunk.append(b"done\n")
    out.write(b"".join(chunk))
    out.close()


# --- one commit, many workers ---------------------------------------------------------------------


@dataclass(frozen=True)
class ManyWorkersSpec:
    """One commit on `main` declaring WORKERS workers: `arkindex/w000.yml`, `arkindex/w001.yml`, ..."""

    workers: int = 200

    @property
    def name(self) -> str:
        return f"workers-n{self.workers}-v{GENERATOR_VERSION}.git"

    def describe(self) -> str:
        return f"one commit, {self.workers} worker files"

    def write(self, dest: Path) -> None:
        proc = _fast_import(dest)
        assert proc.stdin is not None
        stream = [b"feature done\n", _commit_header(0, f"{self.workers} workers")]
        for index in range(self.workers):
            config = worker_config(f"bench-many-{index:03d}", f"worker {index} of {self.workers}")
            stream.append(_inline(f"arkindex/w{index:03d}.yml", config))
        stream.append(b"\ndone\n")
        proc.stdin.write(b"".join(stream))
        proc.stdin.close()
        _finish(proc, dest)


# --- cache ----------------------------------------------------------------------------------------


class Spec(Protocol):
    @property
    def name(self) -> str: ...

    def describe(self) -> str: ...

    def write(self, dest: Path) -> None: ...


def ensure_repo(spec: Spec, root: Path, log=print) -> Path:  # type: ignore[no-untyped-def]
    """The cached repository of `spec` under `root`, generated when missing."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    dest = root / spec.name
    if (dest / "bench-complete").exists():
        return dest
    tmp = root / f".tmp-{spec.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(dest, ignore_errors=True)
    started = time.monotonic()
    log(f"generating {spec.name} ({spec.describe()}) ...")
    try:
        spec.write(tmp)
        (tmp / "bench-complete").write_text("ok\n")
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    log(f"generated {spec.name} in {time.monotonic() - started:.1f} s ({size / 1e6:.0f} MB on disk)")
    return dest


def rev_parse(repo: Path, rev: str) -> str:
    return _git("rev-parse", "--verify", rev, cwd=repo, capture_output=True, text=True).stdout.strip()


def repo_size(repo: Path) -> int:
    return sum(f.stat().st_size for f in repo.rglob("*") if f.is_file())
