#!/usr/bin/env bash
# Loads the staffing sample into a running `lakehouse up` and answers a question across
# the three tables: placements per client, with the average bill rate and who was placed.
#
#   lakehouse up &             # in another terminal (or: bash scripts/demo.sh)
#   bash examples/demo.sh
#
# Environment:
#   LAKEHOUSE_BIN         the lakehouse binary (default: `lakehouse` on PATH)
#   LAKEHOUSE_SERVER      HTTP gateway (default: http://127.0.0.1:3100)
#   LAKEHOUSE_FLIGHT_SQL  Flight SQL endpoint (default: grpc://127.0.0.1:3101)
# Running it again replaces the three tables with a new version each.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAKEHOUSE="${LAKEHOUSE_BIN:-lakehouse}"
SERVER="${LAKEHOUSE_SERVER:-http://127.0.0.1:3100}"
FLIGHT_SQL="${LAKEHOUSE_FLIGHT_SQL:-grpc://127.0.0.1:3101}"

if ! command -v "$LAKEHOUSE" >/dev/null 2>&1; then
    echo "demo: cannot find the lakehouse binary ('$LAKEHOUSE'); set LAKEHOUSE_BIN" >&2
    exit 1
fi

# ingest TABLE OWNER SENSITIVITY LINEAGE DESCRIPTION TAGS
ingest() {
    local table="$1" mode=()
    # A table that exists already needs --mode: replace it so the demo can run twice.
    if curl -fsS -o /dev/null "$SERVER/v1/tables/$table" 2>/dev/null; then
        mode=(--mode replace)
    fi
    echo "==> lakehouse ingest examples/$table.csv --table $table ${mode[*]}"
    "$LAKEHOUSE" ingest "$HERE/$table.csv" \
        --table "$table" \
        --owner "$2" \
        --sensitivity "$3" \
        --lineage "$4" \
        --freshness-sla 24h \
        --description "$5" \
        --tags "$6" \
        "${mode[@]}" \
        --server "$SERVER"
}

ingest candidates "talent-data@example.com" confidential \
    "ats_export → lakehouse ingest → candidates" \
    "Candidates from the ATS export: contact details, city, experience, skills, availability" \
    "staffing,pii,candidates"
ingest contracts "sales-ops@example.com" internal \
    "crm_export → lakehouse ingest → contracts" \
    "Client contracts with day rate, start date and status" \
    "staffing,contracts"
ingest placements "finance@example.com" internal \
    "billing_export → lakehouse ingest → placements" \
    "Placements of candidates on contracts with bill rate and notes" \
    "staffing,placements,billing"

QUERY="SELECT c.client,
       COUNT(*) AS placements,
       ROUND(AVG(p.bill_rate), 2) AS avg_bill_rate,
       string_agg(DISTINCT k.full_name, ', ' ORDER BY k.full_name) AS candidates
FROM placements p
JOIN contracts c ON c.contract_id = p.contract_id
JOIN candidates k ON k.candidate_id = p.candidate_id
GROUP BY c.client
ORDER BY placements DESC, c.client"

echo
echo "==> lakehouse sql: placements per client, with average bill rate and candidate names"
"$LAKEHOUSE" sql "$QUERY" --server "$FLIGHT_SQL"

# Semantic search over the candidates' skills, joined with the table. A second run
# refreshes the index: only skills that changed are embedded again.
echo
if curl -fsS -o /dev/null "$SERVER/v1/indexes/cand_idx" 2>/dev/null; then
    echo "==> lakehouse index refresh cand_idx"
    "$LAKEHOUSE" index refresh cand_idx --server "$SERVER"
else
    echo "==> lakehouse index create cand_idx --table candidates --column skills"
    "$LAKEHOUSE" index create cand_idx --table candidates --column skills --server "$SERVER"
fi

SEARCH="SELECT c.full_name, c.city, c.skills, ROUND(s.score, 3) AS similarity
FROM vector_search('cand_idx', 'rust engineer in Austin', 5) s
JOIN candidates c ON c.candidate_id = s.doc_id
ORDER BY s.score DESC"

echo
echo "==> lakehouse sql: the five candidates nearest to 'rust engineer in Austin'"
"$LAKEHOUSE" sql "$SEARCH" --server "$FLIGHT_SQL"
