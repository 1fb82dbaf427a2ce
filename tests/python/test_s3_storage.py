"""`lakehouse up` with its primary bucket on a real S3-protocol server: moto's server
(`moto_server`, from moto[server]) as a separate process on 127.0.0.1.

The server gets its S3 settings from LAKEHOUSE__STORAGE__* variables; the secret key only
by reference (`env:LAKEHOUSE_TEST_S3_SECRET`), never as a setting. Each test uses a prefix
of its own in the one `lake` bucket of a moto server shared by the module.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Callable, Iterator, Optional

import boto3
import pytest
import requests
from botocore.config import Config as BotoConfig

import test_queries
from harness import (
    DEMO_TABLES,
    START_TIMEOUT,
    LakehouseServer,
    assert_same_rows,
    files_under,
    free_port,
    server_env,
    table_rows,
    tail,
    wait_until,
)
from test_durability import assert_next_version_continues, build_history
from test_queries import QUERIES, duck_result

# The module-scoped DuckDB-on-examples/*.csv fixture of test_queries, found by pytest by name.
duck = test_queries.duck

S3_BUCKET = "lake"
S3_KEY_ID = "test"
S3_SECRET = "test"
S3_REGION = "us-east-1"
SECRET_VAR = "LAKEHOUSE_TEST_S3_SECRET"
MOTO_START_TIMEOUT = 30.0

# The three-table joins of test_queries, by id: (query, whether row order matters).
JOINS = {name: (query, ordered) for name, query, ordered in QUERIES if name.startswith("join_three_tables")}
assert JOINS, "test_queries.QUERIES has no join_three_tables_* query"


class Moto:
    """A running `moto_server` and a boto3 client for it."""

    def __init__(self, proc: subprocess.Popen, port: int, log: Path):
        self.proc = proc
        self.port = port
        self.log = log
        self.endpoint = f"http://127.0.0.1:{port}"
        self.s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
            region_name=S3_REGION,
            config=BotoConfig(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2}),
        )

    def keys(self, prefix: str) -> list[str]:
        """Every key in the bucket under `prefix` (bounded: at most 1000 pages)."""
        keys: list[str] = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=S3_BUCKET, Prefix=prefix, PaginationConfig={"MaxItems": 1000 * 1000}
        )
        for i, page in enumerate(pages):
            assert i < 1000, f"more than 1000 pages of keys under {prefix!r}"
            keys += [obj["Key"] for obj in page.get("Contents", [])]
        return sorted(keys)

    def answers(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"moto_server exited with {self.proc.returncode} while starting:\n{tail(self.log)}")
        try:
            requests.get(self.endpoint + "/", timeout=2)
            return True
        except requests.RequestException:
            return False


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.is_file():
        pytest.fail(f"{binary} not found: install tests/python/requirements.txt (moto[server]) into this venv")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        server = Moto(proc, port, log)
        wait_until(
            server.answers,
            timeout=MOTO_START_TIMEOUT,
            interval=0.1,
            what=f"moto_server on {server.endpoint}",
            on_timeout=lambda: tail(log),
        )
        server.s3.create_bucket(Bucket=S3_BUCKET)
        yield server
    finally:
        proc.kill()
        proc.wait(timeout=30)


def s3_env(moto: Moto, prefix: str, secret_ref: str = f"env:{SECRET_VAR}") -> dict[str, str]:
    return {
        "LAKEHOUSE__STORAGE__PRIMARY": f"s3://{S3_BUCKET}/{prefix}",
        "LAKEHOUSE__STORAGE__S3_ENDPOINT": moto.endpoint,
        "LAKEHOUSE__STORAGE__S3_ALLOW_HTTP": "true",
        "LAKEHOUSE__STORAGE__S3_REGION": S3_REGION,
        "LAKEHOUSE__STORAGE__S3_ACCESS_KEY_ID": S3_KEY_ID,
        "LAKEHOUSE__STORAGE__S3_SECRET_ACCESS_KEY_REF": secret_ref,
        SECRET_VAR: S3_SECRET,
    }


def unique_prefix(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def s3_server_factory(lakehouse_bin: Path, tmp_path: Path, moto: Moto) -> Iterator[Callable[..., LakehouseServer]]:
    """`make(prefix, name)`: a started `lakehouse up` whose primary bucket is s3://lake/<prefix>,
    on a local data dir of its own. All are stopped when the test ends; one that died on its
    own fails the test."""
    made: list[LakehouseServer] = []

    def make(prefix: str, name: str = "s3 server") -> LakehouseServer:
        base = tmp_path / f"{name.replace(' ', '-')}-{len(made)}"
        server = LakehouseServer(lakehouse_bin, base, name, env=s3_env(moto, prefix))
        made.append(server)
        return server.start()

    yield make
    for server in made:
        died = server.proc is not None and server.proc.poll() is not None
        code, log = (server.proc.returncode, server.stderr_tail()) if died else (None, "")
        server.stop()
        if died:
            pytest.fail(f"{server.name} exited on its own with {code} during the test.\nstderr:\n{log}")


def tables_json(server: LakehouseServer) -> dict[str, dict]:
    """GET /v1/tables/{name} for every table, as served."""
    return {name: server.table_info(name) for name in sorted(server.table_names())}


def join_answers(server: LakehouseServer) -> dict[str, list[tuple]]:
    return {name: table_rows(server.sql(query)) for name, (query, _) in JOINS.items()}


def test_demo_tables_live_in_s3_and_join_like_duckdb(s3_server_factory, moto, duck):
    prefix = unique_prefix("demo")
    server = s3_server_factory(prefix)
    server.ingest_demo()

    for name, (query, ordered) in JOINS.items():
        want_names, want = duck_result(duck, query)
        got = server.sql(query)
        assert [n.lower() for n in got.column_names] == [n.lower() for n in want_names], name
        assert_same_rows(table_rows(got), want, ordered=ordered, context=name)

    keys = moto.keys(f"{prefix}/")
    assert keys, f"nothing in s3://{S3_BUCKET}/{prefix}/"
    for table in DEMO_TABLES:
        data = [k for k in keys if k.startswith(f"{prefix}/tables/{table}/") and k.endswith(".parquet")]
        assert data, f"no data files under s3://{S3_BUCKET}/{prefix}/tables/{table}/; keys: {keys}"
    manifests = [k for k in keys if k.startswith(f"{prefix}/_catalog/manifests/")]
    assert manifests, f"no manifests under s3://{S3_BUCKET}/{prefix}/_catalog/manifests/; keys: {keys}"
    stray = [k for k in keys if not k.startswith((f"{prefix}/tables/", f"{prefix}/_catalog/manifests/"))]
    assert not stray, f"objects outside tables/ and _catalog/manifests/: {stray}"

    assert files_under(server.bucket) == [], f"files written to the local bucket dir {server.bucket}"
    server.assert_healthy()


def test_fresh_server_restores_everything_from_s3(s3_server_factory, moto, tmp_path):
    prefix = unique_prefix("restore")
    first = s3_server_factory(prefix, "first")
    build_history(first, tmp_path)  # the demo tables, then an append and a replace
    before, rows = tables_json(first), join_answers(first)
    assert set(DEMO_TABLES) <= set(before), sorted(before)
    assert max(info["current_version"] for info in before.values()) >= 2, before

    assert first.stop(signal.SIGTERM) == 0, f"SIGTERM should be a clean exit 0:\n{first.stderr_tail()}"
    assert files_under(first.bucket) == [], f"files written to the local bucket dir {first.bucket}"
    shutil.rmtree(first.data_dir)
    assert not first.data_dir.exists()

    second = s3_server_factory(prefix, "second")
    assert second.data_dir != first.data_dir
    after = tables_json(second)
    assert sorted(after) == sorted(before)
    for name in before:
        assert after[name] == before[name], f"GET /v1/tables/{name} differs after the restore"
    for name, got in join_answers(second).items():
        assert_same_rows(got, rows[name], ordered=JOINS[name][1], context=f"{name} after the restore")

    # The restored catalog keeps counting versions, and the new files go to S3 too.
    assert_next_version_continues(second)
    assert files_under(second.bucket) == [], f"files written to the local bucket dir {second.bucket}"


def test_unset_secret_ref_fails_at_start(lakehouse_bin, moto, tmp_path):
    missing = f"LAKEHOUSE_TEST_S3_SECRET_UNSET_{uuid.uuid4().hex[:8].upper()}"
    reference = f"env:{missing}"
    env = s3_env(moto, unique_prefix("nosecret"), secret_ref=reference)
    env.pop(SECRET_VAR)
    full_env = server_env(tmp_path / "data", env)
    assert missing not in full_env
    listen = tmp_path / "listen.json"
    try:
        result = subprocess.run(
            [str(lakehouse_bin), "up", "--listen-file", str(listen)],
            cwd=tmp_path,
            env=full_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=START_TIMEOUT,
            encoding="utf-8",
            errors="replace",
        )
    except subprocess.TimeoutExpired as e:
        out: Optional[str] = e.stderr.decode("utf-8", "replace") if isinstance(e.stderr, bytes) else e.stderr
        pytest.fail(f"`lakehouse up` with an unset secret_ref was still running after {START_TIMEOUT:.0f}s:\n{out}")
    assert result.returncode > 0, (
        f"`lakehouse up` exited with {result.returncode}, expected a non-zero exit (not a signal)\n"
        f"stderr:\n{result.stderr}"
    )
    assert "panicked at" not in result.stderr, result.stderr
    assert reference in result.stderr, f"the error does not name the secret reference {reference!r}:\n{result.stderr}"
    assert not listen.exists(), "the listen file was written although the server did not start"
