//! Benchmark of the Lance shard backend, driven by `benches/lance_shard.py`, which
//! generates the data (the same generator and file format as `benches/vector.py`)
//! and runs pylance on the same files in the same run. Run it with
//!
//!   bash benches/lance_shard.sh [--n 100000 --dims 768 ...]
//!
//! or by hand on a directory `benches/lance_shard.py --keep DIR` left behind:
//!
//!   lance_bench DATA_DIR PARTITIONS NPROBES:EF:REFINE[,...] REPS
//!
//! DATA_DIR holds `base.f32`, `queries.f32` and `append.f32` (row-major
//! little-endian f32), `truth.u32` (the exact 10 nearest base rows per query) and
//! `meta.txt` ("dims k"). Doc ids are row numbers (appended rows continue them).
//! The shard is written to DATA_DIR/rust.lance. Prints one JSON object per line.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, AsArray, FixedSizeListArray, Float32Array, RecordBatch, StringArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, UInt64Type};
use lakehouse_vector::{LanceParams, LanceShard};

/// Rows per batch handed to the writer.
const BATCH_ROWS: usize = 10_000;
/// Random single-row takes timed.
const TAKES: usize = 200;

fn read_f32s(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn percentile(sorted_micros: &[f64], p: f64) -> f64 {
    let rank = ((sorted_micros.len() - 1) as f64 * p).round() as usize;
    sorted_micros[rank]
}

/// Chunk batches for rows `first..` of `vectors`; chunk text and hash are
/// derived from the row so both benchmarks write the same bytes.
fn batches(first: usize, vectors: &[f32], dims: usize) -> Vec<RecordBatch> {
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let schema = Arc::new(Schema::new(vec![
        Field::new("doc_id", DataType::UInt64, false),
        Field::new("chunk_text", DataType::Utf8, false),
        Field::new("content_hash", DataType::UInt64, false),
        Field::new(
            "vector",
            DataType::FixedSizeList(item.clone(), dims as i32),
            false,
        ),
    ]));
    vectors
        .chunks(BATCH_ROWS * dims)
        .enumerate()
        .map(|(b, chunk)| {
            let rows = (first + b * BATCH_ROWS) as u64
                ..(first + b * BATCH_ROWS) as u64 + (chunk.len() / dims) as u64;
            let columns: Vec<ArrayRef> = vec![
                Arc::new(UInt64Array::from_iter_values(rows.clone())),
                Arc::new(StringArray::from_iter_values(
                    rows.clone().map(|r| format!("chunk {r}")),
                )),
                Arc::new(UInt64Array::from_iter_values(
                    rows.map(|r| r.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                )),
                Arc::new(
                    FixedSizeListArray::try_new(
                        item.clone(),
                        dims as i32,
                        Arc::new(Float32Array::from(chunk.to_vec())),
                        None,
                    )
                    .expect("vectors"),
                ),
            ];
            RecordBatch::try_new(schema.clone(), columns).expect("batch")
        })
        .collect()
}

fn parse_config(text: &str, partitions: usize) -> LanceParams {
    let parts: Vec<usize> = text
        .split(':')
        .map(|v| v.parse().expect("NPROBES:EF:REFINE"))
        .collect();
    let [nprobes, ef, refine] = parts.as_slice() else {
        panic!("a search setting is NPROBES:EF:REFINE, got {text}");
    };
    LanceParams {
        partitions,
        nprobes: *nprobes,
        ef: *ef,
        refine_factor: *refine as u32,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, partitions, configs, reps] = args.as_slice() else {
        panic!("usage: lance_bench DATA_DIR PARTITIONS NPROBES:EF:REFINE[,...] REPS");
    };
    let dir = Path::new(dir);
    let partitions: usize = partitions.parse().expect("PARTITIONS");
    let reps: usize = reps.parse().expect("REPS");
    let configs: Vec<LanceParams> = configs
        .split(',')
        .map(|c| parse_config(c, partitions))
        .collect();
    let meta = std::fs::read_to_string(dir.join("meta.txt")).expect("meta.txt");
    let mut meta = meta
        .split_whitespace()
        .map(|v| v.parse::<usize>().expect("meta"));
    let (dims, k) = (meta.next().expect("dims"), meta.next().expect("k"));
    let base = read_f32s(&dir.join("base.f32"));
    let queries = read_f32s(&dir.join("queries.f32"));
    let appended = read_f32s(&dir.join("append.f32"));
    let truth: Vec<u64> = read_f32s(&dir.join("truth.u32"))
        .into_iter()
        .map(|v| u64::from(v.to_bits()))
        .collect();
    let n = base.len() / dims;
    let uri = format!("file://{}", dir.join("rust.lance").display());

    let data = batches(0, &base, dims);
    let started = Instant::now();
    let shard = LanceShard::write(&uri, HashMap::new(), data, &configs[0])
        .await
        .expect("write");
    println!(
        "{{\"event\":\"write_index\",\"rows\":{n},\"seconds\":{:.2}}}",
        started.elapsed().as_secs_f64()
    );
    drop(shard);

    for params in &configs {
        let started = Instant::now();
        let shard = LanceShard::open(&uri, HashMap::new(), params)
            .await
            .expect("open");
        let opened = started.elapsed();
        for rep in 0..reps {
            let mut micros = Vec::with_capacity(queries.len() / dims);
            let mut found = 0usize;
            for (query, expected) in queries.chunks_exact(dims).zip(truth.chunks_exact(k)) {
                let started = Instant::now();
                let result = shard.search(query, k, None).await.expect("search");
                micros.push(started.elapsed().as_secs_f64() * 1e6);
                found += result["doc_id"]
                    .as_primitive::<UInt64Type>()
                    .values()
                    .iter()
                    .filter(|id| expected.contains(id))
                    .count();
            }
            micros.sort_by(f64::total_cmp);
            println!(
                "{{\"event\":\"search\",\"nprobes\":{},\"ef\":{},\"refine\":{},\"rep\":{rep},\"open_ms\":{:.1},\"recall\":{:.4},\"p50_us\":{:.1},\"p95_us\":{:.1}}}",
                params.nprobes,
                params.ef,
                params.refine_factor,
                opened.as_secs_f64() * 1e3,
                found as f64 / truth.len() as f64,
                percentile(&micros, 0.5),
                percentile(&micros, 0.95)
            );
        }
    }

    let shard = LanceShard::open(&uri, HashMap::new(), &configs[0])
        .await
        .expect("open");
    // The same pseudo-random rows in every run (a multiplicative walk over the ids).
    let mut micros = Vec::with_capacity(TAKES);
    for i in 0..TAKES as u64 {
        let id = (i * 2_654_435_761 + 12_345) % n as u64;
        let ids: ArrayRef = Arc::new(UInt64Array::from(vec![id]));
        let started = Instant::now();
        let rows = shard.take(&ids).await.expect("take");
        micros.push(started.elapsed().as_secs_f64() * 1e6);
        assert_eq!(rows.num_rows(), 1, "doc {id}");
    }
    micros.sort_by(f64::total_cmp);
    println!(
        "{{\"event\":\"take\",\"rows\":1,\"count\":{TAKES},\"p50_us\":{:.1},\"p95_us\":{:.1}}}",
        percentile(&micros, 0.5),
        percentile(&micros, 0.95)
    );

    let added = batches(n, &appended, dims);
    let rows: usize = added.iter().map(RecordBatch::num_rows).sum();
    let started = Instant::now();
    shard.append(added).await.expect("append");
    let append_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    shard.optimize_indices().await.expect("optimize");
    println!(
        "{{\"event\":\"append\",\"rows\":{rows},\"seconds\":{append_s:.3},\"index_seconds\":{:.3},\"total_rows\":{}}}",
        started.elapsed().as_secs_f64(),
        shard.len()
    );
}
