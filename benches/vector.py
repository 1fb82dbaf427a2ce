"""Vector search benchmark: the frozen HNSW (lakehouse-vector) against hnswlib and
faiss-cpu's IndexHNSWFlat on the same generated vectors in the same run.

Usage: python benches/vector.py --bench-bin target/release/examples/hnsw_bench
       [--n 100000] [--dims 768] [--queries 500] [--threads 2] [--reps 5]

Data: `--clusters` Gaussian clusters, L2-normalised, seeded; queries are new points
from the same clusters; the truth is the exact 10 nearest by cosine. Every index
uses M=16, ef_construction=200, builds on `--threads` threads and searches
single-threaded, one query at a time. Ours runs twice: one shard, and two half
shards built at once on one thread each and searched one after the other with
their top 10 merged (two executors on this machine). Prints Markdown tables;
ratios are p50 at matched recall and build seconds (lower is better).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import faiss
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


def run_ours(bench_bin: str, data: Path, threads: int, reps: int, shards: int) -> list[dict]:
    efs = ",".join(map(str, EFS))
    cmd = [bench_bin, str(data), str(threads), efs, str(reps), "--shards", str(shards)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def load(data: Path, dims: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    base = np.fromfile(data / "base.f32", dtype="<f4").reshape(-1, dims)
    queries = np.fromfile(data / "queries.f32", dtype="<f4").reshape(-1, dims)
    truth = np.fromfile(data / "truth.u32", dtype="<u4").reshape(-1, K)
    return base, [q.reshape(1, -1) for q in queries], truth


def timed_searches(search, set_ef, rows: list[np.ndarray], truth: np.ndarray, reps: int) -> list[dict]:
    """Every query at every ef, `reps` times, each call timed on its own from Python."""
    events = []
    for ef in EFS:
        set_ef(ef)
        for rep in range(reps):
            micros, found = [], 0
            for row, expected in zip(rows, truth):
                start = time.perf_counter()
                labels = search(row)
                micros.append((time.perf_counter() - start) * 1e6)
                found += len(np.intersect1d(labels, expected))
            micros.sort()
            events.append(
                {
                    "event": "search",
                    "ef": ef,
                    "rep": rep,
                    "recall": found / truth.size,
                    "p50_us": statistics.median(micros),
                    "p95_us": micros[round((len(micros) - 1) * 0.95)],
                    "p99_us": micros[round((len(micros) - 1) * 0.99)],
                }
            )
    return events


def call_overhead(search, rows: list[np.ndarray]) -> dict:
    """Python's share of each call: the same call on a one-vector index."""
    overhead = []
    for row in rows:
        start = time.perf_counter()
        search(row)
        overhead.append((time.perf_counter() - start) * 1e6)
    return {"event": "call_overhead", "p50_us": statistics.median(overhead)}


def run_hnswlib(data: Path, dims: int, threads: int, reps: int) -> list[dict]:
    base, rows, truth = load(data, dims)
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
    saved.unlink()
    events = [{"event": "build", "threads": threads, "seconds": round(seconds, 2), "graph_bytes": graph_bytes}]
    index.set_num_threads(1)
    events += timed_searches(lambda row: index.knn_query(row, k=K)[0][0], index.set_ef, rows, truth, reps)
    tiny = hnswlib.Index(space="l2", dim=dims)
    tiny.init_index(max_elements=1, M=M, ef_construction=EF_CONSTRUCTION)
    tiny.add_items(base[:1])
    tiny.set_num_threads(1)
    events.append(call_overhead(lambda row: tiny.knn_query(row, k=1), rows))
    return events


def run_faiss(data: Path, dims: int, threads: int, reps: int) -> list[dict]:
    base, rows, truth = load(data, dims)
    index = faiss.IndexHNSWFlat(dims, M)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    faiss.omp_set_num_threads(threads)
    start = time.perf_counter()
    index.add(base)
    seconds = time.perf_counter() - start
    # The serialised index is the graph (levels, offsets, links) plus the flat vectors.
    graph_bytes = faiss.serialize_index(index).nbytes - base.nbytes
    events = [{"event": "build", "threads": threads, "seconds": round(seconds, 2), "graph_bytes": graph_bytes}]
    faiss.omp_set_num_threads(1)

    def set_ef(ef: int) -> None:
        index.hnsw.efSearch = ef

    events += timed_searches(lambda row: index.search(row, K)[1][0], set_ef, rows, truth, reps)
    tiny = faiss.IndexHNSWFlat(dims, M)
    tiny.add(base[:1])
    events.append(call_overhead(lambda row: tiny.search(row, 1), rows))
    return events


def summarise(events: list[dict]) -> dict[int, dict]:
    """Per ef: recall, best and median p50 over the repetitions, median p95 and p99."""
    by_ef: dict[int, list[dict]] = {}
    for e in events:
        if e["event"] == "search":
            by_ef.setdefault(e["ef"], []).append(e)
    return {
        ef: {
            "recall": runs[0]["recall"],
            "p50_best": min(r["p50_us"] for r in runs),
            "p50_median": statistics.median(r["p50_us"] for r in runs),
            "p95_median": statistics.median(r["p95_us"] for r in runs),
            "p99_median": statistics.median(r["p99_us"] for r in runs),
        }
        for ef, runs in by_ef.items()
    }


def first_reaching(summary: dict[int, dict], recall: float) -> tuple[int, dict] | None:
    for ef in sorted(summary):
        if summary[ef]["recall"] >= recall:
            return ef, summary[ef]
    return None


def report(runs: dict[str, list[dict]], header: str) -> None:
    """Prints the non-search events and the Markdown tables."""
    for name, events in runs.items():
        for e in events:
            if e["event"] != "search":
                print(json.dumps({"run": name, **e}))
    summaries = {name: summarise(events) for name, events in runs.items()}
    print(f"\n{header}")
    print("recall@10 and p50 median / p95 median (µs) per ef")
    print("\n| ef | " + " | ".join(summaries) + " |")
    print("|---|" + "---|" * len(summaries))
    for ef in EFS:
        cells = [f"{s[ef]['recall']:.4f}: {s[ef]['p50_median']:.0f} / {s[ef]['p95_median']:.0f}" for s in summaries.values()]
        print(f"| {ef} | " + " | ".join(cells) + " |")
    print("\nfirst ef reaching the recall: ef, p50 median / p95 median (µs); p50 ratio to hnswlib and to faiss")
    print("\n| recall | " + " | ".join(summaries) + " |")
    print("|---|" + "---|" * len(summaries))
    for target in (0.95, 0.99):
        reached = {name: first_reaching(s, target) for name, s in summaries.items()}
        cells = []
        for name, hit in reached.items():
            if hit is None:
                cells.append("not reached")
                continue
            ef, row = hit
            ratios = [
                f"{row['p50_median'] / reached[peer][1]['p50_median']:.2f}x {peer}"
                for peer in ("hnswlib", "faiss")
                if peer != name and reached[peer] is not None
            ]
            cells.append(f"ef {ef}: {row['p50_median']:.0f} / {row['p95_median']:.0f} ({', '.join(ratios)})")
        print(f"| ≥ {target} | " + " | ".join(cells) + " |")
    builds = {name: next(e for e in events if e["event"] == "build") for name, events in runs.items()}
    print("\n| build | seconds | ratio to hnswlib | ratio to faiss | graph bytes |")
    print("|---|---|---|---|---|")
    for name, b in builds.items():
        print(
            f"| {name} | {b['seconds']:.1f} | {b['seconds'] / builds['hnswlib']['seconds']:.2f}x "
            f"| {b['seconds'] / builds['faiss']['seconds']:.2f}x | {b['graph_bytes']} |"
        )


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
        runs = {
            "ours": run_ours(args.bench_bin, data, args.threads, args.reps, 1),
            "ours, 2 shards": run_ours(args.bench_bin, data, args.threads, args.reps, 2),
            "hnswlib": run_hnswlib(data, args.dims, args.threads, args.reps),
            "faiss": run_faiss(data, args.dims, args.threads, args.reps),
        }

    report(runs, f"{args.n} x {args.dims}, {args.queries} queries, k={K}, M={M}, ef_construction={EF_CONSTRUCTION}, {args.reps} reps")


if __name__ == "__main__":
    main()
