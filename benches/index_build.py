"""Embedding throughput through the system: `lakehouse index create` on one executor
(`lakehouse up`'s own) and then with a second `lakehouse executor` process joined, against
the candle model alone on the same texts, in the same run.

Usage: bash benches/index_build.sh [--rows 4000] [--rows-per-task 250]
   or: python benches/index_build.py --bin target/release/lakehouse
       --throughput-bin target/release/examples/throughput [same options]

Texts: the `throughput` example's chunks (126 common words, exactly 128 tokens each;
`--texts-out`), one row per text, so every row is one chunk (under vector.chunk_size) and
the candle-alone number is on the very same chunks. A build is posted to `/v1/indexes`;
its NDJSON progress is timed as it arrives: embedding ends with the `embedding` event that
carries the chunk count, then the shard builds follow. Chunks/s = chunks / embedding
seconds. Each executor has its default task slots (one per core); the second executor's
share is the change of the `tasks_completed` in its listen file.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from ingest_query import start_server

BUILD_TIMEOUT_S = 3600


def candle_alone(throughput_bin: str, rows: int, texts: Path) -> dict:
    out = subprocess.run(
        [throughput_bin, "--chunks", str(rows), "--batch", "32", "--texts-out", str(texts)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def ingest(binary: str, http: str, texts: Path, table_csv: Path) -> None:
    with table_csv.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["doc_id", "body"])
        for i, text in enumerate(json.loads(texts.read_text(encoding="utf-8"))):
            writer.writerow([i, text])
    subprocess.run(
        [binary, "ingest", str(table_csv), "--table", "docs", "--owner", "bench", "--sensitivity", "internal",
         "--lineage", "generated", "--freshness-sla", "24h", "--description", "embedding benchmark",
         "--tags", "bench", "--server", f"http://{http}"],
        check=True, stdout=subprocess.DEVNULL,
    )


def create_index(http: str, name: str) -> dict:
    """Posts the build and times its progress events."""
    body = json.dumps({"name": name, "table": "docs", "column": "body", "key": "doc_id"}).encode()
    request = urllib.request.Request(
        f"http://{http}/v1/indexes", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    started = time.perf_counter()
    embedded_at, chunks, parts, last = None, 0, 0, {}
    with urllib.request.urlopen(request, timeout=BUILD_TIMEOUT_S) as response:
        for line in response:
            last = json.loads(line)
            if last["event"] == "started":
                parts = last["parts"]
            elif last["event"] == "embedding" and last["chunks"]:
                embedded_at, chunks = time.perf_counter(), last["chunks"]
    total = time.perf_counter() - started
    if last.get("event") != "done" or embedded_at is None:
        raise SystemExit(f"index {name} did not build: {last}")
    embed_s = embedded_at - started
    return {
        "index": name,
        "chunks": chunks,
        "embed_tasks": parts,
        "shards": len(last["version"]["shards"]),
        "embed_s": embed_s,
        "build_s": total - embed_s,
        "total_s": total,
        "chunks_per_s": chunks / embed_s,
    }


def start_executor(binary: str, tmp: Path, scheduler: str, bucket: Path) -> tuple[subprocess.Popen, Path]:
    home = tmp / "executor-2"
    home.mkdir()
    listen = home / "listen.json"
    env = {**os.environ, "LAKEHOUSE__STORAGE__PRIMARY": str(bucket)}
    with (home / "stderr.log").open("wb") as err:
        proc = subprocess.Popen(
            [binary, "executor", "--scheduler", scheduler, "--flight-port", "0", "--grpc-port", "0",
             "--work-dir", str(home / "work"), "--data-dir", str(home), "--listen-file", str(listen)],
            env=env, stderr=err, stdout=subprocess.DEVNULL, cwd=home,
        )
    tasks_completed(proc, listen, home)
    return proc, listen


def tasks_completed(proc: subprocess.Popen, listen: Path, home: Path, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"executor exited:\n{(home / 'stderr.log').read_text(errors='replace')[-3000:]}")
        try:
            return int(json.loads(listen.read_text())["tasks_completed"])
        except (FileNotFoundError, KeyError, json.JSONDecodeError):
            time.sleep(0.1)
    raise SystemExit(f"no tasks_completed in {listen} after {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--throughput-bin", required=True)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--rows-per-task", type=int, default=250, help="vector.rows_per_task: embed tasks of this many rows")
    args = parser.parse_args()
    os.environ["LAKEHOUSE__VECTOR__ROWS_PER_TASK"] = str(args.rows_per_task)

    with tempfile.TemporaryDirectory(prefix="index-build-") as tmp:
        tmp = Path(tmp)
        texts = tmp / "texts.json"
        alone = candle_alone(args.throughput_bin, args.rows, texts)
        proc, addrs = start_server(args.bin, tmp)
        executor = None
        try:
            ingest(args.bin, addrs["http"], texts, tmp / "docs.csv")
            one = create_index(addrs["http"], "one_executor")
            executor, listen = start_executor(args.bin, tmp, addrs["scheduler"], tmp / "data" / "bucket")
            before = tasks_completed(executor, listen, tmp / "executor-2")
            two = create_index(addrs["http"], "two_executors")
            time.sleep(0.6)  # the listen file is refreshed every 250 ms
            two["second_executor_tasks"] = tasks_completed(executor, listen, tmp / "executor-2") - before
        finally:
            if executor is not None:
                executor.send_signal(signal.SIGTERM)
                executor.wait(timeout=30)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    for run in (alone, one, two):
        print(json.dumps(run))
    print(f"\n{args.rows} rows of 128 tokens (one chunk each), {args.rows_per_task} rows per embed task, batches of 32\n")
    print("| run | chunks | embed s | chunks/s | ÷ candle alone | shard build s | tasks on the 2nd executor |")
    print("|---|---|---|---|---|---|---|")
    base = alone["chunks_per_s"]
    print(f"| candle alone (`throughput` example, one process) | {alone['chunks']} | {alone['seconds']:.1f} | {base:.1f} | 1.00× | – | – |")
    for label, run in (("index create, 1 executor", one), ("index create, 2 executors", two)):
        share = run.get("second_executor_tasks", "–")
        share = f"{share} of {run['embed_tasks'] + run['shards']}" if share != "–" else share
        print(
            f"| {label} | {run['chunks']} | {run['embed_s']:.1f} | {run['chunks_per_s']:.1f} | "
            f"{run['chunks_per_s'] / base:.2f}× | {run['build_s']:.1f} | {share} |"
        )


if __name__ == "__main__":
    main()
