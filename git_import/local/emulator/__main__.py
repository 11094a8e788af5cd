"""``python -m git_import.local.emulator [--host H] [--port N] [--create-task-delay S] [mode flags]``.

Starts an empty emulator, prints its URL and how to seed it, and serves until Ctrl-C. The mode flags
(``--workers-refuse-task-token``, ``--version-duplicate``, ``--duplicate-slug``, ``--unique-tags``,
``--page-size``) play behaviours of real Arkindex instances; see :class:`Modes`.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
from types import FrameType

from git_import.local.emulator.server import MODE_CHOICES, Emulator, Faults, Modes


def _page_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


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
    _add_mode_arguments(parser)
    return parser


def _add_mode_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Modes()
    modes = parser.add_argument_group(
        "modes", "behaviours of real Arkindex instances (also switched at runtime by PUT /_emulator/modes)"
    )
    modes.add_argument(
        "--workers-refuse-task-token",
        action="store_true",
        help="worker operations answer 403 to a Ponos task token; a user token still works",
    )
    modes.add_argument(
        "--version-duplicate",
        choices=MODE_CHOICES["version_duplicate"],
        default=defaults.version_duplicate,
        help="a duplicate ImportWorkerVersion answers 409 with existing_id, or 400 as Arkindex up to "
        "1.11.1 (default: %(default)s)",
    )
    modes.add_argument(
        "--duplicate-slug",
        choices=MODE_CHOICES["duplicate_slug"],
        default=defaults.duplicate_slug,
        help="how CreateTask answers a slug already in the process run: a slug field error, a "
        "non_field_errors list, a standard object-level 400, or a 409 conflict (default: %(default)s)",
    )
    modes.add_argument(
        "--unique-tags", action="store_true", help="a tag may be on one version of a worker only"
    )
    modes.add_argument(
        "--page-size",
        type=_page_size,
        default=defaults.page_size,
        metavar="N",
        help="ListWorkerVersions page size (default: %(default)s)",
    )


def modes_from_args(args: argparse.Namespace) -> Modes:
    return Modes(
        task_token_on_workers=not args.workers_refuse_task_token,
        version_duplicate=args.version_duplicate,
        duplicate_slug=args.duplicate_slug,
        unique_tags=args.unique_tags,
        page_size=args.page_size,
    )


def usage_text(url: str, modes: Modes | None = None) -> str:
    admin = f"{url}_emulator"
    in_effect = " ".join(f"{k}={v}" for k, v in dataclasses.asdict(modes or Modes()).items())
    return f"""Arkindex emulator listening on {url}
OpenAPI schema: {url}api/v1/openapi/?format=json
Modes: {in_effect}

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
  PUT  {admin}/modes       e.g. {{"task_token_on_workers": false, "duplicate_slug": "object"}}
                           (or start with --workers-refuse-task-token, --version-duplicate {{409,400}},
                           --duplicate-slug {{field,non_field,object,conflict}}, --unique-tags, --page-size N)

Press Ctrl-C to stop."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Explicitly: a shell's background job or `nohup` starts it with SIGINT ignored, and Ctrl-C or a
    # test's interrupt would then never reach it; SIGTERM (docker stop) stops it the same way.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    emulator = Emulator(
        host=args.host,
        port=args.port,
        faults=Faults(create_task_delay=args.create_task_delay),
        modes=modes_from_args(args),
    )
    try:
        emulator.start()
    except OSError as exc:
        print(
            f"Cannot listen on {args.host}:{args.port}: {exc}. Pick another port with --port.",
            file=sys.stderr,
        )
        return 2
    print(usage_text(emulator.url, emulator.modes), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("\nStopping.", file=sys.stderr)
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
