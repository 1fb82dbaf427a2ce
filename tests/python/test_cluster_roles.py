"""The cluster as separate processes of the binary (issue 5, point 1): three catalog nodes,
a scheduler, two executors with one task slot each and a gateway, on loopback port 0. The
demo CSVs go in through the gateway's HTTP ingest; ADBC answers the demo's three-table join
and a GROUP BY as DuckDB does on the same files; both executors ran tasks; `lakehouse status`
shows the catalog, the scheduler and both executors; a vector index is built and searched
through the separate gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import duckdb
import pytest

from harness import (
    DEMO_META,
    DEMO_TABLES,
    EXAMPLES,
    LakehouseCluster,
    assert_cli_ok,
    assert_same_rows,
    table_rows,
    wait_until,
)

# examples/demo.sh's three-table join.
JOIN = """SELECT c.client AS client,
       COUNT(*) AS placements,
       ROUND(AVG(p.bill_rate), 2) AS avg_bill_rate,
       string_agg(DISTINCT k.full_name, ', ' ORDER BY k.full_name) AS candidates
FROM placements p
JOIN contracts c ON c.contract_id = p.contract_id
JOIN candidates k ON k.candidate_id = p.candidate_id
GROUP BY c.client
ORDER BY placements DESC, c.client"""

GROUP_BY = """SELECT city, COUNT(*) AS n, AVG(years_experience) AS avg_years
FROM candidates GROUP BY city"""


@pytest.fixture(scope="module")
def cluster(lakehouse_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakehouseCluster]:
    cluster = LakehouseCluster(lakehouse_bin, tmp_path_factory.mktemp("cluster"), executors=2, task_slots=1)
    try:
        cluster.start()
        for table in DEMO_TABLES:
            cluster.gateway.ingest(EXAMPLES / f"{table}.csv", table, check=True, **DEMO_META[table])
        yield cluster
    finally:
        cluster.kill()


@pytest.fixture(scope="module")
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    for table in DEMO_TABLES:
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_csv('{EXAMPLES / table}.csv')")
    yield con
    con.close()


@pytest.mark.parametrize("query,ordered", [(JOIN, True), (GROUP_BY, False)], ids=["three_table_join", "group_by"])
def test_adbc_answers_as_duckdb_with_tasks_on_both_executors(cluster, duck, query, ordered):
    before = cluster.tasks_completed()
    got = cluster.gateway.sql(query)
    result = duck.execute(query)
    want_names, want = [d[0] for d in result.description], result.fetchall()
    assert [n.lower() for n in got.column_names] == [n.lower() for n in want_names]
    assert want, "DuckDB found no rows: the comparison would prove nothing"
    assert_same_rows(table_rows(got), want, ordered=ordered, context=query)
    # One slot each: the query's stages spread over both executors.
    wait_until(
        lambda: all(a > b for a, b in zip(cluster.tasks_completed(), before)),
        timeout=5,
        what="tasks completed on both executors",
        on_timeout=lambda: f"before {before}, after {cluster.tasks_completed()}",
    )


def test_status_shows_catalog_scheduler_and_executors(cluster):
    result = cluster.run("status", "--catalog", ",".join(cluster.catalog_addrs), "--scheduler", cluster.scheduler_addr)
    assert_cli_ok(result)
    out = result.stdout
    assert "catalog: leader node" in out, out
    assert out.count("voter") == 3, out
    assert f"scheduler: {cluster.scheduler_addr}, serving" in out, out
    for executor in cluster.executors:
        info = executor.listening("executor_id")
        line = next((ln for ln in out.splitlines() if ln.startswith(info["executor_id"])), None)
        assert line is not None, f"executor {info['executor_id']} missing:\n{out}"
        fields = line.split()
        assert fields[1] == info["flight"], line
        assert fields[3] == "1", f"task slots: {line}"


def test_status_fails_when_the_scheduler_is_unreachable(cluster):
    # The catalog part still prints; the command fails naming the scheduler.
    result = cluster.run("status", "--catalog", ",".join(cluster.catalog_addrs), "--scheduler", "127.0.0.1:1")
    assert result.returncode != 0, result.stdout
    assert "catalog: leader node" in result.stdout, result.stdout
    assert "scheduler: unreachable at 127.0.0.1:1" in result.stdout, result.stdout
    assert "scheduler" in result.stderr, result.stderr


def test_vector_index_builds_and_searches_through_a_separate_gateway(cluster):
    """The gateway plans a vector search's scan (it embeds the query) and an index job's
    scan itself, and ships them to the scheduler process as physical plans."""
    created = cluster.gateway.cli("index", "create", "cand_idx", "--table", "candidates", "--column", "skills", timeout=600)
    assert_cli_ok(created)
    assert "cand_idx version 1 ready: 60 chunks" in created.stdout, created.stdout
    joined = cluster.gateway.sql(
        "SELECT c.candidate_id, s.score FROM vector_search('cand_idx', 'rust engineer in Austin', 5) s "
        "JOIN candidates c ON c.candidate_id = s.doc_id ORDER BY s.score DESC"
    )
    assert joined.num_rows == 5
    filtered = cluster.gateway.sql(
        "SELECT c.city FROM vector_search('cand_idx', 'rust engineer', 4, 'city = ''Austin''') s "
        "JOIN candidates c ON c.candidate_id = s.doc_id"
    )
    assert filtered.column("city").to_pylist() == ["Austin"] * 4
    answer = cluster.gateway.post("/v1/search", json={"index": "cand_idx", "query": "rust engineer in Austin", "k": 5})
    assert answer.status_code == 200, answer.text
    assert sorted(r["doc_id"] for r in answer.json()["results"]) == sorted(joined.column("candidate_id").to_pylist())
