//! Lease → write Parquet → commit with the fencing token → release.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_schema::SchemaRef;
use lakehouse_catalog_raft::model::{DataFile, Lease, TableCommit, TableMetadata, WriteMode};
use lakehouse_catalog_raft::Catalog;
use lakehouse_common::names::validate_identifier;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use parquet::arrow::async_writer::ParquetObjectWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tokio::sync::{mpsc, Mutex};
use tracing::{info, instrument, warn};

use crate::error::{Error, Result};
use crate::source::{Format, SourceFile};

/// Batches in flight between the reading thread and the Parquet writer.
const CHANNEL_BATCHES: usize = 4;

#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub table: String,
    /// `None` creates a new table and refuses an existing one with a hint.
    pub mode: Option<WriteMode>,
    /// Required when the table is created.
    pub metadata: Option<TableMetadata>,
    /// Who writes, recorded as the lease holder.
    pub writer: String,
}

#[derive(Debug, Clone)]
pub struct WriteSummary {
    pub table: String,
    pub version: u64,
    pub mode: WriteMode,
    pub rows: u64,
    pub files: usize,
    pub bytes: u64,
    pub schema: SchemaRef,
    pub elapsed: Duration,
}

/// What a write will do, decided before any byte is read or written.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub mode: WriteMode,
    /// For appends: the schema the new rows must have.
    pub table_schema: Option<SchemaRef>,
}

#[derive(Debug, Clone)]
pub struct TableWriter {
    catalog: Catalog,
    rows_per_file: usize,
    lease_ttl: Duration,
}

impl TableWriter {
    pub fn new(catalog: Catalog, rows_per_file: usize, lease_ttl: Duration) -> Self {
        Self {
            catalog,
            rows_per_file: rows_per_file.max(1),
            lease_ttl,
        }
    }

    pub fn prepare(&self, request: &WriteRequest) -> Result<Prepared> {
        validate_identifier("table name", &request.table)?;
        let existing = self.catalog.table(&request.table);
        let mode = match (&existing, request.mode) {
            (Some(table), None | Some(WriteMode::Create)) => {
                return Err(Error::ModeRequired {
                    table: request.table.clone(),
                    version: table.current().map(|v| v.version).unwrap_or(0),
                })
            }
            (Some(_), Some(mode)) => mode,
            (None, _) => WriteMode::Create,
        };
        if mode == WriteMode::Create && request.metadata.is_none() {
            return Err(Error::MissingMetadata {
                table: request.table.clone(),
                missing: vec!["metadata".to_string()],
            });
        }
        let table_schema = match (mode, existing) {
            (WriteMode::Append, Some(table)) => table.current().map(|v| Arc::new(v.schema.clone())),
            _ => None,
        };
        Ok(Prepared { mode, table_schema })
    }

    /// Reads `path` on a blocking thread and writes it as a new table version.
    pub async fn ingest_file(
        &self,
        path: &Path,
        source_name: &str,
        format: Format,
        request: WriteRequest,
    ) -> Result<WriteSummary> {
        let prepared = self.prepare(&request)?;
        let (path, name, table_schema) = (
            path.to_path_buf(),
            source_name.to_string(),
            prepared.table_schema.clone(),
        );
        let source = tokio::task::spawn_blocking(move || {
            SourceFile::open(&path, &name, format, table_schema)
        })
        .await
        .map_err(|e| Error::Write {
            table: request.table.clone(),
            detail: format!("reader thread failed: {e}"),
        })??;
        let schema = source.schema();
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let reader = tokio::task::spawn_blocking(move || {
            for batch in source.into_batches() {
                let failed = batch.is_err();
                if tx.blocking_send(batch).is_err() || failed {
                    break;
                }
            }
        });
        let result = self.write(request, prepared, schema, rx).await;
        // The reader stops once the receiver is gone; wait so no thread outlives the request.
        let _ = reader.await;
        result
    }

    /// Writes `batches` as the table's next version under its writer lease.
    #[instrument(skip_all, fields(table = %request.table, writer = %request.writer))]
    pub async fn write(
        &self,
        request: WriteRequest,
        prepared: Prepared,
        schema: SchemaRef,
        batches: mpsc::Receiver<Result<RecordBatch>>,
    ) -> Result<WriteSummary> {
        let started = Instant::now();
        let lease = self
            .catalog
            .acquire_lease(&request.table, &request.writer)
            .await?;
        let lease = Arc::new(Mutex::new(lease));
        let renewer = self.spawn_renewer(Arc::clone(&lease));
        let mut files = Vec::new();
        let outcome = self
            .write_files(&request.table, &schema, batches, &mut files)
            .await;
        renewer.abort();
        let lease = lease.lock().await.clone();
        let outcome = match outcome {
            Ok(rows) => {
                let commit = TableCommit {
                    table: request.table.clone(),
                    mode: prepared.mode,
                    schema: schema.as_ref().clone(),
                    new_files: files.clone(),
                    metadata: request.metadata.clone(),
                };
                self.catalog
                    .commit(&lease, commit)
                    .await
                    .map_err(Error::from)
                    .map(|version| (rows, version))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = self.catalog.release_lease(&lease).await {
            warn!(error = %e, "releasing the writer lease failed; it expires on its own");
        }
        match outcome {
            Ok((rows, version)) => {
                let summary = WriteSummary {
                    table: request.table,
                    version: version.version,
                    mode: prepared.mode,
                    rows,
                    files: files.len(),
                    bytes: files.iter().map(|f| f.size_bytes).sum(),
                    schema,
                    elapsed: started.elapsed(),
                };
                info!(
                    version = summary.version,
                    rows,
                    files = summary.files,
                    "committed"
                );
                Ok(summary)
            }
            Err(e) => {
                self.delete_files(&files).await;
                Err(e)
            }
        }
    }

    /// Renews the lease well before it expires, so long writes keep it.
    fn spawn_renewer(&self, lease: Arc<Mutex<Lease>>) -> tokio::task::JoinHandle<()> {
        let catalog = self.catalog.clone();
        let period = (self.lease_ttl / 3).max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                let current = lease.lock().await.clone();
                match catalog.renew_lease(&current).await {
                    Ok(renewed) => *lease.lock().await = renewed,
                    Err(e) => {
                        warn!(error = %e, "renewing the writer lease failed; the commit will be refused if it expired");
                        return;
                    }
                }
            }
        })
    }

    async fn write_files(
        &self,
        table: &str,
        schema: &SchemaRef,
        mut batches: mpsc::Receiver<Result<RecordBatch>>,
        files: &mut Vec<DataFile>,
    ) -> Result<u64> {
        let bucket = self.catalog.bucket().clone();
        let write_id = uuid::Uuid::new_v4().simple().to_string();
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let write_err = |e: parquet::errors::ParquetError| Error::Write {
            table: table.to_string(),
            detail: e.to_string(),
        };
        let mut total_rows = 0u64;
        let mut current: Option<(AsyncArrowWriter<ParquetObjectWriter>, u64)> = None;
        while let Some(batch) = batches.recv().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            if current.is_none() {
                let key = format!("tables/{table}/data/{write_id}-{:05}.parquet", files.len());
                let sink = ParquetObjectWriter::new(
                    Arc::clone(bucket.store()),
                    ObjectPath::from(key.as_str()),
                );
                let writer =
                    AsyncArrowWriter::try_new(sink, Arc::clone(schema), Some(props.clone()))
                        .map_err(write_err)?;
                // Record the key before writing so a failure can delete what was put.
                files.push(DataFile {
                    object: bucket.object_ref(key),
                    size_bytes: 0,
                    row_count: 0,
                });
                current = Some((writer, 0));
            }
            if let Some((writer, rows)) = current.as_mut() {
                writer.write(&batch).await.map_err(write_err)?;
                *rows += batch.num_rows() as u64;
                total_rows += batch.num_rows() as u64;
                if *rows >= self.rows_per_file as u64 {
                    if let Some(done) = current.take() {
                        finish_file(done, files).await.map_err(write_err)?;
                    }
                }
            }
        }
        if let Some(done) = current.take() {
            finish_file(done, files).await.map_err(write_err)?;
        }
        if total_rows == 0 {
            return Err(Error::BadSource {
                source_name: table.to_string(),
                reason: "no rows to write".to_string(),
            });
        }
        Ok(total_rows)
    }

    async fn delete_files(&self, files: &[DataFile]) {
        let bucket = self.catalog.bucket();
        for file in files {
            let path = ObjectPath::from(file.object.key.as_str());
            if let Err(e) = bucket.store().delete(&path).await {
                if !matches!(e, object_store::Error::NotFound { .. }) {
                    warn!(key = %file.object.key, error = %e, "could not delete an uncommitted file; garbage collection will");
                }
            }
        }
    }
}

async fn finish_file(
    (mut writer, rows): (AsyncArrowWriter<ParquetObjectWriter>, u64),
    files: &mut [DataFile],
) -> parquet::errors::Result<()> {
    writer.finish().await?;
    let size = writer.bytes_written() as u64;
    if let Some(last) = files.last_mut() {
        last.size_bytes = size;
        last.row_count = rows;
    }
    Ok(())
}
