#!/usr/bin/env bash
# Every check, in the order CI runs them (.ci/run calls this):
#   setup → cargo fmt --check → clippy -D warnings → cargo build -p lakehouse (debug)
#   → cargo test → pytest tests/python against that debug binary.
# The binary is built before `cargo test`: the integration tests start it as a process.
# Prints the wall time of each phase as it ends and a summary at the end.
#
# Environment: CARGO_TARGET_DIR (default $HOME/.cache/lakehouse-target, outside the clone
# so that later runs reuse the build), LAKEHOUSE_VENV (default $HOME/.cache/lakehouse-venv),
# PYTEST_ARGS (extra pytest arguments, e.g. "-k durability -x").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lakehouse-target}"
export LAKEHOUSE_VENV="${LAKEHOUSE_VENV:-$HOME/.cache/lakehouse-venv}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

SUMMARY=()
RUN_START=$(date +%s.%N)

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

summary() {
    local rc=$?
    echo
    echo "== wall time per phase =="
    for line in "${SUMMARY[@]}"; do echo "$line"; done
    printf '   %-8s %8ss\n' total "$(elapsed "$RUN_START")"
    return "$rc"
}
trap summary EXIT

# phase NAME COMMAND...: runs it, prints its wall time, stops the run if it fails.
phase() {
    local name="$1" start rc=0
    shift
    echo
    echo "==> [$name] $*"
    start=$(date +%s.%N)
    "$@" || rc=$?
    local took
    took="$(elapsed "$start")"
    if [ "$rc" -eq 0 ]; then
        SUMMARY+=("$(printf '   %-8s %8ss  ok' "$name" "$took")")
        echo "<== [$name] ok in ${took}s"
    else
        SUMMARY+=("$(printf '   %-8s %8ss  FAILED (exit %d)' "$name" "$took" "$rc")")
        echo "<== [$name] FAILED (exit $rc) after ${took}s" >&2
        exit "$rc"
    fi
}

run_pytest() {
    local rc=0
    # shellcheck disable=SC2086 # PYTEST_ARGS is a list of words on purpose
    LAKEHOUSE_BIN="$CARGO_TARGET_DIR/debug/lakehouse" \
        "$LAKEHOUSE_VENV/bin/python" -m pytest tests/python -p no:cacheprovider ${PYTEST_ARGS:-} || rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "pytest collected no tests: that is a failure here" >&2
        return 1
    fi
    return "$rc"
}

phase setup bash scripts/setup.sh
phase fmt cargo fmt --all -- --check
phase clippy cargo clippy --workspace --all-targets -- -D warnings
phase build cargo build -p lakehouse
phase test cargo test --workspace
phase pytest run_pytest
