"""Vector search benchmark: the frozen HNSW (lakehouse-vector) against hnswlib on
the same generated vectors in the same run.

Usage: python benches/vector.py --bench-bin target/release/examples/hnsw_bench
       [--n 100000] [--dims 768] [--queries 500] [--threads 2] [--reps 5]

Data: `--clusters` Gaussian clusters, L2-normalised, seeded; queries are new points
from the same clusters; the truth is the exact 10 nearest by cosine. Both indexes
use M=16, ef_construction=200 and search single-threaded, one query at a time.
Prints a Markdown table; the ratio is ours / hnswlib p50 at matched recall
(lower is better).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import hnswlib
import numpy as np

K = 10
M = 16
EF_CONSTRUCTION = 200
EFS = [10, 16, 24, 32, 40, 48, 64, 96, 128, 192, 256]


def generate(out: Path, n: int, dims: int, queries: int, clusters: int) -> None:
    rng = np.random.default_rng(42)
    centres = rng.standard_normal((clusters, dims), dtype=np.float32)

    def points(count: int) -> np.ndarray:
        labels = rng.integers(0, clusters, count)
        x = centres[labels] + rng.standard_normal((count, dims), dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    base, query = points(n), points(queries)
    similarity = query @ base.T
    truth = np.argsort(-similarity, axis=1)[:, :K].astype(np.uint32)
    base.astype("<f4").tofile(out / "base.f32")
    query.astype("<f4").tofile(out / "queries.f32")
    truth.astype("<u4").tofile(out / "truth.u32")
    (out / "meta.txt").write_text(f"{dims} {K}\n")


def run_ours(bench_bin: str, data: Path, threads: int, reps: int) -> list[dict]:
    efs = ",".join(map(str, EFS))
    out = subprocess.run([bench_bin, str(data), str(threads), efs, str(reps)], check=True, capture_output=True, text=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def run_hnswlib(data: Path, dims: int, threads: int, reps: int) -> list[dict]:
    base = np.fromfile(data / "base.f32", dtype="<f4").reshape(-1, dims)
    queries = np.fromfile(data / "queries.f32", dtype="<f4").reshape(-1, dims)
    truth = np.fromfile(data / "truth.u32", dtype="<u4").reshape(-1, K)
    events = []
    index = hnswlib.Index(space="l2", dim=dims)
    index.init_index(max_elements=len(base), M=M, ef_construction=EF_CONSTRUCTION, random_seed=100)
    index.set_num_threads(threads)
    start = time.perf_counter()
    index.add_items(base, np.arange(len(base)))
    seconds = time.perf_counter() - start
    saved = data / "hnswlib.bin"
    index.save_index(str(saved))
    # The saved index is the graph plus each vector and its 8-byte label.
    graph_bytes = saved.stat().st_size - len(base) * (dims * 4 + 8)
    events.append({"event": "build", "threads": threads, "seconds": round(seconds, 2), "graph_bytes": graph_bytes})
    index.set_num_threads(1)
    rows = [q.reshape(1, -1) for q in queries]
    for ef in EFS:
        index.set_ef(ef)
        for rep in range(reps):
            micros, found = [], 0
            for row, expected in zip(rows, truth):
                start = time.perf_counter()
                labels, _ = index.knn_query(row, k=K)
                micros.append((time.perf_counter() - start) * 1e6)
                found += len(np.intersect1d(labels[0], expected))
            micros.sort()
            events.append(
                {
                    "event": "search",
                    "ef": ef,
                    "rep": rep,
                    "recall": found / truth.size,
                    "p50_us": statistics.median(micros),
                    "p99_us": micros[round((len(micros) - 1) * 0.99)],
                }
            )
    # Python's share of each call: the same call on a one-vector index.
    tiny = hnswlib.Index(space="l2", dim=dims)
    tiny.init_index(max_elements=1, M=M, ef_construction=EF_CONSTRUCTION)
    tiny.add_items(base[:1])
    tiny.set_num_threads(1)
    overhead = []
    for row in rows:
        start = time.perf_counter()
        tiny.knn_query(row, k=1)
        overhead.append((time.perf_counter() - start) * 1e6)
    events.append({"event": "call_overhead", "p50_us": statistics.median(overhead)})
    return events


def summarise(events: list[dict]) -> dict[int, dict]:
    """Per ef: recall, best and median p50 over the repetitions, median p99."""
    by_ef: dict[int, list[dict]] = {}
    for e in events:
        if e["event"] == "search":
            by_ef.setdefault(e["ef"], []).append(e)
    return {
        ef: {
            "recall": runs[0]["recall"],
            "p50_best": min(r["p50_us"] for r in runs),
            "p50_median": statistics.median(r["p50_us"] for r in runs),
            "p99_median": statistics.median(r["p99_us"] for r in runs),
        }
        for ef, runs in by_ef.items()
    }


def first_reaching(summary: dict[int, dict], recall: float) -> tuple[int, dict] | None:
    for ef in sorted(summary):
        if summary[ef]["recall"] >= recall:
            return ef, summary[ef]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench-bin", required=True)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=768)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2, help="build threads")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vector-bench-") as tmp:
        data = Path(tmp)
        generate(data, args.n, args.dims, args.queries, args.clusters)
        ours = run_ours(args.bench_bin, data, args.threads, args.reps)
        peer = run_hnswlib(data, args.dims, args.threads, args.reps)

    for e in ours + peer:
        if e["event"] != "search":
            print(json.dumps(e))
    s_ours, s_peer = summarise(ours), summarise(peer)
    print(f"\n{args.n} x {args.dims}, {args.queries} queries, k={K}, M={M}, ef_construction={EF_CONSTRUCTION}, {args.reps} reps")
    print("\n| ef | ours recall@10 | ours p50 best / median (µs) | ours p99 (µs) | hnswlib recall@10 | hnswlib p50 best / median (µs) | hnswlib p99 (µs) |")
    print("|---|---|---|---|---|---|---|")
    for ef in EFS:
        a, b = s_ours[ef], s_peer[ef]
        print(
            f"| {ef} | {a['recall']:.4f} | {a['p50_best']:.0f} / {a['p50_median']:.0f} | {a['p99_median']:.0f} "
            f"| {b['recall']:.4f} | {b['p50_best']:.0f} / {b['p50_median']:.0f} | {b['p99_median']:.0f} |"
        )
    print("\n| recall target | ours (ef, p50 median) | hnswlib (ef, p50 median) | ratio ours / hnswlib |")
    print("|---|---|---|---|")
    for target in (0.95, 0.99):
        a, b = first_reaching(s_ours, target), first_reaching(s_peer, target)
        if a is None or b is None:
            print(f"| {target} | {a and a[0]} | {b and b[0]} | not reached by both |")
            continue
        ratio = a[1]["p50_median"] / b[1]["p50_median"]
        print(f"| {target} | ef {a[0]}, {a[1]['p50_median']:.0f} µs | ef {b[0]}, {b[1]['p50_median']:.0f} µs | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
