"""Bad input: a clear error that names the file, row, column or setting; a non-zero exit or
an error status; the server stays up; nothing is created and no stored data changes."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

import adbc_driver_flightsql.dbapi as flight_sql
import pytest

from harness import (
    CLI_TIMEOUT,
    DEMO_TABLES,
    EXAMPLES,
    assert_cli_failed,
    files_under,
    write_big_csv,
    write_rows_csv,
)

DEMO_ROWS = {"candidates": 60, "contracts": 25, "placements": 80}


@pytest.fixture(scope="module")
def baseline(demo_server) -> dict:
    return {t: demo_server.table_info(t) for t in DEMO_TABLES}


def assert_unharmed(server, baseline: dict, table: str | None = None) -> None:
    """Server up, the failed table absent (nothing half-written), demo tables untouched."""
    server.assert_healthy()
    if table is not None:
        assert server.table_info(table) is None, f"table {table!r} was created by a failed ingest"
        if table and "/" not in table and ".." not in table:
            leftovers = files_under(server.table_dir(table))
            assert not leftovers, f"a failed ingest left files: {leftovers}"
    for name, info in baseline.items():
        now = server.table_info(name)
        assert now["versions"] == info["versions"], f"{name} changed versions"
    assert server.count("candidates") == DEMO_ROWS["candidates"]


def mentions(text: str, *patterns: str) -> bool:
    return any(re.search(p, text, flags=re.IGNORECASE) for p in patterns)


# --------------------------------------------------------------------------------------
# Files


def ragged_long(path: Path) -> None:
    lines = ["id,name,amount"] + [f"{i},name {i},{i}.50" for i in range(1, 61)]
    lines[41] = "41,name 41,41.50,surplus"  # line 42 of the file, data row 41
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def ragged_short(path: Path) -> None:
    lines = ["id,name,amount"] + [f"{i},name {i},{i}.50" for i in range(1, 61)]
    lines[41] = "41,name 41"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def invalid_utf8(path: Path) -> None:
    good = "".join(f"{i},Zoë {i},{i}.50\n" for i in range(1, 41)).encode()
    path.write_bytes(b"id,name,amount\n" + good + b"41,bad \xff\xfe name,41.50\n" + b"42,ok,42.50\n")


def empty(path: Path) -> None:
    path.write_bytes(b"")


def header_only(path: Path) -> None:
    path.write_text("id,name,amount\n", encoding="utf-8")


def ten_mb_single_line(path: Path) -> None:
    path.write_bytes(b"x" * (10 * 1024 * 1024))


ROW_41 = (r"\b4[012]\b", r"\b(row|line|record)\b")

BAD_FILES: list[tuple[str, Callable[[Path], None], tuple[str, ...]]] = [
    # (name, writer, each of these patterns must appear in the error)
    ("ragged_extra_field", ragged_long, ROW_41),
    ("ragged_missing_field", ragged_short, ROW_41),
    ("invalid_utf8", invalid_utf8, (r"utf-?8",)),
    ("empty_file", empty, (r"empty|no (header|data|rows)",)),
    ("header_only", header_only, (r"no (data )?rows|header|empty|no data",)),
    ("ten_mb_single_line", ten_mb_single_line, (r"line|row|header|record|empty|no (data|rows)|size|long|limit",)),
]


@pytest.mark.parametrize("name,writer,patterns", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_is_refused(demo_server, baseline, tmp_path, name, writer, patterns):
    path = tmp_path / f"{name}.csv"
    writer(path)
    table = f"bad_{name}"
    stderr = assert_cli_failed(demo_server.ingest(path, table))
    assert path.name in stderr, f"the error does not name the file {path.name}:\n{stderr}"
    for pattern in patterns:
        assert mentions(stderr, pattern), f"expected /{pattern}/ in:\n{stderr}"
    assert_unharmed(demo_server, baseline, table)


def test_ragged_rows_over_http_are_400_naming_the_row(demo_server, baseline, tmp_path):
    path = tmp_path / "ragged.csv"
    ragged_long(path)
    r = demo_server.post(
        "/v1/tables/bad_http_ragged/ingest",
        params={"format": "csv", "owner": "o", "sensitivity": "public", "lineage": "l",
                "freshness_sla": "24h", "description": "d", "tags": "t"},
        data=path.read_bytes(),
    )  # fmt: skip
    assert r.status_code == 400, (r.status_code, r.text)
    err = r.json()
    assert {"error", "detail"} <= set(err), err
    assert all(mentions(r.text, p) for p in ROW_41), err
    assert_unharmed(demo_server, baseline, "bad_http_ragged")


def test_file_that_does_not_exist(demo_server, baseline, tmp_path):
    path = tmp_path / "no_such_file.csv"
    stderr = assert_cli_failed(demo_server.ingest(path, "bad_missing_file"))
    assert "no_such_file.csv" in stderr, stderr
    assert_unharmed(demo_server, baseline, "bad_missing_file")


# --------------------------------------------------------------------------------------
# Table names


@pytest.mark.parametrize(
    "table", ["../x", "a/b", "", "..", "x/../../y"], ids=["dotdot", "slash", "empty", "dots", "traversal"]
)
def test_table_name_with_path_characters_is_refused(demo_server, baseline, table):
    before = demo_server.table_names()
    stderr = assert_cli_failed(demo_server.ingest(EXAMPLES / "contracts.csv", table))
    assert mentions(stderr, r"table"), f"the error should name the table setting:\n{stderr}"
    assert demo_server.table_names() == before
    for escaped in (demo_server.bucket / "x", demo_server.bucket / "y", demo_server.data_dir / "x",
                    demo_server.bucket / "tables" / "a", demo_server.data_dir / "y"):  # fmt: skip
        assert not escaped.exists(), f"{escaped} was written"
    assert_unharmed(demo_server, baseline)


@pytest.mark.parametrize("encoded", ["..%2Fx", "a%2Fb", "%2E%2E"])
def test_table_name_with_path_characters_over_http(demo_server, baseline, encoded):
    before = demo_server.table_names()
    r = demo_server.post(
        f"/v1/tables/{encoded}/ingest",
        params={"format": "csv", "owner": "o", "sensitivity": "public", "lineage": "l",
                "freshness_sla": "24h", "description": "d", "tags": "t"},
        data=(EXAMPLES / "contracts.csv").read_bytes(),
    )  # fmt: skip
    assert r.status_code in (400, 404), (r.status_code, r.text)
    if r.status_code == 400:
        assert {"error", "detail"} <= set(r.json()), r.text
    assert demo_server.table_names() == before
    assert not (demo_server.bucket / "x").exists() and not (demo_server.bucket / "tables" / "a").exists()
    assert_unharmed(demo_server, baseline)


# --------------------------------------------------------------------------------------
# SQL errors


SQL_ERRORS = [
    ("syntax", "SELEC full_name FROM candidates", "SELEC"),
    ("unknown_table", "SELECT * FROM no_such_table", "no_such_table"),
    ("unknown_column", "SELECT no_such_column FROM candidates", "no_such_column"),
    (
        "unknown_column_in_join",
        "SELECT k.nope FROM placements p JOIN candidates k ON k.candidate_id = p.candidate_id",
        "nope",
    ),
]


@pytest.mark.parametrize("name,query,named", SQL_ERRORS, ids=[s[0] for s in SQL_ERRORS])
def test_sql_error_over_adbc(demo_server, baseline, name, query, named):
    with demo_server.connect() as conn, conn.cursor() as cur:
        with pytest.raises(flight_sql.Error) as raised:
            cur.execute(query)
            cur.fetch_arrow_table()
        assert named in str(raised.value), f"the error does not name {named!r}: {raised.value}"
        # The same connection keeps working.
        cur.execute("SELECT COUNT(*) FROM contracts")
        assert cur.fetch_arrow_table().column(0).to_pylist() == [25]
    assert_unharmed(demo_server, baseline)


@pytest.mark.parametrize("name,query,named", SQL_ERRORS[:3], ids=[s[0] for s in SQL_ERRORS[:3]])
def test_sql_error_from_cli(demo_server, baseline, name, query, named):
    stderr = assert_cli_failed(demo_server.sql_cli(query))
    assert named in stderr, stderr
    assert_unharmed(demo_server, baseline)


# --------------------------------------------------------------------------------------
# Concurrency


def test_query_during_ingest_sees_the_previous_version(demo_server, baseline, tmp_path):
    table = "busy"
    base_rows = 1000
    demo_server.ingest(write_rows_csv(tmp_path / "base.csv", 1, base_rows), table, check=True)
    big = tmp_path / "big.csv"
    big_rows = write_big_csv(big, 40 * 1024 * 1024, first_id=1_000_001)

    writer = demo_server.popen_ingest(big, table, mode="replace")
    seen: list[tuple[int, bool]] = []  # (count, was the ingest still running when it answered)
    deadline = time.monotonic() + CLI_TIMEOUT
    try:
        for _ in range(100_000):
            running = writer.poll() is None
            count = demo_server.count(table)
            seen.append((count, running))
            if not running or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        out, err = writer.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.communicate(timeout=30)
    assert writer.returncode == 0, f"ingest failed:\n{out}\n{err}"
    counts = [c for c, _ in seen]
    assert set(counts) <= {base_rows, big_rows}, f"a query saw a partial version: {sorted(set(counts))}"
    assert any(running for _, running in seen), "no query ran while the ingest was running"
    first_new = counts.index(big_rows) if big_rows in counts else len(counts)
    assert all(c == big_rows for c in counts[first_new:]), "a query saw the old version after the new one"
    assert demo_server.count(table) == big_rows
    info = demo_server.table_info(table)
    assert (info["current_version"], info["row_count"]) == (2, big_rows)
    assert_unharmed(demo_server, baseline)


def test_concurrent_ingests_into_one_table(demo_server, baseline, tmp_path):
    table = "contended"
    base_rows = 100
    demo_server.ingest(write_rows_csv(tmp_path / "base.csv", 1, base_rows), table, check=True)
    sizes = [10_000, 20_000, 40_000]  # every subset has its own sum
    files = [write_rows_csv(tmp_path / f"part{i}.csv", 100_000 * (i + 1), n) for i, n in enumerate(sizes)]

    writers = [demo_server.popen_ingest(f, table, mode="append") for f in files]
    results = []
    try:
        for w in writers:
            out, err = w.communicate(timeout=CLI_TIMEOUT)
            results.append((w.returncode, out, err))
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.communicate(timeout=30)

    won = [n for n, (rc, _, _) in zip(sizes, results, strict=True) if rc == 0]
    for rc, out, err in results:
        if rc != 0:
            assert rc > 0 and err.strip() and "panicked at" not in err, f"exit {rc}:\n{out}\n{err}"
            assert mentions(err, r"lease|writer|busy|concurren|conflict|in progress|locked|another|retry"), (
                f"a refused concurrent ingest should say why:\n{err}"
            )
    assert won, f"no concurrent ingest succeeded: {results}"

    info = demo_server.table_info(table)
    versions = [v["version"] for v in info["versions"]]
    assert versions == list(range(1, len(won) + 2)), f"versions must be 1..n without duplicates: {versions}"
    assert info["current_version"] == versions[-1]
    added = sorted(
        b["row_count"] - a["row_count"] for a, b in zip(info["versions"], info["versions"][1:], strict=False)
    )
    assert added == sorted(won), f"each successful append is one version: added {added}, succeeded {won}"
    assert info["row_count"] == base_rows + sum(won)
    assert demo_server.count(table) == base_rows + sum(won)
    assert_unharmed(demo_server, baseline)


def test_server_still_serves_everything_after_bad_input(demo_server, baseline):
    assert_unharmed(demo_server, baseline)
    for table, rows in DEMO_ROWS.items():
        assert demo_server.count(table) == rows
