//! Release benchmark of the frozen HNSW, driven by `benches/vector.py`, which
//! generates the data and runs hnswlib on the same files in the same run.
//!
//!   hnsw_bench DATA_DIR THREADS EF[,EF...] REPS [--shards N]
//!
//! With `--shards N` the rows are split into N shards built at the same time,
//! each on THREADS / N threads (N executors sharing the machine); every query
//! searches all shards one after another and merges their top k.
//!
//! DATA_DIR holds `base.f32` and `queries.f32` (row-major little-endian f32),
//! `truth.u32` (the exact 10 nearest rows per query) and `meta.txt` ("dims k").
//! Prints one JSON object per line.

use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use lakehouse_vector::{sidecar, FrozenHnsw, ShardBuilder};

fn read_f32s(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn read_u32s(path: &Path) -> Vec<u32> {
    read_f32s(path).into_iter().map(f32::to_bits).collect()
}

fn percentile(sorted_micros: &[f64], p: f64) -> f64 {
    let rank = ((sorted_micros.len() - 1) as f64 * p).round() as usize;
    sorted_micros[rank]
}

/// Builds one shard over `rows` of `base`; doc ids are the row numbers.
fn build_shard(base: &[f32], dims: usize, rows: Range<usize>, threads: usize) -> FrozenHnsw {
    let doc_ids: Vec<u64> = (rows.start as u64..rows.end as u64).collect();
    ShardBuilder::new(dims)
        .m(16)
        .ef_construction(200)
        .threads(threads)
        .build(&base[rows.start * dims..rows.end * dims], &doc_ids)
        .expect("build")
}

/// The `k` best of every shard's `k` best, best first: what the scatter-gather search returns.
fn search_shards(shards: &[FrozenHnsw], query: &[f32], k: usize, ef: usize) -> Vec<(u64, f32)> {
    let mut merged: Vec<(u64, f32)> = shards
        .iter()
        .flat_map(|shard| shard.search(query, k, ef).expect("search"))
        .collect();
    merged.sort_by(|a, b| b.1.total_cmp(&a.1));
    merged.truncate(k);
    merged
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, threads, efs, reps, shards) = match args.as_slice() {
        [_, dir, threads, efs, reps] => (dir, threads, efs, reps, "1"),
        [_, dir, threads, efs, reps, flag, shards] if flag == "--shards" => {
            (dir, threads, efs, reps, shards.as_str())
        }
        _ => panic!("usage: hnsw_bench DATA_DIR THREADS EF[,EF...] REPS [--shards N]"),
    };
    let dir = Path::new(dir);
    let threads: usize = threads.parse().expect("THREADS");
    let reps: usize = reps.parse().expect("REPS");
    let shards: usize = shards.parse().expect("--shards");
    let efs: Vec<usize> = efs.split(',').map(|e| e.parse().expect("EF")).collect();
    let meta = std::fs::read_to_string(dir.join("meta.txt")).expect("meta.txt");
    let mut meta = meta
        .split_whitespace()
        .map(|v| v.parse::<usize>().expect("meta"));
    let (dims, k) = (meta.next().expect("dims"), meta.next().expect("k"));
    let base = read_f32s(&dir.join("base.f32"));
    let queries = read_f32s(&dir.join("queries.f32"));
    let truth = read_u32s(&dir.join("truth.u32"));
    let n = base.len() / dims;

    // Several shards build at once with an equal share of the threads, as one
    // shard per executor does on this machine.
    let per_shard = (threads / shards).max(1);
    let started = Instant::now();
    let indexes: Vec<FrozenHnsw> = std::thread::scope(|scope| {
        let base = &base;
        let builds: Vec<_> = (0..shards)
            .map(|s| {
                let rows = n * s / shards..n * (s + 1) / shards;
                scope.spawn(move || build_shard(base, dims, rows, per_shard))
            })
            .collect();
        builds
            .into_iter()
            .map(|b| b.join().expect("build thread"))
            .collect()
    });
    println!(
        "{{\"event\":\"build\",\"shards\":{shards},\"threads\":{threads},\"seconds\":{:.2},\"graph_bytes\":{},\"vector_bytes\":{},\"layers\":{}}}",
        started.elapsed().as_secs_f64(),
        indexes.iter().map(FrozenHnsw::graph_bytes).sum::<usize>(),
        indexes.iter().map(FrozenHnsw::vector_bytes).sum::<usize>(),
        indexes.iter().map(FrozenHnsw::layers).max().unwrap_or(0)
    );

    let (mut bytes, mut encode_s, mut decode_s) = (0, 0.0, 0.0);
    let loaded: Vec<FrozenHnsw> = indexes
        .into_iter()
        .map(|index| {
            let started = Instant::now();
            let encoded = sidecar::encode(&index);
            encode_s += started.elapsed().as_secs_f64();
            bytes += encoded.len();
            let started = Instant::now();
            let decoded = sidecar::decode(&encoded, "bench").expect("decode");
            decode_s += started.elapsed().as_secs_f64();
            decoded
        })
        .collect();
    println!(
        "{{\"event\":\"sidecar\",\"bytes\":{bytes},\"encode_ms\":{:.1},\"decode_ms\":{:.1}}}",
        encode_s * 1e3,
        decode_s * 1e3
    );

    for &ef in &efs {
        for rep in 0..reps {
            let mut micros = Vec::with_capacity(queries.len() / dims);
            let mut found = 0usize;
            for (query, expected) in queries.chunks_exact(dims).zip(truth.chunks_exact(k)) {
                let started = Instant::now();
                let results = search_shards(&loaded, query, k, ef);
                micros.push(started.elapsed().as_secs_f64() * 1e6);
                found += results
                    .iter()
                    .filter(|(id, _)| expected.contains(&(*id as u32)))
                    .count();
            }
            micros.sort_by(f64::total_cmp);
            println!(
                "{{\"event\":\"search\",\"ef\":{ef},\"rep\":{rep},\"recall\":{:.4},\"p50_us\":{:.1},\"p95_us\":{:.1},\"p99_us\":{:.1}}}",
                found as f64 / truth.len() as f64,
                percentile(&micros, 0.5),
                percentile(&micros, 0.95),
                percentile(&micros, 0.99)
            );
        }
    }
}
