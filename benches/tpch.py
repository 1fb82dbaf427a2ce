"""TPC-H benchmark: the 22 queries over ADBC Flight SQL on `lakehouse up` against
DataFusion-python and DuckDB in-process, all in the same run on the same Parquet files.

Data: `tpchgen-cli parquet -s SF`, generated once into a cache directory outside the
repository (default $HOME/.cache/lakehouse-tpch/sf<SF>) and reused by later runs. The eight
tables are ingested with `lakehouse ingest`; both peers read the Parquet files the ingest
wrote (tables/<t>/data/*.parquet in the server's bucket), so all three scan the same bytes.

Each query: one warm-up run per engine, then --runs rounds in which the three engines take
turns (so load from elsewhere on the machine hits all three alike); p50 per engine.
Result row counts must agree across the three engines, else the run stops.

Usage: python benches/tpch.py --bin target/release/lakehouse [--scale 1] [--runs 5] [--queries 1,3,18]
Prints per-table ingest times and a Markdown table of p50 times and ratios
(lakehouse / peer; lower is better) with their geometric means.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import adbc_driver_flightsql.dbapi as flight_sql
import datafusion
import duckdb
from ingest_query import start_server

TABLES = ("region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem")
QUERY_DIR = Path(__file__).resolve().parent / "tpch" / "queries"
GENERATE_TIMEOUT = 1800
INGEST_TIMEOUT = 1800


def tpchgen_cli() -> str:
    beside = Path(sys.executable).parent / "tpchgen-cli"
    found = str(beside) if beside.is_file() else shutil.which("tpchgen-cli")
    if not found:
        raise SystemExit("tpchgen-cli not found: pip install -r benches/requirements.txt")
    return found


def generate(scale: str, cache: Path) -> Path:
    """The generated tables, from the cache when a complete earlier run left them there."""
    out = cache / f"sf{scale}"
    done = out / ".complete"
    if done.is_file():
        return out
    tmp = cache / f"sf{scale}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    start = time.perf_counter()
    subprocess.run(
        [tpchgen_cli(), "parquet", "--scale-factor", scale, "--output-dir", str(tmp)],
        check=True,
        timeout=GENERATE_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    (tmp / ".complete").write_text(f"tpchgen-cli parquet -s {scale}\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"generated SF{scale} in {time.perf_counter() - start:.1f} s into {out}", file=sys.stderr)
    return out


def ingest(binary: str, http: str, data: Path, table: str, scale: str, cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            binary, "ingest", str(data / f"{table}.parquet"), "--table", table,
            "--owner", "benchmarks@example.com", "--sensitivity", "public",
            "--lineage", f"tpchgen-cli parquet -s {scale} → lakehouse ingest → {table}",
            "--freshness-sla", "7d", "--description", f"TPC-H {table} at scale factor {scale}",
            "--tags", "tpch,benchmark", "--server", f"http://{http}",
        ],
        check=True,
        cwd=cwd,
        timeout=INGEST_TIMEOUT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - start


def timed_ms(run: Callable[[str], int], sql: str) -> float:
    start = time.perf_counter()
    run(sql)
    return (time.perf_counter() - start) * 1000


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--scale", default="1")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--queries", default="", help="comma-separated query numbers (default: all 22)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("LAKEHOUSE_TPCH_CACHE", Path.home() / ".cache" / "lakehouse-tpch")),
    )
    args = parser.parse_args()
    numbers = [int(n) for n in args.queries.split(",") if n.strip()] or list(range(1, 23))
    queries = {f"q{n:02d}": (QUERY_DIR / f"q{n:02d}.sql").read_text(encoding="utf-8") for n in numbers}

    data = generate(args.scale, args.cache_dir)
    ingest_s: dict[str, float] = {}
    results: dict[str, dict[str, float]] = {}

    with tempfile.TemporaryDirectory(prefix="lakehouse-tpch-") as tmp:
        tmp = Path(tmp)
        proc, addrs = start_server(args.bin, tmp)
        try:
            for table in TABLES:
                ingest_s[table] = ingest(args.bin, addrs["http"], data, table, args.scale, tmp)
                print(f"ingest {table}: {ingest_s[table]:.2f} s", file=sys.stderr)

            tables = tmp / "data" / "bucket" / "tables"
            ctx = datafusion.SessionContext()
            duck = duckdb.connect()
            for table in TABLES:
                files = sorted((tables / table / "data").glob("*.parquet"))
                assert files, f"no Parquet files under {tables / table}"
                ctx.register_parquet(table, str(tables / table / "data"))
                listed = ", ".join(f"'{f}'" for f in files)
                duck.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{listed}])")

            with flight_sql.connect(f"grpc://{addrs['flight_sql']}", autocommit=True) as conn:

                def ours(sql: str) -> int:
                    with conn.cursor() as cur:
                        cur.execute(sql)
                        return cur.fetch_arrow_table().num_rows

                engines: dict[str, Callable[[str], int]] = {
                    "lakehouse": ours,
                    "datafusion": lambda sql: ctx.sql(sql).to_arrow_table().num_rows,
                    "duckdb": lambda sql: len(duck.execute(sql).fetchall()),
                }
                for name, sql in queries.items():
                    rows = {engine: run(sql) for engine, run in engines.items()}  # warm-up
                    if len(set(rows.values())) != 1:
                        raise SystemExit(f"{name}: engines disagree on the row count: {rows}")
                    times: dict[str, list[float]] = {engine: [] for engine in engines}
                    for _ in range(args.runs):
                        for engine, run in engines.items():
                            times[engine].append(timed_ms(run, sql))
                    results[name] = {engine: statistics.median(t) for engine, t in times.items()}
                    r = results[name]
                    print(
                        f"{name}: lakehouse {r['lakehouse']:.0f} ms, datafusion {r['datafusion']:.0f} ms, "
                        f"duckdb {r['duckdb']:.0f} ms",
                        file=sys.stderr,
                    )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)

    print(f"TPC-H SF{args.scale}, p50 of {args.runs} runs after one warm-up, DataFusion-python "
          f"{datafusion.__version__}, DuckDB {duckdb.__version__}\n")  # fmt: skip
    print("| table | ingest (s) |")
    print("|---|---|")
    for table, s in ingest_s.items():
        print(f"| {table} | {s:.2f} |")
    print(f"| all eight | {sum(ingest_s.values()):.2f} |\n")
    print("| query | lakehouse (ms) | DataFusion (ms) | DuckDB (ms) | ÷ DataFusion | ÷ DuckDB |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name.upper()} | {r['lakehouse']:.0f} | {r['datafusion']:.0f} | {r['duckdb']:.0f} "
            f"| {r['lakehouse'] / r['datafusion']:.2f}× | {r['lakehouse'] / r['duckdb']:.2f}× |"
        )
    ours_g, df_g, duck_g = (geomean([r[e] for r in results.values()]) for e in ("lakehouse", "datafusion", "duckdb"))
    print(
        f"| **geomean** | **{ours_g:.0f}** | **{df_g:.0f}** | **{duck_g:.0f}** "
        f"| **{ours_g / df_g:.2f}×** | **{ours_g / duck_g:.2f}×** |"
    )


if __name__ == "__main__":
    main()
