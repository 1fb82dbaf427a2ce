"""Foundation benchmark: CSV ingest against DuckDB, point query and GROUP BY on
1M rows against in-process DataFusion, all in the same run on the same files.

Usage: python benches/ingest_query.py --bin target/release/lakehouse [--rows 1000000]
Prints a Markdown table of times and ratios (lakehouse / peer; lower is better).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow.flight as flight
import datafusion
import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "python"))
from flight_raw import statement_query  # noqa: E402

REPEATS = 50
ROUNDS = 5
# Both sides run this many times before they are timed: a server's first queries pay for
# its thread pools, allocator arenas and caches filling (~1 ms each over the first ~100 here).
WARMUP = 20
POINT_QUERY = "SELECT * FROM events WHERE id = {id}"
GROUP_BY = "SELECT city, count(*) AS n, avg(amount) AS avg_amount, max(score) AS max_score FROM events GROUP BY city ORDER BY city"


def generate_csv(path: Path, rows: int) -> None:
    rng = random.Random(42)
    cities = ["Austin", "Berlin", "Dublin", "Hà Nội", "Lagos", "Lima", "Oslo", "Pune", "Seoul", "Toronto"]
    with path.open("w", encoding="utf-8") as f:
        f.write("id,city,amount,score,note\n")
        for i in range(rows):
            note = "" if i % 7 == 0 else f"\"note {i % 1000}, batch {i // 1000}\""
            f.write(f"{i},{rng.choice(cities)},{rng.random() * 1000:.2f},{rng.randint(0, 100)},{note}\n")


def p50s_ms(sides: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Median time of each side. Every side first runs WARMUP times; then the sides
    take turns in ROUNDS blocks of REPEATS // ROUNDS runs each, so that the machine
    speeding up or slowing down during the run (it does, by 10-20 % over tens of
    seconds here) weighs on every side alike instead of on whichever ran last."""
    for run in sides.values():
        for _ in range(WARMUP):
            run()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(ROUNDS):
        for name, run in sides.items():
            for _ in range(REPEATS // ROUNDS):
                start = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(samples) for name, samples in times.items()}


def start_server(binary: str, data_dir: Path) -> tuple[subprocess.Popen, dict]:
    listen = data_dir / "listen.json"
    env = dict(os.environ)
    for key in ["GATEWAY__HTTP_ADDR", "FLIGHT_SQL__ADDR", "SCHEDULER__ADDR", "EXECUTOR__ADDR", "EXECUTOR__FLIGHT_ADDR"]:
        env[f"LAKEHOUSE__{key}"] = "127.0.0.1:0"
    env["LAKEHOUSE__NODE__DATA_DIR"] = str(data_dir / "data")
    log = data_dir / "stderr.log"
    # cwd: a lakehouse.toml in the caller's directory (the repository's) must not apply.
    with log.open("wb") as err:
        proc = subprocess.Popen([binary, "up", "--listen-file", str(listen)], env=env, stderr=err, cwd=data_dir)
    deadline = time.monotonic() + 60
    while not listen.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"lakehouse up did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)
    return proc, json.loads(listen.read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv = tmp / "events.csv"
        generate_csv(csv, args.rows)
        size_mb = csv.stat().st_size / 1e6

        start = time.perf_counter()
        duckdb.connect().execute(
            f"COPY (SELECT * FROM read_csv_auto('{csv}')) TO '{tmp / 'duck.parquet'}' (FORMAT parquet)"
        ).fetchall()
        duck_ingest = time.perf_counter() - start

        proc, addrs = start_server(args.bin, tmp)
        try:
            start = time.perf_counter()
            subprocess.run(
                [args.bin, "ingest", str(csv), "--table", "events", "--owner", "bench", "--sensitivity", "internal",
                 "--lineage", "generated", "--freshness-sla", "24h", "--description", "benchmark", "--tags", "bench",
                 "--server", f"http://{addrs['http']}"],
                check=True, stdout=subprocess.DEVNULL,
            )
            our_ingest = time.perf_counter() - start

            files = sorted((tmp / "data" / "bucket" / "tables" / "events").rglob("*.parquet"))
            ctx = datafusion.SessionContext()
            ctx.register_parquet("events", str(files[0].parent))
            point = POINT_QUERY.format(id=args.rows // 2)

            # The protocol's own cost: GetFlightInfo + DoGet, without ADBC's prepared
            # statement create and close around every query.
            client = flight.FlightClient(f"grpc://{addrs['flight_sql']}")

            def raw(sql: str):
                info = client.get_flight_info(flight.FlightDescriptor.for_command(statement_query(sql)))
                client.do_get(info.endpoints[0].ticket).read_all()

            with flight_sql.connect(f"grpc://{addrs['flight_sql']}") as conn:
                def adbc(sql: str):
                    with conn.cursor() as cur:
                        cur.execute(sql)
                        cur.fetch_arrow_table()

                p50 = {}
                for query, sql in [("point", point), ("group", GROUP_BY)]:
                    p50[query] = p50s_ms({
                        "peer": lambda sql=sql: ctx.sql(sql).collect(),
                        "adbc": lambda sql=sql: adbc(sql),
                        "raw": lambda sql=sql: raw(sql),
                    })
            client.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    print(f"CSV: {args.rows} rows, {size_mb:.0f} MB\n")
    print("| measure | lakehouse | peer | peer value | ratio |")
    print("|---|---|---|---|---|")
    print(f"| CSV ingest (s) | {our_ingest:.2f} | DuckDB COPY to Parquet | {duck_ingest:.2f} | {our_ingest / duck_ingest:.2f}× |")
    peer = f"DataFusion {datafusion.__version__} in-process"
    for query, label in [("point", "point query"), ("group", "GROUP BY")]:
        for side, client_name in [("adbc", "ADBC"), ("raw", "pyarrow.flight")]:
            ours, theirs = p50[query][side], p50[query]["peer"]
            print(f"| {label} p50, {client_name} (ms) | {ours:.1f} | {peer} | {theirs:.1f} | {ours / theirs:.2f}× |")


if __name__ == "__main__":
    main()
