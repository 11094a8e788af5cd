"""Command line: `arkindex-git-import trigger | revision <hash> | demo`.

Errors reach the top as one :class:`FatalError` and are printed once, as one line saying what went
wrong and how to fix it; the exit status is 2 for a setting or input error, 1 for anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from typing import TYPE_CHECKING, NoReturn

from git_import import __version__, logs, stop
from git_import.errors import EXIT_CONFIG, EXIT_FAILURE, FatalError
from git_import.logs import setup_logging
from git_import.redact import scrub

if TYPE_CHECKING:
    from git_import.early import EarlyClone

logger = logging.getLogger("git_import")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arkindex-git-import",
        description="Import the workers of a Git repository into Arkindex, as a Ponos task.",
        epilog="Settings are read from the environment: see the README's settings reference.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.set_defaults(dry_run=False, format=None)  # no command: the trigger, as Ponos runs the image
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    trigger = commands.add_parser(
        "trigger",
        help="clone the repository, choose revisions and create one import task per revision (the default)",
    )
    trigger.add_argument(
        "--dry-run",
        action="store_true",
        help="clone and print the plan, with the workers each revision would register and every invalid "
        "file, without calling any Arkindex write operation; needs no Arkindex setting",
    )
    trigger.add_argument(
        "--format", choices=("text", "json"), help="output format of --dry-run's plan (default: text)"
    )

    revision = commands.add_parser("revision", help="register the workers of one revision on Arkindex")
    revision.add_argument("commit", nargs="?", help="full commit hash (default: REPOSITORY_REVISION)")

    demo = commands.add_parser(
        "demo",
        help="run the whole chain locally: a sample repository, the embedded Arkindex emulator, every task",
    )
    demo.add_argument(
        "--repository-url",
        help="run the chain on this repository instead of a generated sample (a URL or local path)",
    )
    demo.add_argument(
        "--ref", help="branch or tag of --repository-url to import (default: its default branch)"
    )
    demo.add_argument(
        "--revisions", type=int, default=3, help="how many of the newest commits to import (default: 3)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.format and not args.dry_run:
        # A real run logs; only the dry run prints a plan. Accepting the flag and ignoring it would
        # leave a script waiting for JSON that never comes.
        parser.error(
            "--format applies to --dry-run only: the plan of a real run is in $PONOS_DATA/current/import-plan.json"
        )
    setup_logging("json" if os.environ.get("LOG_FORMAT", "").strip().lower() == "json" else "text")
    stop.install()  # SIGTERM and SIGINT, also as PID 1 and when the parent ignored SIGINT
    command = args.command or "trigger"
    early: EarlyClone | None = None
    try:
        if command == "trigger":
            # The clone runs while the settings layer is imported; the trigger takes it only if the
            # settings ask for that very clone.
            from git_import.early import EarlyClone

            early = EarlyClone.start(os.environ, dry_run=args.dry_run)
        return run_command(command, args, early)
    except FatalError as exc:
        # One line: what is wrong, where, and how to fix it (the hint, in parentheses). The trigger
        # raises a setting or input error only before its first API write.
        nothing = "; nothing was created" if exc.exit_code == EXIT_CONFIG and command == "trigger" else ""
        logger.error("%s%s", exc, nothing, extra=logs.fields(setting=list(exc.settings) or None))
        return exc.exit_code
    except stop.Stopped as exc:
        # Says what the stop left (the trigger's and the revision's own counts) and what to do next.
        logger.error("%s", exc.message)
        return exc.exit_code
    except KeyboardInterrupt:  # SIGINT before the handler was installed
        logger.error("interrupted")
        return 130
    except Exception as exc:  # an unexpected failure: print it once, scrubbed, with its traceback
        logger.error("unexpected error: %s\n%s", scrub(repr(exc)), scrub(traceback.format_exc()))
        return EXIT_FAILURE
    finally:
        if early is not None:
            early.close()


def run_command(command: str, args: argparse.Namespace, early: EarlyClone | None) -> int:
    """Every missing or wrong setting is named at once (load_settings), before the command runs."""
    if command == "demo":
        from git_import.local.demo import run_demo

        return run_demo(repository_url=args.repository_url, ref=args.ref, revisions=args.revisions)
    from git_import.settings import load_settings

    if command == "revision":
        from git_import.revision import run_revision

        overrides = {"repository_revision": args.commit} if args.commit else {}
        return run_revision(load_settings("revision", **overrides))
    from git_import.trigger import run_trigger

    settings = load_settings("trigger --dry-run" if args.dry_run else "trigger")
    return run_trigger(settings, dry_run=args.dry_run, fmt=args.format or "text", early=early)


def run(argv: list[str] | None = None) -> NoReturn:
    """The program's entry point: `main`, then exit without tearing the interpreter down.

    Everything the run wrote is flushed first. Tearing down the modules, threads and sockets of a
    finished run took ~50 ms of every task's wall time, for nothing."""
    code = main(argv)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # A closed or broken pipe: nothing more can be said there.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
