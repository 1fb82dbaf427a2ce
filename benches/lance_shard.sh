#!/usr/bin/env bash
# Lance shard benchmark: LanceShard (release) against pylance 14.0.2 on the same vectors.
#   bash benches/lance_shard.sh [args for benches/lance_shard.py]   (defaults: 100K x 768, 256 partitions)
# A quick check in debug: LANCE_BENCH_PROFILE=debug bash benches/lance_shard.sh --n 10000 --dims 128 --queries 100 --partitions 0 --reps 1
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lakehouse-target}"
VENV="${LAKEHOUSE_BENCH_VENV:-$HOME/.cache/lakehouse-bench-venv}"
PROFILE="${LANCE_BENCH_PROFILE:-release}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -r benches/requirements.txt
if [ "$PROFILE" = release ]; then
    cargo build --release -p lakehouse-vector --example lance_bench
else
    cargo build -p lakehouse-vector --example lance_bench
fi
"$VENV/bin/python" benches/lance_shard.py --bench-bin "$CARGO_TARGET_DIR/$PROFILE/examples/lance_bench" "$@"
