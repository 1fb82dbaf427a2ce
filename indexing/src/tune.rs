//! `lakehouse index tune` (ADR-018): HNSW settings tried on a sample of an
//! index's own vectors, every trial recorded in the trial journal, an
//! [`AppendLog`] under [`TRIALS_PREFIX`] that `GET /hnsw/trials` reads back.

use std::sync::Arc;

use lakehouse_catalog_raft::IndexShard;
use lakehouse_common::{AppendLog, Bucket, Clock, SystemClock};
use lakehouse_vector::{Trial, TrialSettings};
use serde::{Deserialize, Serialize};
use tracing::{info, instrument};

use crate::error::{Error, Result};
use crate::jobs::IndexService;
use crate::runtime::describe;
use crate::shard_file::{self, VECTOR};

/// Where the trial journal lives in the primary bucket.
pub const TRIALS_PREFIX: &str = "journal/hnsw_trials/";
/// Vectors a tuning run samples when the caller names no number.
pub const DEFAULT_SAMPLE: usize = 5_000;
/// Recall@10 a setting must reach to be picked for its latency.
pub const TARGET_RECALL: f64 = 0.95;
/// Most query vectors a run measures.
const MAX_QUERIES: usize = 100;
/// Small indexes give at most this share of their rows to queries, so most
/// rows stay in the searched sample.
const QUERY_SHARE_DIVISOR: u64 = 5;

/// One trial in the journal: which index version it was run on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialEvent {
    pub index: String,
    pub version: u64,
    /// The index's source table: who may read it may see the trial.
    pub table: String,
    #[serde(flatten)]
    pub trial: Trial,
}

/// What [`IndexService::tune`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct TuneReport {
    pub index: String,
    pub version: u64,
    /// Vectors in the searched sample.
    pub vectors: usize,
    /// Query vectors measured (other rows of the same version).
    pub queries: usize,
    pub trials: Vec<Trial>,
    /// The fastest (lowest p50) setting reaching [`TARGET_RECALL`]; when none
    /// does, the one with the highest recall.
    pub best: Option<Trial>,
    pub target_recall: f64,
}

/// Where [`IndexService::trials`] found its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialSource {
    Memory,
    Bucket,
}

/// The process's one trial journal (one writer per prefix, ADR-018).
pub(crate) fn open_trial_journal(bucket: &Bucket, ring: usize) -> Arc<AppendLog> {
    let log = AppendLog::new(bucket.clone(), TRIALS_PREFIX, Arc::new(SystemClock))
        // Only an empty or unparsable prefix is refused; this one is a constant.
        .expect("journal/hnsw_trials/ is a valid journal prefix")
        .with_ring_capacity(ring);
    Arc::new(log)
}

impl IndexService {
    /// Tries [`TrialSettings::default_grid`] on up to `sample` vectors of the
    /// active version of `name`, measured with up to 100 other rows of it as
    /// queries; journals every trial and flushes the journal before returning.
    #[instrument(skip(self, name), fields(index = %name))]
    pub async fn tune(&self, name: &str, sample: usize) -> Result<TuneReport> {
        if sample == 0 {
            return Err(Error::InvalidArgument(
                "a sample of 0 vectors: ask for at least 1".to_string(),
            ));
        }
        let active = self.active_version(name, "tune")?;
        let rows: u64 = active.shards.iter().map(|s| s.chunks).sum();
        let picks = plan_sample(rows, sample).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "index `{name}` has {rows} vectors; tuning needs at least 2 (queries are rows \
                 left out of the searched sample)"
            ))
        })?;
        let sample = self.read_sample(&active.shards, &picks).await?;
        let at_ms = SystemClock.now_ms();
        let Sample {
            vectors,
            dims,
            doc_ids,
            queries,
        } = sample;
        let (vector_count, query_count) = (doc_ids.len(), queries.len() / dims.max(1));
        let trials = tokio::task::spawn_blocking(move || {
            lakehouse_vector::tune(
                &vectors,
                dims,
                &doc_ids,
                &queries,
                &TrialSettings::default_grid(),
                0,
                at_ms,
            )
        })
        .await
        .map_err(|e| Error::TuneAborted(e.to_string()))??;

        let journal = &self.trial_journal;
        for trial in &trials {
            let event = TrialEvent {
                index: name.to_string(),
                version: active.version,
                table: active.source_table.clone(),
                trial: trial.clone(),
            };
            journal.append(&event).await?;
        }
        journal.flush().await?;
        let best = best(&trials).cloned();
        info!(
            version = active.version,
            trials = trials.len(),
            best = ?best.as_ref().map(|t| (t.m, t.ef_construction, t.ef_search)),
            "tuning done"
        );
        Ok(TuneReport {
            index: name.to_string(),
            version: active.version,
            vectors: vector_count,
            queries: query_count,
            trials,
            best,
            target_recall: TARGET_RECALL,
        })
    }

    /// Up to `limit` trials, newest first, that `keep` accepts: from the
    /// in-memory ring when it holds that many, else from every flushed batch.
    pub async fn trials(
        &self,
        limit: usize,
        keep: impl Fn(&TrialEvent) -> bool,
    ) -> Result<(TrialSource, Vec<TrialEvent>)> {
        let newest = |events: Vec<TrialEvent>| -> Vec<TrialEvent> {
            events
                .into_iter()
                .rev()
                .filter(|e| keep(e))
                .take(limit)
                .collect()
        };
        let journal = &self.trial_journal;
        let recent = newest(journal.recent()?);
        if recent.len() >= limit {
            return Ok((TrialSource::Memory, recent));
        }
        Ok((TrialSource::Bucket, newest(journal.read_all().await?)))
    }

    /// The vectors of the picked rows, reading only the parts that hold some.
    async fn read_sample(&self, shards: &[IndexShard], picks: &[(u64, bool)]) -> Result<Sample> {
        let mut sample = Sample::default();
        let mut first_row = 0;
        let mut next = picks.iter().peekable();
        for shard in shards {
            let end = first_row + shard.chunks;
            if next.peek().is_some_and(|(row, _)| *row < end) {
                let location = describe(&shard.data);
                let part = shard_file::decode(
                    self.runtime().get(&shard.data).await?,
                    &location,
                    &[VECTOR],
                )?;
                let (values, dims) = shard_file::flat_vectors(&part, &location)?;
                let bad = |reason: String| Error::BadShard {
                    location: location.clone(),
                    reason,
                };
                if part.num_rows() as u64 != shard.chunks {
                    return Err(bad(format!(
                        "{} vectors where the catalog records {}",
                        part.num_rows(),
                        shard.chunks
                    )));
                }
                if sample.dims != 0 && dims != sample.dims {
                    return Err(bad(format!(
                        "{dims}-dimensional vectors where the version's other parts have {}",
                        sample.dims
                    )));
                }
                sample.dims = dims;
                while let Some((row, query)) = next.next_if(|(row, _)| *row < end) {
                    let at = usize::try_from(row - first_row).unwrap_or(usize::MAX) * dims;
                    let vector = values
                        .get(at..at + dims)
                        .ok_or_else(|| bad(format!("row {} is missing", row - first_row)))?;
                    if *query {
                        sample.queries.extend_from_slice(vector);
                    } else {
                        sample.vectors.extend_from_slice(vector);
                        sample.doc_ids.push(*row);
                    }
                }
            }
            first_row = end;
        }
        Ok(sample)
    }
}

/// Row-major vectors for [`lakehouse_vector::tune`]; doc ids are row numbers
/// across the version's parts (a source row's chunks share its key).
#[derive(Debug, Default)]
struct Sample {
    vectors: Vec<f32>,
    dims: usize,
    doc_ids: Vec<u64>,
    queries: Vec<f32>,
}

/// Rows to read out of `rows` (numbered across parts), ascending, each marked
/// as a query or not: evenly spaced, so the same index gives the same sample,
/// with the queries spread among them. `None` below two rows.
fn plan_sample(rows: u64, sample: usize) -> Option<Vec<(u64, bool)>> {
    if rows < 2 {
        return None;
    }
    let queries = (rows / QUERY_SHARE_DIVISOR).clamp(1, MAX_QUERIES as u64);
    let vectors = (sample as u64).min(rows - queries);
    let total = queries + vectors;
    // total ≤ rows: the picks are distinct.
    Some(
        (0..total)
            .map(|i| {
                let row = (u128::from(i) * u128::from(rows) / u128::from(total)) as u64;
                let query = (i * queries) / total != ((i + 1) * queries) / total;
                (row, query)
            })
            .collect(),
    )
}

/// See [`TuneReport::best`]; ties go to the lower p50.
fn best(trials: &[Trial]) -> Option<&Trial> {
    let fastest = trials
        .iter()
        .filter(|t| t.recall_at_10 >= TARGET_RECALL)
        .min_by(|a, b| a.p50_us.total_cmp(&b.p50_us));
    fastest.or_else(|| {
        trials.iter().max_by(|a, b| {
            a.recall_at_10
                .total_cmp(&b.recall_at_10)
                .then(b.p50_us.total_cmp(&a.p50_us))
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn trial(ef_search: usize, recall_at_10: f64, p50_us: f64) -> Trial {
        Trial {
            m: 16,
            ef_construction: 200,
            ef_search,
            recall_at_10,
            p50_us,
            p95_us: p50_us * 2.0,
            build_ms: 1.0,
            vectors: 10,
            queries: 2,
            at_ms: 0,
        }
    }

    #[test]
    fn samples_are_distinct_spread_and_bounded() {
        let picks = plan_sample(60, 60).unwrap();
        let queries = picks.iter().filter(|(_, q)| *q).count();
        assert_eq!((picks.len(), queries), (60, 12));
        assert!(picks.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(picks.last().unwrap().0, 59);

        let picks = plan_sample(1_000_000, 5_000).unwrap();
        let queries = picks.iter().filter(|(_, q)| *q).count();
        assert_eq!((picks.len(), queries), (5_100, MAX_QUERIES));
        assert!(picks.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(picks.last().unwrap().0 < 1_000_000);

        assert_eq!(plan_sample(2, 5).unwrap(), [(0, false), (1, true)]);
        assert_eq!(plan_sample(1, 5), None);
        assert_eq!(plan_sample(50, 5).unwrap().len(), 15);
    }

    #[test]
    fn best_is_the_fastest_on_target_else_the_most_accurate() {
        let trials = [
            trial(10, 0.80, 5.0),
            trial(32, 0.96, 9.0),
            trial(64, 0.99, 8.0),
            trial(128, 1.0, 20.0),
        ];
        assert_eq!(best(&trials).unwrap().ef_search, 64);
        let short = [
            trial(10, 0.80, 5.0),
            trial(32, 0.90, 9.0),
            trial(64, 0.90, 7.0),
        ];
        assert_eq!(best(&short).unwrap().ef_search, 64);
        assert!(best(&[]).is_none());
    }

    #[test]
    fn events_carry_the_trial_flat() {
        let event = TrialEvent {
            index: "i".to_string(),
            version: 3,
            table: "t".to_string(),
            trial: trial(64, 0.99, 8.0),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            (json["index"].as_str(), json["ef_search"].as_u64()),
            (Some("i"), Some(64))
        );
        let back: TrialEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
