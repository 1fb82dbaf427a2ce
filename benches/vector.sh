#!/usr/bin/env bash
# Vector search benchmark: the frozen HNSW against hnswlib and faiss-cpu on the same vectors.
#   bash benches/vector.sh [args for benches/vector.py]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lakehouse-target}"
VENV="${LAKEHOUSE_BENCH_VENV:-$HOME/.cache/lakehouse-bench-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -r benches/requirements.txt
cargo build --release -p lakehouse-vector --example hnsw_bench
"$VENV/bin/python" benches/vector.py --bench-bin "$CARGO_TARGET_DIR/release/examples/hnsw_bench" "$@"
