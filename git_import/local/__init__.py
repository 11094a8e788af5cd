"""Tools that stand in for the world offline: the Arkindex emulator, a Git server, a sample repository, the demo."""
