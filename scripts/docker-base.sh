#!/usr/bin/env bash
# A Python 3.11 base image built from Debian's own packages, for machines that reach a Debian
# mirror but not Docker Hub (python:3.11-slim is then out of reach). Debian bookworm's python3
# is 3.11, so the Dockerfile builds the same way on it:
#   scripts/docker-base.sh                      # -> image strata-python:3.11-bookworm
#   docker build --build-arg PYTHON_IMAGE=strata-python:3.11-bookworm -t strata-ml .
# Needs root, debootstrap and a Docker engine. The host's CA bundle goes into the image (and pip
# is pointed at it), so pip works behind the same TLS-inspecting proxy or private mirror as the
# host; CA_BUNDLE=/path/to/bundle.pem picks another.
set -euo pipefail
TAG=${1:-strata-python:3.11-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
ROOT=$(mktemp -d /tmp/strata-rootfs.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
  bookworm "$ROOT" "$MIRROR"
# Like python:3.11-slim, `python` and `pip` are on PATH and pip may install (Debian's own
# python3 is "externally managed"): a venv at /opt/python, first on PATH.
chroot "$ROOT" python3 -m venv /opt/python
# apt's lists and caches, docs and man pages: not needed at run time.
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/usr/share/doc/* \
  "$ROOT"/usr/share/man/* "$ROOT"/usr/share/locale/*
chmod 0755 "$ROOT"  # mktemp made it 0700: the image's / must be traversable by non-root users
install -m 0644 "$CA_BUNDLE" "$ROOT/etc/ssl/certs/ca-certificates.crt"
tar -C "$ROOT" -c . | docker import \
  --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' - "$TAG"
docker run --rm --network=none --user 65534 "$TAG" sh -c 'python -c "import sys, venv; print(sys.version)" && pip --version'
