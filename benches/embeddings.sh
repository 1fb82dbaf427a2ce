#!/usr/bin/env bash
# Embedding throughput: chunks/s of the local all-MiniLM-L6-v2 (candle, release build) on
# 128-token chunks in batches of 32, and of the same model and chunks in Python
# sentence-transformers when ST_PYTHON names a Python that has it (torch is too large for
# the project venvs; make a scratch one: python3 -m venv /tmp/st &&
# /tmp/st/bin/pip install torch==2.15.0 sentence-transformers==6.2.0).
#   bash benches/embeddings.sh [chunks]     (default 512)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lakehouse-target}"
MODELS_DIR="${LAKEHOUSE__EMBEDDING__MODELS_DIR:-$HOME/.cache/lakehouse-models}"
chunks="${1:-512}"
texts="$(mktemp)"
trap 'rm -f "$texts"' EXIT

cargo build --release -q -p lakehouse-embedding --example throughput
"$CARGO_TARGET_DIR/release/examples/throughput" --chunks "$chunks" --batch 32 --texts-out "$texts"
if [ -n "${ST_PYTHON:-}" ]; then
    "$ST_PYTHON" benches/embeddings.py "$MODELS_DIR/all-MiniLM-L6-v2" "$texts" --batch 32
else
    echo "embeddings: ST_PYTHON not set; skipping the sentence-transformers peer" >&2
fi
