# arkindex-git-import: the Ponos task that imports a Git repository's workers into Arkindex.
#
# Ponos runs the image's default command (the trigger) for a repository process; each task the trigger
# creates runs `arkindex-git-import revision <hash>` in the image named by IMPORT_IMAGE.
#
#   docker build --build-arg IMPORT_IMAGE=registry.example.com/arkindex-git-import:0.1.0 \
#     -t registry.example.com/arkindex-git-import:0.1.0 .
#
# Pin the base by digest too (python:3.11.13-slim-bookworm@sha256:...) for bit-for-bit rebuilds.
FROM python:3.11.13-slim-bookworm

# The package version (keep in step with git_import/__init__.py; a test checks it) and the image
# the trigger's child tasks run: the name this image is pushed under.
ARG VERSION=0.1.0
ARG IMPORT_IMAGE=arkindex-git-import:${VERSION}

LABEL org.opencontainers.image.title="arkindex-git-import" \
      org.opencontainers.image.description="The Ponos task that imports the workers of a Git repository into Arkindex" \
      org.opencontainers.image.source="https://gitlab.teklia.com/arkindex/git-import" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later" \
      org.opencontainers.image.version="${VERSION}"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    IMPORT_IMAGE=${IMPORT_IMAGE}

# git for every transfer, openssh-client for ssh:// and scp-like remotes.
# Debian versions are not pinned: the archive keeps only the latest security update of a package, so
# an exact pin breaks the build at the next update; the base tag already fixes the Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git openssh-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies in their own layer, exactly as locked: every package pinned with its hashes in
# requirements.lock (pip-compile from pyproject.toml: `make lock`), so that an image built next month
# holds the same packages, and a tampered download fails the build.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes --only-binary=:all: -r requirements.lock

# The package itself, without touching the dependencies installed above.
COPY pyproject.toml README.md ./
COPY git_import ./git_import
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf /src/build /src/*.egg-info \
    && arkindex-git-import --version

# A non-root user; PONOS_DATA (default /data) is writable by it, so artifacts land in /data/current.
RUN groupadd --gid 1000 ponos \
    && useradd --uid 1000 --gid ponos --no-log-init --create-home --shell /usr/sbin/nologin ponos \
    && mkdir -p /data/current \
    && chown -R ponos:ponos /data
USER 1000:1000
WORKDIR /home/ponos

# Ponos gives a task's command as the container command: no ENTRYPOINT, so that
# `arkindex-git-import revision <hash>` replaces the default trigger as is.
CMD ["arkindex-git-import", "trigger"]
