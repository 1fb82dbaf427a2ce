"""Faults in the cluster of separate role processes (issue 5): three catalog nodes, a
scheduler, two executors with one task slot each and a gateway, on loopback port 0.

- An executor is SIGKILLed while a query runs on both: the query finishes on the other
  executor with the right answer, or fails with an error that is not the client's own
  timeout, well within that timeout — it never hangs. Then new queries work.
- An executor is SIGKILLed while it runs the only task left and the other executor is
  idle: the lost task is handed to the idle one and the query answers. (Ballista 54.1
  resets a lost executor's tasks but offers them to nobody until some other task reports;
  with every other executor idle, nothing reports and the query hung — see
  `scheduler/src/executor_loss.rs`.)
- The scheduler is SIGKILLed mid-query and started again on its address: the client gets
  an error naming the scheduler at once, not a hang; once the executors have
  re-registered with the new scheduler, queries work again. (Not checked: that both
  executors get tasks again. Both re-register, but in one run of two the executor that was
  still running the lost job's task got none from the new scheduler for 40 s.)

The query is a self-join of a generated table on a low-cardinality key: (N/20)² matches
per key, long enough in a debug build (~15 s on two idle cores) to be mid-flight when
the fault comes; each test checks it still runs at that moment.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from harness import LakehouseCluster, RoleProcess, table_rows, wait_until, write_rows_csv

ROWS = 100_000
JOIN = """SELECT a.id % 10 AS k, COUNT(*) AS n
FROM big a JOIN big b ON a.id % 20 = b.id % 20
GROUP BY a.id % 10"""
# ids 1..ROWS: every row of `a` matches the ROWS/20 rows of `b` with its residue.
EXPECTED = sorted((k, (ROWS // 10) * (ROWS // 20)) for k in range(10))

# Every row has the same join key: the hash join runs as one task on one executor while
# the other has nothing to do. SKEWED_ROWS² matches: ~15 s in a debug build on two idle cores.
SKEWED_ROWS = 60_000
SKEWED = f"""SELECT COUNT(*) AS n, SUM(a.id - b.id) AS d
FROM big a JOIN big b ON a.id / {ROWS * 10} = b.id / {ROWS * 10}
WHERE a.id <= {SKEWED_ROWS} AND b.id <= {SKEWED_ROWS}"""

# When the fault comes, after the query started.
FAULT_AFTER_S = 2.0
# The scheduler declares a silent executor dead after 15 s and the query's remaining
# work then runs on one executor; well under the client's 120 s timeout, so a hang
# cannot pass for an answer.
QUERY_BOUND_S = 90.0
# Executors heartbeat every 3 s: a restarted scheduler knows them again within that.
RECOVERY_BOUND_S = 60.0


class BackgroundQuery:
    """A query on a connection of its own in a thread; `result` or `error` once done."""

    def __init__(self, cluster: LakehouseCluster, query: str):
        self.result: Optional[list[tuple]] = None
        self.error: Optional[BaseException] = None
        self.elapsed: Optional[float] = None
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(cluster, query), daemon=True)
        self._thread.start()

    def _run(self, cluster: LakehouseCluster, query: str) -> None:
        try:
            with cluster.gateway.connect() as conn, conn.cursor() as cur:
                cur.execute(query)
                self.result = table_rows(cur.fetch_arrow_table())
        except BaseException as e:  # noqa: BLE001 — reported by the test
            self.error = e
        finally:
            self.elapsed = time.monotonic() - self.started

    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float, cluster: LakehouseCluster) -> None:
        """Fails the test, with the roles' logs, if the query is still running after
        `timeout` seconds."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            pytest.fail(f"the query hung: still running {timeout:.0f}s after the fault\n{cluster.log_tails()}")


@pytest.fixture
def cluster(lakehouse_bin: Path, tmp_path: Path) -> Iterator[LakehouseCluster]:
    cluster = LakehouseCluster(lakehouse_bin, tmp_path / "cluster", executors=2, task_slots=1)
    try:
        cluster.start()
        csv = write_rows_csv(tmp_path / "big.csv", 1, ROWS)
        cluster.gateway.ingest(csv, "big", check=True)
        yield cluster
    finally:
        cluster.kill()


def start_mid_flight(cluster: LakehouseCluster) -> BackgroundQuery:
    query = BackgroundQuery(cluster, JOIN)
    time.sleep(FAULT_AFTER_S)
    assert query.running(), (
        f"the query ended {query.elapsed}s in, before the fault: make it longer "
        f"(result {query.result}, error {query.error})"
    )
    return query


def answer_soon(cluster: LakehouseCluster, query: str, bound: float) -> Any:
    """Runs `query` until it answers (a restarted role may refuse the first tries);
    bounded by `bound` seconds in all."""
    errors: list[str] = []

    def attempt():
        try:
            return cluster.gateway.sql(query)
        except Exception as e:  # noqa: BLE001 — listed if it never answers
            errors.append(str(e))
            return None

    return wait_until(attempt, timeout=bound, interval=1.0, what=f"an answer to {query}",
                      on_timeout=lambda: "\n".join(errors[-3:]))


def test_executor_killed_mid_query_is_retried_or_fails_clearly(cluster):
    query = start_mid_flight(cluster)
    killed_at = time.monotonic()
    cluster.executors[0].kill()
    query.wait(QUERY_BOUND_S, cluster)
    took = time.monotonic() - killed_at
    if query.error is None:
        # Retried: the dead executor's tasks ran again on the other one.
        assert sorted(query.result) == EXPECTED
    else:
        message = str(query.error)
        assert "deadline exceeded" not in message.lower(), f"the client gave up waiting ({took:.0f}s): {message}"
        assert "executor" in message.lower(), f"an unclear error after {took:.0f}s: {message}"
    print(f"executor killed mid-query: {'answered' if query.error is None else 'failed'} {took:.1f}s later")

    # The surviving executor answers new queries, the join included.
    assert table_rows(answer_soon(cluster, "SELECT COUNT(*) FROM big", RECOVERY_BOUND_S)) == [(ROWS,)]
    assert sorted(cluster.gateway.rows(JOIN)) == EXPECTED


def test_executor_killed_while_the_other_is_idle_hands_its_task_over(cluster):
    query = BackgroundQuery(cluster, SKEWED)

    def busy_executor() -> Optional[RoleProcess]:
        """The executor running the one task while the other runs none, for a second."""
        running = cluster.tasks_running()
        if sorted(running) != [0, 1]:
            return None
        time.sleep(1.0)
        return cluster.executors[running.index(1)] if cluster.tasks_running() == running else None

    busy = wait_until(busy_executor, timeout=60.0, interval=0.25,
                      what="one executor running the skewed join while the other is idle",
                      on_timeout=lambda: f"tasks running: {cluster.tasks_running()}; query: {query.result} {query.error}")
    assert query.running(), (
        f"the query ended before the fault ({query.elapsed}s): make it longer "
        f"(result {query.result}, error {query.error})"
    )
    killed_at = time.monotonic()
    busy.kill()
    query.wait(QUERY_BOUND_S, cluster)
    assert query.error is None, f"the lost task was not handed over: {query.error}"
    assert query.result == [(SKEWED_ROWS * SKEWED_ROWS, 0)]
    print(f"busy executor killed: answered {time.monotonic() - killed_at:.1f}s later on the idle one")


def test_scheduler_restarted_mid_query_gives_a_clear_error(cluster):
    query = start_mid_flight(cluster)
    restarted_at = time.monotonic()
    cluster.restart_scheduler()
    # The gateway follows the job on the scheduler's status stream, which breaks at once.
    query.wait(30.0, cluster)
    took = time.monotonic() - restarted_at
    assert query.error is not None, f"the query answered {query.result} across a scheduler restart"
    message = str(query.error)
    assert "scheduler" in message and "run the query again" in message, message
    print(f"scheduler restarted mid-query: the client's error came {took:.1f}s later")

    # The executors re-register on their next heartbeat; then queries work again.
    assert table_rows(answer_soon(cluster, "SELECT COUNT(*) FROM big", RECOVERY_BOUND_S)) == [(ROWS,)]
    assert sorted(cluster.gateway.rows(JOIN)) == EXPECTED
