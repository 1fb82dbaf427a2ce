//! Lease → write Parquet → commit with the fencing token → release.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_schema::SchemaRef;
use futures::{Stream, StreamExt};
use lakehouse_catalog_raft::model::{
    DataFile, Lease, ObjectKind, TableCommit, TableMetadata, WriteMode,
};
use lakehouse_catalog_raft::{append_schema, Catalog};
use lakehouse_common::names::validate_identifier;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use parquet::arrow::async_writer::ParquetObjectWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::file::properties::WriterProperties;
use tokio::sync::{mpsc, Mutex};
use tracing::{info, instrument, warn};

use crate::error::{Error, Result};
use crate::layout;
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
    /// Whether no rows at all is a valid write: a created or replaced table is
    /// then empty (one Parquet file with only the schema) and an append adds no
    /// version. Files and uploads refuse it; SQL (`CREATE TABLE AS` a query with
    /// no rows) and client streams allow it.
    pub allow_empty: bool,
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

    /// Decides the mode: `None` and `Create` create the table (refusing an
    /// existing one); `Append` and `Replace` create a missing table when the
    /// request brings metadata for it, and an append without metadata to a
    /// missing table is refused as not found.
    pub fn prepare(&self, request: &WriteRequest) -> Result<Prepared> {
        validate_identifier("table name", &request.table)?;
        let existing = self.catalog.table(&request.table);
        let version_of =
            |table: &lakehouse_catalog_raft::Table| table.current().map(|v| v.version).unwrap_or(0);
        let mode = match (&existing, request.mode) {
            (Some(table), None) => {
                return Err(Error::ModeRequired {
                    table: request.table.clone(),
                    version: version_of(table),
                })
            }
            (Some(table), Some(WriteMode::Create)) => {
                return Err(Error::TableExists {
                    table: request.table.clone(),
                    version: version_of(table),
                })
            }
            (Some(_), Some(mode)) => mode,
            (None, Some(WriteMode::Append)) if request.metadata.is_none() => {
                return Err(Error::TableNotFound {
                    table: request.table.clone(),
                })
            }
            (None, _) => WriteMode::Create,
        };
        if mode == WriteMode::Create && self.catalog.view(&request.table).is_some() {
            // The commit would be refused too, but only after every file is written.
            return Err(lakehouse_catalog_raft::Error::NameTaken {
                name: request.table.clone(),
                taken_by: ObjectKind::View,
            }
            .into());
        }
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
        let mut rx = rx;
        let batches = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let result = self.write(request, prepared, schema, batches).await;
        // The reader stops once the receiver is gone; wait so no thread outlives the request.
        let _ = reader.await;
        result
    }

    /// Writes `batches` (each of `schema`) as the table's next version under its
    /// writer lease. Every writer — files, uploads, SQL statements, Flight SQL
    /// bulk ingest — ends here, so leasing, fencing and clean-up exist once.
    #[instrument(skip_all, fields(table = %request.table, writer = %request.writer))]
    pub async fn write(
        &self,
        request: WriteRequest,
        prepared: Prepared,
        schema: SchemaRef,
        batches: impl Stream<Item = Result<RecordBatch>> + Send + Unpin,
    ) -> Result<WriteSummary> {
        let started = Instant::now();
        if let Some(table_schema) = &prepared.table_schema {
            // Refuse a mismatch before taking the lease and writing files.
            append_schema(table_schema, &schema).map_err(|differences| {
                lakehouse_catalog_raft::Error::SchemaMismatch {
                    table: request.table.clone(),
                    differences,
                }
            })?;
        }
        let lease = self
            .catalog
            .acquire_lease(&request.table, &request.writer)
            .await?;
        info!(token = lease.token, "writer lease taken");
        let lease = Arc::new(Mutex::new(lease));
        let renewer = self.spawn_renewer(Arc::clone(&lease));
        let mut files = Vec::new();
        let outcome = self
            .write_files(&request, &schema, batches, &mut files)
            .await;
        renewer.abort();
        let lease = lease.lock().await.clone();
        let outcome = match outcome {
            // Nothing to add: the table stays at its version.
            Ok(0) if prepared.mode == WriteMode::Append => Ok((0, None)),
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
                    .map(|version| (rows, Some(version.version)))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = self.catalog.release_lease(&lease).await {
            warn!(error = %e, "releasing the writer lease failed; it expires on its own");
        }
        match outcome {
            Ok((rows, version)) => {
                let version = version.unwrap_or_else(|| {
                    self.catalog
                        .table(&request.table)
                        .and_then(|t| t.current().map(|v| v.version))
                        .unwrap_or(0)
                });
                let summary = WriteSummary {
                    table: request.table,
                    version,
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

    /// Drops `table` under its writer lease, so it cannot vanish under a
    /// running write; its files become garbage for the next collection.
    #[instrument(skip_all, fields(table = %table, writer = %writer))]
    pub async fn drop_table(&self, table: &str, writer: &str) -> Result<()> {
        validate_identifier("table name", table)?;
        if self.catalog.table(table).is_none() {
            return Err(Error::Catalog(
                lakehouse_catalog_raft::Error::TableNotFound {
                    table: table.to_string(),
                },
            ));
        }
        let lease = self.catalog.acquire_lease(table, writer).await?;
        // The state machine checks again that the table exists, under the lease.
        let outcome = self.catalog.drop_table(&lease).await;
        if let Err(e) = self.catalog.release_lease(&lease).await {
            warn!(error = %e, "releasing the writer lease failed; it expires on its own");
        }
        outcome.map_err(Error::from)
    }

    async fn write_files(
        &self,
        request: &WriteRequest,
        schema: &SchemaRef,
        mut batches: impl Stream<Item = Result<RecordBatch>> + Send + Unpin,
        files: &mut Vec<DataFile>,
    ) -> Result<u64> {
        let table = request.table.as_str();
        let write_id = uuid::Uuid::new_v4().simple().to_string();
        let write_err = |e: parquet::errors::ParquetError| Error::Write {
            table: table.to_string(),
            detail: e.to_string(),
        };
        // Every file of the write is laid out as its first rows call for.
        let first = layout::sample(&mut batches).await?;
        let properties =
            layout::properties(schema, &first, self.rows_per_file).map_err(|e| Error::Write {
                table: table.to_string(),
                detail: format!("the rows to write do not match the table's schema: {e}"),
            })?;
        let mut batches = futures::stream::iter(first.into_iter().map(Ok)).chain(batches);
        let mut total_rows = 0u64;
        let mut current: Option<(AsyncArrowWriter<ParquetObjectWriter>, u64)> = None;
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let (writer, rows) = match current.as_mut() {
                Some(open) => open,
                None => current.insert((
                    self.open_file(table, &write_id, schema, &properties, files)?,
                    0,
                )),
            };
            writer.write(&batch).await.map_err(write_err)?;
            *rows += batch.num_rows() as u64;
            total_rows += batch.num_rows() as u64;
            if *rows >= self.rows_per_file as u64 {
                if let Some(done) = current.take() {
                    finish_file(done, files).await.map_err(write_err)?;
                }
            }
        }
        if let Some(done) = current.take() {
            finish_file(done, files).await.map_err(write_err)?;
        }
        if total_rows == 0 {
            if !request.allow_empty {
                return Err(Error::BadSource {
                    source_name: table.to_string(),
                    reason: "no rows to write".to_string(),
                });
            }
            // An empty table still has a file: readers then see its schema like any other.
            let empty = self.open_file(table, &write_id, schema, &properties, files)?;
            finish_file((empty, 0), files).await.map_err(write_err)?;
        }
        Ok(total_rows)
    }

    /// Starts the next data file of this write; its key is recorded first so a
    /// failure can delete what was put.
    fn open_file(
        &self,
        table: &str,
        write_id: &str,
        schema: &SchemaRef,
        properties: &WriterProperties,
        files: &mut Vec<DataFile>,
    ) -> Result<AsyncArrowWriter<ParquetObjectWriter>> {
        let bucket = self.catalog.bucket();
        let key = format!("tables/{table}/data/{write_id}-{:05}.parquet", files.len());
        let sink =
            ParquetObjectWriter::new(Arc::clone(bucket.store()), ObjectPath::from(key.as_str()));
        let writer = AsyncArrowWriter::try_new(sink, Arc::clone(schema), Some(properties.clone()))
            .map_err(|e| Error::Write {
                table: table.to_string(),
                detail: e.to_string(),
            })?;
        files.push(DataFile {
            object: bucket.object_ref(key),
            size_bytes: 0,
            row_count: 0,
        });
        Ok(writer)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use arrow::array::Int64Array;
    use arrow_schema::{DataType, Field, Schema};
    use lakehouse_catalog_raft::model::Sensitivity;
    use lakehouse_common::config::CatalogConfig;
    use lakehouse_common::{Bucket, ErrorKind, SystemClock};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]))
    }

    fn batch(ids: &[i64]) -> Result<RecordBatch> {
        Ok(RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(ids.to_vec()))]).unwrap())
    }

    fn request(mode: Option<WriteMode>, metadata: bool) -> WriteRequest {
        WriteRequest {
            table: "t".to_string(),
            mode,
            metadata: metadata.then(|| TableMetadata {
                owner: "anonymous".to_string(),
                sensitivity: Sensitivity::Internal,
                lineage: "flight-sql:anonymous".to_string(),
                freshness_sla: String::new(),
                description: String::new(),
                tags: Vec::new(),
                metadata_incomplete: true,
            }),
            writer: "test".to_string(),
            allow_empty: true,
        }
    }

    async fn write(
        writer: &TableWriter,
        request: WriteRequest,
        batches: Vec<Result<RecordBatch>>,
    ) -> Result<WriteSummary> {
        let prepared = writer.prepare(&request)?;
        writer
            .write(request, prepared, schema(), futures::stream::iter(batches))
            .await
    }

    #[tokio::test]
    async fn streams_modes_empty_writes_and_drop() {
        let dir = tempfile::tempdir().unwrap();
        let bucket_dir = dir.path().join("bucket");
        std::fs::create_dir_all(&bucket_dir).unwrap();
        let bucket =
            Bucket::open("primary", bucket_dir.to_str().unwrap(), &Default::default()).unwrap();
        let catalog = Catalog::open(
            &CatalogConfig::default(),
            &dir.path().join("catalog"),
            bucket,
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        let writer = TableWriter::new(catalog.clone(), 2, Duration::from_secs(10));

        let err = write(&writer, request(Some(WriteMode::Append), false), vec![])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

        // An empty create still records the schema, in one empty file.
        let empty = write(&writer, request(Some(WriteMode::Create), true), vec![])
            .await
            .unwrap();
        assert_eq!((empty.version, empty.rows, empty.files), (1, 0, 1));

        let err = write(&writer, request(Some(WriteMode::Create), true), vec![])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
        assert!(err.to_string().contains("append"), "{err}");

        let appended = write(
            &writer,
            request(Some(WriteMode::Append), false),
            vec![batch(&[1, 2]), batch(&[3])],
        )
        .await
        .unwrap();
        assert_eq!((appended.version, appended.rows, appended.files), (2, 3, 2));
        let nothing = write(&writer, request(Some(WriteMode::Append), false), vec![])
            .await
            .unwrap();
        assert_eq!((nothing.version, nothing.rows), (2, 0), "no new version");

        // A failing stream commits nothing and leaves no lease behind.
        let failed = Error::Rows {
            table: "t".to_string(),
            kind: ErrorKind::InvalidInput,
            detail: "division by zero".to_string(),
        };
        let err = write(
            &writer,
            request(Some(WriteMode::Append), false),
            vec![batch(&[4]), Err(failed)],
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("division by zero"), "{err}");
        assert_eq!(catalog.table("t").unwrap().versions.len(), 2);

        writer.drop_table("t", "test").await.unwrap();
        assert!(catalog.table("t").is_none());
        let err = writer.drop_table("t", "test").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        catalog.shutdown().await.unwrap();
    }
}
