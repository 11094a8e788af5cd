"""Benchmark of the Git import task (issue 4): one command, a Markdown table and a JSON file.

    .venv/bin/python bench/run.py [--commits 5000 --files 2000 --file-size 20000 --worker-every 50
                                  --push 500 --runs 3 --delay 0.02] [--quick]

It generates (and caches under bench/.cache/) synthetic repositories with `git fast-import`, serves
them with `git http-backend` on 127.0.0.1 (git_import.local.gitserver, in a thread of this process),
starts the Arkindex emulator in its own process with a delay on each CreateTask, and measures each
case as a child process: wall time, peak RSS of its whole process tree (sampled from /proc every
10 ms) and bytes the Git server sent. Cases, run round-robin `--runs` times:

- trigger (all / paths): `python -m git_import trigger` over a push of `--push` first-parent
  commits (REPOSITORY_BEFORE = tip~push, REPOSITORY_AFTER = tip), without and with
  REPOSITORY_PATHS=arkindex;
- floor (all / paths): `git clone --bare --filter=tree:0` (`blob:none` with paths) of the same URL,
  plus the ideal fan-out time, tasks x delay / FAN_OUT_CONCURRENCY;
- naive (all / paths): bench/naive.py, a full `git clone` then one CreateTask after another;
- revision@N: `python -m git_import revision <hash>` on a repository of N commits of history.

Newer cases (not run by default; `--cases newer` runs them all, see bench/README.md):

- history-clone, history-linear, history-after-not-tip, history-before-via-merge, history-below-clone:
  on a history of `--big-commits` small commits with a merged side branch, the clone (the reference)
  and the trigger over four pushes, without CreateTask delay (the last one's AFTER lies below the
  trigger's first clone, which then clones the whole history);
- floor-fanout: the clone plus a measured reference fan-out (bench/fanout.py: threads with a
  keep-alive http.client connection each) of the trigger's own CreateTask bodies;
- faulty-api: the trigger over a push of `--faulty-push` revisions against an emulator injecting
  errors and lost connections; every run checked to leave exactly one task a revision;
- revision-many-workers: the revision task on one commit of `--workers` worker files, with
  `--api-latency` on every API request;
- dryrun-all: `trigger --dry-run --format json` over the `--push` commits of trigger-all, which
  also reads every revision's worker configuration (no Arkindex: no emulator).

Then one profiling pass of the trigger (a `git` wrapper on PATH counts the git processes the tool
starts; Python start-up and import time are timed separately). Figures go to
bench/results/latest.json (bench/results/quick.json with --quick).
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from generate import (  # noqa: E402
    WORKER_PATH,
    HistorySpec,
    ManyWorkersSpec,
    RepoSpec,
    ensure_repo,
    repo_size,
    rev_parse,
)

from git_import.early import SHALLOW_DEPTH  # noqa: E402
from git_import.local.gitserver import GitHTTPServer  # noqa: E402
from git_import.rules.urls import task_slug  # noqa: E402
from git_import.settings import SETTING_PREFIXES  # noqa: E402

CACHE = BENCH / ".cache"
RESULTS = BENCH / "results"
PAGE = os.sysconf("SC_PAGE_SIZE")
IMPORT_IMAGE = "registry.example.com/arkindex-git-import:bench"
GIT_CLEAN_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def base_env() -> dict[str, str]:
    """This process' environment without any setting the tool reads (as tests/conftest.py does)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- measuring a process tree -----------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids.extend(int(x) for x in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return kids


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class TreeSampler(threading.Thread):
    """Samples the RSS of a process and all its descendants every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.peak_single = 0
        self.samples = 0
        self.seen: dict[int, str] = {}
        self._halt = threading.Event()

    def sample(self) -> None:
        total = 0
        stack = [self.pid]
        while stack:
            pid = stack.pop()
            rss = _rss(pid)
            total += rss
            self.peak_single = max(self.peak_single, rss)
            if pid not in self.seen:
                self.seen[pid] = _cmdline(pid)
            stack.extend(_children(pid))
        self.samples += 1
        self.peak = max(self.peak, total)

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


@dataclass
class Measure:
    case: str
    run: int
    wall: float
    peak_rss: int
    peak_single_rss: int
    bytes_fetched: int
    git_requests: int
    processes: int
    git_processes: int
    returncode: int
    ideal_fan_out: float = 0.0  # floor cases: tasks x delay / concurrency, added to `wall`
    tasks: int | None = None
    phases: dict[str, float] = field(default_factory=dict)
    stderr_tail: str = ""
    check: str = ""  # what the run's check of the outcome found wrong (newer cases); "" when all is well
    notes: dict[str, Any] = field(default_factory=dict)  # other figures of the run (retries, faults)

    def to_json(self) -> dict[str, Any]:
        keep_tail = self.returncode != 0 or bool(self.check)
        return {k: v for k, v in self.__dict__.items() if k != "stderr_tail" or keep_tail}

    def fail_check(self, problem: str) -> None:
        self.check = "; ".join(filter(None, [self.check, problem]))
        log(f"{self.case} run {self.run}: check failed: {problem}")


def measure(
    case: str,
    run: int,
    argv: list[str],
    env: dict[str, str],
    git: GitHTTPServer,
    *,
    timeout: float = 1800,
) -> tuple[Measure, str, str]:
    """Run `argv` as a child process; wall time, peak tree RSS, bytes the Git server sent."""
    git.reset_counters()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        # From a neutral folder: `python -m` puts the working folder first on sys.path, and from the
        # checkout it would import that checkout's git_import whatever interpreter runs it (bench/ab.py).
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=tempfile.gettempdir()
        )
        sampler = TreeSampler(proc.pid)
        sampler.start()
        # A blocking wait, with a timer to kill a hung run: Popen.wait(timeout) polls with sleeps of
        # up to 50 ms, which added 0-50 ms to every measured wall time.
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        try:
            proc.wait()
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - started
        sampler.stop()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    with git._lock:
        sent, requests_count = git.bytes_sent, len(git.requests)
    git_procs = sum(1 for cmd in sampler.seen.values() if re.match(r"^\S*git(-\S+)?\b", cmd))
    m = Measure(
        case=case,
        run=run,
        wall=wall,
        peak_rss=sampler.peak,
        peak_single_rss=sampler.peak_single,
        bytes_fetched=sent,
        git_requests=requests_count,
        processes=len(sampler.seen),
        git_processes=git_procs,
        returncode=proc.returncode,
        stderr_tail="\n".join(stderr.strip().splitlines()[-15:]),
    )
    if proc.returncode != 0:
        log(f"{case} run {run}: exit status {proc.returncode}\n{m.stderr_tail}")
    return m, stdout, stderr


_TIMINGS = re.compile(r"timings: (.*)$", re.M)


def parse_timings(stderr: str) -> dict[str, float]:
    match = _TIMINGS.search(stderr)
    if not match:
        return {}
    phases = {}
    for part in match.group(1).split(","):
        name, _, value = part.strip().rpartition(" ")
        with contextlib.suppress(ValueError):
            phases[name] = float(value.rstrip("s"))
    return phases


# --- the emulator, in its own process ---------------------------------------------------------------


class EmulatorProcess:
    def __init__(self, delay: float, workdir: Path, name: str = "emulator") -> None:
        self.delay = delay
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.session = requests.Session()

    def __enter__(self) -> EmulatorProcess:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "git_import.local.emulator",
                "--port",
                "0",
                "--create-task-delay",
                str(self.delay),
            ],
            env=base_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            match = re.search(r"listening on (\S+)", self.log_path.read_text(errors="replace"))
            if match:
                self.url = match.group(1)
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"the emulator did not start: {self.log_path.read_text(errors='replace')}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        resp = self.session.request(method, f"{self.url}_emulator/{path}", json=body, timeout=60)
        resp.raise_for_status()
        return resp.json()

    def new_process(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """A repository process with its running trigger task (with its Ponos token)."""
        process = self.admin("POST", "processes", {"name": "Bench import", "mode": "repository", "env": {}})
        task = self.admin(
            "POST",
            "tasks",
            {"process_id": process["id"], "slug": "import", "command": "arkindex-git-import trigger"},
        )
        return process, task

    def child_task(self, process: dict[str, Any], parent: dict[str, Any], slug: str) -> dict[str, Any]:
        return self.admin(
            "POST",
            "tasks",
            {"process_id": process["id"], "slug": slug, "parents": [parent["id"]], "state": "running"},
        )


# --- the benchmark ----------------------------------------------------------------------------------


@dataclass
class Push:
    url: str
    repo: Path
    before: str
    after: str
    expected: dict[str, int]  # "all" / "paths": number of revisions


@dataclass
class History:
    """The long-history repository and the pushes its cases import: case -> (before, after, revisions)."""

    url: str
    repo: Path
    pushes: dict[str, tuple[str, str, int]]


def first_parent(repo: Path, after: str, before: str) -> list[str]:
    """`git rev-list --first-parent AFTER ^BEFORE`, oldest first: the revisions a trigger selects."""
    out = subprocess.run(
        ["git", f"--git-dir={repo}", "rev-list", "--first-parent", "--reverse", after, f"^{before}"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_CLEAN_ENV},
    ).stdout
    return out.split()


def task_bodies(push: Push, process: dict[str, Any], task: dict[str, Any]) -> list[dict[str, Any]]:
    """The CreateTask bodies the trigger sends for `push` (the shape of git_import.trigger.task_body)."""
    hashes = first_parent(push.repo, push.after, push.before)
    return [
        {
            "process_id": process["id"],
            "slug": task_slug(commit),
            "parents": [task["id"]],
            "image": IMPORT_IMAGE,
            "command": f"arkindex-git-import revision {commit}",
            "env": {
                "REPOSITORY_REVISION": commit,
                "REPOSITORY_URL": push.url,
                "WORKER_UPDATE": "1" if commit == hashes[-1] else "0",
                "REPOSITORY_REF": "refs/heads/main",
            },
        }
        for commit in hashes
    ]


class Bench:
    def __init__(
        self,
        args: argparse.Namespace,
        git: GitHTTPServer,
        emu: EmulatorProcess,
        work: Path,
        stack: contextlib.ExitStack | None = None,
    ) -> None:
        self.args = args
        self.git = git
        self.emu = emu
        self.work = work
        self.concurrency = args.concurrency
        self.stack = stack or contextlib.ExitStack()  # closes the emulators `emulator` starts
        self.emulators: dict[str, EmulatorProcess] = {}
        self.tool_python = sys.executable  # the interpreter that runs the tool (bench/ab.py sets another)

    def emulator(self, name: str, delay: float, faults: dict[str, Any] | None = None) -> EmulatorProcess:
        """An emulator process of its own, started at first use, for cases that need other settings:
        faults set on the shared one would hit the other cases' runs."""
        emu = self.emulators.get(name)
        if emu is None:
            emu = self.stack.enter_context(EmulatorProcess(delay, self.work, name))
            if faults:
                emu.admin("PUT", "faults", faults)
            self.emulators[name] = emu
        return emu

    def ponos_env(
        self, process: dict[str, Any], task: dict[str, Any], data: Path, emu: EmulatorProcess | None = None
    ) -> dict[str, str]:
        env = base_env()
        env.update(
            {
                "PONOS_PROCESS": process["id"],
                "PONOS_TASK": task["id"],
                "PONOS_DATA": str(data),
                "ARKINDEX_API_URL": (emu or self.emu).url,
                "ARKINDEX_TASK_TOKEN": task["token"],
                "IMPORT_IMAGE": IMPORT_IMAGE,
            }
        )
        if self.args.fan_out_concurrency_env:
            env["FAN_OUT_CONCURRENCY"] = str(self.concurrency)
        return env

    def push_env(self, push: Push, paths: bool) -> dict[str, str]:
        env = {
            "REPOSITORY_URL": push.url,
            "REPOSITORY_REF": "main",
            "REPOSITORY_BEFORE": push.before,
            "REPOSITORY_AFTER": push.after,
            "MAX_REVISIONS": str(max(500, self.args.push + 10)),
        }
        if paths:
            env["REPOSITORY_PATHS"] = "arkindex"
        return env

    def run_trigger(
        self,
        case: str,
        run: int,
        emu: EmulatorProcess,
        repo_env: dict[str, str],
        extra_env: dict[str, str] | None = None,
    ) -> tuple[Measure, dict[str, Any], str]:
        """One trigger run in a new process of `emu`: the measure (tasks: those the plan says it created),
        the process and its trigger task, and the tool's stderr."""
        process, task = emu.new_process()
        data = Path(tempfile.mkdtemp(prefix="data-", dir=self.work))
        env = {**self.ponos_env(process, task, data, emu), **repo_env, **(extra_env or {})}
        m, _out, err = measure(case, run, [self.tool_python, "-m", "git_import", "trigger"], env, self.git)
        m.phases = parse_timings(err)
        plan_file = data / "current" / "import-plan.json"
        if plan_file.exists():
            plan = json.loads(plan_file.read_text())
            m.tasks = plan["summary"]["created"]
        shutil.rmtree(data, ignore_errors=True)
        return m, {"process": process, "task": task}, err

    def trigger(self, push: Push, paths: bool, run: int, extra_env: dict[str, str] | None = None) -> Measure:
        case = "trigger-paths" if paths else "trigger-all"
        m, _, _ = self.run_trigger(case, run, self.emu, self.push_env(push, paths), extra_env)
        expected = push.expected["paths" if paths else "all"]
        if m.returncode == 0 and m.tasks != expected:
            log(f"{case}: {m.tasks} task(s) created, {expected} expected")
        return m

    def clone(self, case: str, run: int, url: str, filt: str = "tree:0") -> Measure:
        """`git clone --bare --filter=<filt>` of `url`, into a folder removed afterwards."""
        dest = Path(tempfile.mkdtemp(prefix="floor-", dir=self.work)) / "repo.git"
        env = {**base_env(), **GIT_CLEAN_ENV}
        argv = ["git", "clone", "--quiet", "--bare", f"--filter={filt}", url, str(dest)]
        m, _, _ = measure(case, run, argv, env, self.git)
        shutil.rmtree(dest.parent, ignore_errors=True)
        return m

    def floor(self, push: Push, paths: bool, run: int) -> Measure:
        case = "floor-paths" if paths else "floor-all"
        m = self.clone(case, run, push.url, "blob:none" if paths else "tree:0")
        m.tasks = push.expected["paths" if paths else "all"]
        m.ideal_fan_out = m.tasks * self.args.delay / self.concurrency
        m.phases = {"clone": m.wall, "fan-out (ideal)": m.ideal_fan_out}
        m.wall += m.ideal_fan_out
        return m

    def naive(self, push: Push, paths: bool, run: int) -> Measure:
        case = "naive-paths" if paths else "naive-all"
        process, task = self.emu.new_process()
        data = Path(tempfile.mkdtemp(prefix="data-", dir=self.work))
        env = {**self.ponos_env(process, task, data), **self.push_env(push, paths), "TMPDIR": str(self.work)}
        m, out, _ = measure(case, run, [sys.executable, str(BENCH / "naive.py")], env, self.git)
        shutil.rmtree(data, ignore_errors=True)
        try:
            m.tasks = int(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            m.tasks = None
        return m

    def run_revision(
        self, case: str, run: int, emu: EmulatorProcess, url: str, commit: str
    ) -> tuple[Measure, dict[str, Any] | None]:
        """One revision task run in a new process of `emu`: the measure and the import report."""
        process, trigger = emu.new_process()
        task = emu.child_task(process, trigger, f"import-{commit}")
        data = Path(tempfile.mkdtemp(prefix="data-", dir=self.work))
        env = self.ponos_env(process, task, data, emu)
        env.update(
            {
                "REPOSITORY_URL": url,
                "REPOSITORY_REVISION": commit,
                "REPOSITORY_REF": "refs/heads/main",
                "WORKER_IMAGE_TEMPLATE": "registry.example.com/{slug}:{short_hash}",
            }
        )
        m, _, err = measure(
            case, run, [self.tool_python, "-m", "git_import", "revision", commit], env, self.git
        )
        m.phases = parse_timings(err)
        report_file = data / "current" / "import-report.json"
        report = json.loads(report_file.read_text()) if report_file.exists() else None
        shutil.rmtree(data, ignore_errors=True)
        return m, report

    def revision(self, label: str, url: str, repo: Path, run: int) -> Measure:
        case = f"revision@{label}"
        commit = rev_parse(repo, f"main~{run}")  # a different revision each run: each is a first import
        m, report = self.run_revision(case, run, self.emu, url, commit)
        if report is not None:
            m.tasks = len(report.get("workers") or [])  # here: workers registered
            if m.returncode == 0 and m.tasks != 1:
                log(f"{case}: {m.tasks} worker(s) registered, 1 expected")
        return m

    # --- the cases of the history shape, the fan-out floor, a faulty API, many workers --------------

    def history_trigger(self, case: str, history: History, run: int) -> Measure:
        """The trigger over one push of the long history, against an emulator without CreateTask delay."""
        before, after, expected = history.pushes[case]
        repo_env = {
            "REPOSITORY_URL": history.url,
            "REPOSITORY_REF": "main",
            "REPOSITORY_BEFORE": before,
            "REPOSITORY_AFTER": after,
            "MAX_REVISIONS": str(max(500, expected + 10)),
        }
        m, _, _ = self.run_trigger(case, run, self.emulator("emulator-no-delay", 0.0), repo_env)
        if m.returncode == 0 and m.tasks != expected:
            m.fail_check(f"{m.tasks} task(s) created, {expected} expected")
        return m

    def floor_fanout(self, push: Push, run: int) -> Measure:
        """The clone, then the reference fan-out (bench/fanout.py) of the same bodies, each measured."""
        m = self.clone("floor-fanout", run, push.url)
        process, task = self.emu.new_process()
        spec = self.work / "fanout.json"
        spec.write_text(
            json.dumps(
                {
                    "url": f"{self.emu.url}api/v1/task/",
                    "token": task["token"],
                    "concurrency": self.concurrency,
                    "bodies": task_bodies(push, process, task),
                }
            )
        )
        argv = [sys.executable, str(BENCH / "fanout.py"), str(spec)]
        fan, out, _ = measure("floor-fanout", run, argv, base_env(), self.git)
        try:
            result = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            result = {"seconds": fan.wall, "statuses": {}}
        m.phases = {"clone": m.wall, "fan-out": result["seconds"], "fan-out process": fan.wall}
        m.wall += result["seconds"]
        m.peak_rss, m.peak_single_rss = max(m.peak_rss, fan.peak_rss), max(m.peak_single_rss, fan.peak_rss)
        m.returncode = m.returncode or fan.returncode
        m.stderr_tail = m.stderr_tail or fan.stderr_tail
        m.tasks = result["statuses"].get("201", 0)
        m.notes = {"statuses": result["statuses"]}
        if m.tasks != push.expected["all"]:
            m.fail_check(f"{m.tasks} task(s) created, {push.expected['all']} expected: {result['statuses']}")
        return m

    def faulty_api(self, push: Push, run: int) -> Measure:
        """The trigger against an emulator with faults; every slug checked to be created exactly once."""
        emu = self.emulator("emulator-faulty", self.args.delay, FAULTY_API)
        before = emu.admin("GET", "state")["stats"]
        m, created, err = self.run_trigger("faulty-api", run, emu, self.push_env(push, False))
        state = emu.admin("GET", "state")
        process, task = created["process"], created["task"]
        slugs = [
            t["slug"] for t in state["tasks"] if t["process_id"] == process["id"] and t["id"] != task["id"]
        ]
        expected = {task_slug(commit) for commit in first_parent(push.repo, push.after, push.before)}
        m.tasks = len(slugs)
        retries = re.search(r"(\d+) API retries", err)
        m.notes = {
            "api_retries": int(retries.group(1)) if retries else None,
            "faults": {k: state["stats"][k] - before.get(k, 0) for k in state["stats"]},
        }
        if len(slugs) != len(expected) or set(slugs) != expected:
            missing, extra = len(expected - set(slugs)), len(slugs) - len(set(slugs) & expected)
            m.fail_check(
                f"{len(slugs)} child task(s), {len(expected)} expected: {missing} missing, {extra} extra"
            )
        return m

    def dry_run(self, push: Push, run: int, extra_env: dict[str, str] | None = None) -> Measure:
        """`trigger --dry-run --format json` over the push: no Arkindex setting, so no emulator; each
        run checks that the plan lists every revision of the push with its workers."""
        env = {**base_env(), "IMPORT_IMAGE": IMPORT_IMAGE, **self.push_env(push, False), **(extra_env or {})}
        argv = [self.tool_python, "-m", "git_import", "trigger", "--dry-run", "--format", "json"]
        m, out, err = measure("dryrun-all", run, argv, env, self.git)
        m.phases = parse_timings(err)
        try:
            revisions = json.loads(out)["revisions"]
        except (ValueError, KeyError):
            m.fail_check("no JSON plan on stdout")
            return m
        m.tasks = len(revisions)  # here: revisions planned, each with its workers read
        workers = [r.get("workers") for r in revisions]
        m.notes = {
            "revisions_with_workers": sum(1 for w in workers if w),
            "revisions_with_an_invalid_file": sum(1 for w in workers if w and not all(x["valid"] for x in w)),
        }
        if m.tasks != push.expected["all"] or any(w is None for w in workers):
            m.fail_check(
                f"{m.tasks} revision(s) planned, {push.expected['all']} expected, each with its workers"
            )
        return m

    def many_workers(self, url: str, repo: Path, run: int) -> Measure:
        """The revision task on one commit of many workers, with latency on every API request; a fresh
        emulator each run, so that every worker and version is new."""
        case = "revision-many-workers"
        with EmulatorProcess(0.0, self.work, f"emulator-workers-{run}") as emu:
            emu.admin("PUT", "faults", {"latency": self.args.api_latency})
            m, report = self.run_revision(case, run, emu, url, rev_parse(repo, "main"))
        if report is not None:
            m.tasks = len(report.get("workers") or [])  # here: workers registered
            if report.get("errors"):
                m.fail_check(f"{len(report['errors'])} error(s) in the import report")
        if m.returncode == 0 and m.tasks != self.args.workers:
            m.fail_check(f"{m.tasks} worker(s) registered, {self.args.workers} expected")
        return m


# --- profiling --------------------------------------------------------------------------------------


def python_startup(runs: int = 5) -> dict[str, Any]:
    """Wall time of a bare interpreter, and of importing what the trigger imports."""

    def timed(code: str) -> float:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=base_env(), cwd=ROOT)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    imports = "import git_import.cli, git_import.settings, git_import.trigger, git_import.arkindex, git_import.revision"
    result = {"python_bare_s": timed("pass"), "python_with_imports_s": timed(imports)}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", imports],
        env=base_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    rows = []
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            if len(name) - len(name.lstrip()) <= 2:  # top-level imports only
                rows.append((int(parts[1]), name.strip()))
    rows.sort(reverse=True)
    result["top_imports_cumulative_ms"] = {name: round(us / 1000, 1) for us, name in rows[:10]}
    return result


def profile_git(bench: Bench, case: str, run: Callable[[dict[str, str]], Measure]) -> dict[str, Any]:
    """One run of `case` with a `git` wrapper on PATH that records each git command the tool starts."""
    wrap = CACHE / "gitwrap"
    wrap.mkdir(parents=True, exist_ok=True)
    real_git = shutil.which("git")
    script = wrap / "git"
    script.write_text(
        f'#!/bin/sh\nprintf \'%s %s\\n\' "$(date +%s.%N)" "$*" >> "$BENCH_GIT_LOG"\nexec {real_git} "$@"\n'
    )
    script.chmod(0o755)
    log_file = bench.work / f"git-{case}.log"
    log_file.unlink(missing_ok=True)
    m = run({"PATH": f"{wrap}{os.pathsep}{os.environ.get('PATH', '')}", "BENCH_GIT_LOG": str(log_file)})
    commands = []
    if log_file.exists():
        for line in log_file.read_text().splitlines():
            _, _, argv = line.partition(" ")
            words = [w for w in argv.split() if not w.startswith("--git-dir=")]
            # the subcommand: the first word that is not an option or a -c value
            sub, skip = "?", False
            for w in words:
                if skip:
                    skip = False
                    continue
                if w == "-c":
                    skip = True
                    continue
                if not w.startswith("-"):
                    sub = w
                    break
            commands.append(sub)
    counts: dict[str, int] = {}
    for c in commands:
        counts[c] = counts.get(c, 0) + 1
    return {
        "git_commands_started_by_tool": len(commands),
        "by_subcommand": counts,
        "processes_seen_in_tree": m.processes,
        "wall_s": round(m.wall, 3),
        "phases": m.phases,
    }


# --- report -----------------------------------------------------------------------------------------


def summarize(measures: list[Measure]) -> dict[str, Any]:
    ok = [m for m in measures if m.returncode == 0] or measures
    walls = [m.wall for m in ok]
    phases: dict[str, float] = {}
    for name in {k for m in ok for k in m.phases}:
        values = [m.phases[name] for m in ok if name in m.phases]
        phases[name] = round(statistics.median(values), 3)
    return {
        "runs": len(measures),
        "failed_runs": sum(1 for m in measures if m.returncode != 0),
        "failed_checks": sum(1 for m in measures if m.check),
        "checks": [f"run {m.run}: {m.check}" for m in measures if m.check],
        "median_wall_s": round(statistics.median(walls), 3),
        "min_wall_s": round(min(walls), 3),
        "max_wall_s": round(max(walls), 3),
        "median_peak_rss_mb": round(statistics.median(m.peak_rss for m in ok) / 1e6, 1),
        "max_peak_rss_mb": round(max(m.peak_rss for m in ok) / 1e6, 1),
        "median_peak_single_process_rss_mb": round(statistics.median(m.peak_single_rss for m in ok) / 1e6, 1),
        "median_bytes_fetched": int(statistics.median(m.bytes_fetched for m in ok)),
        "median_git_requests": int(statistics.median(m.git_requests for m in ok)),
        "median_processes_seen": int(statistics.median(m.processes for m in ok)),
        "tasks": ok[0].tasks,
        "ideal_fan_out_s": round(ok[0].ideal_fan_out, 3),
        "median_phases_s": phases,
        "measures": [m.to_json() for m in measures],
    }


def evaluate(s: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    def w(case: str) -> float:
        return s[case]["median_wall_s"]

    targets = []
    for kind in ("all", "paths"):
        t, f, n = f"trigger-{kind}", f"floor-{kind}", f"naive-{kind}"
        if t in s and f in s:
            ratio = w(t) / w(f)
            targets.append(
                {
                    "target": f"{t} within 1.3x of {f}",
                    "value": round(ratio, 2),
                    "limit": "<= 1.3",
                    "holds": ratio <= 1.3,
                }
            )
        if t in s and n in s:
            ratio = w(n) / w(t)
            targets.append(
                {
                    "target": f"{t} >= 5x faster than {n}",
                    "value": round(ratio, 2),
                    "limit": ">= 5",
                    "holds": ratio >= 5,
                }
            )
        if t in s:
            peak = s[t]["max_peak_rss_mb"]
            targets.append(
                {
                    "target": f"{t} peak memory < 150 MB",
                    "value": peak,
                    "limit": "< 150 MB",
                    "holds": peak < 150,
                }
            )
    revs = sorted((k for k in s if k.startswith("revision@")), key=lambda k: int(k.split("@")[1]))
    if len(revs) >= 2:
        ratio = w(revs[-1]) / w(revs[0])
        targets.append(
            {
                "target": f"{revs[-1]} within 1.3x of {revs[0]}",
                "value": round(ratio, 2),
                "limit": "<= 1.3",
                "holds": ratio <= 1.3,
            }
        )
    return targets + newer_targets(s)


def _target(target: str, value: float, limit: str, holds: bool) -> dict[str, Any]:
    return {"target": target, "value": round(value, 2), "limit": limit, "holds": holds}


def newer_targets(s: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets of the history, fan-out floor, faulty API and many-workers cases."""
    targets = []
    clone = s.get("history-clone")
    for case in HISTORY_TRIGGERS:
        if case in s and clone and case != HISTORY_BELOW_CLONE:  # issue 15's three shapes
            over = s[case]["median_wall_s"] - clone["median_wall_s"]
            targets.append(
                _target(f"{case} within history-clone + 0.5 s", over, "<= 0.5 s over", over <= 0.5)
            )
        if case in s:
            peak = s[case]["max_peak_rss_mb"]
            targets.append(_target(f"{case} peak memory of the tree < 100 MB", peak, "< 100 MB", peak < 100))
    if "trigger-all" in s and "floor-fanout" in s:
        ratio = s["trigger-all"]["median_wall_s"] / s["floor-fanout"]["median_wall_s"]
        targets.append(_target("trigger-all within 1.15x of floor-fanout", ratio, "<= 1.15", ratio <= 1.15))
    for case, limit, check in (
        ("faulty-api", 25.0, "every child task created exactly once"),
        ("revision-many-workers", 2.5, "every worker registered"),
    ):
        if case in s:
            wall = s[case]["median_wall_s"]
            targets.append(_target(f"{case} within {limit:g} s", wall, f"<= {limit:g} s", wall <= limit))
            bad = s[case]["failed_runs"] + s[case]["failed_checks"]
            targets.append(_target(f"{case}: {check}, every run", bad, "0 runs failed", bad == 0))
    return targets


def table(s: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| case | median wall (s) | min-max (s) | peak RSS, tree (MB) | fetched (MB) | git HTTP requests | tasks | vs trigger (or reference) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, r in s.items():
        kind = case.rsplit("-", 1)[-1]
        ref = s.get("trigger-all" if case == "floor-fanout" else f"trigger-{kind}")
        vs = ""
        if ref and not case.startswith(("trigger", "revision")):
            vs = f"{r['median_wall_s'] / ref['median_wall_s']:.2f}x"
        if case in HISTORY_TRIGGERS and "history-clone" in s:
            vs = f"clone {r['median_wall_s'] - s['history-clone']['median_wall_s']:+.2f} s"
        wall = f"{r['median_wall_s']:.2f}"
        if r["ideal_fan_out_s"]:
            wall += f" ({r['median_wall_s'] - r['ideal_fan_out_s']:.2f} clone + {r['ideal_fan_out_s']:.2f} fan-out)"
        elif case == "floor-fanout":
            phases = r["median_phases_s"]
            wall += (
                f" ({phases.get('clone', 0):.2f} clone + {phases.get('fan-out', 0):.2f} fan-out, measured)"
            )
        failures = [f"{r['failed_runs']} failed"] * bool(r["failed_runs"])
        failures += [f"{r['failed_checks']} check(s) failed"] * bool(r["failed_checks"])
        fails = f" ({', '.join(failures)})" if failures else ""
        lines.append(
            f"| {case}{fails} | {wall} | {r['min_wall_s']:.2f}-{r['max_wall_s']:.2f} | {r['median_peak_rss_mb']:.0f} "
            f"| {r['median_bytes_fetched'] / 1e6:.1f} | {r['median_git_requests']} | {r['tasks'] if r['tasks'] is not None else ''} | {vs} |"
        )
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------------


CASES = ("trigger", "floor", "naive", "revision")  # the default: issue 4's cases
# The last one's push lies below the trigger's first clone (SHALLOW_DEPTH commits): it shows what a
# push costs when the trigger clones the whole history after all. No target: issue 15 names the others.
HISTORY_BELOW_CLONE = "history-below-clone"
HISTORY_TRIGGERS = (
    "history-linear",
    "history-after-not-tip",
    "history-before-via-merge",
    HISTORY_BELOW_CLONE,
)
HISTORY_CASES = ("history-clone", *HISTORY_TRIGGERS)
NEWER_CASES = (*HISTORY_CASES, "floor-fanout", "faulty-api", "revision-many-workers", "dryrun-all")
# Every case, in the order of a round and of the table ("revision": one revision@N a history).
ORDER = (
    "trigger-all",
    "floor-all",
    "floor-fanout",
    "naive-all",
    "trigger-paths",
    "floor-paths",
    "naive-paths",
    "revision",
    "revision-many-workers",
    *HISTORY_CASES,
    "faulty-api",
    "dryrun-all",
)
GROUPS = {
    "trigger": ("trigger-all", "trigger-paths"),
    "floor": ("floor-all", "floor-paths"),
    "naive": ("naive-all", "naive-paths"),
    "history": HISTORY_CASES,
    "newer": NEWER_CASES,
}
# A target compares a case with another: both run, interleaved, so that load hits both alike.
COMPANIONS = {**dict.fromkeys(HISTORY_TRIGGERS, "history-clone"), "floor-fanout": "trigger-all"}
# The cases on the push repository (--commits ...).
PUSH_CASES = frozenset({*ORDER[:7], "faulty-api", "dryrun-all"})
# faulty-api: 30% of API requests answered 503, 5% of connections dropped before processing, 10% of
# writes committed with their answer lost; never more than 4 faults in a row for one revision's
# CreateTask (or one path of other operations), so the default 5 tries always suffice. Rolled in
# that order, each on the requests the previous ones spared.
FAULTY_API = {
    "error_rate": 0.3,
    "error_statuses": [503],
    "drop_rate": 0.05,
    "drop_after_rate": 0.1,
    "max_streak": 4,
    "seed": 5,
}
AFTER_BELOW_TIP = 100  # history-after-not-tip: REPOSITORY_AFTER = main~100


def select_cases(text: str) -> list[str]:
    """The cases `--cases` names (groups expanded, companions added), in ORDER."""
    chosen: set[str] = set()
    for name in (c.strip() for c in text.split(",") if c.strip()):
        if name in GROUPS:
            chosen.update(GROUPS[name])
        elif name in ORDER:
            chosen.add(name)
        else:
            raise SystemExit(
                f"--cases: unknown case {name!r}; choose among the groups {', '.join(GROUPS)} "
                f"and the cases {', '.join(ORDER)}"
            )
    if not chosen:
        raise SystemExit("--cases: no case given")
    for case, companion in COMPANIONS.items():
        if case in chosen and companion not in chosen:
            log(f"--cases: adding {companion}, which the target of {case} compares it with")
            chosen.add(companion)
    return [case for case in ORDER if case in chosen]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--commits", type=int, default=5000, help="commits of the push repository (default: 5000)")
    p.add_argument("--files", type=int, default=2000, help="data files (default: 2000)")
    p.add_argument(
        "--file-size", type=int, default=20000, help="bytes of random data a file (default: 20000)"
    )
    p.add_argument("--worker-every", type=int, default=50, help="the worker file changes every N commits")
    p.add_argument("--changes", type=int, default=3, help="data files rewritten by each commit (default: 3)")
    p.add_argument("--push", type=int, default=500, help="commits in the measured push (default: 500)")
    p.add_argument("--runs", type=int, default=3, help="runs of each case; medians are reported (default: 3)")
    p.add_argument(
        "--delay", type=float, default=0.02, help="seconds added to each CreateTask (default: 0.02)"
    )
    p.add_argument(
        "--concurrency", type=int, default=4, help="FAN_OUT_CONCURRENCY of the ideal fan-out (default: 4)"
    )
    p.add_argument(
        "--fan-out-concurrency-env",
        action="store_true",
        help="also pass --concurrency to the trigger as FAN_OUT_CONCURRENCY (default: the tool's own default)",
    )
    p.add_argument(
        "--revision-histories",
        default="1000,10000",
        help="commits of history of the per-revision import repositories (default: 1000,10000)",
    )
    _add_newer_arguments(p)
    p.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"which cases to run, comma-separated: groups ({', '.join(GROUPS)}, revision) or cases "
        f"({', '.join(c for c in ORDER if c != 'revision')}) (default: {','.join(CASES)})",
    )
    p.add_argument("--no-profile", action="store_true", help="skip the profiling pass")
    p.add_argument(
        "--quick", action="store_true", help="small sizes and one run: a smoke test of the benchmark"
    )
    p.add_argument("--output", type=Path, help="JSON output (default: bench/results/latest.json, quick.json)")
    return p


def _add_newer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--big-commits",
        type=int,
        default=200_000,
        help="first-parent commits of the history cases' repository (default: 200000)",
    )
    p.add_argument(
        "--history-push",
        type=int,
        default=500,
        help="commits of the history-linear, history-after-not-tip and history-below-clone pushes (default: 500)",
    )
    p.add_argument(
        "--faulty-push", type=int, default=200, help="revisions of the faulty-api push (default: 200)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=200,
        help="worker files of the revision-many-workers commit (default: 200)",
    )
    p.add_argument(
        "--api-latency",
        type=float,
        default=0.02,
        help="seconds added to every API request in revision-many-workers (default: 0.02)",
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.commits, args.files, args.file_size, args.worker_every = 400, 200, 2000, 20
        args.push, args.runs, args.revision_histories = min(args.push, 100), 1, "100,1000"
        args.big_commits = min(args.big_commits, 20_000)
    args.output = args.output or RESULTS / ("quick.json" if args.quick else "latest.json")
    args.cases = select_cases(args.cases)
    args.histories = [int(h) for h in args.revision_histories.split(",") if h.strip()]
    if args.push >= args.commits:
        raise SystemExit("--push must be smaller than --commits")
    if "faulty-api" in args.cases and args.faulty_push >= args.commits:
        raise SystemExit("--faulty-push must be smaller than --commits")
    spec = HistorySpec(args.big_commits)
    if set(args.cases) & set(HISTORY_CASES) and args.big_commits <= max(
        SHALLOW_DEPTH + args.history_push, spec.fork + 1
    ):
        raise SystemExit(
            f"--big-commits must be larger than {SHALLOW_DEPTH} + --history-push and {spec.fork}"
        )
    return args


@dataclass
class Repos:
    push: Path | None = None
    revisions: dict[int, Path] = field(default_factory=dict)
    history: Path | None = None
    workers: Path | None = None

    def all(self) -> set[Path]:
        return {p for p in (self.push, *self.revisions.values(), self.history, self.workers) if p}


def prepare_repos(args: argparse.Namespace) -> Repos:
    """The repositories the chosen cases need, generated when not cached."""
    root, cases, repos = CACHE / "repos", set(args.cases), Repos()
    spec = RepoSpec(args.commits, args.files, args.file_size, args.worker_every, args.changes)
    if cases & PUSH_CASES or ("revision" in cases and args.commits in args.histories):
        repos.push = ensure_repo(spec, root, log)
    if "revision" in cases:
        for h in args.histories:
            repos.revisions[h] = (
                repos.push
                if h == args.commits
                else ensure_repo(
                    RepoSpec(h, args.files, args.file_size, args.worker_every, args.changes), root, log
                )
            )
    if cases & set(HISTORY_CASES):
        repos.history = ensure_repo(HistorySpec(args.big_commits), root, log)
    if "revision-many-workers" in cases:
        repos.workers = ensure_repo(ManyWorkersSpec(args.workers), root, log)
    return repos


def _count(repo: Path, before: str, after: str, *extra: str) -> int:
    argv = ["git", f"--git-dir={repo}", "rev-list", "--count", "--first-parent", f"{before}..{after}", *extra]
    return int(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)


def make_push(repo: Path, url: str, size: int) -> Push:
    """A push of the `size` first-parent commits below the tip of main."""
    before, after = rev_parse(repo, f"main~{size}"), rev_parse(repo, "main")
    paths = _count(repo, before, after, "--", WORKER_PATH.split("/")[0])
    return Push(url, repo, before, after, {"all": _count(repo, before, after), "paths": paths})


def make_history(repo: Path, url: str, args: argparse.Namespace) -> History:
    """The three pushes of the history cases, and the revisions the trigger should select for each."""
    tip, size = rev_parse(repo, "main"), args.history_push
    pushes = {
        "history-linear": (rev_parse(repo, f"main~{size}"), tip),
        "history-after-not-tip": (
            rev_parse(repo, f"main~{AFTER_BELOW_TIP + size}"),
            rev_parse(repo, f"main~{AFTER_BELOW_TIP}"),
        ),
        # A side-branch commit, in the tip's history only through the merge commit.
        "history-before-via-merge": (HistorySpec(args.big_commits).side_commit(repo), tip),
        HISTORY_BELOW_CLONE: (
            rev_parse(repo, f"main~{SHALLOW_DEPTH + size}"),
            rev_parse(repo, f"main~{SHALLOW_DEPTH}"),
        ),
    }
    return History(url, repo, {c: (b, a, len(first_parent(repo, a, b))) for c, (b, a) in pushes.items()})


def case_actions(bench: Bench, repos: Repos) -> tuple[dict[str, Callable[[int], Measure]], Push | None]:
    """Every case's action by name (`revision@N` for each revision history), for the repositories
    prepared; and the push of the push repository, if any. bench/ab.py runs them too."""
    args, git = bench.args, bench.git
    push = faulty = history = None
    if repos.push is not None:
        url = git.url(repos.push.name)
        push = make_push(repos.push, url, args.push)
        log(f"push: {push.expected['all']} commits, {push.expected['paths']} touching arkindex/")
        faulty = make_push(repos.push, url, args.faulty_push) if "faulty-api" in args.cases else None
    if repos.history is not None:
        history = make_history(repos.history, git.url(repos.history.name), args)
        log(f"history pushes (before, after, revisions): {history.pushes}")
    actions: dict[str, Callable[[int], Measure]] = {
        "trigger-all": lambda r: bench.trigger(push, False, r),
        "dryrun-all": lambda r: bench.dry_run(push, r),
        "floor-all": lambda r: bench.floor(push, False, r),
        "floor-fanout": lambda r: bench.floor_fanout(push, r),
        "naive-all": lambda r: bench.naive(push, False, r),
        "trigger-paths": lambda r: bench.trigger(push, True, r),
        "floor-paths": lambda r: bench.floor(push, True, r),
        "naive-paths": lambda r: bench.naive(push, True, r),
        "revision-many-workers": lambda r: bench.many_workers(git.url(repos.workers.name), repos.workers, r),
        "history-clone": lambda r: bench.clone("history-clone", r, history.url),
        **{c: (lambda r, c=c: bench.history_trigger(c, history, r)) for c in HISTORY_TRIGGERS},
        "faulty-api": lambda r: bench.faulty_api(faulty, r),
    }
    for h, repo in repos.revisions.items():
        actions[f"revision@{h}"] = lambda r, h=h, repo=repo: bench.revision(
            str(h), git.url(repo.name), repo, r
        )
    return actions, push


def build_plan(bench: Bench, repos: Repos) -> tuple[list[Callable[[int], Measure]], Push | None]:
    """One action a case (a round of runs), in ORDER; and the push of the push repository, if any."""
    actions, push = case_actions(bench, repos)
    plan: list[Callable[[int], Measure]] = []
    for case in bench.args.cases:
        if case == "revision":
            plan.extend(actions[f"revision@{h}"] for h in repos.revisions)
        else:
            plan.append(actions[case])
    return plan, push


def run_rounds(args: argparse.Namespace, plan: list[Callable[[int], Measure]]) -> dict[str, list[Measure]]:
    """Every action once a round, `--runs` rounds: a change of load hits every case alike."""
    measures: dict[str, list[Measure]] = {}
    for run in range(args.runs):
        for action in plan:
            m = action(run)
            measures.setdefault(m.case, []).append(m)
            log(
                f"run {run + 1}/{args.runs} {m.case}: {m.wall:.2f} s, {m.peak_rss / 1e6:.0f} MB, "
                f"{m.bytes_fetched / 1e6:.1f} MB fetched, tasks {m.tasks}, exit {m.returncode}"
                + (f", phases {m.phases}" if m.phases and not m.case.startswith("floor-") else "")
                + (f", {m.notes}" if m.notes else "")
                + (f", CHECK FAILED: {m.check}" if m.check else "")
            )
    return measures


def summary_order(measures: dict[str, list[Measure]]) -> list[str]:
    order: list[str] = []
    for case in ORDER:
        if case == "revision":
            revs = (k for k in measures if k.startswith("revision@"))
            order += sorted(revs, key=lambda k: int(k.split("@")[1]))
        elif case in measures:
            order.append(case)
    return order


def run_profile(bench: Bench, push: Push | None, cases: list[str]) -> dict[str, Any]:
    log("profiling: Python start-up and imports, git commands of one run of each trigger case")
    profile: dict[str, Any] = {"python": python_startup()}
    runs: dict[str, Callable[[dict[str, str]], Measure]] = {
        "trigger-all": lambda env: bench.trigger(push, False, run=-1, extra_env=env),
        "trigger-paths": lambda env: bench.trigger(push, True, run=-1, extra_env=env),
        "dryrun-all": lambda env: bench.dry_run(push, run=-1, extra_env=env),
    }
    for case, run in runs.items():
        if case in cases and push is not None:
            profile[case] = profile_git(bench, case, run)
    return profile


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repos = prepare_repos(args)
    # The image runs byte-compiled modules (pip compiles them at install). With a source checkout and
    # PYTHONDONTWRITEBYTECODE (set on this machine and in the image), every run would compile any module
    # edited since its last .pyc: compile them once here, as the install does.
    compileall.compile_dir(ROOT / "git_import", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="bench-work-"))
    summaries: dict[str, dict[str, Any]] = {}
    profile: dict[str, Any] = {}
    try:
        with (
            GitHTTPServer(CACHE / "repos") as git,
            EmulatorProcess(args.delay, work) as emu,
            contextlib.ExitStack() as stack,
        ):
            log(f"cases: {', '.join(args.cases)}; emulator {emu.url}, git {git.base_url}")
            bench = Bench(args, git, emu, work, stack)
            plan, push = build_plan(bench, repos)
            measures = run_rounds(args, plan)
            summaries = {case: summarize(measures[case]) for case in summary_order(measures)}
            if not args.no_profile:
                profile = run_profile(bench, push, args.cases)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report(args, repos, summaries, profile)


def report(
    args: argparse.Namespace, repos: Repos, summaries: dict[str, dict[str, Any]], profile: dict[str, Any]
) -> int:
    """Write the JSON, print the table and the targets; the exit status (1 if a run or a check failed)."""
    targets = evaluate(summaries)
    result = {
        "parameters": {
            "commits": args.commits,
            "files": args.files,
            "file_size": args.file_size,
            "worker_every": args.worker_every,
            "changes_per_commit": args.changes,
            "push": args.push,
            "runs": args.runs,
            "create_task_delay_s": args.delay,
            "concurrency": args.concurrency,
            "revision_histories": args.histories,
            "quick": args.quick,
            "cases": args.cases,
            "big_commits": args.big_commits,
            "history_push": args.history_push,
            "faulty_push": args.faulty_push,
            "faulty_api_faults": FAULTY_API,
            "workers": args.workers,
            "api_latency_s": args.api_latency,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "git": subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip(),
            "platform": platform.platform(),
        },
        "repositories": {p.name: {"bytes_on_disk": repo_size(p)} for p in repos.all()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cases": summaries,
        "targets": targets,
        "profile": profile,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print_report(args, summaries, targets, profile)
    failed = any(s["failed_runs"] or s["failed_checks"] for s in summaries.values())
    return 1 if failed else 0


def print_report(
    args: argparse.Namespace,
    summaries: dict[str, dict[str, Any]],
    targets: list[dict[str, Any]],
    profile: dict[str, Any],
) -> None:
    print(
        f"## Benchmark ({args.commits} commits, {args.files} files of {args.file_size} B, push of {args.push}, "
        f"CreateTask delay {args.delay * 1000:.0f} ms, medians of {args.runs} run(s))\n"
    )
    if set(args.cases) & set(NEWER_CASES):
        print(
            f"Newer cases: history of {args.big_commits} commits, pushes of {args.history_push} (CreateTask "
            f"delay 0); faulty-api push of {args.faulty_push}; {args.workers} workers at "
            f"{args.api_latency * 1000:.0f} ms an API request.\n"
        )
    print(table(summaries))
    print("\n| target | value | limit | holds |\n|---|---:|---:|---|")
    for t in targets:
        print(f"| {t['target']} | {t['value']} | {t['limit']} | {'yes' if t['holds'] else '**no**'} |")
    if profile:
        print("\nProfile:")
        print(json.dumps(profile, indent=2))
    print(f"\nFigures written to {args.output}")


if __name__ == "__main__":
    sys.exit(main())
