"""Ingest with metadata (ADR-013), modes, the HTTP gateway, and the Ballista job counter."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest

from harness import (
    DEMO_META,
    DEMO_TABLES,
    EXAMPLES,
    FULL_META,
    META_FLAGS,
    assert_cli_failed,
    assert_cli_ok,
    files_under,
    parse_duration_seconds,
    parse_timestamp,
)

CANDIDATES = EXAMPLES / "candidates.csv"
CANDIDATE_ROWS = 60


def tags_list(value) -> list[str]:
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    return list(value)


def assert_metadata(info: dict, meta: dict[str, str]) -> None:
    got = info["metadata"]
    for key in ("owner", "sensitivity", "lineage", "description"):
        assert got[key] == meta[key], (key, got)
    assert parse_duration_seconds(got["freshness_sla"]) == parse_duration_seconds(meta["freshness_sla"]), got
    assert tags_list(got["tags"]) == tags_list(meta["tags"]), got
    assert got["metadata_incomplete"] is False, got


def assert_not_created(server, table: str) -> None:
    assert server.table_info(table) is None, f"table {table!r} exists after a failed ingest"
    assert table not in server.table_names()
    assert not files_under(server.table_dir(table)), f"files written: {files_under(server.table_dir(table))}"


def write_subset(path: Path, rows: int) -> Path:
    with open(CANDIDATES, encoding="utf-8", newline="") as src:
        lines = list(csv.reader(src))
    with open(path, "w", encoding="utf-8", newline="") as dst:
        csv.writer(dst, lineterminator="\n").writerows(lines[: rows + 1])
    return path


# --------------------------------------------------------------------------------------
# Metadata is required


@pytest.mark.parametrize(
    "missing",
    [
        list(FULL_META),
        ["owner", "lineage"],
        ["tags"],
        ["freshness_sla", "description", "sensitivity"],
    ],
    ids=["all", "owner+lineage", "tags", "sla+description+sensitivity"],
)
def test_missing_metadata_flags_are_all_named(demo_server, missing):
    table = "no_meta_" + "_".join(m[:3] for m in missing)
    result = demo_server.ingest(CANDIDATES, table, **{key: None for key in missing})
    stderr = assert_cli_failed(result)
    for key in missing:
        assert META_FLAGS[key] in stderr, f"{META_FLAGS[key]} not named in:\n{stderr}"
    assert_not_created(demo_server, table)


def test_sensitivity_must_be_a_known_level(demo_server):
    result = demo_server.ingest(CANDIDATES, "bad_sensitivity", sensitivity="secret")
    stderr = assert_cli_failed(result)
    assert "sensitivity" in stderr.lower(), stderr
    for level in ("public", "internal", "confidential", "restricted"):
        assert level in stderr, f"allowed level {level!r} not named in:\n{stderr}"
    assert_not_created(demo_server, "bad_sensitivity")


def test_http_ingest_without_metadata_is_400_naming_each_parameter(demo_server):
    body = CANDIDATES.read_bytes()
    r = demo_server.post("/v1/tables/http_no_meta/ingest", params={"format": "csv", "owner": "x"}, data=body)
    assert r.status_code == 400, (r.status_code, r.text)
    err = r.json()
    assert {"error", "detail"} <= set(err), err
    text = json.dumps(err)
    for name in ("sensitivity", "lineage", "freshness_sla", "description", "tags"):
        assert name in text, f"{name} not named in {err}"
    assert_not_created(demo_server, "http_no_meta")


# --------------------------------------------------------------------------------------
# What an ingest records and serves


def test_table_info_serves_metadata_schema_and_versions(demo_server):
    meta = {
        **FULL_META,
        "owner": "Zoë Kowalski <zoe@example.org>",
        "sensitivity": "restricted",
        "lineage": "ats_export → nightly job → lakehouse",
        "freshness_sla": "24h",
        "description": 'Candidates, with a description that has commas, quotes (") and ünïcödé',
        "tags": "staffing,pii,nightly",
    }
    result = demo_server.ingest(CANDIDATES, "meta_check", check=True, **meta)
    summary = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()][-1]
    assert str(CANDIDATE_ROWS) in summary, f"the last line should summarise the ingest (rows): {summary!r}"

    info = demo_server.table_info("meta_check")
    assert info["name"] == "meta_check"
    assert_metadata(info, meta)
    names = [c["name"] for c in info["schema"]]
    assert names == [
        "candidate_id", "full_name", "email", "phone", "city", "years_experience", "skills", "available_from",
    ]  # fmt: skip
    types = {c["name"]: c["type"].lower() for c in info["schema"]}
    assert "int" in types["candidate_id"] and "int" in types["years_experience"], types
    assert "utf8" in types["phone"] or "string" in types["phone"], types
    assert all(isinstance(c["nullable"], bool) for c in info["schema"])
    assert info["current_version"] == 1
    assert info["row_count"] == CANDIDATE_ROWS
    assert [v["version"] for v in info["versions"]] == [1]
    version = info["versions"][0]
    assert version["row_count"] == CANDIDATE_ROWS
    assert version["files"], version
    # `committed_at` (RFC 3339) or `committed_at_ms` (epoch milliseconds).
    committed = parse_timestamp(version["committed_at"] if "committed_at" in version else version["committed_at_ms"])
    assert abs((dt.datetime.now(dt.timezone.utc) - committed).total_seconds()) < 3600, version

    assert "meta_check" in demo_server.table_names()
    assert demo_server.count("meta_check") == CANDIDATE_ROWS


def test_demo_tables_carry_their_metadata(demo_server):
    for table in DEMO_TABLES:
        assert_metadata(demo_server.table_info(table), DEMO_META[table])
    assert set(DEMO_TABLES) <= demo_server.table_names()


def test_unknown_table_is_404_json(demo_server):
    r = demo_server.get("/v1/tables/does_not_exist")
    assert r.status_code == 404
    assert {"error", "detail"} <= set(r.json()), r.text


def test_health(demo_server):
    assert demo_server.get("/health").status_code == 200


# --------------------------------------------------------------------------------------
# Modes


def test_existing_table_needs_a_mode(demo_server):
    before = demo_server.table_info("candidates")
    result = demo_server.ingest(CANDIDATES, "candidates", **DEMO_META["candidates"])
    stderr = assert_cli_failed(result)
    assert "append" in stderr and "replace" in stderr, f"the error should offer append or replace:\n{stderr}"
    after = demo_server.table_info("candidates")
    assert after["versions"] == before["versions"] and after["row_count"] == before["row_count"]


def test_unknown_mode_is_refused(demo_server):
    result = demo_server.ingest(CANDIDATES, "candidates", mode="upsert", **DEMO_META["candidates"])
    stderr = assert_cli_failed(result)
    assert "append" in stderr and "replace" in stderr, stderr


def test_append_then_replace_change_rows_and_versions(demo_server, tmp_path):
    table = "modes"
    demo_server.ingest(CANDIDATES, table, check=True)
    assert (demo_server.table_info(table)["current_version"], demo_server.count(table)) == (1, 60)

    demo_server.ingest(CANDIDATES, table, mode="append", check=True)
    info = demo_server.table_info(table)
    assert (info["current_version"], info["row_count"], demo_server.count(table)) == (2, 120, 120)

    ten = write_subset(tmp_path / "ten.csv", 10)
    demo_server.ingest(ten, table, mode="replace", check=True)
    info = demo_server.table_info(table)
    assert (info["current_version"], info["row_count"], demo_server.count(table)) == (3, 10, 10)
    assert [(v["version"], v["row_count"]) for v in info["versions"]] == [(1, 60), (2, 120), (3, 10)]
    assert sorted(r[0] for r in demo_server.rows(f"SELECT candidate_id FROM {table}")) == list(range(1, 11))

    demo_server.ingest(ten, table, mode="append", check=True)
    info = demo_server.table_info(table)
    assert (info["current_version"], info["row_count"], demo_server.count(table)) == (4, 20, 20)


def test_append_with_other_columns_is_refused_naming_a_column(demo_server):
    table = "append_mismatch"
    demo_server.ingest(CANDIDATES, table, check=True)
    result = demo_server.ingest(EXAMPLES / "contracts.csv", table, mode="append")
    stderr = assert_cli_failed(result)
    columns = ["contract_id", "client", "title", "rate", "candidate_id", "full_name", "email", "phone"]
    assert any(c in stderr for c in columns), f"no column named in:\n{stderr}"
    info = demo_server.table_info(table)
    assert (info["current_version"], info["row_count"]) == (1, 60)


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_json_lines_and_parquet_ingest(demo_server, tmp_path, fmt):
    """Same rows as the CSV, by extension and with --format on an unhelpful extension."""
    con = duckdb.connect()
    con.execute(f"CREATE TABLE c AS SELECT * FROM read_csv('{CANDIDATES}')")
    by_ext = tmp_path / f"candidates.{'jsonl' if fmt == 'json' else 'parquet'}"
    target = f"(FORMAT {'json' if fmt == 'json' else 'parquet'})"
    con.execute(f"COPY c TO '{by_ext}' {target}")
    no_ext = tmp_path / "candidates.data"
    no_ext.write_bytes(by_ext.read_bytes())

    check = "SELECT COUNT(*), COUNT(phone), COUNT(years_experience), SUM(candidate_id) FROM {}"
    want = con.execute(check.format("c")).fetchall()[0]
    for file, kw, table in [(by_ext, {}, f"cand_{fmt}_ext"), (no_ext, {"fmt": fmt}, f"cand_{fmt}_flag")]:
        demo_server.ingest(file, table, check=True, **kw)
        assert tuple(demo_server.rows(check.format(table))[0]) == tuple(want), table
        assert demo_server.rows(f"SELECT full_name FROM {table} WHERE candidate_id = 3") == [("Đặng Thu",)]
    con.close()


def test_server_address_from_environment(demo_server):
    result = demo_server.ingest(EXAMPLES / "contracts.csv", "contracts_env", server=None)
    assert_cli_ok(result)
    assert demo_server.count("contracts_env") == 25


def test_http_ingest_with_metadata_and_modes(demo_server):
    params = {"format": "csv", **FULL_META}
    body = (EXAMPLES / "contracts.csv").read_bytes()
    r = demo_server.post("/v1/tables/http_contracts/ingest", params=params, data=body)
    assert r.status_code in (200, 201), (r.status_code, r.text)
    info = demo_server.table_info("http_contracts")
    assert_metadata(info, FULL_META)
    assert (info["current_version"], info["row_count"]) == (1, 25)

    r = demo_server.post("/v1/tables/http_contracts/ingest", params=params, data=body)
    assert r.status_code in (400, 409), (r.status_code, r.text)
    assert "append" in r.text and "replace" in r.text, r.text

    r = demo_server.post("/v1/tables/http_contracts/ingest", params={**params, "mode": "append"}, data=body)
    assert r.status_code in (200, 201), (r.status_code, r.text)
    info = demo_server.table_info("http_contracts")
    assert (info["current_version"], info["row_count"]) == (2, 50)
    assert demo_server.count("http_contracts") == 50


# --------------------------------------------------------------------------------------
# Queries run as Ballista jobs


def test_job_counter_rises_with_each_query(demo_server):
    previous = demo_server.jobs_submitted()
    queries = [
        "SELECT COUNT(*) FROM candidates",
        "SELECT city, COUNT(*) FROM candidates GROUP BY city",
        "SELECT c.client, COUNT(*) FROM placements p JOIN contracts c ON c.contract_id = p.contract_id"
        " GROUP BY c.client",
    ]
    for query in queries:
        demo_server.sql(query)
        now = demo_server.jobs_submitted()
        assert now > previous, f"lakehouse_scheduler_jobs_submitted_total did not rise after {query!r}: {now}"
        previous = now
    assert_cli_ok(demo_server.sql_cli("SELECT COUNT(*) FROM contracts"))
    assert demo_server.jobs_submitted() > previous, "a query from `lakehouse sql` is not a Ballista job"
