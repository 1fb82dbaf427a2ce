"""Durability of `lakehouse up`: restarts, SIGKILL in the middle of a large ingest, and a
catalog rebuilt from the bucket alone after its local directory is wiped."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness import (
    DEMO_META,
    EXAMPLES,
    files_under,
    wait_until,
    write_rows_csv,
)

DOCUMENTED_KEYS = ("name", "metadata", "schema", "current_version", "row_count", "versions")

QUERIES = [
    "SELECT COUNT(*), COUNT(phone), SUM(years_experience) FROM candidates",
    "SELECT status, COUNT(*), SUM(rate) FROM contracts GROUP BY status ORDER BY status",
    """SELECT c.client, COUNT(*), SUM(p.bill_rate), MIN(k.full_name)
       FROM placements p JOIN contracts c ON c.contract_id = p.contract_id
       JOIN candidates k ON k.candidate_id = p.candidate_id
       GROUP BY c.client ORDER BY c.client""",
]


def snapshot(server) -> dict:
    """Everything the catalog serves about every table."""
    names = sorted(server.table_names())
    infos = {name: server.table_info(name) for name in names}
    return {name: {key: info[key] for key in DOCUMENTED_KEYS} for name, info in infos.items()}


def answers(server) -> list:
    return [server.rows(q) for q in QUERIES]


def build_history(server, tmp_path: Path) -> None:
    """The demo tables plus a second version of two of them: one append, one replace."""
    server.ingest_demo()
    server.ingest(EXAMPLES / "candidates.csv", "candidates", mode="append", check=True, **DEMO_META["candidates"])
    lines = (EXAMPLES / "contracts.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    subset = tmp_path / "contracts_subset.csv"
    subset.write_text("".join(lines[:11]), encoding="utf-8")
    server.ingest(subset, "contracts", mode="replace", check=True, **DEMO_META["contracts"])
    assert server.table_info("candidates")["current_version"] == 2
    assert server.table_info("contracts")["row_count"] == 10


def assert_next_version_continues(server, table: str = "candidates") -> None:
    before = server.table_info(table)
    server.ingest(EXAMPLES / f"{table}.csv", table, mode="append", check=True, **DEMO_META[table])
    after = server.table_info(table)
    assert after["current_version"] == before["current_version"] + 1
    assert [v["version"] for v in after["versions"]] == list(range(1, after["current_version"] + 1))


def test_sigterm_exits_0_and_restart_keeps_tables_and_metadata(server_factory, tmp_path):
    server = server_factory()
    build_history(server, tmp_path)
    before, results = snapshot(server), answers(server)

    assert server.stop(signal.SIGTERM) == 0, f"SIGTERM should be a clean exit 0:\n{server.stderr_tail()}"
    server.start()
    assert snapshot(server) == before
    assert answers(server) == results

    assert server.stop(signal.SIGINT) == 0, f"SIGINT should be a clean exit 0:\n{server.stderr_tail()}"
    server.start()
    assert snapshot(server) == before
    assert_next_version_continues(server)


def test_sigkill_when_idle_keeps_every_commit(server_factory, tmp_path):
    server = server_factory()
    build_history(server, tmp_path)
    before, results = snapshot(server), answers(server)
    server.kill()
    server.start()
    assert snapshot(server) == before
    assert answers(server) == results
    assert_next_version_continues(server)


def referenced_files(info: dict) -> set[str] | None:
    """Base names of the data files the versions reference, when the API lists them."""
    names: set[str] = set()
    for version in info["versions"]:
        files = version["files"]
        if not isinstance(files, list):
            return None
        for f in files:
            path = f if isinstance(f, str) else (f.get("key") or f.get("path") or f.get("name") or "")
            names.add(Path(path).name)
    return names


def test_sigkill_during_large_ingest_leaves_previous_or_new_version(server_factory, big_csv, tmp_path):
    big, big_rows = big_csv
    server = server_factory()
    table = "big"
    base_rows = 1000
    base = write_rows_csv(tmp_path / "base.csv", 1, base_rows)
    server.ingest(base, table, check=True)
    files_before = set(files_under(server.table_dir(table)))

    writer = server.popen_ingest(big, table, mode="append")
    try:
        # Kill the server once it writes the new version's files (or after 20 s of upload).
        deadline = time.monotonic() + 20
        for _ in range(4000):
            if writer.poll() is not None or time.monotonic() > deadline:
                break
            if set(files_under(server.table_dir(table))) - files_before:
                break
            time.sleep(0.005)
        server.kill()
        try:
            out, err = writer.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            writer.kill()
            out, err = writer.communicate(timeout=30)
            pytest.fail("`lakehouse ingest` hung for 60 s after its server was killed")
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.communicate(timeout=30)

    server.start()
    info = server.table_info(table)
    assert info["row_count"] in (base_rows, base_rows + big_rows), f"partial version: {info['row_count']} rows"
    version = 1 if info["row_count"] == base_rows else 2
    assert info["current_version"] == version
    assert [v["version"] for v in info["versions"]] == list(range(1, version + 1))
    assert server.count(table) == info["row_count"]
    if writer.returncode == 0:
        assert version == 2, f"the CLI reported success but the commit was lost:\n{out}\n{err}"
    else:
        assert err.strip() and "panicked at" not in err, f"exit {writer.returncode} without a clear error:\n{err}"

    # Files of the interrupted ingest are unreferenced; a start lists and removes them.
    referenced = referenced_files(info)
    if referenced is not None:
        wait_until(
            lambda: {p.name for p in files_under(server.table_dir(table)) if p.suffix == ".parquet"} <= referenced,
            timeout=30,
            interval=0.2,
            what=f"unreferenced files under {server.table_dir(table)} to be removed",
        )

    # The dead writer's lease must not block the table for good: a new ingest gets through.
    deadline = time.monotonic() + 120
    for _ in range(60):
        result = server.ingest(base, table, mode="append")
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        assert re.search(r"lease|writer|busy|locked|in progress|retry", result.stderr, re.I), result.stderr
        time.sleep(2)
    assert result.returncode == 0, f"table still not writable after the crash:\n{result.stderr}"
    after = server.table_info(table)
    assert after["row_count"] == info["row_count"] + base_rows
    assert [v["version"] for v in after["versions"]] == list(range(1, version + 2))


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_wiped_catalog_dir_is_rebuilt_from_the_bucket(server_factory, tmp_path, stop_signal):
    server = server_factory()
    build_history(server, tmp_path)
    before, results = snapshot(server), answers(server)

    server.stop(stop_signal)
    manifests = files_under(server.bucket / "_catalog")
    assert manifests, f"no catalog manifests under {server.bucket / '_catalog'}"
    assert server.catalog_dir.is_dir(), f"no local catalog at {server.catalog_dir}"
    shutil.rmtree(server.catalog_dir)

    server.start()
    assert snapshot(server) == before
    assert answers(server) == results
    assert_next_version_continues(server)

    # The rebuilt catalog is durable in its own right.
    after = snapshot(server)
    server.restart()
    assert snapshot(server) == after


def test_big_csv_fixture_is_about_200_mb(big_csv):
    path, rows = big_csv
    size = path.stat().st_size
    assert 180 * 1024 * 1024 < size < 230 * 1024 * 1024, size
    assert rows > 1_000_000
    with open(path, encoding="utf-8") as f:
        assert f.readline().strip() == "id,name,amount,city,note"
        second = f.readline().strip().split(",", 4)
    assert second[0] == "1000001" and second[4].startswith('"row 1000001, '), second
