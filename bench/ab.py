"""A/B: the same benchmark cases run by two installs of the tool, interleaved, through one harness.

    git worktree add --detach ../before <commit> && make -C ../before install
    .venv/bin/python bench/ab.py --against ../before/.venv/bin/python --rounds 15

Each round runs every chosen case once with each interpreter (`--against`'s and this checkout's), the
order alternating from round to round, so that a change of the machine's load hits both alike. Both
sides use this checkout's harness, servers and cached repositories: only the tool differs. Prints, for
each case, the medians of the wall time and of the tool's own `total` phase (from its closing
`timings:` line), and their ratios (this checkout over the other), with a 95% bootstrap interval of
the wall ratio and the ratio of the means; `--output` keeps every run in JSON, and `--pool A.json
B.json ...` prints the table of several series pooled (the README's "every series" rows).
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import run as harness  # bench/run.py, on sys.path as this script's folder

CASES = (
    "trigger-all",
    "trigger-paths",
    "revision@1000",
    "revision@10000",
    "faulty-api",
    *harness.HISTORY_TRIGGERS,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--against", type=Path, help="the other install's Python interpreter")
    p.add_argument(
        "--this",
        type=Path,
        help="the interpreter of the install to compare with it (default: this checkout's)",
    )
    p.add_argument("--cases", default="trigger-all,trigger-paths", help=f"comma-separated, among {CASES}")
    p.add_argument("--rounds", type=int, default=10, help="rounds (default: 10)")
    p.add_argument("--output", type=Path, help="every run, as JSON")
    p.add_argument(
        "--pool",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="run nothing: print the table of these --output files' runs, pooled case by case",
    )
    args = p.parse_args(argv)
    if args.pool:
        return args
    if args.against is None:
        p.error("--against is required (or --pool)")
    args.cases = [c for c in args.cases.split(",") if c]
    # Absolute, not resolved: a venv's python is a symlink, and the venv is what it is run for.
    args.against = args.against.absolute()
    args.this = args.this.absolute() if args.this else None
    unknown = set(args.cases) - set(CASES)
    if unknown:
        p.error(f"unknown case(s) {sorted(unknown)}: choose among {CASES}")
    return args


def compile_other(python: Path) -> None:
    """Byte-compile the other install's modules once, as the harness does for this checkout's; refuse
    an interpreter that would run this very checkout's code."""
    code = "import git_import, os; print(os.path.dirname(git_import.__file__))"
    folder = Path(
        subprocess.run(
            [str(python), "-c", code], check=True, capture_output=True, text=True, cwd=tempfile.gettempdir()
        ).stdout.strip()
    )
    if folder.resolve() == (harness.ROOT / "git_import").resolve():
        raise SystemExit(f"{python} runs this checkout's git_import ({folder}): give another install")
    subprocess.run([str(python), "-m", "compileall", "-q", str(folder)], check=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pool:
        print(report(pooled(args.pool)))
        return 0
    histories = sorted({int(c.split("@")[1]) for c in args.cases if c.startswith("revision@")})
    # The harness prepares the repositories (and the faulty push) of the cases it is asked for.
    groups = ["trigger"] + (["revision"] if histories else [])
    groups += [c for c in args.cases if c == "faulty-api" or c in harness.HISTORY_TRIGGERS]
    bench_argv = ["--cases", ",".join(groups), "--runs", "1", "--no-profile"]
    if histories:
        bench_argv += ["--revision-histories", ",".join(map(str, histories))]
    bench_args = harness.parse_args(bench_argv)
    repos = harness.prepare_repos(bench_args)
    compileall.compile_dir(harness.ROOT / "git_import", quiet=1)
    compile_other(args.against)
    if args.this:
        compile_other(args.this)
    sides = {"other": str(args.against), "this": str(args.this or sys.executable)}
    walls: dict[str, dict[str, list[dict[str, float]]]] = {c: {s: [] for s in sides} for c in args.cases}
    work = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    try:
        with (
            harness.GitHTTPServer(harness.CACHE / "repos") as git,
            harness.EmulatorProcess(bench_args.delay, work) as emu,
            contextlib.ExitStack() as stack,
        ):
            bench = harness.Bench(bench_args, git, emu, work, stack)
            every, _ = harness.case_actions(bench, repos)
            todo = {case: every[case] for case in args.cases}
            for rnd in range(args.rounds):
                order = list(sides) if rnd % 2 == 0 else list(sides)[::-1]
                for case, action in todo.items():
                    for n, side in enumerate(order):
                        bench.tool_python = sides[side]
                        # A revision case imports a different commit each run: each run a first import.
                        m = action(2 * rnd + n)
                        if m.returncode != 0 or m.check:
                            raise SystemExit(f"{case} ({side}) failed: {m.check or m.stderr_tail}")
                        walls[case][side].append(
                            {"wall": m.wall, "total": m.phases.get("total", 0.0), "phases": m.phases}
                        )
                harness.log(f"round {rnd + 1}/{args.rounds} done")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(report(walls))
    if args.output:
        args.output.write_text(json.dumps({"against": str(args.against), "runs": walls}, indent=2) + "\n")
    return 0


def report(walls: dict[str, dict[str, list[dict[str, float]]]]) -> str:
    lines = [
        "| case | other: wall | this: wall | ratio (95%) | mean ratio | other: total | this: total | ratio | rounds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, sides in walls.items():
        med = {
            s: {k: statistics.median(r[k] for r in runs) for k in ("wall", "total")}
            for s, runs in sides.items()
        }
        o, t = med["other"], med["this"]
        other, this = ([r["wall"] for r in sides[s]] for s in ("other", "this"))
        low, high = bootstrap(other, this)
        mean = statistics.mean(this) / statistics.mean(other)
        lines.append(
            f"| {case} | {o['wall']:.3f} | {t['wall']:.3f} | {t['wall'] / o['wall']:.3f} ({low:.3f}-{high:.3f}) "
            f"| {mean:.3f} | {o['total']:.3f} | {t['total']:.3f} | {t['total'] / o['total']:.3f} | {len(this)} |"
        )
    return "\n".join(lines)


def pooled(files: list[Path]) -> dict[str, dict[str, list[dict[str, float]]]]:
    """The runs of several --output files, case by case and side by side (rounds stay paired)."""
    walls: dict[str, dict[str, list[dict[str, float]]]] = {}
    for file in files:
        for case, sides in json.loads(file.read_text())["runs"].items():
            for side, runs in sides.items():
                walls.setdefault(case, {}).setdefault(side, []).extend(runs)
    return walls


def bootstrap(other: list[float], this: list[float], draws: int = 2000) -> tuple[float, float]:
    """A 95% interval of the ratio of the wall medians (this over other), resampling whole rounds: on
    this machine one run of a 0.5 s case varies by 10-15%, and the interval says what the rounds resolve."""
    rng = random.Random(1)
    rounds = range(len(this))
    ratios = []
    for _ in range(draws):
        picked = [rng.choice(rounds) for _ in rounds]
        ratios.append(
            statistics.median(this[i] for i in picked) / statistics.median(other[i] for i in picked)
        )
    ratios.sort()
    return ratios[int(0.025 * draws)], ratios[int(0.975 * draws) - 1]


if __name__ == "__main__":
    sys.exit(main())
