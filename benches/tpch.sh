#!/usr/bin/env bash
# TPC-H (default SF1) on `lakehouse up` against DataFusion-python and DuckDB in the same run.
# The generated data is cached in ${LAKEHOUSE_TPCH_CACHE:-$HOME/.cache/lakehouse-tpch}.
# Extra arguments go to benches/tpch.py, e.g. `bash benches/tpch.sh --runs 3 --queries 1,18`.
exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" tpch "$@"
