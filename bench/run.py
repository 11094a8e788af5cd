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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from generate import WORKER_PATH, RepoSpec, ensure_repo, repo_size, rev_parse  # noqa: E402

from git_import.local.gitserver import GitHTTPServer  # noqa: E402
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

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "stderr_tail" or self.returncode != 0}


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
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
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
    def __init__(self, delay: float, workdir: Path) -> None:
        self.delay = delay
        self.log_path = workdir / "emulator.log"
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


class Bench:
    def __init__(
        self, args: argparse.Namespace, git: GitHTTPServer, emu: EmulatorProcess, work: Path
    ) -> None:
        self.args = args
        self.git = git
        self.emu = emu
        self.work = work
        self.concurrency = args.concurrency

    def ponos_env(self, process: dict[str, Any], task: dict[str, Any], data: Path) -> dict[str, str]:
        env = base_env()
        env.update(
            {
                "PONOS_PROCESS": process["id"],
                "PONOS_TASK": task["id"],
                "PONOS_DATA": str(data),
                "ARKINDEX_API_URL": self.emu.url,
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

    def trigger(self, push: Push, paths: bool, run: int, extra_env: dict[str, str] | None = None) -> Measure:
        case = "trigger-paths" if paths else "trigger-all"
        process, task = self.emu.new_process()
        data = Path(tempfile.mkdtemp(prefix="data-", dir=self.work))
        env = {**self.ponos_env(process, task, data), **self.push_env(push, paths), **(extra_env or {})}
        m, _out, err = measure(case, run, [sys.executable, "-m", "git_import", "trigger"], env, self.git)
        m.phases = parse_timings(err)
        plan_file = data / "current" / "import-plan.json"
        if plan_file.exists():
            plan = json.loads(plan_file.read_text())
            m.tasks = plan["summary"]["created"]
        expected = push.expected["paths" if paths else "all"]
        if m.returncode == 0 and m.tasks != expected:
            log(f"{case}: {m.tasks} task(s) created, {expected} expected")
        shutil.rmtree(data, ignore_errors=True)
        return m

    def floor(self, push: Push, paths: bool, run: int) -> Measure:
        case = "floor-paths" if paths else "floor-all"
        dest = Path(tempfile.mkdtemp(prefix="floor-", dir=self.work)) / "repo.git"
        filt = "blob:none" if paths else "tree:0"
        env = {**base_env(), **GIT_CLEAN_ENV}
        m, _, _ = measure(
            case,
            run,
            ["git", "clone", "--quiet", "--bare", f"--filter={filt}", push.url, str(dest)],
            env,
            self.git,
        )
        shutil.rmtree(dest.parent, ignore_errors=True)
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

    def revision(self, label: str, url: str, repo: Path, run: int) -> Measure:
        case = f"revision@{label}"
        commit = rev_parse(repo, f"main~{run}")  # a different revision each run: each is a first import
        process, trigger = self.emu.new_process()
        task = self.emu.child_task(process, trigger, f"import-{commit}")
        data = Path(tempfile.mkdtemp(prefix="data-", dir=self.work))
        env = self.ponos_env(process, task, data)
        env.update(
            {
                "REPOSITORY_URL": url,
                "REPOSITORY_REVISION": commit,
                "REPOSITORY_REF": "refs/heads/main",
                "WORKER_IMAGE_TEMPLATE": "registry.example.com/{slug}:{short_hash}",
            }
        )
        m, _, err = measure(
            case, run, [sys.executable, "-m", "git_import", "revision", commit], env, self.git
        )
        m.phases = parse_timings(err)
        report_file = data / "current" / "import-report.json"
        if report_file.exists():
            report = json.loads(report_file.read_text())
            m.tasks = len(report.get("workers") or [])  # here: workers registered
            if m.returncode == 0 and m.tasks != 1:
                log(f"{case}: {m.tasks} worker(s) registered, 1 expected")
        shutil.rmtree(data, ignore_errors=True)
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


def profile_git(bench: Bench, push: Push, paths: bool) -> dict[str, Any]:
    """One trigger run with a `git` wrapper on PATH that records each git command the tool starts."""
    wrap = CACHE / "gitwrap"
    wrap.mkdir(parents=True, exist_ok=True)
    real_git = shutil.which("git")
    script = wrap / "git"
    script.write_text(
        f'#!/bin/sh\nprintf \'%s %s\\n\' "$(date +%s.%N)" "$*" >> "$BENCH_GIT_LOG"\nexec {real_git} "$@"\n'
    )
    script.chmod(0o755)
    log_file = bench.work / f"git-{'paths' if paths else 'all'}.log"
    log_file.unlink(missing_ok=True)
    env = {"PATH": f"{wrap}{os.pathsep}{os.environ.get('PATH', '')}", "BENCH_GIT_LOG": str(log_file)}
    m = bench.trigger(push, paths, run=-1, extra_env=env)
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
    return targets


def table(s: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| case | median wall (s) | min-max (s) | peak RSS, tree (MB) | fetched (MB) | git HTTP requests | tasks | vs trigger |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, r in s.items():
        kind = case.rsplit("-", 1)[-1]
        ref = s.get(f"trigger-{kind}")
        vs = ""
        if ref and not case.startswith(("trigger", "revision")):
            vs = f"{r['median_wall_s'] / ref['median_wall_s']:.2f}x"
        wall = f"{r['median_wall_s']:.2f}"
        if r["ideal_fan_out_s"]:
            wall += f" ({r['median_wall_s'] - r['ideal_fan_out_s']:.2f} clone + {r['ideal_fan_out_s']:.2f} fan-out)"
        fails = f" ({r['failed_runs']} failed)" if r["failed_runs"] else ""
        lines.append(
            f"| {case}{fails} | {wall} | {r['min_wall_s']:.2f}-{r['max_wall_s']:.2f} | {r['median_peak_rss_mb']:.0f} "
            f"| {r['median_bytes_fetched'] / 1e6:.1f} | {r['median_git_requests']} | {r['tasks'] if r['tasks'] is not None else ''} | {vs} |"
        )
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------------


CASES = ("trigger", "floor", "naive", "revision")


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
    p.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"which cases to run, comma-separated, each with and without a path filter (default: {','.join(CASES)})",
    )
    p.add_argument("--no-profile", action="store_true", help="skip the profiling pass")
    p.add_argument(
        "--quick", action="store_true", help="small sizes and one run: a smoke test of the benchmark"
    )
    p.add_argument("--output", type=Path, help="JSON output (default: bench/results/latest.json, quick.json)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.commits, args.files, args.file_size, args.worker_every = 400, 200, 2000, 20
        args.push, args.runs, args.revision_histories = min(args.push, 100), 1, "100,1000"
    output = args.output or RESULTS / ("quick.json" if args.quick else "latest.json")
    cases = {c.strip() for c in args.cases.split(",") if c.strip()}
    if not cases or cases - set(CASES):
        raise SystemExit(
            f"--cases: unknown case(s) {sorted(cases - set(CASES))}; choose among {', '.join(CASES)}"
        )
    histories = [int(h) for h in args.revision_histories.split(",") if h.strip()]
    if args.push >= args.commits:
        raise SystemExit("--push must be smaller than --commits")

    repos = CACHE / "repos"
    spec = RepoSpec(args.commits, args.files, args.file_size, args.worker_every, args.changes)
    main_repo = ensure_repo(spec, repos, log)
    rev_repos: dict[int, Path] = {}
    if "revision" in cases:
        for h in histories:
            rev_repos[h] = (
                main_repo
                if h == args.commits
                else ensure_repo(
                    RepoSpec(h, args.files, args.file_size, args.worker_every, args.changes), repos, log
                )
            )

    # The image runs byte-compiled modules (pip compiles them at install). With a source checkout and
    # PYTHONDONTWRITEBYTECODE (set on this machine and in the image), every run would compile any module
    # edited since its last .pyc: compile them once here, as the install does.
    compileall.compile_dir(ROOT / "git_import", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="bench-work-"))
    summaries: dict[str, dict[str, Any]] = {}
    profile: dict[str, Any] = {}
    try:
        with GitHTTPServer(repos) as git, EmulatorProcess(args.delay, work) as emu:
            bench = Bench(args, git, emu, work)
            url = git.url(main_repo.name)
            before, after = rev_parse(main_repo, f"main~{args.push}"), rev_parse(main_repo, "main")

            def count(*extra: str) -> int:
                out = subprocess.run(
                    [
                        "git",
                        f"--git-dir={main_repo}",
                        "rev-list",
                        "--count",
                        "--first-parent",
                        f"{before}..{after}",
                        *extra,
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                return int(out)

            push = Push(
                url,
                main_repo,
                before,
                after,
                {"all": count(), "paths": count("--", WORKER_PATH.split("/")[0])},
            )
            log(
                f"push: {push.expected['all']} commits, {push.expected['paths']} touching arkindex/; "
                f"emulator {emu.url}, git {git.base_url}"
            )
            plan: list[tuple[str, Any]] = []
            for paths in (False, True):
                if "trigger" in cases:
                    plan.append(("trigger", lambda r, p=paths: bench.trigger(push, p, r)))
                if "floor" in cases:
                    plan.append(("floor", lambda r, p=paths: bench.floor(push, p, r)))
                if "naive" in cases:
                    plan.append(("naive", lambda r, p=paths: bench.naive(push, p, r)))
            for h, repo in rev_repos.items():
                plan.append(
                    (
                        "revision",
                        lambda r, h=h, repo=repo: bench.revision(str(h), git.url(repo.name), repo, r),
                    )
                )

            measures: dict[str, list[Measure]] = {}
            for run in range(args.runs):
                for _kind, action in plan:
                    m = action(run)
                    measures.setdefault(m.case, []).append(m)
                    log(
                        f"run {run + 1}/{args.runs} {m.case}: {m.wall:.2f} s, {m.peak_rss / 1e6:.0f} MB, "
                        f"{m.bytes_fetched / 1e6:.1f} MB fetched, tasks {m.tasks}, exit {m.returncode}"
                        + (f", phases {m.phases}" if m.phases and not m.case.startswith("floor") else "")
                    )
            order = [
                "trigger-all",
                "floor-all",
                "naive-all",
                "trigger-paths",
                "floor-paths",
                "naive-paths",
                *sorted(
                    (k for k in measures if k.startswith("revision@")), key=lambda k: int(k.split("@")[1])
                ),
            ]
            summaries = {case: summarize(measures[case]) for case in order if case in measures}

            if not args.no_profile:
                log("profiling: Python start-up and imports, git commands of one trigger run each")
                profile["python"] = python_startup()
                if "trigger" in cases:
                    profile["trigger-all"] = profile_git(bench, push, False)
                    profile["trigger-paths"] = profile_git(bench, push, True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

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
            "revision_histories": histories,
            "quick": args.quick,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "git": subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip(),
            "platform": platform.platform(),
        },
        "repositories": {p.name: {"bytes_on_disk": repo_size(p)} for p in {main_repo, *rev_repos.values()}},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cases": summaries,
        "targets": targets,
        "profile": profile,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")

    print(
        f"## Benchmark ({args.commits} commits, {args.files} files of {args.file_size} B, push of {args.push}, "
        f"CreateTask delay {args.delay * 1000:.0f} ms, medians of {args.runs} run(s))\n"
    )
    print(table(summaries))
    print("\n| target | value | limit | holds |\n|---|---:|---:|---|")
    for t in targets:
        print(f"| {t['target']} | {t['value']} | {t['limit']} | {'yes' if t['holds'] else '**no**'} |")
    if profile:
        print("\nProfile:")
        print(json.dumps(profile, indent=2))
    print(f"\nFigures written to {output}")
    failed = any(s["failed_runs"] for s in summaries.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
