"""arkindex-git-import: the Ponos task that imports a Git repository's workers into Arkindex."""

__version__ = "0.1.0"
