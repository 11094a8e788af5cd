from git_import.cli import run

run()
