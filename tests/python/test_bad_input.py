"""Bad input: a clear error that names the file, row, column or setting; a non-zero exit or
an error status; the server stays up; nothing is created and no stored data changes."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pytest
from adbc_driver_flightsql import DatabaseOptions

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
# Flight SQL: prepared statement parameters, a dropped table, a 100 MB DoPut


def test_parameter_count_mismatch_is_invalid_argument(demo_server, baseline):
    with demo_server.connect() as conn, conn.cursor() as cur:
        with pytest.raises(flight_sql.ProgrammingError) as raised:
            cur.execute("SELECT * FROM contracts WHERE contract_id = ? AND rate > ?", (101,))
            cur.fetch_arrow_table()
        assert "takes 2 parameters but 1 were bound" in str(raised.value), raised.value
        assert "INVALID_ARGUMENT" in str(raised.value) or "InvalidArgument" in str(raised.value), raised.value
    assert_unharmed(demo_server, baseline)


def test_parameter_type_mismatch_names_the_parameter(demo_server, baseline):
    with demo_server.connect() as conn, conn.cursor() as cur:
        with pytest.raises(flight_sql.ProgrammingError) as raised:
            cur.execute("SELECT * FROM contracts WHERE city = ? AND contract_id = ?", ("Berlin", "not a number"))
            cur.fetch_arrow_table()
        assert re.search(r"parameter \$2 takes Int64 but a (Large)?Utf8(View)? value", str(raised.value)), raised.value
        # Numbers of another width are converted, not refused.
        cur.execute("SELECT city FROM contracts WHERE contract_id = ?", (101,))
        assert cur.fetch_arrow_table().column(0).to_pylist() == ["Berlin"]
    assert_unharmed(demo_server, baseline)


def test_query_on_a_dropped_table_is_not_found(demo_server, baseline):
    with demo_server.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE short_lived AS SELECT * FROM contracts")
        cur.execute("SELECT COUNT(*) FROM short_lived")
        assert cur.fetch_arrow_table().column(0).to_pylist() == [25]
        cur.execute("DROP TABLE short_lived")
        with pytest.raises(flight_sql.Error) as raised:
            cur.execute("SELECT COUNT(*) FROM short_lived")
            cur.fetch_arrow_table()
        assert "short_lived" in str(raised.value), raised.value
    assert_unharmed(demo_server, baseline)


def rss_bytes(server) -> int:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc status")


def hundred_megabytes(rows_per_batch: int) -> pa.Table:
    rows, width = 100_000, 1_000
    payload = "x" * width
    batches = [
        pa.record_batch(
            {
                "id": pa.array(range(start, start + rows_per_batch), pa.int64()),
                "payload": pa.array([payload] * rows_per_batch),
            }
        )
        for start in range(0, rows, rows_per_batch)
    ]
    return pa.Table.from_batches(batches)


def ingest_or_error(cur, table: str, data: pa.Table) -> tuple[int | None, str | None]:
    try:
        return cur.adbc_ingest(table, data, mode="create"), None
    except flight_sql.Error as e:
        return None, str(e)


def test_hundred_megabyte_do_put(demo_server, baseline):
    before = rss_bytes(demo_server)
    # One 100 MB batch is one 100 MB message, beyond the 64 MB the server reads: ADBC must be
    # told to send it (its own limit is 16 MiB), and the server refuses it, saying why.
    big_messages = flight_sql.connect(
        demo_server.flight_uri, db_kwargs={DatabaseOptions.WITH_MAX_MSG_SIZE.value: str(256 * 2**20)}, autocommit=True
    )
    with big_messages as conn, conn.cursor() as cur:
        rows, error = ingest_or_error(cur, "big_put", hundred_megabytes(100_000))
        assert error is not None and mentions(error, r"too large", r"larger than", r"RESOURCE_EXHAUSTED"), error
    assert demo_server.table_info("big_put") is None
    demo_server.assert_healthy()
    with demo_server.connect() as conn, conn.cursor() as cur:
        # The same 100 MB in 10 MB batches is ingested; the refused upload left no lease behind.
        started = time.monotonic()
        rows, error = ingest_or_error(cur, "big_put", hundred_megabytes(10_000))
        assert error is None, error
        assert rows == 100_000
        seconds = time.monotonic() - started
        peak = rss_bytes(demo_server)
        cur.execute("SELECT COUNT(*) AS n, SUM(LENGTH(payload)) AS bytes FROM big_put")
        assert cur.fetch_arrow_table().to_pylist() == [{"n": 100_000, "bytes": 100_000_000}]
        cur.execute("DROP TABLE big_put")
    demo_server.assert_healthy()
    # Memory goes back: the server does not keep what it ingested.
    settled = rss_bytes(demo_server)
    deadline = time.monotonic() + 30
    while settled > before + 150 * 2**20 and time.monotonic() < deadline:
        time.sleep(1)
        settled = rss_bytes(demo_server)
    print(
        f"100 MB DoPut: {seconds:.1f} s; server RSS before {before / 2**20:.0f} MiB, "
        f"after ingest {peak / 2**20:.0f} MiB, settled {settled / 2**20:.0f} MiB"
    )
    assert settled <= before + 150 * 2**20, f"RSS stayed at {settled / 2**20:.0f} MiB (was {before / 2**20:.0f} MiB)"
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
