"""Vector indexes with real clients (issue 6): `lakehouse up` plus a second executor
process, one task slot each. `lakehouse index create` embeds the demo candidates'
skills as Ballista jobs whose tasks run on both executors; ADBC joins
`vector_search(...)` with the table (plain and filtered); `/v1/search` agrees; after a
restart the index loads back from its sidecars and answers the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from harness import DEMO_META, EXAMPLES, LakehouseServer, RoleProcess, assert_cli_ok, wait_until

QUERY = "rust engineer in Austin"
JOIN = f"""SELECT c.candidate_id, c.full_name, s.score
FROM vector_search('cand_idx', '{QUERY}', 5) s
JOIN candidates c ON c.candidate_id = s.doc_id
ORDER BY s.score DESC"""


@pytest.fixture(scope="module")
def indexed(lakehouse_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LakehouseServer, RoleProcess]]:
    base = tmp_path_factory.mktemp("vectors")
    # 60 candidates in tasks of 20 rows: three embed tasks and three shard builds.
    slots = {"LAKEHOUSE__EXECUTOR__CONCURRENT_TASKS": "1", "LAKEHOUSE__VECTOR__ROWS_PER_TASK": "20"}
    server = LakehouseServer(lakehouse_bin, base / "up", name="vectors", env=slots).start()
    scheduler = json.loads(server.listen_file.read_text(encoding="utf-8"))["scheduler"]
    env = {**server_env_for_role(server), **slots}
    executor = RoleProcess(
        lakehouse_bin,
        base,
        "executor-2",
        ("executor", "--scheduler", scheduler, "--flight-port", "0", "--grpc-port", "0", "--work-dir", str(base / "executor-2" / "work")),
        env,
    )
    try:
        executor.listening("tasks_completed")
        server.ingest(EXAMPLES / "candidates.csv", "candidates", check=True, **DEMO_META["candidates"])
        yield server, executor
    finally:
        executor.kill()
        server.stop()


def server_env_for_role(server: LakehouseServer) -> dict[str, str]:
    """The environment of a role process sharing `server`'s bucket."""
    env = server.cli_env()
    env["LAKEHOUSE__STORAGE__PRIMARY"] = str(server.bucket)
    return env


def test_index_create_runs_on_both_executors_and_sql_joins_the_results(indexed) -> None:
    server, executor = indexed
    result = server.cli("index", "create", "cand_idx", "--table", "candidates", "--column", "skills", timeout=600)
    assert_cli_ok(result)
    assert "cand_idx version 1 ready: 60 chunks in 3 shards" in result.stdout, result.stdout

    # Six tasks (three embeds, three builds) with one slot on each executor: both took some.
    # Its listen file is refreshed every 250 ms.
    def second_executor_tasks() -> int | None:
        done = int(executor.listening("tasks_completed")["tasks_completed"])
        return done or None

    completed = wait_until(second_executor_tasks, timeout=5, interval=0.1, what="tasks on the second executor")
    assert completed < 6, f"the second executor ran all {completed} tasks"

    listed = server.cli("index", "list")
    assert_cli_ok(listed)
    assert "v1  ready" in listed.stdout and "candidates.skills" in listed.stdout, listed.stdout
    shards = list((server.bucket / "indexes" / "cand_idx" / "v1").iterdir())
    assert sorted(p.suffix for p in shards) == [".hnsw"] * 3 + [".parquet"] * 3, shards

    joined = server.sql(JOIN)
    assert joined.num_rows == 5
    scores = joined.column("score").to_pylist()
    assert scores == sorted(scores, reverse=True)

    # A filter on the source table still returns k rows (Austin has 4 candidates).
    filtered = server.sql(
        "SELECT c.city FROM vector_search('cand_idx', 'rust engineer', 4, 'city = ''Austin''') s "
        "JOIN candidates c ON c.candidate_id = s.doc_id"
    )
    assert filtered.column("city").to_pylist() == ["Austin"] * 4

    # /v1/search is the same search (candidates with the same skills tie, in any order).
    answer = server.post("/v1/search", json={"index": "cand_idx", "query": QUERY, "k": 5})
    assert answer.status_code == 200, answer.text
    assert sorted(r["doc_id"] for r in answer.json()["results"]) == sorted(joined.column("candidate_id").to_pylist())


def test_bad_searches_are_refused_with_the_reason(indexed) -> None:
    server, _ = indexed
    for body, status, words in [
        ({"index": "nope", "query": "x"}, 404, "no vector index named `nope`"),
        ({"index": "cand_idx", "query": "x", "k": 0}, 400, "ask for 1 to 10000"),
        ({"index": "cand_idx", "query": "x", "k": 10001}, 400, "ask for 1 to 10000"),
        ({"index": "cand_idx", "query": ""}, 400, "query text is empty"),
    ]:
        answer = server.post("/v1/search", json=body)
        assert answer.status_code == status, (body, answer.text)
        assert words in answer.json()["detail"], (body, answer.text)
    refused = server.cli("index", "create", "bad", "--table", "candidates", "--column", "years_experience")
    assert refused.returncode != 0 and "not text" in refused.stderr, refused.stderr


def test_indexes_load_back_after_a_restart(indexed) -> None:
    server, _ = indexed
    before = server.sql(JOIN)
    server.restart()
    after = server.sql(JOIN)
    assert after.column("candidate_id").to_pylist() == before.column("candidate_id").to_pylist()
    # Loaded lazily by the first search after the restart, with its load time.
    assert "loaded shard" in server.stderr_tail() and "load_ms" in server.stderr_tail()
