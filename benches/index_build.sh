#!/usr/bin/env bash
# Embedding throughput through the system: `lakehouse index create` on `lakehouse up`'s own
# executor, then with a second executor joined, against the candle model alone on the same
# texts (release builds).
#   bash benches/index_build.sh [args for benches/index_build.py]   (default 4000 rows)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lakehouse-target}"
VENV="${LAKEHOUSE_BENCH_VENV:-$HOME/.cache/lakehouse-bench-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -r benches/requirements.txt
# One invocation, so the binary and the example share one feature set (one dependency build).
cargo build --release -p lakehouse -p lakehouse-embedding --bin lakehouse --example throughput
"$VENV/bin/python" benches/index_build.py --bin "$CARGO_TARGET_DIR/release/lakehouse" \
    --throughput-bin "$CARGO_TARGET_DIR/release/examples/throughput" "$@"
