#!/usr/bin/env bash
# Runs the benchmarks against a release build, with the peers in the same run.
# Results go to stdout; copy them into docs/benchmarks.md with the date and machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lakehouse-target}"
VENV="${LAKEHOUSE_BENCH_VENV:-$HOME/.cache/lakehouse-bench-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -r benches/requirements.txt
cargo build --release -p lakehouse
"$VENV/bin/python" benches/ingest_query.py --bin "$CARGO_TARGET_DIR/release/lakehouse" "$@"
