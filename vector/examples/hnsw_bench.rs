//! Release benchmark of the frozen HNSW, driven by `benches/vector.py`, which
//! generates the data and runs hnswlib on the same files in the same run.
//!
//!   hnsw_bench DATA_DIR THREADS EF[,EF...] REPS
//!
//! DATA_DIR holds `base.f32` and `queries.f32` (row-major little-endian f32),
//! `truth.u32` (the exact 10 nearest rows per query) and `meta.txt` ("dims k").
//! Prints one JSON object per line.

use std::path::Path;
use std::time::Instant;

use lakehouse_vector::{sidecar, ShardBuilder};

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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, threads, efs, reps] = args.as_slice() else {
        panic!("usage: hnsw_bench DATA_DIR THREADS EF[,EF...] REPS");
    };
    let dir = Path::new(dir);
    let threads: usize = threads.parse().expect("THREADS");
    let reps: usize = reps.parse().expect("REPS");
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
    // Doc ids are the row numbers, so recall compares with the truth file directly.
    let doc_ids: Vec<u64> = (0..n as u64).collect();

    let started = Instant::now();
    let index = ShardBuilder::new(dims)
        .m(16)
        .ef_construction(200)
        .threads(threads)
        .build(&base, &doc_ids)
        .expect("build");
    println!(
        "{{\"event\":\"build\",\"threads\":{threads},\"seconds\":{:.2},\"graph_bytes\":{},\"vector_bytes\":{},\"layers\":{}}}",
        started.elapsed().as_secs_f64(),
        index.graph_bytes(),
        index.vector_bytes(),
        index.layers()
    );

    let started = Instant::now();
    let bytes = sidecar::encode(&index);
    let encoded = started.elapsed();
    let started = Instant::now();
    let loaded = sidecar::decode(&bytes, "bench").expect("decode");
    println!(
        "{{\"event\":\"sidecar\",\"bytes\":{},\"encode_ms\":{:.1},\"decode_ms\":{:.1}}}",
        bytes.len(),
        encoded.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64() * 1e3
    );
    drop((bytes, index));

    for &ef in &efs {
        for rep in 0..reps {
            let mut micros = Vec::with_capacity(queries.len() / dims);
            let mut found = 0usize;
            for (query, expected) in queries.chunks_exact(dims).zip(truth.chunks_exact(k)) {
                let started = Instant::now();
                let results = loaded.search(query, k, ef).expect("search");
                micros.push(started.elapsed().as_secs_f64() * 1e6);
                found += results
                    .iter()
                    .filter(|(id, _)| expected.contains(&(*id as u32)))
                    .count();
            }
            micros.sort_by(f64::total_cmp);
            println!(
                "{{\"event\":\"search\",\"ef\":{ef},\"rep\":{rep},\"recall\":{:.4},\"p50_us\":{:.1},\"p99_us\":{:.1}}}",
                found as f64 / truth.len() as f64,
                percentile(&micros, 0.5),
                percentile(&micros, 0.99)
            );
        }
    }
}
