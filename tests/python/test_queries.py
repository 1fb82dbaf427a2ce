"""ADBC (Flight SQL) answers equal DuckDB's on the same CSV files.

DuckDB reads examples/*.csv with read_csv's defaults; Lakehouse ingests the same files
with its own type inference. Values are compared after normalising types (numbers as
float with a tolerance, dates as ISO text), so a column both engines type as text must
match exactly: the phone column (5551234, N/A, empty) is text in both.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from harness import DEMO_TABLES, EXAMPLES, assert_cli_ok, assert_same_rows, table_rows

# (id, SQL that DataFusion and DuckDB both accept, whether row order is part of the answer).
# Every output column is aliased so that names can be compared too.
QUERIES = [
    (
        "candidates_aggregates",
        """SELECT COUNT(*) AS n, COUNT(phone) AS with_phone, COUNT(email) AS with_email,
                  COUNT(years_experience) AS with_years, SUM(years_experience) AS total_years,
                  AVG(years_experience) AS avg_years, MIN(years_experience) AS min_years,
                  MAX(years_experience) AS max_years, COUNT(DISTINCT city) AS cities
           FROM candidates""",
        False,
    ),
    (
        "candidates_per_city",
        """SELECT city, COUNT(*) AS n, AVG(years_experience) AS avg_years,
                  MAX(available_from) AS latest_available
           FROM candidates GROUP BY city""",
        False,
    ),
    (
        "filter_experience_and_city",
        """SELECT candidate_id, full_name, city, years_experience FROM candidates
           WHERE years_experience >= 10 AND city IN ('Dublin', 'Kraków', 'Hà Nội', 'São Paulo')""",
        False,
    ),
    (
        "filter_missing_phone",
        """SELECT candidate_id, full_name, phone FROM candidates
           WHERE phone IS NULL OR phone = 'N/A'""",
        False,
    ),
    (
        "filter_like_quoted_commas",
        "SELECT candidate_id, skills FROM candidates WHERE skills LIKE '%Rust, %'",
        False,
    ),
    (
        "filter_null_years",
        "SELECT candidate_id, full_name FROM candidates WHERE years_experience IS NULL",
        False,
    ),
    (
        "top_experience_ordered",
        """SELECT candidate_id, full_name, years_experience FROM candidates
           ORDER BY years_experience DESC NULLS LAST, candidate_id LIMIT 7""",
        True,
    ),
    (
        "contracts_filter_decimal",
        """SELECT contract_id, client, title, rate FROM contracts
           WHERE rate > 100.5 AND status <> 'closed'""",
        False,
    ),
    (
        "contracts_per_status",
        """SELECT status, COUNT(*) AS n, SUM(rate) AS total_rate, MIN(rate) AS min_rate,
                  MIN(start_date) AS first_start, MAX(start_date) AS last_start
           FROM contracts GROUP BY status""",
        False,
    ),
    (
        "placements_per_contract",
        """SELECT contract_id, COUNT(*) AS n, SUM(bill_rate) AS total, AVG(bill_rate) AS avg_rate,
                  COUNT(notes) AS with_notes
           FROM placements GROUP BY contract_id""",
        False,
    ),
    (
        "placements_since_date",
        """SELECT placement_id, placed_on, bill_rate FROM placements
           WHERE placed_on >= CAST('2025-06-01' AS DATE)""",
        False,
    ),
    (
        "placements_notes_with_commas",
        "SELECT placement_id, notes FROM placements WHERE notes LIKE '%,%'",
        False,
    ),
    (
        "join_three_tables_per_client",
        """SELECT c.client AS client, COUNT(*) AS placements, AVG(p.bill_rate) AS avg_bill_rate,
                  COUNT(DISTINCT p.candidate_id) AS candidates, MIN(k.full_name) AS first_name,
                  MAX(k.full_name) AS last_name
           FROM placements p
           JOIN contracts c ON c.contract_id = p.contract_id
           JOIN candidates k ON k.candidate_id = p.candidate_id
           GROUP BY c.client""",
        False,
    ),
    (
        "join_three_tables_rows",
        """SELECT p.placement_id AS placement_id, k.full_name AS full_name, k.phone AS phone,
                  c.client AS client, c.city AS city, p.bill_rate - c.rate AS margin
           FROM placements p
           JOIN contracts c ON c.contract_id = p.contract_id
           JOIN candidates k ON k.candidate_id = p.candidate_id
           WHERE p.bill_rate > c.rate * 1.1""",
        False,
    ),
    (
        "left_join_orphans",
        """SELECT p.placement_id AS placement_id, p.candidate_id AS candidate_id
           FROM placements p LEFT JOIN candidates k ON k.candidate_id = p.candidate_id
           WHERE k.candidate_id IS NULL""",
        False,
    ),
    (
        "utf8_strings",
        """SELECT candidate_id, full_name, upper(city) AS city_upper, character_length(full_name) AS name_len
           FROM candidates WHERE candidate_id IN (1, 2, 3, 10, 14, 33, 34)""",
        False,
    ),
]


@pytest.fixture(scope="module")
def duck() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for table in DEMO_TABLES:
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_csv('{EXAMPLES / table}.csv')")
    yield con
    con.close()


def duck_result(con: duckdb.DuckDBPyConnection, query: str, params=None) -> tuple[list[str], list[tuple]]:
    result = con.execute(query, params) if params is not None else con.execute(query)
    names = [d[0] for d in result.description]
    return names, result.fetchall()


@pytest.mark.parametrize("name,query,ordered", QUERIES, ids=[q[0] for q in QUERIES])
def test_same_answer_as_duckdb(demo_server, duck, name, query, ordered):
    want_names, want = duck_result(duck, query)
    got = demo_server.sql(query)
    assert [n.lower() for n in got.column_names] == [n.lower() for n in want_names], name
    assert_same_rows(table_rows(got), want, ordered=ordered, context=name)


def test_row_counts(demo_server, duck):
    for table in DEMO_TABLES:
        assert demo_server.count(table) == duck.execute(f"SELECT COUNT(*) FROM {table}").fetchall()[0][0], table


def test_every_column_equals_duckdb(demo_server, duck):
    """Whole tables, column by column: empty cells are NULL, quoted commas and UTF-8 intact."""
    for table in DEMO_TABLES:
        names, want = duck_result(duck, f"SELECT * FROM {table}")
        got = demo_server.sql(f"SELECT * FROM {table}")
        assert got.column_names == names, table
        assert_same_rows(table_rows(got), want, ordered=False, context=f"SELECT * FROM {table}")


def test_empty_cells_are_null(demo_server, duck):
    for table in DEMO_TABLES:
        names, _ = duck_result(duck, f"SELECT * FROM {table} LIMIT 0")
        query = "SELECT " + ", ".join(f"COUNT(*) - COUNT({c}) AS {c}" for c in names) + f" FROM {table}"
        _, want = duck_result(duck, query)
        assert_same_rows(demo_server.rows(query), want, ordered=True, context=f"NULL counts of {table}")
    # The sample has them on purpose; make sure the comparison above was not vacuous.
    nulls = demo_server.rows(
        "SELECT COUNT(*) - COUNT(phone), COUNT(*) - COUNT(years_experience), COUNT(*) - COUNT(email) FROM candidates"
    )[0]
    assert all(n > 0 for n in nulls), nulls
    assert demo_server.rows("SELECT COUNT(*) FROM placements WHERE notes IS NULL")[0][0] > 0


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def test_mixed_phone_column_arrives_as_string(demo_server, duck):
    got = demo_server.sql("SELECT phone FROM candidates WHERE phone IS NOT NULL")
    assert _is_text(got.schema.field("phone").type), got.schema
    phones = set(got.column("phone").to_pylist())
    want = {row[0] for row in duck.execute("SELECT phone FROM candidates WHERE phone IS NOT NULL").fetchall()}
    assert phones == want
    assert "N/A" in phones and any(p.isdigit() and len(p) == 7 for p in phones), phones


def test_inferred_types(demo_server):
    with demo_server.connect() as conn:
        schemas = {t: conn.adbc_get_table_schema(t) for t in DEMO_TABLES}
    c, k, p = schemas["candidates"], schemas["contracts"], schemas["placements"]
    for field in ("candidate_id", "years_experience"):
        assert pa.types.is_integer(c.field(field).type), c
    for field in ("full_name", "email", "phone", "city", "skills"):
        assert _is_text(c.field(field).type), c
    assert pa.types.is_floating(k.field("rate").type) or pa.types.is_decimal(k.field("rate").type), k
    assert pa.types.is_floating(p.field("bill_rate").type) or pa.types.is_decimal(p.field("bill_rate").type), p
    assert pa.types.is_integer(p.field("contract_id").type), p
    assert _is_text(p.field("notes").type), p


def test_prepared_statement_with_bound_parameter(demo_server, duck):
    query = "SELECT candidate_id, full_name, phone, city, years_experience FROM candidates WHERE candidate_id = ?"
    with demo_server.connect() as conn, conn.cursor() as cur:
        for params in [(5,), (14,), (60,), (5,), (999,)]:
            cur.execute(query, params)
            got = table_rows(cur.fetch_arrow_table())
            _, want = duck_result(duck, query, list(params))
            assert_same_rows(got, want, ordered=True, context=f"{query} {params}")
        assert got == [], "candidate 999 does not exist"

        text_query = "SELECT candidate_id, full_name FROM candidates WHERE city = ? AND years_experience >= ?"
        for params in [("Kraków", 1), ("Hà Nội", 0), ("Nowhere", 0)]:
            cur.execute(text_query, params)
            _, want = duck_result(duck, text_query, list(params))
            assert_same_rows(table_rows(cur.fetch_arrow_table()), want, ordered=False, context=f"{text_query} {params}")


def test_adbc_get_objects(demo_server, duck):
    with demo_server.connect() as conn:
        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        catalogs = {c["catalog_name"]: c for c in objects}
        assert "lakehouse" in catalogs, sorted(catalogs)
        schemas = {s["db_schema_name"]: s for s in catalogs["lakehouse"]["catalog_db_schemas"] or []}
        assert "public" in schemas, sorted(schemas)
        tables = {t["table_name"]: t for t in schemas["public"]["db_schema_tables"] or []}
        assert set(DEMO_TABLES) <= set(tables), sorted(tables)
        for table in DEMO_TABLES:
            names, _ = duck_result(duck, f"SELECT * FROM {table} LIMIT 0")
            columns = sorted(tables[table]["table_columns"] or [], key=lambda col: col["ordinal_position"] or 0)
            assert [col["column_name"] for col in columns] == names, table

        filtered = (
            conn.adbc_get_objects(
                depth="tables", catalog_filter="lakehouse", db_schema_filter="public", table_name_filter="candidates"
            )
            .read_all()
            .to_pylist()
        )
        found = [
            t["table_name"]
            for c in filtered
            for s in c["catalog_db_schemas"] or []
            for t in s["db_schema_tables"] or []
        ]
        assert found == ["candidates"], filtered

        only_catalogs = conn.adbc_get_objects(depth="catalogs").read_all().to_pylist()
        assert "lakehouse" in {c["catalog_name"] for c in only_catalogs}


def test_adbc_get_table_schema(demo_server, duck):
    with demo_server.connect() as conn:
        for table in DEMO_TABLES:
            names, _ = duck_result(duck, f"SELECT * FROM {table} LIMIT 0")
            schema = conn.adbc_get_table_schema(table)
            assert schema.names == names, table
            qualified = conn.adbc_get_table_schema(table, catalog_filter="lakehouse", db_schema_filter="public")
            assert qualified.names == names, table
            # The schema the catalog reports is the schema a query returns.
            with conn.cursor() as cur:
                cur.execute(f"SELECT * FROM {table} LIMIT 1")
                assert cur.fetch_arrow_table().schema.names == names
        assert _is_text(conn.adbc_get_table_schema("candidates").field("phone").type)


def test_adbc_get_info(demo_server):
    with demo_server.connect() as conn:
        info = conn.adbc_get_info()
    assert isinstance(info.get("vendor_name"), str) and info["vendor_name"].strip(), info
    assert info.get("vendor_version"), info
    assert info.get("driver_name"), info


def test_adbc_get_table_types(demo_server):
    with demo_server.connect() as conn:
        types = conn.adbc_get_table_types()
    assert types and all(isinstance(t, str) and t for t in types), types


def test_cli_sql_prints_the_join(demo_server, duck):
    query = """SELECT c.client AS client, COUNT(*) AS placements
               FROM placements p JOIN contracts c ON c.contract_id = p.contract_id
               JOIN candidates k ON k.candidate_id = p.candidate_id
               GROUP BY c.client ORDER BY placements DESC, client"""
    result = demo_server.sql_cli(query)
    assert_cli_ok(result)
    _, want = duck_result(duck, query)
    for client, placements in want:
        line = next((ln for ln in result.stdout.splitlines() if client in ln), None)
        assert line is not None, f"{client!r} missing from `lakehouse sql` output:\n{result.stdout}"
        assert str(placements) in line, line


def test_flight_sql_env_var_is_used_by_cli(demo_server):
    env = demo_server.cli_env()
    assert env["LAKEHOUSE_FLIGHT_SQL"] == demo_server.flight_uri
    result = demo_server.cli("sql", "SELECT COUNT(*) AS n FROM contracts", env=env)
    assert_cli_ok(result)
    assert "25" in result.stdout, result.stdout
