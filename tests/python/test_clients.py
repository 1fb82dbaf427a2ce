"""Clients other than plain ADBC queries: session options (ADBC's current schema, raw
SetSessionOptions / GetSessionOptions / CloseSession, `SET` per session) and SQLAlchemy
through flightsql-dbapi."""

from __future__ import annotations

from urllib.parse import urlparse

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import flight_raw
import pyarrow.flight as flight
import pytest
import sqlalchemy

from harness import QUERY_TIMEOUT_S, table_rows

DEMO_TABLES = {"candidates", "contracts", "placements"}
CLOSED = 1
INVALID_NAME, INVALID_VALUE = 1, 2


def connect_with_cookies(server):
    """ADBC keeps the server's session cookie only with its cookie middleware on."""
    return flight_sql.connect(
        server.flight_uri,
        db_kwargs={
            adbc_driver_flightsql.DatabaseOptions.WITH_COOKIE_MIDDLEWARE.value: "true",
            adbc_driver_flightsql.DatabaseOptions.TIMEOUT_QUERY.value: QUERY_TIMEOUT_S,
            adbc_driver_flightsql.DatabaseOptions.TIMEOUT_FETCH.value: QUERY_TIMEOUT_S,
        },
        autocommit=True,
    )


def rows(conn, sql: str) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return table_rows(cur.fetch_arrow_table())


def test_adbc_current_schema_is_the_sessions_default(demo_server):
    with connect_with_cookies(demo_server) as conn, connect_with_cookies(demo_server) as other:
        assert conn.adbc_current_catalog == "lakehouse"
        assert conn.adbc_current_db_schema == "public"
        conn.adbc_current_db_schema = "information_schema"
        assert conn.adbc_current_db_schema == "information_schema"
        listed = {r[0] for r in rows(conn, "SELECT table_name FROM tables WHERE table_schema = 'public'")}
        assert DEMO_TABLES <= listed
        # The other session still resolves unqualified names in public.
        assert other.adbc_current_db_schema == "public"
        with pytest.raises(Exception, match="tables"):
            rows(other, "SELECT table_name FROM tables")
        with pytest.raises(Exception, match="invalid value"):
            conn.adbc_current_db_schema = "no_such_schema"
        with pytest.raises(Exception, match="invalid value"):
            conn.adbc_current_catalog = "elsewhere"
        assert conn.adbc_current_db_schema == "information_schema"
        conn.adbc_current_db_schema = "public"
        assert rows(conn, "SELECT COUNT(*) FROM candidates") == [(60,)]


def test_writes_resolve_in_the_sessions_schema_and_sessions_are_counted(demo_server):
    before = demo_server.metric("flight_sql_sessions")
    with connect_with_cookies(demo_server) as conn:
        conn.adbc_current_db_schema = "information_schema"
        assert demo_server.metric("flight_sql_sessions") == before + 1
        # Reads and writes resolve unqualified names alike: here in information_schema,
        # where no table can be written.
        with pytest.raises(Exception, match="outside lakehouse.public"):
            rows(conn, "CREATE TABLE session_schema_t AS SELECT 1 AS x")
        assert "session_schema_t" not in demo_server.table_names()
        rows(conn, "CREATE TABLE public.session_schema_t AS SELECT table_name FROM tables")
        conn.adbc_current_db_schema = "public"
        assert rows(conn, "SELECT COUNT(*) > 0 FROM session_schema_t") == [(True,)]
        rows(conn, "DROP TABLE session_schema_t")
    demo_server.assert_healthy()


def test_sql_set_changes_only_its_own_session(demo_server):
    show = "SHOW datafusion.execution.batch_size"
    with connect_with_cookies(demo_server) as conn, connect_with_cookies(demo_server) as other:
        default = rows(other, show)[0][1]
        rows(conn, "SET datafusion.execution.batch_size = 77")
        assert rows(conn, show)[0][1] == "77"
        assert rows(other, show)[0][1] == default, "SET leaked into another session"
        assert rows(conn, "SELECT COUNT(*) FROM placements") == [(80,)]
        # Sessions with the same settings share an engine: a change in one stays its own.
        rows(other, "SET datafusion.execution.batch_size = 77")
        rows(conn, "SET datafusion.execution.batch_size = 78")
        assert (rows(conn, show)[0][1], rows(other, show)[0][1]) == ("78", "77")
        with pytest.raises(Exception, match="datafusion.execution.no_such_option"):
            rows(conn, "SET datafusion.execution.no_such_option = 1")
        with pytest.raises(Exception, match="server-wide"):
            rows(conn, "SET datafusion.runtime.memory_limit = '1G'")
    with connect_with_cookies(demo_server) as fresh:
        assert rows(fresh, show)[0][1] == default


def test_session_actions_over_raw_flight(demo_server):
    jar = flight_raw.CookieJar()
    client = flight.FlightClient(demo_server.flight_uri, middleware=[jar])

    def action(name: str, body: bytes = b"") -> bytes:
        results = list(client.do_action(flight.Action(name, body)))
        assert len(results) == 1, f"{name}: {len(results)} results"
        return results[0].body.to_pybytes()

    try:
        listed = {a.type for a in client.list_actions()}
        assert {"SetSessionOptions", "GetSessionOptions", "CloseSession"} <= listed
        assert flight_raw.session_options(action("GetSessionOptions")) == {
            "catalog": "lakehouse",
            "schema": "public",
        }
        assert not jar.cookies, "reading defaults made a session"

        request = flight_raw.set_session_options_request(
            {
                "schema": flight_raw.session_option_string("information_schema"),
                "catalog": flight_raw.session_option_string("lakehouse"),
                "datafusion.execution.batch_size": flight_raw.session_option_int(5),
                "no_such_option": flight_raw.session_option_string("x"),
                "datafusion.execution.no_such_option": flight_raw.session_option_string("1"),
            }
        )
        errors = flight_raw.session_option_errors(action("SetSessionOptions", request))
        assert errors == {"no_such_option": INVALID_NAME, "datafusion.execution.no_such_option": INVALID_VALUE}
        assert "arrow_flight_session_id" in jar.cookies
        bad_schema = flight_raw.set_session_options_request({"schema": flight_raw.session_option_string("nope")})
        assert flight_raw.session_option_errors(action("SetSessionOptions", bad_schema)) == {"schema": INVALID_VALUE}

        assert flight_raw.session_options(action("GetSessionOptions")) == {
            "catalog": "lakehouse",
            "schema": "information_schema",
            "datafusion.execution.batch_size": "5",
        }
        info = flight_raw.command_info(client, flight_raw.statement_query("SELECT COUNT(*) AS n FROM views"))
        assert flight_raw.fetch(client, info).column("n").to_pylist()[0] >= 0

        closed = dict(flight_raw.read_fields(action("CloseSession")))
        assert closed.get(1) == CLOSED
        with pytest.raises(KeyError, match="closed or expired"):  # NOT_FOUND
            action("GetSessionOptions")
        # Without the stale cookie the client starts over with the defaults.
        jar.cookies.clear()
        assert flight_raw.session_options(action("GetSessionOptions"))["schema"] == "public"
    finally:
        client.close()
    demo_server.assert_healthy()


# --------------------------------------------------------------------------------------
# SQLAlchemy through flightsql-dbapi (it answers metadata from GetTables' first endpoint)


@pytest.fixture
def engine(demo_server):
    uri = urlparse(demo_server.flight_uri)
    engine = sqlalchemy.create_engine(f"datafusion://{uri.hostname}:{uri.port}?insecure=true")
    try:
        yield engine
    finally:
        engine.dispose()


def test_sqlalchemy_inspects_and_queries(demo_server, engine):
    inspector = sqlalchemy.inspect(engine)
    names = set(inspector.get_table_names())
    assert DEMO_TABLES <= names, names
    assert set(inspector.get_table_names(schema="public")) == demo_server.table_names()

    expected = rows(
        demo_server.conn,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'contracts' ORDER BY ordinal_position",
    )
    columns = inspector.get_columns("contracts")
    assert [c["name"] for c in columns] == [name for name, _ in expected]
    by_name = {c["name"]: c for c in columns}
    assert isinstance(by_name["contract_id"]["type"], sqlalchemy.types.Integer)
    assert isinstance(by_name["client"]["type"], sqlalchemy.types.String)

    with engine.connect() as conn:
        result = conn.execute(
            sqlalchemy.text("SELECT city, COUNT(*) AS n FROM contracts GROUP BY city ORDER BY n DESC, city")
        ).fetchall()
    assert [tuple(r) for r in result] == rows(
        demo_server.conn, "SELECT city, COUNT(*) AS n FROM contracts GROUP BY city ORDER BY n DESC, city"
    )
    assert sum(n for _, n in result) == 25
