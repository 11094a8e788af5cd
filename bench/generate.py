"""Synthetic worker repositories for the benchmark, written with ``git fast-import`` and cached.

A repository of N commits on ``main``: the first commit adds FILES data files of SIZE random bytes
(under ``data/<dir>/``, 50 files a directory) and the worker configuration ``arkindex/worker.yml``;
every later commit rewrites CHANGES random data files with new random bytes (so history has real
weight: about N x CHANGES x SIZE bytes of blobs), and every WORKER_EVERY-th commit also changes the
worker file. Generation is deterministic (seeded) and cached under ``bench/.cache/repos/`` by its
parameters, so a second benchmark run reuses it.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

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


def data_path(index: int) -> str:
    return f"data/{index // FILES_PER_DIR:03d}/file-{index:05d}.bin"


def worker_yaml(spec: RepoSpec, version: int) -> bytes:
    # One slug a repository: the emulator (as Arkindex) keeps a worker slug to one repository.
    return (
        f"slug: bench-worker-{spec.commits}\n"
        "display_name: Bench worker\n"
        "type: classifier\n"
        f"description: Synthetic worker, configuration version {version}\n"
        "gpu_usage: disabled\n"
    ).encode()


def _inline(path: str, content: bytes) -> bytes:
    return b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(content), content)


def _commit_header(number: int, message: str) -> bytes:
    ident = f"Bench Author <bench@example.com> {EPOCH + number * 60} +0000"
    msg = message.encode()
    return (
        f"commit refs/heads/{BRANCH}\nmark :{number + 1}\nauthor {ident}\ncommitter {ident}\n".encode()
        + b"data %d\n%s\n" % (len(msg), msg)
    )


def _git(*args: str, cwd: Path | None = None, **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, check=True, **kwargs)


def generate(spec: RepoSpec, dest: Path) -> None:
    """Write the repository of `spec` as a bare repository at `dest` (which must not exist)."""
    rng = random.Random(spec.seed)
    _git("init", "--quiet", "--bare", f"--initial-branch={BRANCH}", str(dest))
    proc = subprocess.Popen(
        ["git", "-c", "core.compression=1", "-c", "pack.compression=1", "fast-import", "--quiet", "--done"],
        cwd=dest,
        env={**os.environ, **GIT_ENV, "GIT_DIR": str(dest)},
        stdin=subprocess.PIPE,
    )
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
    if proc.wait() != 0:
        raise RuntimeError(f"git fast-import failed with status {proc.returncode}")
    # What a maintained server (e.g. GitLab housekeeping) holds: a commit-graph.
    _git("commit-graph", "write", "--reachable", cwd=dest, stdout=subprocess.DEVNULL)


def ensure_repo(spec: RepoSpec, root: Path, log=print) -> Path:  # type: ignore[no-untyped-def]
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
    log(f"generating {spec.name} ({spec.commits} commits, {spec.files} files of {spec.file_size} B) ...")
    try:
        generate(spec, tmp)
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
