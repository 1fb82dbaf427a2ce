"""Lance shard benchmark: lakehouse-vector's LanceShard (Rust, `lance_bench`) against
pylance 14.0.2 (the same Rust core) on the same generated vectors in the same run.

Usage: bash benches/lance_shard.sh [--n 100000] [--dims 768] [--queries 500] [--partitions 256]
       [--append 10000] [--reps 3] [--configs 2:50:0,4:50:0,2:50:2]
   or: python benches/lance_shard.py --bench-bin target/release/examples/lance_bench [same options]

Data: `benches/vector.py`'s generator (seeded Gaussian clusters, L2-normalised, exact
top-10 truth), plus `--append` more points from the same clusters. Both sides write a
dataset with doc_id (row number), chunk_text, content_hash and vector, build
IVF_HNSW_SQ (L2, default HNSW m 20 / ef_construction 150) and a BTREE on doc_id, then:
search single-threaded one query at a time for each NPROBES:EF:REFINE setting, take
one random row by doc_id 200 times, append the extra rows and index them (delta).
Prints a Markdown table; ratios are ours / pylance (lower is better).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa

from vector import K, generate

TAKES = 200


def generate_append(out: Path, count: int, dims: int, clusters: int) -> None:
    """More points around `generate`'s centres (the first draw of its seed)."""
    centres = np.random.default_rng(42).standard_normal((clusters, dims), dtype=np.float32)
    rng = np.random.default_rng(43)
    x = centres[rng.integers(0, clusters, count)] + rng.standard_normal((count, dims), dtype=np.float32)
    (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("<f4").tofile(out / "append.f32")


def table(first: int, vectors: np.ndarray) -> pa.Table:
    """The rows lance_bench writes: same text and hash per row number."""
    rows = np.arange(first, first + len(vectors), dtype=np.uint64)
    dims = vectors.shape[1]
    return pa.table(
        {
            "doc_id": pa.array(rows, pa.uint64()),
            "chunk_text": pa.array([f"chunk {r}" for r in rows], pa.string()),
            "content_hash": pa.array(rows * np.uint64(0x9E3779B97F4A7C15), pa.uint64()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dims),
        }
    )


def parse_configs(text: str) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in c.split(":")) for c in text.split(",")]  # type: ignore[misc]


def run_ours(bench_bin: str, data: Path, partitions: int, configs: str, reps: int) -> list[dict]:
    out = subprocess.run([bench_bin, str(data), str(partitions), configs, str(reps)], check=True, capture_output=True, text=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def run_pylance(data: Path, dims: int, partitions: int, configs: str, reps: int) -> list[dict]:
    base = np.fromfile(data / "base.f32", dtype="<f4").reshape(-1, dims)
    queries = np.fromfile(data / "queries.f32", dtype="<f4").reshape(-1, dims)
    extra = np.fromfile(data / "append.f32", dtype="<f4").reshape(-1, dims)
    truth = np.fromfile(data / "truth.u32", dtype="<u4").reshape(-1, K)
    uri = str(data / "py.lance")
    events = []

    start = time.perf_counter()
    ds = lance.write_dataset(table(0, base), uri, max_rows_per_group=1024)
    ds.create_index("vector", index_type="IVF_HNSW_SQ", name="vector_idx", metric="L2", num_partitions=partitions)
    ds.create_scalar_index("doc_id", "BTREE", name="doc_id_idx")
    events.append({"event": "write_index", "rows": len(base), "seconds": round(time.perf_counter() - start, 2)})

    for nprobes, ef, refine in parse_configs(configs):
        start = time.perf_counter()
        ds = lance.dataset(uri)
        open_ms = (time.perf_counter() - start) * 1e3
        nearest = {"column": "vector", "k": K, "nprobes": nprobes, "ef": max(ef, K * max(refine, 1))}
        if refine:
            nearest["refine_factor"] = refine
        for rep in range(reps):
            micros, found = [], 0
            for q, expected in zip(queries, truth):
                start = time.perf_counter()
                result = ds.to_table(columns=["doc_id", "chunk_text", "_distance"], nearest={**nearest, "q": q})
                micros.append((time.perf_counter() - start) * 1e6)
                found += len(np.intersect1d(result["doc_id"].to_numpy(), expected))
            micros.sort()
            events.append(
                {
                    "event": "search",
                    "nprobes": nprobes,
                    "ef": ef,
                    "refine": refine,
                    "rep": rep,
                    "open_ms": round(open_ms, 1),
                    "recall": found / truth.size,
                    "p50_us": statistics.median(micros),
                    "p95_us": micros[round((len(micros) - 1) * 0.95)],
                }
            )

    micros = []
    for i in range(TAKES):
        doc = (i * 2_654_435_761 + 12_345) % len(base)
        start = time.perf_counter()
        rows = ds.to_table(filter=f"doc_id = {doc}")
        micros.append((time.perf_counter() - start) * 1e6)
        assert rows.num_rows == 1, doc
    micros.sort()
    events.append({"event": "take", "rows": 1, "count": TAKES, "p50_us": statistics.median(micros), "p95_us": micros[round((TAKES - 1) * 0.95)]})

    added = table(len(base), extra)
    start = time.perf_counter()
    ds = lance.write_dataset(added, uri, mode="append", max_rows_per_group=1024)
    append_s = time.perf_counter() - start
    start = time.perf_counter()
    ds.optimize.optimize_indices(num_indices_to_merge=0)
    events.append(
        {
            "event": "append",
            "rows": len(extra),
            "seconds": round(append_s, 3),
            "index_seconds": round(time.perf_counter() - start, 3),
            "total_rows": ds.count_rows(),
        }
    )
    return events


def by_event(events: list[dict], name: str) -> list[dict]:
    return [e for e in events if e["event"] == name]


def search_summary(events: list[dict]) -> dict[tuple, dict]:
    """Per setting: recall, median p50 and p95 over the repetitions."""
    runs: dict[tuple, list[dict]] = {}
    for e in by_event(events, "search"):
        runs.setdefault((e["nprobes"], e["ef"], e["refine"]), []).append(e)
    return {
        key: {
            "recall": r[0]["recall"],
            "p50": statistics.median(x["p50_us"] for x in r),
            "p95": statistics.median(x["p95_us"] for x in r),
        }
        for key, r in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench-bin", required=True)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=768)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=256, help="IVF partitions (0: about sqrt(n))")
    parser.add_argument("--append", type=int, default=10_000, help="rows appended at the end")
    parser.add_argument("--configs", default="2:50:0,4:50:0,2:50:2", help="NPROBES:EF:REFINE,...")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--keep", help="generate into this directory and keep it (for running lance_bench by hand)")
    args = parser.parse_args()
    partitions = args.partitions or max(1, round(args.n**0.5))

    with tempfile.TemporaryDirectory(prefix="lance-bench-") as tmp:
        data = Path(args.keep or tmp)
        data.mkdir(parents=True, exist_ok=True)
        generate(data, args.n, args.dims, args.queries, args.clusters)
        generate_append(data, args.append, args.dims, args.clusters)
        ours = run_ours(args.bench_bin, data, partitions, args.configs, args.reps)
        peer = run_pylance(data, args.dims, partitions, args.configs, args.reps)

    for e in ours + peer:
        if e["event"] != "search":
            print(json.dumps(e))
    print(f"\n{args.n} x {args.dims}, {args.queries} queries, k={K}, IVF_HNSW_SQ with {partitions} partitions, {args.reps} reps")
    print("\n| operation | ours | pylance | ratio ours / pylance |")
    print("|---|---|---|---|")

    def row(label: str, a: float, b: float, unit: str) -> None:
        print(f"| {label} | {a:.3f} {unit} | {b:.3f} {unit} | {a / b:.2f}x |")

    row("write + index build", by_event(ours, "write_index")[0]["seconds"], by_event(peer, "write_index")[0]["seconds"], "s")
    s_ours, s_peer = search_summary(ours), search_summary(peer)
    for key in s_ours:
        a, b = s_ours[key], s_peer[key]
        label = f"search nprobes {key[0]} ef {key[1]} refine {key[2]} (recall {a['recall']:.3f} / {b['recall']:.3f})"
        row(f"{label} p50", a["p50"], b["p50"], "µs")
        row(f"{label} p95", a["p95"], b["p95"], "µs")
    t_ours, t_peer = by_event(ours, "take")[0], by_event(peer, "take")[0]
    row("take 1 row by doc_id p50", t_ours["p50_us"], t_peer["p50_us"], "µs")
    a_ours, a_peer = by_event(ours, "append")[0], by_event(peer, "append")[0]
    row(f"append {a_ours['rows']} rows", a_ours["seconds"], a_peer["seconds"], "s")
    row("index the appended rows", a_ours["index_seconds"], a_peer["index_seconds"], "s")


if __name__ == "__main__":
    main()
