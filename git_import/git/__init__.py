"""Git access: the git binary run as a subprocess, one small function per repository operation."""
