#!/usr/bin/env bash
# Runs a benchmark against the `dist` build (what the container image ships; thin LTO,
# as the DataFusion-python peer is built with LTO), with the peers in the same run.
#   bash benches/run.sh [ingest_query|tpch] [args for that script]
# (default ingest_query). Results go to stdout; copy them into docs/benchmarks.md with
# the date and machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bench=ingest_query
if [ $# -gt 0 ] && [ -f "benches/$1.py" ]; then
    bench="$1"
    shift
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lakehouse-target}"
VENV="${LAKEHOUSE_BENCH_VENV:-$HOME/.cache/lakehouse-bench-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -r benches/requirements.txt
cargo build --profile dist -p lakehouse
"$VENV/bin/python" "benches/$bench.py" --bin "$CARGO_TARGET_DIR/dist/lakehouse" "$@"
