#!/usr/bin/env bash
# Catalog failover: 20 trials of SIGKILL to the Raft catalog leader under a write loop
# through the gateway; time to a new leader and to the first acknowledged write
# (p50 / p95 / max, targets < 1 s and < 2 s). Extra arguments go to benches/failover.py,
# e.g. `bash benches/failover.sh --trials 50`.
exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" failover "$@"
