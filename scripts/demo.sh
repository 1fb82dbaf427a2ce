#!/usr/bin/env bash
# The whole demo on a fresh machine: install what is needed, build the release binary,
# start `lakehouse up` on a temporary data dir, ingest examples/*.csv with their metadata,
# print a join across the three tables, and stop the server.
#
#   bash scripts/demo.sh                 # stops the server at the end
#   bash scripts/demo.sh --keep-running  # leaves it up, for ADBC or the CLI
#
# Environment: CARGO_TARGET_DIR (default $HOME/.cache/lakehouse-target), LAKEHOUSE_VENV,
# and the LAKEHOUSE__SECTION__KEY settings of `lakehouse up` (ports default to 3100/3101).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lakehouse-target}"

KEEP_RUNNING=0
case "${1:-}" in
    "") ;;
    --keep-running) KEEP_RUNNING=1 ;;
    *) echo "usage: bash scripts/demo.sh [--keep-running]" >&2; exit 2 ;;
esac

bash scripts/setup.sh

echo "==> cargo build --release -p lakehouse (target dir $CARGO_TARGET_DIR)"
cargo build --release -p lakehouse
BIN="$CARGO_TARGET_DIR/release/lakehouse"

WORK="$(mktemp -d -t lakehouse-demo.XXXXXX)"
LISTEN="$WORK/listen.json"
LOG="$WORK/lakehouse-up.log"
export LAKEHOUSE__NODE__DATA_DIR="${LAKEHOUSE__NODE__DATA_DIR:-$WORK/data}"

SERVER_PID=""
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 300); do # up to 30 s
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "demo: lakehouse up did not stop within 30 s of SIGTERM; killing it" >&2
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
cleanup() {
    local rc=$?
    if [ "$KEEP_RUNNING" = 1 ] && [ "$rc" = 0 ]; then
        return
    fi
    stop_server
    if [ "$rc" != 0 ] && [ -f "$LOG" ]; then
        echo "demo: failed; kept $WORK. Last lines of the server log ($LOG):" >&2
        tail -n 40 "$LOG" >&2 || true
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "==> lakehouse up (data dir $LAKEHOUSE__NODE__DATA_DIR, log $LOG)"
"$BIN" up --listen-file "$LISTEN" >"$LOG" 2>&1 &
SERVER_PID=$!

# The listen file appears (written whole) once every listener is bound.
for _ in $(seq 1 600); do # up to 60 s
    [ -s "$LISTEN" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "demo: lakehouse up exited early" >&2; exit 1; }
    sleep 0.1
done
[ -s "$LISTEN" ] || { echo "demo: lakehouse up did not write $LISTEN within 60 s" >&2; exit 1; }

json_field() { sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p" "$LISTEN"; }
HTTP_ADDR="$(json_field http)"
FLIGHT_ADDR="$(json_field flight_sql)"
export LAKEHOUSE_SERVER="http://$HTTP_ADDR"
export LAKEHOUSE_FLIGHT_SQL="grpc://$FLIGHT_ADDR"
export LAKEHOUSE_BIN="$BIN"

for i in $(seq 1 300); do # up to 30 s
    curl -fsS -o /dev/null "$LAKEHOUSE_SERVER/health" 2>/dev/null && break
    [ "$i" = 300 ] && { echo "demo: $LAKEHOUSE_SERVER/health did not answer within 30 s" >&2; exit 1; }
    sleep 0.1
done
echo "==> ready: HTTP $LAKEHOUSE_SERVER, Flight SQL $LAKEHOUSE_FLIGHT_SQL"

bash examples/demo.sh

echo
echo "==> GET $LAKEHOUSE_SERVER/v1/tables/candidates (metadata, schema, versions)"
curl -fsS "$LAKEHOUSE_SERVER/v1/tables/candidates" | "${LAKEHOUSE_VENV:-$HOME/.cache/lakehouse-venv}/bin/python" -m json.tool

if [ "$KEEP_RUNNING" = 1 ]; then
    cat <<EOF

lakehouse up is still running (pid $SERVER_PID, data in $LAKEHOUSE__NODE__DATA_DIR).
  $BIN sql "SELECT COUNT(*) FROM candidates" --server $LAKEHOUSE_FLIGHT_SQL
  Python: adbc_driver_flightsql.dbapi.connect("$LAKEHOUSE_FLIGHT_SQL")  (venv: ${LAKEHOUSE_VENV:-$HOME/.cache/lakehouse-venv})
Stop it with: kill $SERVER_PID
EOF
fi
