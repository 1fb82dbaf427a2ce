#!/usr/bin/env bash
# TPC-H (default SF1) on `lakehouse up` against DataFusion-python and DuckDB in the same run.
# The generated data is cached in ${LAKEHOUSE_TPCH_CACHE:-$HOME/.cache/lakehouse-tpch}.
# Extra arguments go to benches/tpch.py, e.g. `bash benches/tpch.sh --runs 3 --queries 1,18`.
# Results go to stdout; copy them into docs/benchmarks.md with the date and machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lakehouse-target}"
VENV="${LAKEHOUSE_BENCH_VENV:-$HOME/.cache/lakehouse-bench-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -r benches/requirements.txt
cargo build --release -p lakehouse
"$VENV/bin/python" benches/tpch.py --bin "$CARGO_TARGET_DIR/release/lakehouse" "$@"
