#!/usr/bin/env bash
# Everything CI checks, in order; stops at the first failure with a non-zero
# exit. Needs root on Debian/Ubuntu: setup.sh installs and starts the Docker
# engine and builds the runner image the integration tests use.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

echo "test: cargo fmt --all --check"
cargo fmt --all --check

echo "test: cargo clippy --all-targets --locked -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

echo "test: cargo nextest run --locked --profile ci"
cargo nextest run --locked --profile ci "$@"

echo "test: all checks passed"
