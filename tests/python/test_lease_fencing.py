"""The stale-writer fault (issue 5), for both lease backends (`catalog.lease_backend`), with
real processes and real signals: a `lakehouse catalog` node (and, for etcd, a real `etcd`
server), a scheduler and two gateways, A and B, on loopback port 0.

Writer A (gateway A, driven by a `lakehouse ingest` client) takes table `t`'s lease and
writes a large CSV; it is stopped with SIGSTOP while it holds the lease and has not
committed. Writer B (gateway B) waits for A's lease to expire (TTL 1.5 s; etcd rounds it up
to whole seconds), takes it and commits. SIGCONT wakes A, whose commit is refused by
fencing: its client exits non-zero saying the lease was lost, and the table holds B's
version only.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from harness import (
    CLI_TIMEOUT,
    EtcdServer,
    LakehouseServer,
    RoleProcess,
    assert_cli_ok,
    inherited_env,
    tail,
    wait_until,
    write_big_csv,
    write_rows_csv,
)

LEASE_TTL_MS = 1500
# B waits this long for A's lease: well past the TTL, so B waits A out.
LEASE_WAIT_MS = 20_000
# Small files make A's write long enough to stop it in the middle.
ROWS_PER_FILE = 2_000
BIG_CSV_BYTES = 24 * 1024 * 1024
B_ROWS = 10


class LeaseCluster:
    """A catalog node, a scheduler and gateways A and B sharing one bucket."""

    def __init__(self, binary: Path, base: Path, backend: str):
        self.roles: list[RoleProcess] = []
        self.etcd = EtcdServer(base / "etcd") if backend == "etcd" else None
        env = inherited_env()
        env.update(
            {
                "LAKEHOUSE__STORAGE__PRIMARY": str(base / "bucket"),
                "LAKEHOUSE__CATALOG__LEASE_TTL_MS": str(LEASE_TTL_MS),
                "LAKEHOUSE__CATALOG__LEASE_WAIT_MS": str(LEASE_WAIT_MS),
                "LAKEHOUSE__GATEWAY__ROWS_PER_FILE": str(ROWS_PER_FILE),
                "LAKEHOUSE__CATALOG__LEASE_BACKEND": backend,
                "NO_COLOR": "1",
            }
        )
        if self.etcd is not None:
            env["LAKEHOUSE__CATALOG__ETCD_ENDPOINTS"] = f'["{self.etcd.endpoint}"]'
        self.env = env
        catalog = self._spawn(binary, base, "catalog", "catalog", "--node-id", "1", "--listen", "127.0.0.1:0")
        peers = f"1={catalog.addr('catalog')}"
        scheduler = self._spawn(binary, base, "scheduler", "scheduler", "--listen", "127.0.0.1:0").addr("scheduler")
        self.gateways = {name: self._gateway(binary, base, name, peers, scheduler) for name in ("a", "b")}

    def _gateway(
        self, binary: Path, base: Path, name: str, peers: str, scheduler: str
    ) -> tuple[RoleProcess, LakehouseServer]:
        """Gateway `name` and a client of it (the harness's ingest and HTTP helpers)."""
        role = self._spawn(
            binary,
            base,
            f"gateway-{name}",
            *("gateway", "--catalog-peers", peers, "--scheduler", scheduler),
            *("--http-addr", "127.0.0.1:0", "--flight-sql-addr", "127.0.0.1:0"),
        )
        info = role.listening("flight_sql")
        client = LakehouseServer(binary, base / f"client-{name}", name=f"gateway {name}")
        client.http_addr, client.flight_addr = info["http"], info["flight_sql"]

        def healthy() -> bool:
            try:
                return client.get("/health").status_code == 200
            except requests.RequestException:
                return False

        wait_until(
            healthy,
            timeout=60,
            interval=0.1,
            what=f"gateway {name} healthy",
            on_timeout=lambda: tail(role.stderr_path),
        )
        return role, client

    def _spawn(self, binary: Path, base: Path, name: str, *args: str) -> RoleProcess:
        role = RoleProcess(binary, base, name, args, self.env)
        self.roles.append(role)
        return role

    def kill(self) -> None:
        for role in reversed(self.roles):
            try:
                if role.proc.poll() is None:
                    # A stopped process only dies of SIGKILL once it runs again.
                    role.proc.send_signal(signal.SIGCONT)
                role.kill()
            except Exception:
                pass
        if self.etcd is not None:
            self.etcd.kill()


@pytest.fixture(params=["raft", "etcd"])
def cluster(request, lakehouse_bin: Path, tmp_path: Path) -> Iterator[LeaseCluster]:
    cluster = LeaseCluster(lakehouse_bin, tmp_path, request.param)
    try:
        yield cluster
    finally:
        cluster.kill()


def test_stale_writer_is_fenced(cluster: LeaseCluster, tmp_path: Path) -> None:
    (gateway_a, client_a), (_, client_b) = cluster.gateways["a"], cluster.gateways["b"]
    big = tmp_path / "big.csv"
    big_rows = write_big_csv(big, BIG_CSV_BYTES)
    small = write_rows_csv(tmp_path / "small.csv", 1, B_ROWS)

    writer_a = client_a.popen_ingest(big, "t")
    try:
        # A holds the lease once its gateway logs it; stop A before it can commit.
        wait_until(
            lambda: "writer lease taken" in gateway_a.stderr_path.read_text(errors="replace")
            or writer_a.poll() is not None,
            timeout=CLI_TIMEOUT,
            interval=0.02,
            what="gateway A to take the writer lease",
            on_timeout=lambda: tail(gateway_a.stderr_path),
        )
        assert writer_a.poll() is None, f"A finished before it was stopped: {writer_a.communicate()}"
        gateway_a.proc.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        assert client_b.table_info("t") is None, "A committed before SIGSTOP: make its write longer"

        # B waits A's lease out (A cannot renew it), takes it and commits.
        result_b = client_b.ingest(small, "t", timeout=LEASE_WAIT_MS / 1000 + 60)
        assert_cli_ok(result_b)
        waited = time.monotonic() - stopped_at
        assert waited >= LEASE_TTL_MS / 1000 / 2, f"B committed {waited:.2f} s after A stopped: not past A's lease"
        info_b = client_b.table_info("t")
        assert info_b is not None and info_b["current_version"] == 1, info_b
        assert info_b["row_count"] == B_ROWS, info_b

        # A wakes up: its commit is refused, and its client says why.
        gateway_a.proc.send_signal(signal.SIGCONT)
        out, err = writer_a.communicate(timeout=CLI_TIMEOUT)
    finally:
        if gateway_a.proc.poll() is None:
            gateway_a.proc.send_signal(signal.SIGCONT)
        if writer_a.poll() is None:
            writer_a.kill()
            writer_a.wait(timeout=30)
    assert writer_a.returncode not in (0, None), f"A's stale commit succeeded:\n{out}\n{err}"
    assert writer_a.returncode > 0, f"A's client was killed by signal {-writer_a.returncode}:\n{err}"
    assert "lease was lost" in err, err
    assert "retry" in err, err
    assert "panicked" not in tail(gateway_a.stderr_path), tail(gateway_a.stderr_path)

    # Only B's version (each gateway follows the catalog through its Watch stream).
    for client in (client_a, client_b):
        info = wait_until(lambda c=client: c.table_info("t"), timeout=10, what=f"table t on {client.name}")
        assert [v["version"] for v in info["versions"]] == [1], info
        assert info["row_count"] == B_ROWS, f"{info['row_count']} rows; A wrote {big_rows}"
    # A's gateway is still up, and writes again under a new lease.
    assert_cli_ok(client_a.ingest(write_rows_csv(tmp_path / "more.csv", 100, 5), "t", mode="append"))
    wait_until(
        lambda: client_b.table_info("t")["row_count"] == B_ROWS + 5,
        timeout=10,
        what="A's new version on gateway B",
        on_timeout=lambda: str(client_b.table_info("t")),
    )


def test_gateway_refuses_etcd_backend_without_endpoints(lakehouse_bin: Path, tmp_path: Path) -> None:
    env = inherited_env()
    env.update({"LAKEHOUSE__CATALOG__LEASE_BACKEND": "etcd", "NO_COLOR": "1"})
    result = subprocess.run(
        [str(lakehouse_bin), "gateway", "--data-dir", str(tmp_path)],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0, result.stdout
    assert "catalog.etcd_endpoints" in result.stderr, result.stderr
