"""Catalog failover under a write loop (issue 5): the three-node Raft catalog, a scheduler
and a gateway as processes of the binary on loopback, and a client that patches one
table's metadata (one catalog write each) through the gateway's HTTP API, back to back.
Each trial SIGKILLs the catalog leader and measures, from the kill:

- time to new leader: until `lakehouse status` on the survivors names another leader.
  The time is taken at the end of that status run, so it is an upper bound; one run's
  duration (the resolution) is reported too.
- time to first write: until the first write *sent after the kill* is acknowledged. It
  goes through the gateway's catalog client, whose leader retries are part of the figure.

then restarts the killed node on its address and data dir and waits until all three
nodes answer with no lag before the next trial. Reports p50 / p95 / max over the trials
against the targets (< 1 s to a new leader, < 2 s to the first write).

Usage: bash benches/failover.sh [--trials 20]
   or: python benches/failover.py --bin $CARGO_TARGET_DIR/debug/lakehouse [--trials 20]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import requests

TARGET_LEADER_S = 1.0
TARGET_WRITE_S = 2.0
# Every wait below is bounded by this.
PATIENCE_S = 60.0
WRITE_TIMEOUT_S = 10.0


class Role:
    """One `lakehouse <role>` process with a data dir and listen file of its own."""

    def __init__(self, binary: Path, base: Path, name: str, args: list[str], env: dict[str, str]):
        self.binary, self.base, self.name, self.args, self.env = binary, base, name, args, env
        self.dir = base / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.listen_file = self.dir / "listen.json"
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        self.listen_file.unlink(missing_ok=True)
        with open(self.dir / "stderr.log", "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), *self.args, "--data-dir", str(self.dir), "--listen-file", str(self.listen_file)],
                cwd=self.base,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def addr(self, key: str) -> str:
        deadline = time.monotonic() + PATIENCE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.dir}/stderr.log")
            try:
                info = json.loads(self.listen_file.read_text(encoding="utf-8"))
                if key in info:
                    return info[key]
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} wrote no `{key}` in {PATIENCE_S:.0f}s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=PATIENCE_S)


class Cluster:
    def __init__(self, binary: Path, base: Path, catalog_env: dict[str, str]):
        self.binary, self.base = binary, base
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE")}
        self.env.update({"LAKEHOUSE__STORAGE__PRIMARY": str(base / "bucket"), "NO_COLOR": "1", **catalog_env})
        self.roles: list[Role] = []
        self.catalog: dict[int, Role] = {}
        self.catalog_addr: dict[int, str] = {}

    def spawn(self, name: str, *args: str) -> Role:
        role = Role(self.binary, self.base, name, list(args), self.env)
        self.roles.append(role)
        return role

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.binary), *args], cwd=self.base, env=self.env, capture_output=True, text=True,
            timeout=PATIENCE_S, check=False,
        )  # fmt: skip

    def start(self) -> None:
        # The seed bootstraps; 2 and 3 join with `lakehouse admin add-node`.
        for node_id in (1, 2, 3):
            peers = [] if node_id == 1 else ["--peers", f"1={self.catalog_addr[1]}"]
            args = ["catalog", "--node-id", str(node_id), "--listen", "127.0.0.1:0", *peers]
            role = self.spawn(f"catalog-{node_id}", *args)
            addr = role.addr("catalog")
            # Restarts keep the address.
            role.args = [a if a != "127.0.0.1:0" else addr for a in args]
            self.catalog[node_id], self.catalog_addr[node_id] = role, addr
            if node_id > 1:
                added = self.cli("admin", "add-node", "--catalog", self.catalog_addr[1],
                                 "--node-id", str(node_id), "--addr", addr)  # fmt: skip
                if added.returncode != 0:
                    raise RuntimeError(f"add-node {node_id}: {added.stderr}")
        self.scheduler_addr = self.spawn("scheduler", "scheduler", "--listen", "127.0.0.1:0").addr("scheduler")
        peers = ",".join(f"{i}={a}" for i, a in self.catalog_addr.items())
        gateway = self.spawn(
            "gateway", "gateway", "--catalog-peers", peers, "--scheduler", self.scheduler_addr,
            "--http-addr", "127.0.0.1:0", "--flight-sql-addr", "127.0.0.1:0",
        )  # fmt: skip
        self.http = "http://" + gateway.addr("http")

    def status(self, node_ids: list[int]) -> tuple[Optional[int], list[str]]:
        """The leader `lakehouse status` names when asked through `node_ids`, and its node lines."""
        out = self.cli(
            "status", "--catalog", ",".join(self.catalog_addr[i] for i in node_ids),
            "--scheduler", self.scheduler_addr,
        ).stdout  # fmt: skip
        found = re.search(r"^catalog: leader node (\d+)", out, flags=re.MULTILINE)
        lines = [ln for ln in out.splitlines() if re.match(r"^\d+\s", ln)]
        return (int(found.group(1)) if found else None), lines

    def caught_up(self) -> bool:
        """All three nodes answer, none lags the leader."""
        leader, lines = self.status([1, 2, 3])
        return leader is not None and len(lines) == 3 and all(
            "unreachable" not in ln and ln.split()[-1] == "0" for ln in lines
        )

    def kill(self) -> None:
        for role in reversed(self.roles):
            role.kill()


class Writer(threading.Thread):
    """Patches the table's description back to back; logs (sent, acknowledged, ok)."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.log: list[tuple[float, float, bool]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        i = 0
        while not self.stopping.is_set():
            sent = time.monotonic()
            try:
                reply = session.patch(self.url, json={"description": f"failover write {i}"}, timeout=WRITE_TIMEOUT_S)
                ok = reply.status_code == 200
            except requests.RequestException:
                ok = False
            self.log.append((sent, time.monotonic(), ok))
            i += 1

    def first_ok_sent_after(self, t: float) -> Optional[float]:
        return next((acked for sent, acked, ok in list(self.log) if ok and sent >= t), None)


def wait_for(what: str, condition) -> object:
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"{what} not within {PATIENCE_S:.0f}s")


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def trial(cluster: Cluster, writer: Writer) -> tuple[float, float, float]:
    """One kill of the leader: seconds to a new leader, to the first write, and the
    duration of the status run that saw the new leader."""
    leader = wait_for("a leader", lambda: cluster.status([1, 2, 3])[0])
    wait_for("writes going through", lambda: writer.first_ok_sent_after(time.monotonic() - 0.5))
    survivors = [i for i in (1, 2, 3) if i != leader]
    killed_at = time.monotonic()
    cluster.catalog[leader].kill()
    while True:
        asked = time.monotonic()
        new = cluster.status(survivors)[0]
        seen = time.monotonic()
        if new is not None and new != leader:
            break
        if seen - killed_at > PATIENCE_S:
            raise RuntimeError(f"no new leader {PATIENCE_S:.0f}s after killing node {leader}")
    acked = wait_for("a write after the kill", lambda: writer.first_ok_sent_after(killed_at))
    cluster.catalog[leader].start()
    wait_for(f"node {leader} caught up", cluster.caught_up)
    return seen - killed_at, acked - killed_at, seen - asked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, type=Path, help="the lakehouse binary")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--heartbeat-ms", type=int, help="catalog.heartbeat_interval_ms (default: the config's)")
    parser.add_argument("--election-ms", help="catalog.election_timeout_min_ms,max_ms (default: the config's)")
    args = parser.parse_args()
    catalog_env = {}
    if args.heartbeat_ms:
        catalog_env["LAKEHOUSE__CATALOG__HEARTBEAT_INTERVAL_MS"] = str(args.heartbeat_ms)
    if args.election_ms:
        low, high = args.election_ms.split(",")
        catalog_env["LAKEHOUSE__CATALOG__ELECTION_TIMEOUT_MIN_MS"] = low
        catalog_env["LAKEHOUSE__CATALOG__ELECTION_TIMEOUT_MAX_MS"] = high

    base = Path(tempfile.mkdtemp(prefix="lakehouse-failover-"))
    cluster = Cluster(args.bin.resolve(), base, catalog_env)
    try:
        cluster.start()
        csv = base / "bench.csv"
        csv.write_text("id,name\n1,one\n2,two\n", encoding="utf-8")
        meta = {"owner": "bench@example.com", "sensitivity": "internal", "lineage": "benches/failover.py",
                "freshness-sla": "24h", "description": "failover benchmark", "tags": "bench"}  # fmt: skip
        ingested = cluster.cli("ingest", str(csv), "--table", "bench", "--server", cluster.http,
                               *[a for k, v in meta.items() for a in (f"--{k}", v)])  # fmt: skip
        if ingested.returncode != 0:
            raise RuntimeError(f"ingest: {ingested.stderr}")
        writer = Writer(f"{cluster.http}/v1/tables/bench/metadata")
        writer.start()
        leader_s, write_s, resolution_s = [], [], []
        for i in range(args.trials):
            to_leader, to_write, resolution = trial(cluster, writer)
            leader_s.append(to_leader)
            write_s.append(to_write)
            resolution_s.append(resolution)
            print(f"trial {i + 1:2}: new leader {to_leader * 1000:6.0f} ms, first write {to_write * 1000:6.0f} ms")
        writer.stopping.set()
        writer.join(WRITE_TIMEOUT_S + 1)
        acked = sum(ok for _, _, ok in writer.log)
        failed = len(writer.log) - acked
    finally:
        cluster.kill()
    shutil.rmtree(base, ignore_errors=True)

    print()
    timing = ", ".join(f"{k.removeprefix('LAKEHOUSE__CATALOG__').lower()} {v}" for k, v in catalog_env.items())
    print(f"{args.trials} trials, binary {args.bin}, {platform.machine()} {os.cpu_count()} cores, "
          f"catalog timing: {timing or 'the defaults'}, "
          f"{acked} writes acknowledged and {failed} failed in the loop; status-run resolution "
          f"p50 {percentile(resolution_s, 50) * 1000:.0f} ms")  # fmt: skip
    print()
    print("| kill -9 of the leader → | p50 | p95 | max | target |")
    print("|---|---:|---:|---:|---:|")
    rows = (("new leader", leader_s, TARGET_LEADER_S), ("first acknowledged write", write_s, TARGET_WRITE_S))
    for name, values, target in rows:
        cells = [f"{percentile(values, p) * 1000:.0f} ms" for p in (50, 95)] + [f"{max(values) * 1000:.0f} ms"]
        met = "p95 met" if percentile(values, 95) < target else "p95 MISSED"
        print(f"| {name} | {' | '.join(cells)} | < {target:.0f} s ({met}) |")


if __name__ == "__main__":
    main()
