"""TPC-H at scale factor 0.1: the 22 queries over ADBC Flight SQL equal DuckDB's answers.

`tpchgen-cli` writes the eight tables as Parquet; `lakehouse ingest` loads each with its
metadata; every query runs as a Ballista job and is compared with DuckDB reading the same
generated files. The query texts (validation parameters) live in benches/tpch/queries/,
shared with the benchmark benches/tpch.py.

Numbers are compared as floats with a tolerance: DataFusion averages decimals as decimals,
DuckDB as doubles. Rows are compared in order where the ORDER BY is total, and
as a multiset plus the sequence of sort keys where it is not (ties may come in any order).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import duckdb
import pytest

from harness import REPO, assert_cli_ok, assert_same_rows, normalise, same_value, table_rows

SCALE_FACTOR = "0.1"
TABLES = ("region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem")
QUERY_DIR = REPO / "benches" / "tpch" / "queries"
QUERIES = tuple(f"q{n:02d}" for n in range(1, 23))
GENERATE_TIMEOUT = 300
# Decimal averages come back as decimal(p, 6), truncated, from DataFusion and as doubles from
# DuckDB: they agree to 1e-6 absolute. Other numbers agree to far better than 1e-6 relative.
TOLERANCE = {"rel_tol": 1e-6, "abs_tol": 1e-6}

# Queries whose ORDER BY does not fix the order of every row: the columns it sorts on.
# Every other query has a total order (or one row) and is compared row by row.
PARTIAL_ORDER: dict[str, tuple[str, ...]] = {
    "q03": ("revenue", "o_orderdate"),
    "q05": ("revenue",),
    "q10": ("revenue",),
    "q11": ("value",),
    "q18": ("o_totalprice", "o_orderdate"),
}


def query_text(name: str) -> str:
    return (QUERY_DIR / f"{name}.sql").read_text(encoding="utf-8")


def tpchgen_cli() -> str:
    """The generator installed next to this Python (the test venv), else on PATH."""
    beside = Path(sys.executable).parent / "tpchgen-cli"
    found = str(beside) if beside.is_file() else shutil.which("tpchgen-cli")
    if not found:
        pytest.fail("tpchgen-cli not found: scripts/setup.sh installs it from tests/python/requirements.txt")
    return found


@pytest.fixture(scope="module")
def tpch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tpch")
    result = subprocess.run(
        [tpchgen_cli(), "parquet", "--scale-factor", SCALE_FACTOR, "--output-dir", str(out)],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=GENERATE_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"tpchgen-cli failed ({result.returncode}):\n{result.stderr}"
    missing = [t for t in TABLES if not (out / f"{t}.parquet").is_file()]
    assert not missing, f"tpchgen-cli wrote no file for {missing}: {sorted(p.name for p in out.iterdir())}"
    return out


def table_meta(table: str) -> dict[str, str]:
    return {
        "owner": "benchmarks@example.com",
        "sensitivity": "public",
        "lineage": f"tpchgen-cli parquet -s {SCALE_FACTOR} → lakehouse ingest → {table}",
        "freshness_sla": "7d",
        "description": f"TPC-H {table} at scale factor {SCALE_FACTOR}",
        "tags": "tpch,benchmark",
    }


@pytest.fixture(scope="module")
def tpch_server(module_server, tpch_dir: Path):
    for table in TABLES:
        assert_cli_ok(module_server.ingest(tpch_dir / f"{table}.parquet", table, **table_meta(table)))
    return module_server


@pytest.fixture(scope="module")
def duck(tpch_dir: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    for table in TABLES:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{tpch_dir / table}.parquet')")
    yield con
    con.close()


def test_tables_ingested_with_metadata(tpch_server, duck):
    for table in TABLES:
        info = tpch_server.table_info(table)
        assert info is not None, f"{table} is not in the catalog"
        meta = table_meta(table)
        for key in ("owner", "sensitivity", "lineage", "description"):
            assert info["metadata"][key] == meta[key], (table, key, info["metadata"])
        want = duck.execute(f"SELECT COUNT(*) FROM {table}").fetchall()[0][0]
        assert tpch_server.count(table) == want, table


def _sort_keys(rows: list[tuple], names: list[str], keys: tuple[str, ...]) -> list[tuple]:
    at = [names.index(k) for k in keys]
    return [tuple(normalise(row[i]) for i in at) for row in rows]


@pytest.mark.parametrize("name", QUERIES)
def test_query_same_answer_as_duckdb(tpch_server, duck, name):
    query = query_text(name)
    result = duck.execute(query)
    want_names = [d[0].lower() for d in result.description]
    want = result.fetchall()
    assert want, f"{name}: DuckDB returned no rows; the comparison would be vacuous"

    jobs_before = tpch_server.jobs_submitted()
    got_table = tpch_server.sql(query)
    assert tpch_server.jobs_submitted() > jobs_before, f"{name} did not run as a Ballista job"
    got_names = [n.lower() for n in got_table.column_names]
    assert got_names == want_names, name
    got = table_rows(got_table)

    keys = PARTIAL_ORDER.get(name)
    assert_same_rows(got, want, ordered=keys is None, context=name, **TOLERANCE)
    if keys is not None:
        got_keys, want_keys = _sort_keys(got, got_names, keys), _sort_keys(want, want_names, keys)
        for i, (g, w) in enumerate(zip(got_keys, want_keys, strict=True)):
            assert all(same_value(a, b, **TOLERANCE) for a, b in zip(g, w, strict=True)), (
                f"{name}: sort keys {keys} of row {i} out of order\n got: {g}\nwant: {w}"
            )
