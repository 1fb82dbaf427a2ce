"""Runs the real `lakehouse` binary for the Python client tests.

`LakehouseServer` spawns `lakehouse up` with every port set to 0 and a data dir of its own,
learns its addresses from the listen file, and offers the helpers the tests use: the CLI
(`ingest`, `sql_cli`), ADBC (`connect`, `sql`), and the HTTP gateway (`get`, `table_info`,
`jobs_submitted`). Every wait here is bounded in both count and time.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
DEMO_TABLES = ("candidates", "contracts", "placements")

START_TIMEOUT = float(os.environ.get("LAKEHOUSE_TEST_START_TIMEOUT", "60"))
STOP_TIMEOUT = float(os.environ.get("LAKEHOUSE_TEST_STOP_TIMEOUT", "30"))
CLI_TIMEOUT = float(os.environ.get("LAKEHOUSE_TEST_CLI_TIMEOUT", "300"))
HTTP_TIMEOUT = 30.0
QUERY_TIMEOUT_S = "120"

# The six metadata fields ADR-013 requires on every manual ingest, as CLI flag -> value.
FULL_META: dict[str, str] = {
    "owner": "qa@example.com",
    "sensitivity": "internal",
    "lineage": "pytest fixture → lakehouse ingest",
    "freshness_sla": "24h",
    "description": "Table written by the Python client tests",
    "tags": "test,python",
}
META_FLAGS = {key: "--" + key.replace("_", "-") for key in FULL_META}

# Metadata of the demo tables; examples/demo.sh uses the same values.
DEMO_META: dict[str, dict[str, str]] = {
    "candidates": {
        "owner": "talent-data@example.com",
        "sensitivity": "confidential",
        "lineage": "ats_export → lakehouse ingest → candidates",
        "freshness_sla": "24h",
        "description": "Candidates from the ATS export: contact details, city, experience, skills, availability",
        "tags": "staffing,pii,candidates",
    },
    "contracts": {
        "owner": "sales-ops@example.com",
        "sensitivity": "internal",
        "lineage": "crm_export → lakehouse ingest → contracts",
        "freshness_sla": "24h",
        "description": "Client contracts with day rate, start date and status",
        "tags": "staffing,contracts",
    },
    "placements": {
        "owner": "finance@example.com",
        "sensitivity": "internal",
        "lineage": "billing_export → lakehouse ingest → placements",
        "freshness_sla": "24h",
        "description": "Placements of candidates on contracts with bill rate and notes",
        "tags": "staffing,placements,billing",
    },
}


# --------------------------------------------------------------------------------------
# Bounded waiting


def wait_until(
    condition: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str,
    on_timeout: Optional[Callable[[], str]] = None,
) -> Any:
    """Polls `condition` until it returns a truthy value; at most `timeout` seconds and
    at most timeout/interval + 1 tries. Returns that value or fails the test."""
    deadline = time.monotonic() + timeout
    tries = int(timeout / interval) + 1
    for _ in range(tries):
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    detail = on_timeout() if on_timeout else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{detail}")


def tail(path: Path, limit: int = 6000) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "(no output)"
    text = data[-limit:].decode("utf-8", errors="replace")
    return ("…" if len(data) > limit else "") + text


# --------------------------------------------------------------------------------------
# The binary


def lakehouse_bin() -> Path:
    """LAKEHOUSE_BIN, else $CARGO_TARGET_DIR/debug/lakehouse (CARGO_TARGET_DIR defaults to
    $HOME/.cache/lakehouse-target, as in scripts/test.sh)."""
    explicit = os.environ.get("LAKEHOUSE_BIN")
    if explicit:
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path.home() / ".cache" / "lakehouse-target")
    return Path(target) / "debug" / "lakehouse"


def inherited_env() -> dict[str, str]:
    """This process's environment without Lakehouse settings or addresses (LAKEHOUSE_LOG,
    the log filter, passes through)."""
    drop = ("LAKEHOUSE_SERVER", "LAKEHOUSE_FLIGHT_SQL", "LAKEHOUSE_BIN")
    return {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE__") and k not in drop}


def server_env(data_dir: Path, extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The environment of `lakehouse up`: every address on 127.0.0.1 port 0, then `extra`
    (e.g. LAKEHOUSE__STORAGE__* settings) over it."""
    env = inherited_env()
    env.update(
        {
            "LAKEHOUSE__NODE__DATA_DIR": str(data_dir),
            "LAKEHOUSE__GATEWAY__HTTP_ADDR": "127.0.0.1:0",
            "LAKEHOUSE__FLIGHT_SQL__ADDR": "127.0.0.1:0",
            "LAKEHOUSE__SCHEDULER__ADDR": "127.0.0.1:0",
            "LAKEHOUSE__EXECUTOR__ADDR": "127.0.0.1:0",
            "LAKEHOUSE__EXECUTOR__FLIGHT_ADDR": "127.0.0.1:0",
            "RUST_BACKTRACE": "1",
            "NO_COLOR": "1",
        }
    )
    env.update(extra or {})
    return env


class LakehouseServer:
    """One `lakehouse up` process on a data dir of its own; restartable on the same dir.
    `env`: extra environment for every start of the server (see `server_env`)."""

    def __init__(self, binary: Path, base_dir: Path, name: str = "server", env: Optional[dict[str, str]] = None):
        self.binary = binary
        self.name = name
        self.extra_env = dict(env or {})
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.listen_file = base_dir / "listen.json"
        self.log_dir = base_dir / "logs"
        self.proc: Optional[subprocess.Popen] = None
        self.http_addr: Optional[str] = None
        self.flight_addr: Optional[str] = None
        self.starts = 0
        self.exit_codes: list[int] = []
        self._conn = None
        self._stderr_path: Optional[Path] = None
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    # -- addresses ----------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"http://{self.http_addr}"

    @property
    def flight_uri(self) -> str:
        return f"grpc://{self.flight_addr}"

    @property
    def bucket(self) -> Path:
        return self.data_dir / "bucket"

    @property
    def catalog_dir(self) -> Path:
        return self.data_dir / "catalog"

    def table_dir(self, table: str) -> Path:
        return self.bucket / "tables" / table

    # -- lifecycle ----------------------------------------------------------------------
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr_tail(self) -> str:
        return tail(self._stderr_path) if self._stderr_path else "(never started)"

    def start(self) -> "LakehouseServer":
        assert not self.running(), f"{self.name} is already running"
        self.listen_file.unlink(missing_ok=True)
        self.starts += 1
        self._stderr_path = self.log_dir / f"stderr.{self.starts}.log"
        stdout_path = self.log_dir / f"stdout.{self.starts}.log"
        with open(stdout_path, "wb") as out, open(self._stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [str(self.binary), "up", "--listen-file", str(self.listen_file)],
                cwd=self.base_dir,
                env=server_env(self.data_dir, self.extra_env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        info = wait_until(
            self._read_listen_file,
            timeout=START_TIMEOUT,
            what=f"{self.listen_file} from `lakehouse up` ({self.name}, start {self.starts})",
            on_timeout=self._abort_start,
        )
        self.http_addr, self.flight_addr = info["http"], info["flight_sql"]
        for addr in (self.http_addr, self.flight_addr):
            assert addr.startswith("127.0.0.1:"), f"listen file holds a non-loopback address: {info}"
        wait_until(
            self.healthy,
            timeout=START_TIMEOUT,
            interval=0.1,
            what=f"GET {self.http_url}/health",
            on_timeout=self._abort_start,
        )
        return self

    def _read_listen_file(self) -> Optional[dict]:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(
                f"`lakehouse up` ({self.name}) exited with {self.proc.returncode} before it was ready.\n"
                f"stderr:\n{self.stderr_tail()}"
            )
        try:
            info = json.loads(self.listen_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as e:
            pytest.fail(f"listen file {self.listen_file} is not JSON ({e}): it must be written whole (tmp + rename)")
        missing = {"http", "flight_sql"} - set(info)
        assert not missing, f"listen file lacks {sorted(missing)}: {info}"
        return info

    def _abort_start(self) -> str:
        self.kill()
        return f"stderr of `lakehouse up`:\n{self.stderr_tail()}"

    def healthy(self) -> bool:
        if not self.running():
            return False
        try:
            return requests.get(f"{self.http_url}/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def _close_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> Optional[int]:
        """Sends `sig` and waits; SIGKILL after `timeout`. Returns the exit code
        (negative: killed by that signal), or None if it was not running."""
        self._close_conn()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
                self.exit_codes.append(self.proc.returncode)
                self.proc = None
                pytest.fail(f"{self.name} did not exit within {timeout:.0f}s of signal {sig}; killed it")
        code = self.proc.returncode
        self.exit_codes.append(code)
        self.proc = None
        return code

    def kill(self) -> Optional[int]:
        """SIGKILL, the way a crash or an OOM kill ends it."""
        return self.stop(signal.SIGKILL)

    def restart(self) -> "LakehouseServer":
        code = self.stop()
        assert code == 0, f"`lakehouse up` exited with {code} on SIGTERM, expected 0.\n{self.stderr_tail()}"
        return self.start()

    # -- CLI ----------------------------------------------------------------------------
    def cli_env(self) -> dict[str, str]:
        env = inherited_env()
        env["NO_COLOR"] = "1"
        if self.http_addr:
            env["LAKEHOUSE_SERVER"] = self.http_url
            env["LAKEHOUSE_FLIGHT_SQL"] = self.flight_uri
        return env

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT, env: Optional[dict] = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.binary), *args],
            cwd=self.base_dir,
            env=env if env is not None else self.cli_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            encoding="utf-8",
            errors="replace",
        )

    def ingest_args(
        self,
        file: os.PathLike | str,
        table: str,
        *,
        mode: Optional[str] = None,
        fmt: Optional[str] = None,
        server: Optional[str] = "default",
        **meta: Optional[str],
    ) -> list[str]:
        """`ingest FILE --table T` with FULL_META, overridden by `meta`; a value of None
        leaves that flag out."""
        values = {**FULL_META, **meta}
        unknown = set(values) - set(FULL_META)
        assert not unknown, f"unknown metadata keys {unknown}"
        args = ["ingest", str(file), "--table", table]
        for key, value in values.items():
            if value is not None:
                args += [META_FLAGS[key], value]
        if mode is not None:
            args += ["--mode", mode]
        if fmt is not None:
            args += ["--format", fmt]
        if server == "default":
            args += ["--server", self.http_url]
        elif server is not None:
            args += ["--server", server]
        return args

    def ingest(
        self, file: os.PathLike | str, table: str, *, check: bool = False, timeout: float = CLI_TIMEOUT, **kw
    ) -> subprocess.CompletedProcess:
        result = self.cli(*self.ingest_args(file, table, **kw), timeout=timeout)
        if check:
            assert_cli_ok(result)
        return result

    def popen_ingest(self, file: os.PathLike | str, table: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(
            [str(self.binary), *self.ingest_args(file, table, **kw)],
            cwd=self.base_dir,
            env=self.cli_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="replace",
        )

    def sql_cli(self, query: str, **kw) -> subprocess.CompletedProcess:
        return self.cli("sql", query, "--server", self.flight_uri, **kw)

    # -- ADBC ---------------------------------------------------------------------------
    def connect(self):
        """A new ADBC Flight SQL connection (autocommit: the server has no transactions)."""
        return flight_sql.connect(
            self.flight_uri,
            db_kwargs={
                adbc_driver_flightsql.DatabaseOptions.TIMEOUT_QUERY.value: QUERY_TIMEOUT_S,
                adbc_driver_flightsql.DatabaseOptions.TIMEOUT_FETCH.value: QUERY_TIMEOUT_S,
                adbc_driver_flightsql.DatabaseOptions.TIMEOUT_UPDATE.value: QUERY_TIMEOUT_S,
            },
            autocommit=True,
        )

    @property
    def conn(self):
        """A connection kept for this run of the server (closed on stop)."""
        if self._conn is None:
            self._conn = self.connect()
        return self._conn

    def sql(self, query: str, params: Optional[Sequence[Any]] = None) -> pa.Table:
        with self.conn.cursor() as cur:
            if params is None:
                cur.execute(query)
            else:
                cur.execute(query, params)
            return cur.fetch_arrow_table()

    def rows(self, query: str, params: Optional[Sequence[Any]] = None) -> list[tuple]:
        return table_rows(self.sql(query, params))

    def count(self, table: str) -> int:
        return int(self.rows(f"SELECT COUNT(*) FROM {table}")[0][0])

    # -- HTTP ---------------------------------------------------------------------------
    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.http_url + path, timeout=HTTP_TIMEOUT, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return requests.post(self.http_url + path, timeout=kw.pop("timeout", CLI_TIMEOUT), **kw)

    def table_info(self, table: str) -> Optional[dict]:
        """GET /v1/tables/{table} as JSON, or None on 404."""
        r = self.get(f"/v1/tables/{table}")
        if r.status_code == 404:
            return None
        assert r.status_code == 200, f"GET /v1/tables/{table}: {r.status_code} {r.text}"
        return r.json()

    def table_names(self) -> set[str]:
        r = self.get("/v1/tables")
        assert r.status_code == 200, f"GET /v1/tables: {r.status_code} {r.text}"
        return table_names(r.json())

    def metrics(self) -> str:
        r = self.get("/metrics")
        assert r.status_code == 200, f"GET /metrics: {r.status_code} {r.text}"
        return r.text

    def metric(self, name: str) -> float:
        """`lakehouse_<name>` on /metrics (a counter's `_total`), summed over its labels."""
        text = self.metrics()
        values = re.findall(rf"^lakehouse_{name}(?:_total)?(?:\{{[^}}]*\}})?\s+(\S+)", text, flags=re.MULTILINE)
        assert values, f"/metrics has no lakehouse_{name}:\n{text[:3000]}"
        return sum(float(v) for v in values)

    def jobs_submitted(self) -> float:
        return self.metric("scheduler_jobs_submitted")

    def assert_healthy(self) -> None:
        assert self.running(), (
            f"{self.name} died (exit {self.proc.returncode if self.proc else None}):\n{self.stderr_tail()}"
        )
        r = self.get("/health")
        assert r.status_code == 200, f"GET /health: {r.status_code} {r.text}"

    def ingest_demo(self) -> None:
        for table in DEMO_TABLES:
            self.ingest(EXAMPLES / f"{table}.csv", table, check=True, **DEMO_META[table])


# --------------------------------------------------------------------------------------
# A cluster of separate role processes


class RoleProcess:
    """One `lakehouse <role>` process with `--data-dir` and `--listen-file` of its own."""

    def __init__(self, binary: Path, base_dir: Path, name: str, args: Sequence[str], env: dict[str, str]):
        self.name = name
        self.dir = base_dir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.listen_file = self.dir / "listen.json"
        self.stderr_path = self.dir / "stderr.log"
        # A restart in the same dir: no stale addresses, the earlier run's log kept.
        self.listen_file.unlink(missing_ok=True)
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [str(binary), *args, "--data-dir", str(self.dir), "--listen-file", str(self.listen_file)],
                cwd=base_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def listening(self, key: str) -> dict:
        """The listen file once it names `key`; fails the test if the process exits first."""

        def read() -> Optional[dict]:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{tail(self.stderr_path)}")
            try:
                info = json.loads(self.listen_file.read_text(encoding="utf-8"))
            except FileNotFoundError:
                return None
            return info if key in info else None

        return wait_until(
            read,
            timeout=START_TIMEOUT,
            what=f"`{key}` in {self.listen_file}",
            on_timeout=lambda: tail(self.stderr_path),
        )

    def addr(self, key: str) -> str:
        return self.listening(key)[key]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=STOP_TIMEOUT)


class LakehouseCluster:
    """Three `lakehouse catalog` nodes, `lakehouse scheduler`, `executors` executors with
    `task_slots` slots each and `lakehouse gateway`, every one its own process on 127.0.0.1
    port 0 sharing one bucket directory. `gateway` is a LakehouseServer pointed at the
    gateway's addresses, for its ingest, ADBC and HTTP helpers. `kill` ends every process."""

    def __init__(self, binary: Path, base_dir: Path, *, executors: int = 2, task_slots: int = 1):
        self.binary = binary
        self.base_dir = base_dir
        self.env = inherited_env()
        self.env.update({"LAKEHOUSE__STORAGE__PRIMARY": str(base_dir / "bucket"), "NO_COLOR": "1"})
        self.executor_count = executors
        self.task_slots = task_slots
        self.roles: list[RoleProcess] = []
        self.catalog_addrs: list[str] = []
        self.scheduler_addr: Optional[str] = None
        self.scheduler: Optional[RoleProcess] = None
        self.executors: list[RoleProcess] = []
        self.gateway = LakehouseServer(binary, base_dir / "client", name="gateway")

    def _spawn(self, name: str, *args: str, env: Optional[dict[str, str]] = None) -> RoleProcess:
        role = RoleProcess(self.binary, self.base_dir, name, args, {**self.env, **(env or {})})
        self.roles.append(role)
        return role

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """A client subcommand of the binary, e.g. `status`."""
        return self.gateway.cli(*args, env=self.env)

    def start(self) -> "LakehouseCluster":
        # Node 1 bootstraps; 2 and 3 join with `lakehouse admin add-node`.
        seed = self._spawn("catalog-1", "catalog", "--node-id", "1", "--listen", "127.0.0.1:0")
        self.catalog_addrs.append(seed.addr("catalog"))
        for node_id in ("2", "3"):
            node = self._spawn(
                f"catalog-{node_id}",
                *("catalog", "--node-id", node_id, "--listen", "127.0.0.1:0"),
                *("--peers", f"1={self.catalog_addrs[0]}"),
            )
            addr = node.addr("catalog")
            assert_cli_ok(
                self.run("admin", "add-node", "--catalog", self.catalog_addrs[0], "--node-id", node_id, "--addr", addr)
            )
            self.catalog_addrs.append(addr)

        self.scheduler = self._spawn("scheduler", "scheduler", "--listen", "127.0.0.1:0")
        self.scheduler_addr = self.scheduler.addr("scheduler")
        for i in range(1, self.executor_count + 1):
            name = f"executor-{i}"
            executor = self._spawn(
                name,
                *("executor", "--scheduler", self.scheduler_addr, "--flight-port", "0", "--grpc-port", "0"),
                *("--work-dir", str(self.base_dir / name / "work")),
                env={"LAKEHOUSE__EXECUTOR__CONCURRENT_TASKS": str(self.task_slots)},
            )
            executor.listening("tasks_completed")
            self.executors.append(executor)

        peers = ",".join(f"{i}={addr}" for i, addr in enumerate(self.catalog_addrs, start=1))
        gateway = self._spawn(
            "gateway",
            *("gateway", "--catalog-peers", peers, "--scheduler", self.scheduler_addr),
            *("--http-addr", "127.0.0.1:0", "--flight-sql-addr", "127.0.0.1:0"),
        )
        info = gateway.listening("flight_sql")
        self.gateway.http_addr, self.gateway.flight_addr = info["http"], info["flight_sql"]

        def healthy() -> bool:
            if gateway.proc.poll() is not None:
                pytest.fail(f"gateway exited with {gateway.proc.returncode}:\n{tail(gateway.stderr_path)}")
            try:
                return self.gateway.get("/health").status_code == 200
            except requests.RequestException:
                return False

        wait_until(
            healthy,
            timeout=START_TIMEOUT,
            interval=0.1,
            what=f"GET {self.gateway.http_url}/health",
            on_timeout=lambda: tail(gateway.stderr_path),
        )
        return self

    def restart_scheduler(self) -> RoleProcess:
        """SIGKILLs the scheduler and starts a new one on the same address, where the
        executors and the gateway look for it; it knows no jobs and no executors until
        their next heartbeat."""
        assert self.scheduler is not None and self.scheduler_addr is not None, "the cluster is not started"
        self.scheduler.kill()
        self.roles.remove(self.scheduler)
        self.scheduler = self._spawn("scheduler", "scheduler", "--listen", self.scheduler_addr)
        assert self.scheduler.addr("scheduler") == self.scheduler_addr
        return self.scheduler

    def log_tails(self, limit: int = 2500) -> str:
        """The end of every role's stderr, to say why a test of the cluster failed."""
        return "\n".join(f"--- {role.name} ---\n{tail(role.stderr_path, limit)}" for role in self.roles)

    def tasks_completed(self) -> list[int]:
        """Each executor's completed tasks, from its listen file (refreshed every 250 ms)."""
        return [int(e.listening("tasks_completed")["tasks_completed"]) for e in self.executors]

    def tasks_running(self) -> list[int]:
        """Each executor's running tasks, from its listen file (refreshed every 250 ms)."""
        return [int(e.listening("tasks_running")["tasks_running"]) for e in self.executors]

    def kill(self) -> None:
        """SIGKILL every role, clients before servers; safe to call after a failed start."""
        self.gateway.stop()
        for role in reversed(self.roles):
            try:
                role.kill()
            except Exception:
                pass


# --------------------------------------------------------------------------------------
# etcd


def free_port() -> int:
    """A loopback port free right now (released again before it is used)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def etcd_bin() -> Path:
    """ETCD_BIN, else `etcd` on the PATH (Debian's etcd-server puts it in /usr/bin)."""
    found = os.environ.get("ETCD_BIN") or shutil.which("etcd")
    if not found:
        pytest.fail("no `etcd` binary on the PATH: install Debian's etcd-server (scripts/setup.sh) or set ETCD_BIN")
    return Path(found)


class EtcdServer:
    """A real one-member etcd on free loopback ports with a data dir under `base_dir`;
    `kill` ends it."""

    def __init__(self, base_dir: Path):
        base_dir.mkdir(parents=True, exist_ok=True)
        self.log = base_dir / "etcd.log"
        client_url = f"http://127.0.0.1:{free_port()}"
        peer_url = f"http://127.0.0.1:{free_port()}"
        self.endpoint = client_url.removeprefix("http://")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(etcd_bin()),
                    *("--name", "lakehouse-test", "--data-dir", str(base_dir / "data")),
                    *("--listen-client-urls", client_url, "--advertise-client-urls", client_url),
                    *("--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url),
                    *("--initial-cluster", f"lakehouse-test={peer_url}"),
                ],
                cwd=base_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def healthy() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"etcd exited with {self.proc.returncode}:\n{tail(self.log)}")
            try:
                return requests.get(f"{client_url}/health", timeout=2).json().get("health") == "true"
            except (requests.RequestException, ValueError):
                return False

        wait_until(healthy, timeout=START_TIMEOUT, interval=0.1, what=f"etcd at {client_url}", on_timeout=self._tail)

    def _tail(self) -> str:
        self.kill()
        return tail(self.log)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=STOP_TIMEOUT)


# --------------------------------------------------------------------------------------
# Results and comparisons


def assert_cli_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (
        f"`lakehouse {' '.join(result.args[1:])}` exited with {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


def assert_cli_failed(result: subprocess.CompletedProcess) -> str:
    """Non-zero exit, no crash, something on stderr; returns stderr."""
    assert result.returncode != 0, (
        f"`lakehouse {' '.join(map(str, result.args[1:]))}` succeeded but should have failed\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert result.returncode > 0, f"killed by signal {-result.returncode}:\n{result.stderr}"
    assert "panicked at" not in result.stderr, f"the CLI panicked:\n{result.stderr}"
    assert result.stderr.strip(), f"exit {result.returncode} with nothing on stderr; stdout:\n{result.stdout}"
    return result.stderr


def table_names(listing: Any) -> set[str]:
    """GET /v1/tables: a JSON list of names or of objects with a name (or {"tables": [...]})."""
    if isinstance(listing, dict) and "tables" in listing:
        listing = listing["tables"]
    assert isinstance(listing, list), f"GET /v1/tables is not a JSON list: {listing!r}"
    return {item if isinstance(item, str) else item["name"] for item in listing}


def table_rows(table: pa.Table) -> list[tuple]:
    columns = [column.to_pylist() for column in table.columns]
    return list(zip(*columns, strict=True)) if columns else []


def normalise(value: Any) -> Any:
    """One representation for values that two engines may type differently: numbers as
    float, dates and timestamps as ISO text."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float, decimal.Decimal)):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _sort_key(row: tuple) -> tuple:
    key = []
    for v in row:
        if v is None:
            key.append((0, ""))
        elif isinstance(v, float):
            key.append((1, round(v, 6)))
        else:
            key.append((2, str(v)))
    return tuple(key)


def same_value(a: Any, b: Any, *, rel_tol: float = 1e-9, abs_tol: float = 1e-9) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol) or (math.isnan(a) and math.isnan(b))
    return a == b


def assert_same_rows(
    actual: Iterable[tuple],
    expected: Iterable[tuple],
    *,
    ordered: bool,
    context: str = "",
    rel_tol: float = 1e-9,
    abs_tol: float = 1e-9,
) -> None:
    """Same rows after `normalise`, in the same order if `ordered`; numbers within `rel_tol`
    or `abs_tol` (an engine that averages decimals as decimal(p, 6) differs from one that
    averages them as doubles in the 6th decimal place)."""
    got = [tuple(normalise(v) for v in row) for row in actual]
    want = [tuple(normalise(v) for v in row) for row in expected]
    if not ordered:
        got.sort(key=_sort_key)
        want.sort(key=_sort_key)
    assert len(got) == len(want), (
        f"{context}: {len(got)} rows, expected {len(want)}\n got: {got[:10]}\nwant: {want[:10]}"
    )
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert len(g) == len(w), f"{context}: row {i} has {len(g)} columns, expected {len(w)}"
        assert all(same_value(x, y, rel_tol=rel_tol, abs_tol=abs_tol) for x, y in zip(g, w, strict=True)), (
            f"{context}: row {i} differs\n got: {g}\nwant: {w}"
        )


# --------------------------------------------------------------------------------------
# Generated files


def write_rows_csv(path: Path, first_id: int, count: int, *, pad: int = 0) -> Path:
    """`id,name,amount,city,note` rows, ids first_id..first_id+count-1; `pad` adds that many
    characters to each note (to size big files)."""
    cities = ["Lisbon", "Kraków", "Hà Nội", "São Paulo", "Zürich", "Dublin"]
    filler = "x" * pad
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("id,name,amount,city,note\n")
        chunk: list[str] = []
        for i in range(first_id, first_id + count):
            chunk.append(f'{i},name {i},{(i % 100000) / 100:.2f},{cities[i % 6]},"row {i}, {filler}"\n')
            if len(chunk) >= 50000:
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))
    return path


def write_big_csv(path: Path, target_bytes: int, first_id: int = 1) -> int:
    """Writes rows like write_rows_csv until the file reaches `target_bytes`; returns rows."""
    pad = 40
    approx_row = len(
        f'{first_id + 1_000_000},name {first_id + 1_000_000},1234.56,São Paulo,"row 1000000, {"x" * pad}"\n'
    )
    rows = max(1, target_bytes // approx_row)
    write_rows_csv(path, first_id, rows, pad=pad)
    return rows


def parse_timestamp(value: Any) -> dt.datetime:
    """An RFC 3339 text or epoch seconds / milliseconds, as an aware UTC datetime."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value
        return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def files_under(path: Path) -> list[Path]:
    """Regular files below `path` (empty directories left behind do not count)."""
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def parse_duration_seconds(value: Any) -> Optional[float]:
    """'24h', '1day', '86400s', '1d 0h', 86400 → 86400.0 (None if unreadable)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        return None
    units = {
        "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
        "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
        "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
        "d": 86400, "day": 86400, "days": 86400,
        "w": 604800, "week": 604800, "weeks": 604800,
    }  # fmt: skip
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value.strip().lower())
    if not parts or re.sub(r"[\d.\sa-z]", "", value.lower()):
        return None
    total = 0.0
    for number, unit in parts:
        if unit not in units and unit != "":
            return None
        total += float(number) * units.get(unit or "s", 1)
    return total
