"""Writes over Flight SQL with ADBC: CREATE TABLE AS, INSERT, DROP TABLE, views, bulk ingest
(`adbc_ingest` in every mode) and prepared updates with bound parameters, all through the
same lease-fenced commit path as `lakehouse ingest`. Tables made this way carry partial
ADR-013 metadata, flagged incomplete until `PATCH /v1/tables/{name}/metadata` completes it.

How ADBC sends a statement: `cursor.execute(sql)` prepares it and runs it as a query
(GetFlightInfo + DoGet); `cursor.executemany` / `adbc_statement.execute_update()` run it as
an update (DoPut); `adbc_ingest` sends CommandStatementIngest with the batches.
"""

from __future__ import annotations

import time

import adbc_driver_manager
import duckdb
import pyarrow as pa
import pytest
import requests

from harness import DEMO_TABLES, EXAMPLES, HTTP_TIMEOUT, assert_same_rows, table_rows

# ADBC wraps gRPC codes into DB-API errors; these are the ones a user sees.
ProgrammingError = adbc_driver_manager.ProgrammingError
DatabaseError = adbc_driver_manager.DatabaseError

COMPLETE_META = {
    "owner": "analytics@example.com",
    "sensitivity": "confidential",
    "lineage": "placements → CTAS → busy_clients",
    "freshness_sla": "24h",
    "description": "Clients with more than one placement",
    "tags": ["staffing", "derived"],
}

PLACEMENTS_PER_CLIENT = """
    SELECT c.client AS client, COUNT(*) AS placements, SUM(p.bill_rate) AS total_bill
    FROM placements p JOIN contracts c ON c.contract_id = p.contract_id
    GROUP BY c.client
"""


@pytest.fixture(scope="module")
def duck() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for table in DEMO_TABLES:
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_csv('{EXAMPLES / table}.csv')")
    yield con
    con.close()


def execute(server, sql: str, params=None) -> pa.Table:
    """`cursor.execute` (prepare + query), as most ADBC users run statements."""
    with server.conn.cursor() as cur:
        if params is None:
            cur.execute(sql)
        else:
            cur.execute(sql, params)
        return cur.fetch_arrow_table()


def execute_update(server, sql: str) -> int:
    """An update without preparing: Flight SQL CommandStatementUpdate."""
    with server.conn.cursor() as cur:
        cur.adbc_statement.set_sql_query(sql)
        return cur.adbc_statement.execute_update()


def ingest(server, table: str, data: pa.Table, mode: str) -> int:
    with server.conn.cursor() as cur:
        return cur.adbc_ingest(table, data, mode=mode)


def info(server, table: str) -> dict:
    found = server.table_info(table)
    assert found is not None, f"GET /v1/tables/{table} is 404"
    return found


def patch_metadata(server, table: str, body) -> requests.Response:
    return requests.patch(f"{server.http_url}/v1/tables/{table}/metadata", json=body, timeout=HTTP_TIMEOUT)


def test_ctas_equals_duckdb_and_is_flagged_incomplete(demo_server, duck):
    counts = execute(demo_server, f"CREATE TABLE client_totals AS {PLACEMENTS_PER_CLIENT}")
    want = duck.execute(PLACEMENTS_PER_CLIENT).fetchall()
    assert counts.column_names == ["count"]
    assert table_rows(counts) == [(len(want),)], "CTAS answers with the rows it wrote"

    got = demo_server.sql("SELECT client, placements, total_bill FROM client_totals")
    assert_same_rows(table_rows(got), want, ordered=False, context="CTAS vs DuckDB")

    table = info(demo_server, "client_totals")
    assert table["current_version"] == 1 and table["row_count"] == len(want)
    meta = table["metadata"]
    assert table["metadata_incomplete"] is True and meta["metadata_incomplete"] is True
    assert (meta["owner"], meta["sensitivity"], meta["lineage"]) == ("anonymous", "internal", "flight-sql:anonymous")
    # The data is Parquet in the table's directory of the bucket, like any ingest.
    assert list(demo_server.table_dir("client_totals").rglob("*.parquet"))


def test_ctas_over_execute_update_and_existing_table(demo_server):
    assert execute_update(demo_server, "CREATE TABLE open_contracts AS SELECT * FROM contracts WHERE status = 'open'") >= 0
    want = demo_server.rows("SELECT COUNT(*) FROM contracts WHERE status = 'open'")
    assert demo_server.rows("SELECT COUNT(*) FROM open_contracts") == want
    with pytest.raises(DatabaseError, match="already exists.*INSERT INTO"):
        execute_update(demo_server, "CREATE TABLE open_contracts AS SELECT 1 AS x")
    assert execute_update(demo_server, "CREATE TABLE IF NOT EXISTS open_contracts AS SELECT 1 AS x") == 0
    execute_update(demo_server, "CREATE OR REPLACE TABLE open_contracts AS SELECT contract_id FROM contracts")
    assert demo_server.count("open_contracts") == demo_server.count("contracts")
    assert info(demo_server, "open_contracts")["current_version"] == 2


def test_empty_ctas_keeps_the_schema(demo_server):
    execute_update(demo_server, "CREATE TABLE no_rows AS SELECT contract_id, client FROM contracts WHERE 1 = 0")
    got = demo_server.sql("SELECT * FROM no_rows")
    assert got.num_rows == 0 and got.column_names == ["contract_id", "client"]
    execute_update(demo_server, "CREATE TABLE declared (id BIGINT, name VARCHAR)")
    assert demo_server.sql("SELECT * FROM declared").column_names == ["id", "name"]


def test_insert_appends_versions(demo_server):
    execute_update(demo_server, "CREATE TABLE ledger AS SELECT placement_id, bill_rate FROM placements WHERE placement_id < 1005")
    before = demo_server.count("ledger")
    assert execute_update(demo_server, "INSERT INTO ledger VALUES (1, 10.5), (2, 20.25)") == 2
    counts = execute(demo_server, "INSERT INTO ledger SELECT placement_id, bill_rate FROM placements WHERE placement_id >= 1005")
    added = demo_server.rows("SELECT COUNT(*) FROM placements WHERE placement_id >= 1005")[0][0]
    assert table_rows(counts) == [(added,)]
    assert demo_server.count("ledger") == before + 2 + added
    table = info(demo_server, "ledger")
    assert [v["version"] for v in table["versions"]] == [1, 2, 3]
    assert [v["mode"] for v in table["versions"]] == ["create", "append", "append"]
    # An INSERT that selects nothing writes no version.
    assert execute_update(demo_server, "INSERT INTO ledger SELECT placement_id, bill_rate FROM placements WHERE 1 = 0") == 0
    assert info(demo_server, "ledger")["current_version"] == 3
    with pytest.raises(ProgrammingError, match="not found|does not exist"):
        execute_update(demo_server, "INSERT INTO no_such_table VALUES (1)")


def test_prepared_insert_with_bound_parameters(demo_server):
    execute_update(demo_server, "CREATE TABLE notes (id BIGINT, note VARCHAR)")
    # `?` placeholders, one run per parameter row, as an update (DoPut of the parameters).
    with demo_server.conn.cursor() as cur:
        cur.executemany("INSERT INTO notes VALUES (?, ?)", [(1, "first"), (2, "second"), (3, None)])
        assert cur.rowcount == 3
    # And through cursor.execute (prepare, bind, GetFlightInfo) with one row of parameters.
    got = execute(demo_server, "INSERT INTO notes VALUES ($1, $2)", (4, "fourth"))
    assert table_rows(got) == [(1,)]
    rows = demo_server.rows("SELECT id, note FROM notes ORDER BY id")
    assert rows == [(1, "first"), (2, "second"), (3, None), (4, "fourth")]
    assert info(demo_server, "notes")["current_version"] == 3


def test_a_repeated_query_reuses_its_plan_until_its_table_changes(demo_server):
    """A statement planned again unchanged runs the physical plan kept from before;
    a commit, a replaced table or a clock read in the query is planned anew."""
    execute_update(demo_server, "CREATE TABLE plan_reuse AS SELECT 1 AS n")
    total = "SELECT SUM(n) AS total FROM plan_reuse"
    assert demo_server.rows(total) == [(1,)]
    reused = demo_server.metric("query_plans_reused")
    for _ in range(3):
        assert demo_server.rows(total) == [(1,)]
    assert demo_server.metric("query_plans_reused") >= reused + 3
    execute_update(demo_server, "INSERT INTO plan_reuse VALUES (2)")
    assert demo_server.rows(total) == [(3,)], "a commit is seen by the same statement"
    execute_update(demo_server, "CREATE OR REPLACE TABLE plan_reuse AS SELECT 10 AS n")
    assert demo_server.rows(total) == [(10,)], "a replaced table is seen by the same statement"
    clock = "SELECT CAST(now() AS VARCHAR) AS t, n FROM plan_reuse"
    first = demo_server.rows(clock)
    time.sleep(0.01)
    assert demo_server.rows(clock) != first, "now() is read at each run, not kept with the plan"
    execute_update(demo_server, "DROP TABLE plan_reuse")
    with pytest.raises(ProgrammingError, match="not found"):
        demo_server.rows(total)


def test_drop_table_then_query_is_not_found(demo_server):
    execute_update(demo_server, "CREATE TABLE scratch AS SELECT 1 AS x")
    assert demo_server.count("scratch") == 1
    execute_update(demo_server, "DROP TABLE scratch")
    assert demo_server.table_info("scratch") is None
    with pytest.raises(ProgrammingError, match="scratch.*not found|not found.*scratch"):
        demo_server.sql("SELECT * FROM scratch")
    with pytest.raises(DatabaseError, match="`scratch` does not exist"):
        execute_update(demo_server, "DROP TABLE scratch")
    assert execute_update(demo_server, "DROP TABLE IF EXISTS scratch") == 0


def test_views_query_list_and_drop(demo_server):
    execute_update(
        demo_server,
        "CREATE VIEW senior_candidates AS SELECT candidate_id, full_name FROM candidates WHERE years_experience >= 10",
    )
    want = demo_server.rows("SELECT candidate_id, full_name FROM candidates WHERE years_experience >= 10")
    assert_same_rows(demo_server.rows("SELECT * FROM senior_candidates"), want, ordered=False, context="view")

    objects = demo_server.conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    types = {
        t["table_name"]: t["table_type"]
        for catalog in objects
        for schema in catalog["catalog_db_schemas"] or []
        for t in schema["db_schema_tables"] or []
    }
    assert types.get("senior_candidates") == "VIEW", types
    assert types.get("candidates") == "TABLE", types

    # A view sees the table's newest version: it is planned when read.
    execute_update(demo_server, "CREATE TABLE v_base AS SELECT 1 AS n")
    execute_update(demo_server, "CREATE VIEW v_over AS SELECT n FROM v_base")
    execute_update(demo_server, "INSERT INTO v_base VALUES (2)")
    assert sorted(demo_server.rows("SELECT n FROM v_over")) == [(1,), (2,)]
    execute_update(demo_server, "CREATE OR REPLACE VIEW v_over AS SELECT n * 10 AS n FROM v_base")
    assert sorted(demo_server.rows("SELECT n FROM v_over")) == [(10,), (20,)]

    with pytest.raises(DatabaseError, match="already"):
        execute_update(demo_server, "CREATE VIEW v_base AS SELECT 1 AS n")
    with pytest.raises(ProgrammingError, match="is a view; use DROP VIEW"):
        execute_update(demo_server, "DROP TABLE v_over")
    execute_update(demo_server, "DROP VIEW v_over")
    with pytest.raises(ProgrammingError, match="not found"):
        demo_server.sql("SELECT * FROM v_over")
    assert execute_update(demo_server, "DROP VIEW IF EXISTS v_over") == 0


def test_views_survive_a_restart(server_factory):
    server = server_factory("views")
    ingest(server, "base", pa.table({"id": [1, 2, 3]}), "create")
    execute_update(server, "CREATE VIEW evens AS SELECT id FROM base WHERE id % 2 = 0")
    server.restart()
    assert server.rows("SELECT id FROM evens") == [(2,)]


def test_other_statements_are_refused_clearly(demo_server):
    before = demo_server.count("contracts")
    for sql, message in [
        ("DELETE FROM contracts WHERE contract_id = 101", "not supported"),
        ("UPDATE contracts SET rate = 1", "not supported"),
        ("CREATE SCHEMA other", "not supported"),
    ]:
        with pytest.raises(ProgrammingError, match=message):
            execute_update(demo_server, sql)
    with pytest.raises(ProgrammingError, match="does not write"):
        execute_update(demo_server, "SELECT 1")
    assert demo_server.count("contracts") == before


def test_adbc_ingest_modes(demo_server):
    first = pa.table({"id": pa.array([1, 2], pa.int64()), "name": ["a", "b"]})
    more = pa.table({"id": pa.array([3], pa.int64()), "name": ["c"]})

    assert ingest(demo_server, "uploads", first, "create") == 2
    with pytest.raises(DatabaseError, match="already exists.*append.*replace"):
        ingest(demo_server, "uploads", first, "create")
    assert ingest(demo_server, "uploads", more, "append") == 1
    assert demo_server.rows("SELECT id, name FROM uploads ORDER BY id") == [(1, "a"), (2, "b"), (3, "c")]

    with pytest.raises(ProgrammingError, match="does not exist"):
        ingest(demo_server, "missing_uploads", more, "append")
    assert demo_server.table_info("missing_uploads") is None
    with pytest.raises(ProgrammingError, match="schema differs|column"):
        ingest(demo_server, "uploads", pa.table({"other": [1.5]}), "append")

    assert ingest(demo_server, "uploads", more, "replace") == 1
    assert demo_server.rows("SELECT id, name FROM uploads") == [(3, "c")]
    assert ingest(demo_server, "fresh_replace", more, "replace") == 1

    assert ingest(demo_server, "both_ways", first, "create_append") == 2
    assert ingest(demo_server, "both_ways", more, "create_append") == 1
    assert demo_server.count("both_ways") == 3

    table = info(demo_server, "uploads")
    assert [v["mode"] for v in table["versions"]] == ["create", "append", "replace"]
    assert table["metadata_incomplete"] is True
    assert table["metadata"]["lineage"] == "flight-sql:anonymous"


def test_adbc_ingest_of_many_batches_streams_to_parquet(demo_server):
    batches = [pa.record_batch({"id": pa.array(range(i * 10_000, (i + 1) * 10_000), pa.int64())}) for i in range(5)]
    reader = pa.RecordBatchReader.from_batches(batches[0].schema, batches)
    with demo_server.conn.cursor() as cur:
        assert cur.adbc_ingest("many_batches", reader, mode="create") == 50_000
    assert demo_server.rows("SELECT COUNT(*), MIN(id), MAX(id) FROM many_batches") == [(50_000, 0, 49_999)]


def test_patch_completes_metadata(demo_server):
    ingest(demo_server, "to_complete", pa.table({"id": [1]}), "create")
    assert info(demo_server, "to_complete")["metadata_incomplete"] is True

    r = patch_metadata(demo_server, "to_complete", {"description": "partly", "tags": "a,b"})
    assert r.status_code == 200, r.text
    assert r.json()["metadata_incomplete"] is True, "freshness_sla is still missing"

    r = patch_metadata(demo_server, "to_complete", COMPLETE_META)
    assert r.status_code == 200, r.text
    table = info(demo_server, "to_complete")
    assert table["metadata_incomplete"] is False
    meta = table["metadata"]
    for key, value in COMPLETE_META.items():
        assert meta[key] == value, key


def test_bad_patch_is_a_json_400_naming_the_field(demo_server):
    ingest(demo_server, "bad_patch", pa.table({"id": [1]}), "create")
    before = info(demo_server, "bad_patch")["metadata"]
    for body, field in [
        ({"sensitivity": "top-secret"}, "sensitivity"),
        ({"freshness_sla": "whenever"}, "freshness_sla"),
        ({"owner": ""}, "owner"),
        ({"colour": "blue"}, "colour"),
    ]:
        r = patch_metadata(demo_server, "bad_patch", body)
        assert r.status_code == 400, r.text
        error = r.json()
        assert error["error"] == "invalid_input" and field in error["detail"], error
    assert info(demo_server, "bad_patch")["metadata"] == before, "a refused PATCH changes nothing"
    r = patch_metadata(demo_server, "no_such_table", COMPLETE_META)
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_cli_set_metadata(demo_server):
    ingest(demo_server, "cli_meta", pa.table({"id": [1]}), "create")
    base = ["table", "set-metadata", "cli_meta", "--server", demo_server.http_url]
    result = demo_server.cli(*base, "--description", "From the CLI", "--tags", "cli,test")
    assert result.returncode == 0, result.stderr
    assert "still incomplete" in result.stdout
    result = demo_server.cli(*base, "--freshness-sla", "12h", "--owner", "ops@example.com")
    assert result.returncode == 0, result.stderr
    assert "complete" in result.stdout and "incomplete" not in result.stdout
    assert info(demo_server, "cli_meta")["metadata_incomplete"] is False
    result = demo_server.cli(*base, "--sensitivity", "secret")
    assert result.returncode != 0 and "sensitivity" in result.stderr
