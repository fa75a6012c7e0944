#!/usr/bin/env bash
# The whole test suite: unit and golden tests, in-process gRPC tests, and end-to-end tests
# with real Envoy (installed into .venv on first use) and the conformance runner.
set -euo pipefail
cd "$(dirname "$0")/.."
PORTICO_ENVOY="$(scripts/setup-envoy.sh)"
export PORTICO_ENVOY
echo "using $("$PORTICO_ENVOY" --version | grep -o 'version: .*')"
# The end-to-end tests drive the built binaries.
cargo build --workspace --bins
cargo test --workspace "$@"
