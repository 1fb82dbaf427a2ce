//! HNSW tuning trials (`lakehouse index tune`, ADR-018): builds a sample once per
//! (M, ef_construction) and, for each ef_search, measures recall@10 against exact
//! search and single-query latency. Trials are serde records for the trial journal.

use std::collections::HashSet;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracing::{info, instrument};

use crate::builder::ShardBuilder;
use crate::error::{Error, Result};

/// Neighbours compared for recall.
const RECALL_K: usize = 10;

/// One build setting and the ef_search values tried on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialSettings {
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: Vec<usize>,
}

impl TrialSettings {
    /// Three builds × five ef_search values, around the configured defaults (M 16,
    /// ef_construction 200, ef_search 64). Builds dominate: on 3K uniform random
    /// 384-d vectors with 100 queries a debug build ran the grid in 27 s on two busy cores.
    pub fn default_grid() -> Vec<TrialSettings> {
        let ef_search = vec![10, 32, 64, 128, 256];
        [(8, 64), (12, 100), (16, 200)]
            .into_iter()
            .map(|(m, ef_construction)| TrialSettings {
                m,
                ef_construction,
                ef_search: ef_search.clone(),
            })
            .collect()
    }
}

/// What one (M, ef_construction, ef_search) setting achieved on a sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
    /// Share of the exact 10 nearest neighbours the graph search found, over all queries.
    pub recall_at_10: f64,
    /// Median single-query search latency, microseconds.
    pub p50_us: f64,
    /// 95th percentile single-query search latency, microseconds.
    pub p95_us: f64,
    /// Time to build the graph for this (M, ef_construction), milliseconds.
    pub build_ms: f64,
    /// Vectors in the sample.
    pub vectors: usize,
    /// Queries measured.
    pub queries: usize,
    /// When the tuning ran, milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// Runs every setting on `vectors` (row-major, `doc_ids.len()` rows of `dims`) with
/// `queries` (row-major, `dims` each); `threads` build threads (0: every core).
#[instrument(skip_all, fields(vectors = doc_ids.len(), dims, settings = settings.len()))]
pub fn tune(
    vectors: &[f32],
    dims: usize,
    doc_ids: &[u64],
    queries: &[f32],
    settings: &[TrialSettings],
    threads: usize,
    at_ms: i64,
) -> Result<Vec<Trial>> {
    let query_rows: Vec<&[f32]> = queries.chunks_exact(dims.max(1)).collect();
    if dims == 0 || query_rows.is_empty() || query_rows.len() * dims != queries.len() {
        return Err(Error::InvalidInput(format!(
            "tuning needs at least one query of {dims} dimensions; got {} numbers",
            queries.len()
        )));
    }
    if doc_ids.is_empty() {
        return Err(Error::InvalidInput(
            "tuning needs a sample of at least one vector".to_string(),
        ));
    }
    let k = RECALL_K.min(doc_ids.len());
    // Exact neighbours depend only on the vectors: computed on the first build, reused.
    let mut exact: Option<Vec<HashSet<u64>>> = None;
    let mut trials = Vec::new();
    for setting in settings {
        let started = Instant::now();
        let index = ShardBuilder::new(dims)
            .m(setting.m)
            .ef_construction(setting.ef_construction)
            .threads(threads)
            .build(vectors, doc_ids)?;
        let build_ms = started.elapsed().as_secs_f64() * 1e3;
        let truth = match exact.take() {
            Some(truth) => truth,
            None => query_rows
                .iter()
                .map(|q| {
                    let hits = index.exact_search(q, k, |_| true)?;
                    Ok(hits.into_iter().map(|(id, _)| id).collect())
                })
                .collect::<Result<Vec<HashSet<u64>>>>()?,
        };
        for &ef_search in &setting.ef_search {
            let mut latencies_us = Vec::with_capacity(query_rows.len());
            let mut found = 0;
            for (query, truth) in query_rows.iter().zip(truth.iter()) {
                let started = Instant::now();
                let hits = index.search(query, k, ef_search)?;
                latencies_us.push(started.elapsed().as_secs_f64() * 1e6);
                found += hits.iter().filter(|(id, _)| truth.contains(id)).count();
            }
            latencies_us.sort_by(f64::total_cmp);
            let trial = Trial {
                m: setting.m,
                ef_construction: setting.ef_construction,
                ef_search,
                recall_at_10: found as f64 / (k * query_rows.len()) as f64,
                p50_us: percentile(&latencies_us, 0.50),
                p95_us: percentile(&latencies_us, 0.95),
                build_ms,
                vectors: doc_ids.len(),
                queries: query_rows.len(),
                at_ms,
            };
            info!(
                m = trial.m,
                ef_construction = trial.ef_construction,
                ef_search,
                recall_at_10 = trial.recall_at_10,
                p50_us = trial.p50_us,
                p95_us = trial.p95_us,
                build_ms,
                "tuning trial"
            );
            trials.push(trial);
        }
        exact = Some(truth);
    }
    Ok(trials)
}

/// Nearest-rank percentile of sorted, non-empty values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// SplitMix64 uniform values in [-1, 1): enough for a tuning smoke test.
    fn random(seed: u64, count: usize) -> Vec<f32> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                ((z >> 40) as f32 / (1u64 << 23) as f32) - 1.0
            })
            .collect()
    }

    #[test]
    fn tune_measures_every_setting() {
        const DIMS: usize = 16;
        let vectors = random(1, 1_000 * DIMS);
        let queries = random(2, 50 * DIMS);
        let doc_ids: Vec<u64> = (0..1_000).map(|i| 10_000 + i).collect();
        let settings = [TrialSettings {
            m: 8,
            ef_construction: 64,
            ef_search: vec![10, 400],
        }];
        let trials = tune(&vectors, DIMS, &doc_ids, &queries, &settings, 2, 42).unwrap();
        assert_eq!(trials.len(), 2);
        for trial in &trials {
            assert_eq!((trial.vectors, trial.queries, trial.at_ms), (1_000, 50, 42));
            assert!((0.0..=1.0).contains(&trial.recall_at_10), "{trial:?}");
            assert!(trial.p50_us <= trial.p95_us, "{trial:?}");
        }
        assert!(trials[1].recall_at_10 >= 0.98, "{:?}", trials[1]);
        let json = serde_json::to_string(&trials[0]).unwrap();
        let back: Trial = serde_json::from_str(&json).unwrap();
        // serde_json's default float parsing may differ in the last bit.
        assert_eq!((back.m, back.ef_search, back.at_ms), (8, 10, 42));
        assert!((back.recall_at_10 - trials[0].recall_at_10).abs() < 1e-12);
        assert!((back.p95_us - trials[0].p95_us).abs() < 1e-9);
    }

    #[test]
    fn tune_refuses_bad_queries() {
        let err = tune(&[0.0; 4], 2, &[1, 2], &[0.0; 3], &[], 1, 0).unwrap_err();
        assert!(err.to_string().contains("2 dimensions"), "{err}");
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 10.0);
        assert_eq!(percentile(&values, 0.95), 19.0);
        assert_eq!(percentile(&[7.0], 0.95), 7.0);
    }
}
