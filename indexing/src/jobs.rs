//! Building an index version: plan the embed tasks over the source table's
//! files, run them as one Ballista job, build one shard per part as a second
//! job, and record the version in the catalog. A refresh is the same build
//! with the active version's parts offered for reuse by content hash.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, UInt32Type, UInt64Type};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use lakehouse_catalog_raft::{
    Catalog, Chunking, DataFile, HnswParams, IndexShard, IndexStatus, IndexVersion, Table,
};
use lakehouse_common::config::{VectorBackend, VectorConfig, DEFAULT_EMBEDDING_PROFILE};
use lakehouse_common::{AppendLog, ObjectRef};
use object_store::ObjectStore;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{info, instrument, warn};

use crate::error::{Error, Result};
use crate::job_table::run_plan;
use crate::loaded::ShardRef;
use crate::runtime::{lance_params, IndexRuntime};
use crate::search_function::{SearchRequest, VectorSearchFunction, VectorSearchTable};
use crate::shard_file::KeyType;
use crate::tasks::build::{self, BuildSpec, BuildTask};
use crate::tasks::embed::{EmbedSpec, EmbedTask};
use crate::tasks::{IndexTaskExec, TaskSpec};
use crate::tune::open_trial_journal;

/// Defaults of new index versions (`[vector]`).
#[derive(Debug, Clone)]
pub struct IndexSettings {
    pub ram_ceiling_bytes: u64,
    pub hnsw: HnswParams,
    pub lance: lakehouse_vector::LanceParams,
    pub chunking: Chunking,
    pub rows_per_task: u64,
    pub default_profile: String,
    /// Recent tuning trials kept in memory (`vector.trials_ring`).
    pub trials_ring: usize,
}

impl IndexSettings {
    pub fn from_config(vector: &VectorConfig) -> Self {
        let narrow = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Self {
            ram_ceiling_bytes: vector.ram_ceiling_bytes,
            lance: lance_params(vector),
            hnsw: HnswParams {
                m: narrow(vector.m),
                ef_construction: narrow(vector.ef_construction),
                ef_search: narrow(vector.ef_search),
            },
            chunking: Chunking {
                chunk_size: narrow(vector.chunk_size),
                overlap: narrow(vector.chunk_overlap),
            },
            rows_per_task: vector.rows_per_task as u64,
            default_profile: DEFAULT_EMBEDDING_PROFILE.to_string(),
            trials_ring: vector.trials_ring,
        }
    }
}

/// `lakehouse index create`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIndex {
    pub name: String,
    pub table: String,
    pub column: String,
    /// `[embedding]` profile; the default profile when absent.
    pub profile: Option<String>,
    /// The column that identifies a row (its values are `doc_id`); when absent,
    /// `id` or the first column ending in `_id`, else the row's ordinal.
    pub key: Option<String>,
    pub chunk_size: Option<u32>,
    pub overlap: Option<u32>,
}

/// A build checked and ready to run: [`IndexService::build`].
#[derive(Debug, Clone)]
pub struct PreparedBuild {
    name: String,
    draft: IndexVersion,
    /// Its tasks are planned once the version number (their output prefix) is known.
    embed: EmbedSpec,
    backend: VectorBackend,
    files: Vec<DataFile>,
    /// Make the new version the active one (a refresh).
    activate: bool,
}

impl PreparedBuild {
    /// The table the build reads: callers check the caller may read it.
    pub fn source_table(&self) -> &str {
        &self.draft.source_table
    }
}

/// What a build reports while it runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    Started {
        version: u64,
        parts: usize,
    },
    Embedding {
        parts_done: usize,
        parts: usize,
        chunks: u64,
        /// Rows whose text is null or blank: they have no chunks (the last event's count).
        blank_rows: u64,
        /// Chunks that repeat an earlier chunk of their row, kept once (the last event's count).
        repeated_chunks: u64,
    },
    Building {
        shards_done: usize,
        shards: usize,
    },
}

/// How often a running build looks at what its tasks wrote.
const PROGRESS_POLL: Duration = Duration::from_millis(300);

#[derive(Clone)]
pub struct IndexService {
    catalog: Catalog,
    runtime: Arc<IndexRuntime>,
    settings: IndexSettings,
    /// A session of the query engine: its plans run as Ballista jobs.
    ctx: SessionContext,
    /// One per process: journal writers must not share a prefix (ADR-018).
    pub(crate) trial_journal: Arc<AppendLog>,
}

impl std::fmt::Debug for IndexService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl IndexService {
    pub fn new(
        catalog: Catalog,
        runtime: Arc<IndexRuntime>,
        settings: IndexSettings,
        ctx: SessionContext,
    ) -> Self {
        let trial_journal = open_trial_journal(runtime.bucket(), settings.trials_ring);
        Self {
            catalog,
            runtime,
            settings,
            ctx,
            trial_journal,
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn runtime(&self) -> &Arc<IndexRuntime> {
        &self.runtime
    }

    /// `name`'s active version; `purpose` finishes the refusal ("active version to …").
    pub(crate) fn active_version(&self, name: &str, purpose: &str) -> Result<IndexVersion> {
        let index = self
            .catalog
            .index(name)
            .ok_or_else(|| Error::IndexNotFound {
                index: name.to_string(),
            })?;
        index
            .active_version()
            .cloned()
            .ok_or_else(|| Error::NoVersion {
                index: name.to_string(),
                what: format!("active version to {purpose}"),
            })
    }

    /// Checks a new build (version 1 of a new index, or the next version of an
    /// existing one) and opens its model: every refusal comes before any work.
    #[instrument(skip_all, fields(index = %request.name, table = %request.table, column = %request.column))]
    pub async fn prepare_create(&self, request: CreateIndex) -> Result<PreparedBuild> {
        check_name(&request.name)?;
        let table = self.table(&request.table)?;
        let profile = request
            .profile
            .clone()
            .unwrap_or_else(|| self.settings.default_profile.clone());
        let key = key_column(&table, &request)?;
        text_column(&table, &request.column)?;
        let chunking = Chunking {
            chunk_size: request
                .chunk_size
                .unwrap_or(self.settings.chunking.chunk_size),
            overlap: request.overlap.unwrap_or(self.settings.chunking.overlap),
        };
        if chunking.chunk_size == 0 || chunking.overlap >= chunking.chunk_size {
            return Err(Error::InvalidArgument(format!(
                "chunk size {} with overlap {}: the overlap must be smaller than the chunk size",
                chunking.chunk_size, chunking.overlap
            )));
        }
        self.prepare(
            request.name,
            table,
            request.column,
            key,
            profile,
            chunking,
            Vec::new(),
        )
        .await
    }

    /// A new version of `name` over the source table's current data, with the
    /// active version's settings; chunks whose text is unchanged keep their
    /// vectors. The new version becomes the active one.
    #[instrument(skip_all, fields(index = %name))]
    pub async fn prepare_refresh(&self, name: &str) -> Result<PreparedBuild> {
        let active = self.active_version(name, "refresh")?;
        let table = self.table(&active.source_table)?;
        let previous = active.shards.iter().map(build::part_of).collect();
        let mut prepared = self
            .prepare(
                name.to_string(),
                table,
                active.source_column.clone(),
                active.key_column.clone(),
                active.profile.clone(),
                active.chunking,
                previous,
            )
            .await?;
        prepared.activate = true;
        Ok(prepared)
    }

    #[allow(clippy::too_many_arguments)]
    async fn prepare(
        &self,
        name: String,
        table: Table,
        column: String,
        key: Option<String>,
        profile: String,
        chunking: Chunking,
        previous: Vec<ObjectRef>,
    ) -> Result<PreparedBuild> {
        let backend = self
            .runtime
            .embedders()
            .config()
            .profile(&profile)?
            .vector_backend;
        let model = self
            .runtime
            .embedders()
            .get(&profile)
            .await?
            .model()
            .clone();
        let current = table.current().ok_or_else(|| Error::TableNotFound {
            table: table.name.clone(),
        })?;
        let key_type = match &key {
            Some(key) => KeyType::of(current.schema.field_with_name(key)?.data_type()),
            None => KeyType::Int64,
        };
        let draft = IndexVersion {
            version: 0,
            profile: profile.clone(),
            model: model.name.clone(),
            model_version: model.version.clone(),
            dims: u32::try_from(model.dims).unwrap_or(u32::MAX),
            source_table: table.name.clone(),
            source_column: column.clone(),
            key_column: key.clone(),
            source_table_version: current.version,
            chunking,
            hnsw: self.settings.hnsw,
            shards: Vec::new(),
            status: IndexStatus::Building,
            error: None,
            chunks_embedded: 0,
            created_at_ms: 0,
        };
        let embed = EmbedSpec {
            profile,
            dims: model.dims,
            column,
            key,
            key_type,
            chunk_size: chunking.chunk_size as usize,
            overlap: chunking.overlap as usize,
            tasks: Vec::new(),
            previous,
        };
        Ok(PreparedBuild {
            name,
            draft,
            embed,
            backend,
            files: current.files.clone(),
            activate: false,
        })
    }

    /// Records the version as building, runs its jobs and records the outcome.
    #[instrument(skip_all, fields(index = %prepared.name))]
    pub async fn build(
        &self,
        prepared: PreparedBuild,
        progress: mpsc::Sender<Progress>,
    ) -> Result<IndexVersion> {
        let PreparedBuild {
            name,
            draft,
            mut embed,
            backend,
            files,
            activate,
        } = prepared;
        let version = self.catalog.create_index_version(&name, draft).await?;
        let prefix = format!("indexes/{name}/v{}/", version.version);
        embed.tasks = self.embed_tasks(&files, &prefix);
        let _ = progress
            .send(Progress::Started {
                version: version.version,
                parts: embed.tasks.len(),
            })
            .await;
        let (shards, embedded, failure) =
            match self.run_build(&prefix, embed, backend, &progress).await {
                Ok((shards, embedded)) => (shards, embedded, None),
                Err(e) => (Vec::new(), 0, Some(e)),
            };
        // A failed build is recorded as failed (never active, its error kept) before the caller hears of it.
        let reason = failure.as_ref().map(ToString::to_string);
        let finished = self
            .catalog
            .finish_index_version(&name, version.version, shards, embedded, reason)
            .await?;
        if let Some(source) = failure {
            warn!(version = finished.version, error = %source, "index build failed");
            return Err(Error::BuildFailed {
                index: name,
                version: finished.version,
                source: Box::new(source),
            });
        }
        if activate {
            self.catalog
                .activate_index_version(&name, finished.version)
                .await?;
        }
        info!(
            version = finished.version,
            chunks_embedded = embedded,
            "index version ready"
        );
        Ok(finished)
    }

    /// One task per `rows_per_task` rows of each data file.
    fn embed_tasks(&self, files: &[DataFile], prefix: &str) -> Vec<EmbedTask> {
        let step = self.settings.rows_per_task.max(1);
        let mut tasks = Vec::new();
        let mut ordinal = 0;
        for file in files {
            let mut first_row = 0;
            while first_row < file.row_count {
                let rows = step.min(file.row_count - first_row);
                let output = ObjectRef {
                    bucket: self.runtime.bucket().name().to_string(),
                    key: format!("{prefix}part-{:05}.parquet", tasks.len()),
                };
                tasks.push(EmbedTask {
                    source: file.object.clone(),
                    first_row,
                    rows,
                    first_ordinal: ordinal + first_row,
                    output,
                });
                first_row += rows;
            }
            ordinal += file.row_count;
        }
        tasks
    }

    /// Runs the embed job, then the build job; the shards and how many chunks were embedded.
    async fn run_build(
        &self,
        prefix: &str,
        spec: EmbedSpec,
        backend: VectorBackend,
        progress: &mpsc::Sender<Progress>,
    ) -> Result<(Vec<IndexShard>, u64)> {
        let parts: Vec<ObjectRef> = spec.tasks.iter().map(|t| t.output.clone()).collect();
        let embed = IndexTaskExec::new(TaskSpec::Embed(spec), Arc::clone(&self.runtime));
        let watcher = self.watch(prefix, parts.len(), progress.clone(), ".parquet");
        let reports = run_plan(&self.ctx, Arc::new(embed)).await;
        watcher.abort();
        let reports = reports?;
        let chunks = per_part(&reports, "chunks", parts.len());
        let embedded = per_part(&reports, "embedded", parts.len());
        let blank_rows: u64 = per_part(&reports, "blank", parts.len()).iter().sum();
        let repeated_chunks: u64 = per_part(&reports, "repeated", parts.len()).iter().sum();
        info!(
            blank_rows,
            repeated_chunks, "embedded: rows without text and repeated chunks were skipped"
        );
        let _ = progress
            .send(Progress::Embedding {
                parts_done: parts.len(),
                parts: parts.len(),
                chunks: chunks.iter().sum(),
                blank_rows,
                repeated_chunks,
            })
            .await;

        // Parts without chunks (all text blank) have nothing to search.
        let kept: Vec<(ObjectRef, u64)> = parts
            .into_iter()
            .zip(chunks)
            .filter(|(_, n)| *n > 0)
            .collect();
        let build = BuildSpec {
            hnsw: self.settings.hnsw,
            ram_ceiling_bytes: self.settings.ram_ceiling_bytes,
            backend,
            lance: self.settings.lance.clone(),
            shards: kept
                .iter()
                .map(|(data, _)| BuildTask::of_part(data))
                .collect(),
        };
        let tasks = build.shards.clone();
        let shards = kept.len();
        let watcher = self.watch(prefix, shards, progress.clone(), ".hnsw");
        let built = run_plan(
            &self.ctx,
            Arc::new(IndexTaskExec::new(
                TaskSpec::Build(build),
                Arc::clone(&self.runtime),
            )),
        )
        .await;
        watcher.abort();
        let backends = build::backends(&built?, shards)?;
        let _ = progress
            .send(Progress::Building {
                shards_done: shards,
                shards,
            })
            .await;
        Ok((
            tasks
                .iter()
                .zip(backends)
                .zip(kept)
                .map(|((task, backend), (_, chunks))| task.shard(backend, chunks))
                .collect(),
            embedded.iter().sum(),
        ))
    }

    /// Reports progress from the objects the running tasks have written under
    /// `prefix` — the bucket is what every executor shares.
    fn watch(
        &self,
        prefix: &str,
        total: usize,
        progress: mpsc::Sender<Progress>,
        suffix: &'static str,
    ) -> tokio::task::JoinHandle<()> {
        let store = Arc::clone(self.runtime.bucket().store());
        let prefix = object_store::path::Path::from(prefix.trim_end_matches('/'));
        tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            loop {
                tokio::time::sleep(PROGRESS_POLL).await;
                let mut listing = store.list(Some(&prefix));
                while let Some(Ok(meta)) = listing.next().await {
                    let location = meta.location.as_ref();
                    let finished = if suffix == ".hnsw" {
                        build::built_shard(location)
                    } else {
                        location.ends_with(suffix).then_some(location)
                    };
                    if let Some(finished) = finished {
                        seen.insert(finished.to_string());
                    }
                }
                let done = seen.len().min(total);
                let event = if suffix == ".hnsw" {
                    Progress::Building {
                        shards_done: done,
                        shards: total,
                    }
                } else {
                    Progress::Embedding {
                        parts_done: done,
                        parts: total,
                        chunks: 0,
                        blank_rows: 0,
                        repeated_chunks: 0,
                    }
                };
                if progress.send(event).await.is_err() {
                    return;
                }
            }
        })
    }

    /// Loads every active version's shards into this node's cache (`vector.load =
    /// "eager"`): the first searches after a restart then pay no load time.
    pub async fn load_active(&self) -> Result<usize> {
        let started = std::time::Instant::now();
        let mut loaded = 0;
        for index in self.catalog.indexes() {
            let Some(version) = index.active_version() else {
                continue;
            };
            for shard in &version.shards {
                self.runtime.load(&ShardRef::of(shard)).await?;
                loaded += 1;
            }
        }
        info!(
            shards = loaded,
            load_ms = started.elapsed().as_millis() as u64,
            "loaded the active index versions"
        );
        Ok(loaded)
    }

    /// The search `request` names, planned but not run: callers check the caller may
    /// read [`VectorSearchTable::source_table`] first.
    pub fn search_table(&self, request: SearchRequest) -> Result<VectorSearchTable> {
        VectorSearchFunction::new(self.catalog.clone(), Arc::clone(&self.runtime)).table(request)
    }

    /// Runs a search as `SELECT * FROM vector_search(...)` would: the same plan and job.
    pub async fn search(&self, table: VectorSearchTable) -> Result<Vec<RecordBatch>> {
        Ok(self.ctx.read_table(Arc::new(table))?.collect().await?)
    }

    fn table(&self, name: &str) -> Result<Table> {
        self.catalog
            .table(name)
            .ok_or_else(|| Error::TableNotFound {
                table: name.to_string(),
            })
    }
}

/// Index names become object prefixes and SQL string arguments.
fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "index name {name:?}: use 1 to 128 letters, digits, `_` or `-`"
        )))
    }
}

fn columns_of(table: &Table) -> String {
    table
        .current()
        .map(|v| {
            v.schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn field<'a>(table: &'a Table, column: &str) -> Result<&'a arrow::datatypes::Field> {
    table
        .current()
        .and_then(|v| v.schema.fields().iter().find(|f| f.name() == column))
        .map(|f| f.as_ref())
        .ok_or_else(|| Error::ColumnNotFound {
            table: table.name.clone(),
            column: column.to_string(),
            columns: columns_of(table),
        })
}

fn text_column(table: &Table, column: &str) -> Result<()> {
    let field = field(table, column)?;
    match field.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(()),
        other => Err(Error::NotText {
            table: table.name.clone(),
            column: column.to_string(),
            data_type: other.to_string(),
        }),
    }
}

fn key_column(table: &Table, request: &CreateIndex) -> Result<Option<String>> {
    if let Some(key) = &request.key {
        field(table, key)?;
        return Ok(Some(key.clone()));
    }
    let Some(current) = table.current() else {
        return Ok(None);
    };
    let names: Vec<&str> = current
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let found = names
        .iter()
        .find(|n| **n == "id")
        .or_else(|| names.iter().find(|n| n.ends_with("_id")))
        .map(|n| n.to_string());
    Ok(found)
}

/// The UInt64 column `name` of the task reports, by their `part` number.
fn per_part(batches: &[RecordBatch], name: &str, parts: usize) -> Vec<u64> {
    let mut values = vec![0; parts];
    for batch in batches {
        let part = batch
            .column_by_name("part")
            .and_then(|c| c.as_primitive_opt::<UInt32Type>());
        let column = batch
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>());
        let (Some(part), Some(column)) = (part, column) else {
            warn!(column = name, "an index task report lacks a column");
            continue;
        };
        for (part, value) in part.values().iter().zip(column.values()) {
            if let Some(slot) = values.get_mut(*part as usize) {
                *slot = *value;
            }
        }
    }
    values
}
