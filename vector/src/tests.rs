//! Recall, filtering and sidecar tests on seeded clustered data.

use lakehouse_common::config::StorageConfig;
use lakehouse_common::{Bucket, ErrorKind, ObjectRef};

use crate::sidecar::{decode, encode, read_sidecar, write_sidecar, FORMAT_VERSION};
use crate::{Error, FrozenHnsw, ShardBuilder};

/// The seeded generator the builder uses; the Lance shard tests use it too.
pub(crate) use crate::rng::Rng;

const DIMS: usize = 32;

/// `count` points of `dims` around `clusters` random centres (spread `spread`), row-major.
fn clustered(rng: &mut Rng, count: usize, clusters: usize, dims: usize, spread: f32) -> Vec<f32> {
    let centres: Vec<f32> = (0..clusters * dims).map(|_| rng.normal()).collect();
    (0..count)
        .flat_map(|_| {
            let c = (rng.next_u64() % clusters as u64) as usize;
            let centre = centres[c * dims..(c + 1) * dims].to_vec();
            centre
                .into_iter()
                .map(|x| x + spread * rng.normal())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Doc ids unlike row numbers, so a mix-up between them shows.
fn doc_ids(count: usize) -> Vec<u64> {
    (0..count as u64).map(|i| 1_000_000 + i * 7).collect()
}

fn build_index(count: usize) -> (FrozenHnsw, Vec<f32>) {
    let mut rng = Rng(42);
    let data = clustered(&mut rng, count + 50, 20, DIMS, 0.3);
    let (vectors, queries) = data.split_at(count * DIMS);
    let index = ShardBuilder::new(DIMS)
        .m(16)
        .ef_construction(100)
        .build(vectors, &doc_ids(count))
        .expect("build");
    (index, queries.to_vec())
}

fn ids(results: &[(u64, f32)]) -> Vec<u64> {
    results.iter().map(|(id, _)| *id).collect()
}

#[test]
fn recall_at_10_against_exact_search() {
    let (index, queries) = build_index(3000);
    for query in queries.chunks_exact(DIMS) {
        let approx = index.search(query, 10, 64).expect("search");
        assert_eq!(approx.len(), 10);
        assert!(approx.windows(2).all(|w| w[0].1 >= w[1].1), "best first");
    }
    let recall = recall_at_10(&index, &queries, DIMS, 64);
    assert!(recall >= 0.95, "recall@10 = {recall}");
}

/// Fraction of the exact 10 nearest that a search at `ef` returns, over `queries`.
fn recall_at_10(index: &FrozenHnsw, queries: &[f32], dims: usize, ef: usize) -> f64 {
    let mut found = 0;
    let mut wanted = 0;
    for query in queries.chunks_exact(dims) {
        let truth = ids(&index.exact_search(query, 10, |_| true).expect("exact"));
        let approx = ids(&index.search(query, 10, ef).expect("search"));
        found += approx.iter().filter(|id| truth.contains(id)).count();
        wanted += truth.len();
    }
    found as f64 / wanted as f64
}

/// Many tight clusters: a graph whose lists were trimmed by distance alone keeps
/// few links between clusters and misses neighbours in the next cluster over.
#[test]
fn recall_at_10_on_tight_clusters_at_ef_64() {
    let (dims, count) = (64, 20_000);
    let mut rng = Rng(5);
    let data = clustered(&mut rng, count + 200, 200, dims, 0.25);
    let (vectors, queries) = data.split_at(count * dims);
    let index = ShardBuilder::new(dims)
        .m(16)
        .ef_construction(100)
        .threads(2)
        .build(vectors, &doc_ids(count))
        .expect("build");
    let recall = recall_at_10(&index, queries, dims, 64);
    assert!(recall >= 0.95, "recall@10 at ef 64 = {recall}");
}

#[test]
fn one_thread_builds_the_same_graph_from_the_same_seed() {
    let mut rng = Rng(3);
    let count = 2000;
    let vectors = clustered(&mut rng, count, 20, DIMS, 0.3);
    let build = |seed| {
        ShardBuilder::new(DIMS)
            .ef_construction(64)
            .threads(1)
            .seed(seed)
            .build(&vectors, &doc_ids(count))
            .expect("build")
    };
    let first = build(1);
    assert_eq!(first.parts(), build(1).parts());
    assert_ne!(first.parts(), build(2).parts(), "the seed must matter");
}

#[test]
fn cosine_score_of_an_indexed_vector_is_one() {
    let (index, _) = build_index(500);
    let vectors = &index.parts().vectors;
    let first = &vectors[..DIMS];
    let best = index.search(first, 1, 32).expect("search");
    assert_eq!(best[0].0, doc_ids(1)[0]);
    assert!((best[0].1 - 1.0).abs() < 1e-5, "score {}", best[0].1);
}

#[test]
fn filtered_search_returns_k_when_k_match() {
    let (index, queries) = build_index(3000);
    let all = doc_ids(3000);
    // 1 in 50 documents pass, a filter far more selective than ef covers.
    let selective = |id: u64| (id / 7) % 50 == 3;
    // Exactly 10 pass: only an exhaustive walk or the exact fallback finds all.
    let exactly_ten: Vec<u64> = all.iter().copied().step_by(300).collect();
    assert_eq!(exactly_ten.len(), 10);
    for query in queries.chunks_exact(DIMS).take(10) {
        let results = index
            .search_filtered(query, 10, 16, selective)
            .expect("search");
        assert_eq!(results.len(), 10);
        assert!(ids(&results).iter().all(|&id| selective(id)));
        let truth = ids(&index.exact_search(query, 10, selective).expect("exact"));
        let hits = ids(&results).iter().filter(|id| truth.contains(id)).count();
        assert!(hits >= 8, "filtered recall {hits}/10");

        let results = index
            .search_filtered(query, 10, 16, |id| exactly_ten.contains(&id))
            .expect("search");
        let mut got = ids(&results);
        got.sort_unstable();
        assert_eq!(got, exactly_ten);
    }
    let none = index
        .search_filtered(&queries[..DIMS], 5, 16, |_| false)
        .expect("search");
    assert!(none.is_empty());
}

#[test]
fn bad_requests_are_refused() {
    let (index, queries) = build_index(200);
    let query = &queries[..DIMS];
    let kind = |r: crate::Result<Vec<(u64, f32)>>| r.expect_err("must fail").kind();
    assert_eq!(
        kind(index.search(&query[..DIMS - 1], 10, 32)),
        ErrorKind::InvalidInput
    );
    assert_eq!(kind(index.search(query, 0, 32)), ErrorKind::InvalidInput);
    assert_eq!(
        kind(index.search(query, 10_001, 32)),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(index.search(&[0.0; DIMS], 10, 32)),
        ErrorKind::InvalidInput
    );

    let builder = ShardBuilder::new(DIMS);
    assert!(builder.build(&[], &[]).is_err());
    assert!(builder.build(&query[..DIMS - 1], &[1]).is_err());
    assert!(builder.build(&[0.0; DIMS], &[1]).is_err());
    assert!(ShardBuilder::new(DIMS).m(1).build(query, &[1]).is_err());
}

#[test]
fn a_single_vector_is_an_index() {
    let vector = [1.0_f32; DIMS];
    let index = ShardBuilder::new(DIMS).build(&vector, &[9]).expect("build");
    assert_eq!(
        ids(&index.search(&vector, 10, 10).expect("search")),
        vec![9]
    );
}

#[test]
fn searches_from_many_threads_agree() {
    let (index, queries) = build_index(1000);
    let expected: Vec<Vec<u64>> = queries
        .chunks_exact(DIMS)
        .map(|q| ids(&index.search(q, 5, 32).expect("search")))
        .collect();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for (query, want) in queries.chunks_exact(DIMS).zip(&expected) {
                    assert_eq!(&ids(&index.search(query, 5, 32).expect("search")), want);
                }
            });
        }
    });
}

fn sidecar_bytes() -> (FrozenHnsw, Vec<u8>) {
    let (index, _) = build_index(300);
    let bytes = encode(&index);
    (index, bytes)
}

#[tokio::test]
async fn sidecar_round_trips_through_the_bucket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = Bucket::open(
        "primary",
        &dir.path().to_string_lossy(),
        &StorageConfig::default(),
    )
    .expect("bucket");
    let (index, queries) = build_index(1000);
    let location = ObjectRef::primary("indexes/cand/v1/shard-0.hnsw");
    write_sidecar(&bucket, &location, &index)
        .await
        .expect("write");
    let loaded = read_sidecar(&bucket, &location).await.expect("read");
    assert_eq!(loaded.parts(), index.parts());
    for query in queries.chunks_exact(DIMS) {
        assert_eq!(
            loaded.search(query, 10, 40).expect("search"),
            index.search(query, 10, 40).expect("search")
        );
    }

    let elsewhere = ObjectRef {
        bucket: "archive".to_string(),
        key: location.key.clone(),
    };
    let err = read_sidecar(&bucket, &elsewhere)
        .await
        .expect_err("wrong bucket");
    assert!(matches!(err, Error::WrongBucket { .. }), "{err}");
    let missing = ObjectRef::primary("indexes/cand/v1/none.hnsw");
    let err = read_sidecar(&bucket, &missing).await.expect_err("missing");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[test]
fn truncated_sidecar_is_refused() {
    let (_, bytes) = sidecar_bytes();
    for len in [0, 10, 60, bytes.len() / 2, bytes.len() - 1] {
        let err = decode(&bytes[..len], "test").expect_err("truncated");
        assert!(matches!(err, Error::CorruptSidecar { .. }), "{len}: {err}");
    }
}

#[test]
fn damaged_sidecar_is_refused() {
    let (_, mut bytes) = sidecar_bytes();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let err = decode(&bytes, "test").expect_err("damaged");
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn sidecar_of_another_format_version_is_refused() {
    let (_, mut bytes) = sidecar_bytes();
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let err = decode(&bytes, "test").expect_err("version");
    assert!(
        matches!(err, Error::UnsupportedVersion { found, .. } if found == FORMAT_VERSION + 1),
        "{err}"
    );
    let err = decode(b"PAR1 not an index at all, just bytes", "test").expect_err("magic");
    assert!(matches!(err, Error::CorruptSidecar { .. }), "{err}");
}

#[test]
fn sidecar_with_a_valid_checksum_but_a_link_past_the_end_is_refused() {
    let (index, mut bytes) = sidecar_bytes();
    let n = index.len();
    // The first layer-0 link: after the header, doc ids, vectors, offsets and link count.
    let first_link = 44 + 8 * n + 4 * n * DIMS + 4 * (n + 1) + 8;
    bytes[first_link..first_link + 4].copy_from_slice(&(n as u32).to_le_bytes());
    let body = bytes.len() - 4;
    let checksum = crc32fast::hash(&bytes[..body]);
    bytes[body..].copy_from_slice(&checksum.to_le_bytes());
    let err = decode(&bytes, "test").expect_err("bad link");
    assert!(err.to_string().contains("past the last node"), "{err}");
}
