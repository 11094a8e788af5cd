"""``python -m git_import.local.emulator [--host H] [--port N] [--create-task-delay S]``.

Starts an empty emulator, prints its URL and how to seed it, and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import threading

from git_import.local.emulator.server import Emulator, Faults


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m git_import.local.emulator",
        description="Serve an in-memory, Arkindex-compatible API (the subset the Git import task uses).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on; 0 picks a free one")
    parser.add_argument(
        "--create-task-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds added to each CreateTask, as a database would (default: %(default)s)",
    )
    return parser


def usage_text(url: str) -> str:
    admin = f"{url}_emulator"
    return f"""Arkindex emulator listening on {url}
OpenAPI schema: {url}api/v1/openapi/?format=json

It starts empty. Seed it through the admin endpoints, for instance:

  # a repository process, with the environment every one of its tasks receives
  curl -s -X POST {admin}/processes -H 'Content-Type: application/json' \\
       -d '{{"name": "Repository import", "env": {{"REPOSITORY_URL": "https://gitlab.example.com/group/repo"}}}}'
  # its running import task; the answer holds the task "id" and its Ponos "token"
  curl -s -X POST {admin}/tasks -H 'Content-Type: application/json' \\
       -d '{{"process_id": "<process id>", "slug": "import"}}'

Then run the task with:
  ARKINDEX_API_URL={url} ARKINDEX_TASK_TOKEN=<token> PONOS_TASK=<task id> PONOS_PROCESS=<process id>

Other admin endpoints:
  GET  {admin}/state       processes, tasks (without tokens), workers, versions
  GET  {admin}/requests    every API request answered 2xx
  POST {admin}/tokens      a user token (Authorization: Token <token>)
  PUT  {admin}/faults      e.g. {{"error_rate": 0.2, "latency": 0.05, "seed": 1}}

Press Ctrl-C to stop."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    emulator = Emulator(
        host=args.host, port=args.port, faults=Faults(create_task_delay=args.create_task_delay)
    )
    try:
        emulator.start()
    except OSError as exc:
        print(
            f"Cannot listen on {args.host}:{args.port}: {exc}. Pick another port with --port.",
            file=sys.stderr,
        )
        return 2
    print(usage_text(emulator.url), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("\nStopping.", file=sys.stderr)
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
