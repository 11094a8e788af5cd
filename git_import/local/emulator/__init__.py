"""An embedded Arkindex-compatible HTTP server, for tests, the demo and the benchmark.

Stdlib only (plus PyYAML to check imported worker configurations). Its API paths and shapes are
our [assumed] reconstruction of Arkindex's, kept in :mod:`git_import.local.emulator.schema`.
"""

from git_import.local.emulator.server import Emulator, Faults, Modes

__all__ = ["Emulator", "Faults", "Modes"]
