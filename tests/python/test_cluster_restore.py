"""Cluster restore from the bucket alone (issue 5, point 5): the cluster of
test_cluster_roles.py (three catalog nodes, a scheduler, two executors, a gateway) on a
real S3-protocol server, moto's `moto_server` from test_s3_storage.py.

The roles read their [storage] section from a `lakehouse.toml`; the S3 secret key is in it
only as `secret_ref = "env:…"`, its value only in the roles' environment. The first cluster
ingests CSV, Parquet and JSON tables, appends a second version to one and changes the
metadata of another; then every process stops and every local directory is deleted. A
fresh cluster on new directories and the same bucket serves the same tables, versions,
metadata and query answers, and keeps counting versions.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Callable, Iterator

import duckdb
import pytest

import test_s3_storage
from harness import (
    DEMO_META,
    EXAMPLES,
    STOP_TIMEOUT,
    LakehouseCluster,
    assert_cli_ok,
    files_under,
    table_names,
    table_rows,
)
from test_cluster_roles import GROUP_BY, JOIN
from test_durability import assert_next_version_continues
from test_s3_storage import S3_BUCKET, S3_KEY_ID, S3_REGION, SECRET_VAR, Moto, unique_prefix

# The module-scoped moto server of test_s3_storage, found by pytest by name.
moto = test_s3_storage.moto

# Each demo table in another ingest format: the join reads all three.
FORMATS = {"candidates": "csv", "contracts": "parquet", "placements": "json"}

# moto accepts any secret key: one of its own per run makes a leak into the config file or
# a log findable.
SECRET = f"cluster-restore-{uuid.uuid4().hex}"


def storage_toml(moto: Moto, prefix: str) -> str:
    settings = {
        "primary": f"s3://{S3_BUCKET}/{prefix}",
        "s3_endpoint": moto.endpoint,
        "s3_region": S3_REGION,
        "s3_access_key_id": S3_KEY_ID,
        "s3_secret_access_key_ref": f"env:{SECRET_VAR}",
    }
    # JSON strings are valid TOML basic strings.
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    return "[storage]\n" + "\n".join(lines) + "\ns3_allow_http = true\n"


class S3Cluster(LakehouseCluster):
    """A LakehouseCluster whose roles find their storage in `<base_dir>/lakehouse.toml`
    (their working directory) instead of a local bucket directory."""

    def __init__(self, binary: Path, base_dir: Path, config: str):
        super().__init__(binary, base_dir, executors=2, task_slots=1)
        self.env.pop("LAKEHOUSE__STORAGE__PRIMARY")
        self.env[SECRET_VAR] = SECRET
        self.config_file = base_dir / "lakehouse.toml"
        self.config_file.write_text(config, encoding="utf-8")

    def stop(self) -> dict[str, int]:
        """SIGTERM to every role, clients before servers; their exit codes by name."""
        self.gateway.stop()
        codes = {}
        for role in reversed(self.roles):
            role.proc.send_signal(signal.SIGTERM)
            try:
                codes[role.name] = role.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                role.kill()
                codes[role.name] = role.proc.returncode
        return codes


@pytest.fixture
def s3_clusters(lakehouse_bin: Path) -> Iterator[Callable[[Path, str], S3Cluster]]:
    """`start(base_dir, config)`: a started S3Cluster; all are killed when the test ends."""
    made: list[S3Cluster] = []

    def start(base_dir: Path, config: str) -> S3Cluster:
        cluster = S3Cluster(lakehouse_bin, base_dir, config)
        made.append(cluster)
        return cluster.start()

    yield start
    for cluster in made:
        cluster.kill()


def write_formats(out: Path) -> dict[str, Path]:
    """The demo CSVs, each in its format of FORMATS (written by DuckDB)."""
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    con = duckdb.connect()
    for table, fmt in FORMATS.items():
        source = EXAMPLES / f"{table}.csv"
        if fmt == "csv":
            files[table] = source
            continue
        files[table] = out / f"{table}.{'jsonl' if fmt == 'json' else 'parquet'}"
        con.execute(f"COPY (SELECT * FROM read_csv('{source}')) TO '{files[table]}' (FORMAT {fmt})")
    con.close()
    return files


def catalog_view(cluster: S3Cluster) -> dict:
    """What the gateway says about the catalog: the listing and each table's record."""
    listing = cluster.gateway.get("/v1/tables")
    assert listing.status_code == 200, listing.text
    names = sorted(table_names(listing.json()))
    return {"listing": listing.json(), "tables": {name: cluster.gateway.table_info(name) for name in names}}


def answers(cluster: S3Cluster) -> dict[str, list[tuple]]:
    """The join keeps its ORDER BY; the GROUP BY's rows are compared sorted."""
    return {
        "join": table_rows(cluster.gateway.sql(JOIN)),
        "group_by": sorted(table_rows(cluster.gateway.sql(GROUP_BY)), key=repr),
        "counts": table_rows(
            cluster.gateway.sql(
                "SELECT (SELECT COUNT(*) FROM candidates) AS candidates, "
                "(SELECT COUNT(*) FROM contracts) AS contracts, (SELECT COUNT(*) FROM placements) AS placements"
            )
        ),
    }


def assert_voters(cluster: S3Cluster) -> None:
    result = cluster.run("status", "--catalog", ",".join(cluster.catalog_addrs), "--scheduler", cluster.scheduler_addr)
    assert_cli_ok(result)
    assert "catalog: leader node" in result.stdout and result.stdout.count("voter") == 3, result.stdout


def test_fresh_three_node_cluster_restores_everything_from_s3(s3_clusters, moto, tmp_path):
    prefix = unique_prefix("cluster-restore")
    config = storage_toml(moto, prefix)
    assert SECRET not in config

    first_dir = tmp_path / "first"
    first_dir.mkdir()
    first = s3_clusters(first_dir, config)
    files = write_formats(tmp_path / "inputs")
    for table, file in files.items():
        first.gateway.ingest(file, table, check=True, **DEMO_META[table])
    first.gateway.ingest(files["candidates"], "candidates", mode="append", check=True, **DEMO_META["candidates"])
    assert_cli_ok(
        first.gateway.cli(
            *("table", "set-metadata", "contracts", "--server", first.gateway.http_url),
            *("--description", "Contracts, restored from the bucket", "--tags", "staffing,contracts,restored"),
        )
    )

    before, rows = catalog_view(first), answers(first)
    assert sorted(before["tables"]) == sorted(FORMATS), before["listing"]
    assert [v["version"] for v in before["tables"]["candidates"]["versions"]] == [1, 2]
    assert before["tables"]["contracts"]["metadata"]["description"] == "Contracts, restored from the bucket"
    assert rows["join"] and rows["group_by"], rows
    assert rows["counts"] == [(120, 25, 80)], rows["counts"]

    codes = first.stop()
    assert all(code == 0 for code in codes.values()), f"SIGTERM should be a clean exit 0: {codes}"
    # The bucket holds the data and the catalog; nothing went to a local bucket directory.
    keys = moto.keys(f"{prefix}/")
    for table in FORMATS:
        assert any(k.startswith(f"{prefix}/tables/{table}/") and k.endswith(".parquet") for k in keys), keys
    manifests = [k for k in keys if k.startswith(f"{prefix}/_catalog/manifests/")]
    assert manifests, keys
    local = [p for p in files_under(first_dir) if p.suffix == ".parquet"]
    assert not local, f"Parquet files on local disk: {local}"
    for log in first_dir.glob("*/stderr.log"):
        assert SECRET not in log.read_text(encoding="utf-8", errors="replace"), f"the S3 secret is in {log}"
    assert SECRET not in first.config_file.read_text(encoding="utf-8")

    # Every node's disk is gone: catalog logs, executor work dirs, the gateway's spool.
    shutil.rmtree(first_dir)
    second = s3_clusters(tmp_path / "second", config)
    assert_voters(second)
    seed_log = second.roles[0].stderr_path.read_text(encoding="utf-8", errors="replace")
    assert "restoring the catalog from the bucket's manifest" in seed_log, seed_log[-6000:]
    after = catalog_view(second)
    assert after["listing"] == before["listing"], "GET /v1/tables differs after the restore"
    for name, info in before["tables"].items():
        assert after["tables"][name] == info, f"GET /v1/tables/{name} differs after the restore"
    assert answers(second) == rows, "the queries answer differently after the restore"

    # The restored catalog keeps counting versions, and its manifests follow the old ones
    # (manifest keys are zero-padded catalog versions: they sort as numbers).
    assert_next_version_continues(second.gateway)
    newest = moto.keys(f"{prefix}/_catalog/manifests/")[-1]
    assert newest > max(manifests), f"{newest} does not follow {max(manifests)}"
