"""The naive baseline the benchmark compares the trigger with: what a straightforward import would do.

A full ``git clone`` (every blob, with a checkout), ``git rev-list`` of the pushed first-parent commits,
then one ``CreateTask`` after another through ``arkindex-client``, one request at a time.
It reads the same environment as the trigger (PONOS_PROCESS, PONOS_TASK, ARKINDEX_API_URL,
ARKINDEX_TASK_TOKEN, REPOSITORY_URL, REPOSITORY_REF, REPOSITORY_BEFORE, REPOSITORY_AFTER,
REPOSITORY_PATHS, IMPORT_IMAGE) and prints how many tasks it created.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from arkindex import ArkindexClient

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}


def main() -> int:
    env = os.environ
    url = env["REPOSITORY_URL"]
    before, after = env["REPOSITORY_BEFORE"], env["REPOSITORY_AFTER"]
    paths = [p for p in env.get("REPOSITORY_PATHS", "").split(",") if p.strip()]
    ref = env.get("REPOSITORY_REF")
    git_env = {**env, **GIT_ENV}
    workdir = tempfile.mkdtemp(prefix="bench-naive-")
    try:
        clone = os.path.join(workdir, "repo")
        subprocess.run(["git", "clone", "--quiet", url, clone], check=True, env=git_env)
        args = ["git", "-C", clone, "rev-list", "--first-parent", "--reverse", f"{before}..{after}"]
        if paths:
            args += ["--", *paths]
        hashes = subprocess.run(args, check=True, env=git_env, capture_output=True, text=True).stdout.split()
        client = ArkindexClient(
            token=env["ARKINDEX_TASK_TOKEN"], auth_scheme="Ponos", base_url=env["ARKINDEX_API_URL"]
        )
        for commit in hashes:
            task_env = {"REPOSITORY_REVISION": commit, "REPOSITORY_URL": url}
            if ref:
                task_env["REPOSITORY_REF"] = ref
            client.request(
                "CreateTask",
                body={
                    "process_id": env["PONOS_PROCESS"],
                    "slug": f"import-{commit}",
                    "parents": [env["PONOS_TASK"]],
                    "image": env.get("IMPORT_IMAGE", "arkindex-git-import:latest"),
                    "command": f"arkindex-git-import revision {commit}",
                    "env": task_env,
                },
            )
        print(len(hashes))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
