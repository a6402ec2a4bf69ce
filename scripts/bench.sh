#!/usr/bin/env bash
# safe-exec's benchmarks, side by side in one run, as Markdown tables (scripts/bench.py): the
# cold start against a naive hardened `docker run --rm`, serve's warm latency and throughput, `run
# --server`, grade's throughput against the engine's churn ceiling, serve's peak memory; then
# where a warm run's time goes. Quote medians and ratios from one run of this script;
# docs/performance.md has the last tables.
#
# Needs root like scripts/setup.sh (which it runs to make sure the engine, the image and the
# release binary are there). RUNS=N sets the number of side-by-side pairs (default 30).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --locked --quiet
SAFE_EXEC_SKIP_BUILD=1 bash scripts/setup.sh >/dev/null
BIN=target/release/safe-exec IMAGE=${IMAGE:-safe-exec-python:3.11} exec python3 scripts/bench.py
