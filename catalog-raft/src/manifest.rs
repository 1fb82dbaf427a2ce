//! Catalog manifests (ADR-001/002): after every applied change the leader writes
//! the whole catalog state to `_catalog/manifests/<catalog_version:020>.parquet`
//! in the bucket. The bucket is the source of truth; the local Raft log is a cache
//! of it, and a catalog whose local directory is gone restores from the newest
//! readable manifest.
//!
//! Layout: one row per record, columns `entity` ("table" | "version" | "view" |
//! "lease" | "grant" | "index" | "index_version" | "counters"), `name` (table,
//! view or index name, the role of a grant, or "counters"), `version` (table
//! version for "version" rows, index version for "index_version" rows, else
//! null), `body` (the record as JSON; a table's or an index's row leaves out its
//! versions, which get a row each).
//! File key-value metadata carries `lakehouse.manifest.format_version` and
//! `lakehouse.catalog_version`.
//!
//! Format versions: 1 has no "view" rows; 2 adds them; 3 adds "grant" rows (a
//! role's granted tables as a JSON list); 4 adds "index" and "index_version"
//! rows (vector indexes, ADR-014). This build writes 4 and reads all four.
//!
//! A Raft snapshot of the catalog is the same file with more key-value metadata
//! (its log position and membership, see `store`), so one decoder reads both.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use bytes::Bytes;
use futures::TryStreamExt;
use lakehouse_common::Bucket;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{CatalogState, IndexVersion, Lease, Table, TableVersion, VectorIndex, View};

/// Where manifests live in the bucket.
pub const MANIFEST_DIR: &str = "_catalog/manifests";
/// The layout described above, as written by this build.
pub const FORMAT_VERSION: &str = "4";
/// Every format this build reads; a newer one is refused.
const READABLE_FORMATS: [&str; 4] = ["1", "2", "3", "4"];
pub const KEY_FORMAT_VERSION: &str = "lakehouse.manifest.format_version";
pub const KEY_CATALOG_VERSION: &str = "lakehouse.catalog_version";

const ENTITY_TABLE: &str = "table";
const ENTITY_VERSION: &str = "version";
const ENTITY_VIEW: &str = "view";
const ENTITY_LEASE: &str = "lease";
const ENTITY_GRANT: &str = "grant";
const ENTITY_INDEX: &str = "index";
const ENTITY_INDEX_VERSION: &str = "index_version";
const ENTITY_COUNTERS: &str = "counters";

/// The key of the manifest for `catalog_version`; zero-padded so keys sort by version.
pub fn manifest_key(catalog_version: u64) -> String {
    format!("{MANIFEST_DIR}/{catalog_version:020}.parquet")
}

/// The catalog version a manifest key names, if it is one.
fn version_of(key: &Path) -> Option<u64> {
    key.filename()?.strip_suffix(".parquet")?.parse().ok()
}

#[derive(Debug, Serialize, Deserialize)]
struct Counters {
    last_token: u64,
    catalog_version: u64,
    /// Absent from manifests written before etcd leases existed.
    #[serde(default)]
    etcd_fences: BTreeMap<String, u64>,
}

fn manifest_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("entity", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("version", DataType::UInt64, true),
        Field::new("body", DataType::Utf8, false),
    ]))
}

/// Encodes `state` as a manifest file.
pub fn encode(state: &CatalogState) -> Result<Bytes> {
    encode_as(state, FORMAT_VERSION, Vec::new())
}

/// Encodes `state` as a manifest file whose key-value metadata also holds
/// `extra` (the Raft snapshot adds its log position and membership this way).
pub fn encode_with_metadata(state: &CatalogState, extra: Vec<KeyValue>) -> Result<Bytes> {
    encode_as(state, FORMAT_VERSION, extra)
}

/// Encodes `state` declaring `format_version` (tests write older formats with it).
fn encode_as(state: &CatalogState, format_version: &str, extra: Vec<KeyValue>) -> Result<Bytes> {
    let key = manifest_key(state.catalog_version);
    let fail = |reason: String| Error::Manifest {
        key: key.clone(),
        reason,
    };
    let json = |value: Result<String, serde_json::Error>| {
        value.map_err(|e| fail(format!("encoding: {e}")))
    };

    let mut entity = Vec::new();
    let mut name = Vec::new();
    let mut version = Vec::new();
    let mut body = Vec::new();
    // A table's or an index's row holds everything but its versions.
    let without_versions = |value: Result<serde_json::Value, serde_json::Error>| {
        let mut record = value.map_err(|e| fail(format!("encoding: {e}")))?;
        if let Some(map) = record.as_object_mut() {
            map.remove("versions");
        }
        Ok::<_, Error>(record.to_string())
    };
    for table in state.tables.values() {
        entity.push(ENTITY_TABLE);
        name.push(table.name.clone());
        version.push(None);
        body.push(without_versions(serde_json::to_value(table))?);
        for v in &table.versions {
            entity.push(ENTITY_VERSION);
            name.push(table.name.clone());
            version.push(Some(v.version));
            body.push(json(serde_json::to_string(v))?);
        }
    }
    for view in state.views.values() {
        entity.push(ENTITY_VIEW);
        name.push(view.name.clone());
        version.push(None);
        body.push(json(serde_json::to_string(view))?);
    }
    for lease in state.leases.values() {
        entity.push(ENTITY_LEASE);
        name.push(lease.table.clone());
        version.push(None);
        body.push(json(serde_json::to_string(lease))?);
    }
    for (role, tables) in &state.grants {
        entity.push(ENTITY_GRANT);
        name.push(role.clone());
        version.push(None);
        body.push(json(serde_json::to_string(tables))?);
    }
    for index in state.indexes.values() {
        entity.push(ENTITY_INDEX);
        name.push(index.name.clone());
        version.push(None);
        body.push(without_versions(serde_json::to_value(index))?);
        for v in &index.versions {
            entity.push(ENTITY_INDEX_VERSION);
            name.push(index.name.clone());
            version.push(Some(v.version));
            body.push(json(serde_json::to_string(v))?);
        }
    }
    entity.push(ENTITY_COUNTERS);
    name.push(ENTITY_COUNTERS.to_string());
    version.push(None);
    body.push(json(serde_json::to_string(&Counters {
        last_token: state.last_token,
        catalog_version: state.catalog_version,
        etcd_fences: state.etcd_fences.clone(),
    }))?);

    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(entity)),
        Arc::new(StringArray::from(name)),
        Arc::new(UInt64Array::from(version)),
        Arc::new(StringArray::from(body)),
    ];
    let batch =
        RecordBatch::try_new(manifest_schema(), columns).map_err(|e| fail(e.to_string()))?;
    let mut key_values = vec![
        KeyValue::new(KEY_FORMAT_VERSION.to_string(), format_version.to_string()),
        KeyValue::new(
            KEY_CATALOG_VERSION.to_string(),
            state.catalog_version.to_string(),
        ),
    ];
    key_values.extend(extra);
    let properties = WriterProperties::builder()
        .set_key_value_metadata(Some(key_values))
        .build();
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buffer, manifest_schema(), Some(properties))
        .map_err(|e| fail(e.to_string()))?;
    writer.write(&batch).map_err(|e| fail(e.to_string()))?;
    writer.close().map_err(|e| fail(e.to_string()))?;
    Ok(Bytes::from(buffer))
}

/// Decodes a manifest file read from `key`.
pub fn decode(key: &str, bytes: Bytes) -> Result<CatalogState> {
    decode_with_metadata(key, bytes).map(|(state, _)| state)
}

/// Decodes a manifest file read from `key`, returning its key-value metadata too.
pub fn decode_with_metadata(
    key: &str,
    bytes: Bytes,
) -> Result<(CatalogState, BTreeMap<String, String>)> {
    let fail = |reason: String| Error::Manifest {
        key: key.to_string(),
        reason,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| fail(format!("not a readable Parquet file: {e}")))?;
    let kv = file_key_values(builder.metadata());
    match kv.get(KEY_FORMAT_VERSION) {
        Some(v) if READABLE_FORMATS.contains(&v.as_str()) => {}
        Some(v) => {
            return Err(fail(format!(
                "format version {v} is not one this build reads ({}); was it written by a newer lakehouse?",
                READABLE_FORMATS.join(", ")
            )))
        }
        None => return Err(fail(format!("no {KEY_FORMAT_VERSION} in the file metadata"))),
    }
    let declared_version: u64 = match kv.get(KEY_CATALOG_VERSION) {
        Some(v) => v
            .parse()
            .map_err(|_| fail(format!("{KEY_CATALOG_VERSION} {v:?} is not a number")))?,
        None => {
            return Err(fail(format!(
                "no {KEY_CATALOG_VERSION} in the file metadata"
            )))
        }
    };
    let reader = builder.build().map_err(|e| fail(e.to_string()))?;

    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    let mut versions: Vec<(String, TableVersion)> = Vec::new();
    let mut views = BTreeMap::new();
    let mut leases = BTreeMap::new();
    let mut grants = BTreeMap::new();
    let mut indexes: BTreeMap<String, VectorIndex> = BTreeMap::new();
    let mut index_versions: Vec<(String, IndexVersion)> = Vec::new();
    let mut counters: Option<Counters> = None;
    for batch in reader {
        let batch = batch.map_err(|e| fail(format!("reading rows: {e}")))?;
        let strings = |i: usize, column: &str| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| fail(format!("column `{column}` is not utf8")))
        };
        if batch.num_columns() != 4 {
            return Err(fail(format!(
                "{} columns instead of 4",
                batch.num_columns()
            )));
        }
        let entity = strings(0, "entity")?;
        let name = strings(1, "name")?;
        let version = batch
            .column(2)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .cloned()
            .ok_or_else(|| fail("column `version` is not uint64".to_string()))?;
        let body = strings(3, "body")?;
        for row in 0..batch.num_rows() {
            let body_text = body.value(row);
            let bad = |e: serde_json::Error| {
                fail(format!(
                    "row {row}: {} `{}`: {e}",
                    entity.value(row),
                    name.value(row)
                ))
            };
            // A record without its versions, which are read from rows of their own.
            let without_versions = || {
                let mut record: serde_json::Value = serde_json::from_str(body_text).map_err(bad)?;
                if let Some(map) = record.as_object_mut() {
                    map.insert("versions".to_string(), serde_json::Value::Array(Vec::new()));
                }
                Ok::<_, Error>(record)
            };
            let check_version = |found: u64| {
                if version.is_valid(row) && version.value(row) != found {
                    return Err(fail(format!(
                        "row {row}: version column {} disagrees with the record's version {found}",
                        version.value(row),
                    )));
                }
                Ok(())
            };
            match entity.value(row) {
                ENTITY_TABLE => {
                    let table: Table = serde_json::from_value(without_versions()?).map_err(bad)?;
                    tables.insert(table.name.clone(), table);
                }
                ENTITY_VERSION => {
                    let v: TableVersion = serde_json::from_str(body_text).map_err(bad)?;
                    check_version(v.version)?;
                    versions.push((name.value(row).to_string(), v));
                }
                ENTITY_INDEX => {
                    let index: VectorIndex =
                        serde_json::from_value(without_versions()?).map_err(bad)?;
                    indexes.insert(index.name.clone(), index);
                }
                ENTITY_INDEX_VERSION => {
                    let v: IndexVersion = serde_json::from_str(body_text).map_err(bad)?;
                    check_version(v.version)?;
                    index_versions.push((name.value(row).to_string(), v));
                }
                ENTITY_VIEW => {
                    let view: View = serde_json::from_str(body_text).map_err(bad)?;
                    views.insert(view.name.clone(), view);
                }
                ENTITY_LEASE => {
                    let lease: Lease = serde_json::from_str(body_text).map_err(bad)?;
                    leases.insert(lease.table.clone(), lease);
                }
                ENTITY_GRANT => {
                    let tables = serde_json::from_str(body_text).map_err(bad)?;
                    grants.insert(name.value(row).to_string(), tables);
                }
                ENTITY_COUNTERS => counters = Some(serde_json::from_str(body_text).map_err(bad)?),
                other => {
                    return Err(fail(format!(
                        "row {row}: unknown entity {other:?}; was it written by a newer lakehouse?"
                    )))
                }
            }
        }
    }
    for (name, version) in versions {
        let table = tables.get_mut(&name).ok_or_else(|| {
            fail(format!(
                "version {} of table `{name}` has no table row",
                version.version
            ))
        })?;
        table.versions.push(version);
    }
    for table in tables.values_mut() {
        table.versions.sort_by_key(|v| v.version);
    }
    for (name, version) in index_versions {
        let index = indexes.get_mut(&name).ok_or_else(|| {
            fail(format!(
                "version {} of vector index `{name}` has no index row",
                version.version
            ))
        })?;
        index.versions.push(version);
    }
    for index in indexes.values_mut() {
        index.versions.sort_by_key(|v| v.version);
    }
    let counters = counters.ok_or_else(|| fail("no counters row".to_string()))?;
    if counters.catalog_version != declared_version {
        return Err(fail(format!(
            "counters say catalog version {} but the file metadata says {declared_version}",
            counters.catalog_version
        )));
    }
    let state = CatalogState {
        tables,
        views,
        leases,
        grants,
        indexes,
        last_token: counters.last_token,
        etcd_fences: counters.etcd_fences,
        catalog_version: counters.catalog_version,
    };
    Ok((state, kv))
}

/// The key-value metadata of a manifest file read from `key`, without decoding
/// its rows (only the footer is parsed).
pub fn key_values(key: &str, bytes: Bytes) -> Result<BTreeMap<String, String>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| Error::Manifest {
        key: key.to_string(),
        reason: format!("not a readable Parquet file: {e}"),
    })?;
    Ok(file_key_values(builder.metadata()))
}

/// Key-value metadata entries that have a value.
fn file_key_values(metadata: &ParquetMetaData) -> BTreeMap<String, String> {
    metadata
        .file_metadata()
        .key_value_metadata()
        .map(|kvs| {
            kvs.iter()
                .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Writes the manifest for `state`. Keys are unique per catalog version and a
/// put is atomic, so a reader never sees a partial manifest.
pub(crate) async fn write(bucket: &Bucket, state: &CatalogState) -> Result<String> {
    let key = manifest_key(state.catalog_version);
    let bytes = encode(state)?;
    bucket
        .store()
        .put(&Path::from(key.as_str()), PutPayload::from(bytes))
        .await
        .map_err(|e| bucket.storage_error(e))?;
    Ok(key)
}

/// Manifests in the bucket, oldest first.
pub(crate) async fn list(bucket: &Bucket) -> Result<Vec<(u64, Path)>> {
    let objects: Vec<_> = bucket
        .store()
        .list(Some(&Path::from(MANIFEST_DIR)))
        .try_collect()
        .await
        .map_err(|e| bucket.storage_error(e))?;
    let mut manifests: Vec<(u64, Path)> = objects
        .into_iter()
        .filter_map(|o| version_of(&o.location).map(|v| (v, o.location)))
        .collect();
    manifests.sort_by_key(|(v, _)| *v);
    Ok(manifests)
}

/// Reads the newest readable manifest. A manifest that cannot be read is skipped
/// with a warning; if manifests exist and none can be read, that is an error
/// (starting empty would let garbage collection delete every data file).
pub(crate) async fn read_latest(bucket: &Bucket) -> Result<Option<CatalogState>> {
    let manifests = list(bucket).await?;
    let mut last_error = None;
    for (_, path) in manifests.iter().rev() {
        let bytes = match bucket.store().get(path).await {
            Ok(result) => result.bytes().await,
            Err(e) => Err(e),
        };
        let decoded = match bytes {
            Ok(bytes) => decode(path.as_ref(), bytes),
            Err(e) => Err(Error::from(bucket.storage_error(e))),
        };
        match decoded {
            Ok(state) => return Ok(Some(state)),
            Err(e) => {
                tracing::warn!(manifest = %path, error = %e, "skipping unreadable catalog manifest");
                last_error = Some(e);
            }
        }
    }
    match last_error {
        None => Ok(None),
        Some(e) => Err(Error::Manifest {
            key: MANIFEST_DIR.to_string(),
            reason: format!(
                "none of the {} manifests can be read (the newest failed with: {e}); refusing to start an empty catalog over them",
                manifests.len()
            ),
        }),
    }
}

/// Deletes all but the newest `retained` manifests (at least one is kept).
/// Returns how many were deleted.
pub(crate) async fn prune(bucket: &Bucket, retained: usize) -> Result<usize> {
    let manifests = list(bucket).await?;
    let excess = manifests.len().saturating_sub(retained.max(1));
    for (_, path) in &manifests[..excess] {
        match bucket.store().delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(bucket.storage_error(e).into()),
        }
    }
    Ok(excess)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use arrow_schema::{DataType, Field, Schema};
    use lakehouse_common::ObjectRef;
    use proptest::prelude::*;

    use super::*;
    use crate::model::{
        Chunking, DataFile, HnswParams, IndexShard, IndexStatus, Sensitivity, ShardBackend,
        TableMetadata, WriteMode,
    };

    fn data_type() -> impl Strategy<Value = DataType> {
        prop_oneof![
            Just(DataType::Int64),
            Just(DataType::Float64),
            Just(DataType::Utf8),
            Just(DataType::Boolean),
            Just(DataType::Date32),
        ]
    }

    fn schema() -> impl Strategy<Value = Schema> {
        prop::collection::btree_map("[a-z][a-z0-9_]{0,6}", (data_type(), any::<bool>()), 1..5)
            .prop_map(|cols| {
                Schema::new(
                    cols.into_iter()
                        .map(|(name, (t, nullable))| Field::new(name, t, nullable))
                        .collect::<Vec<_>>(),
                )
            })
    }

    fn data_file() -> impl Strategy<Value = DataFile> {
        ("[a-z0-9/_.-]{1,30}", any::<u64>(), any::<u64>()).prop_map(
            |(key, size_bytes, row_count)| DataFile {
                object: ObjectRef::primary(format!("tables/{key}")),
                size_bytes,
                row_count,
            },
        )
    }

    fn metadata() -> impl Strategy<Value = TableMetadata> {
        (
            "\\PC{0,12}",
            prop_oneof![
                Just(Sensitivity::Public),
                Just(Sensitivity::Internal),
                Just(Sensitivity::Confidential),
                Just(Sensitivity::Restricted)
            ],
            "\\PC{0,20}",
            "[0-9]{1,3}[hd]",
            "\\PC{0,40}",
            prop::collection::vec("\\PC{0,8}", 0..4),
            any::<bool>(),
        )
            .prop_map(
                |(
                    owner,
                    sensitivity,
                    lineage,
                    freshness_sla,
                    description,
                    tags,
                    metadata_incomplete,
                )| TableMetadata {
                    owner,
                    sensitivity,
                    lineage,
                    freshness_sla,
                    description,
                    tags,
                    metadata_incomplete,
                },
            )
    }

    fn version() -> impl Strategy<Value = TableVersion> {
        (
            schema(),
            prop::collection::vec(data_file(), 0..4),
            any::<u64>(),
            any::<i64>(),
            prop_oneof![
                Just(WriteMode::Create),
                Just(WriteMode::Append),
                Just(WriteMode::Replace)
            ],
            any::<u64>(),
        )
            .prop_map(
                |(schema, files, row_count, committed_at_ms, mode, fencing_token)| TableVersion {
                    version: 0,
                    schema,
                    files,
                    row_count,
                    committed_at_ms,
                    mode,
                    fencing_token,
                },
            )
    }

    fn object() -> impl Strategy<Value = ObjectRef> {
        ("[a-z]{1,8}", "[a-z0-9/_.-]{1,30}").prop_map(|(bucket, key)| ObjectRef {
            bucket,
            key: format!("indexes/{key}"),
        })
    }

    fn shard() -> impl Strategy<Value = IndexShard> {
        (
            object(),
            prop::option::of(object()),
            prop_oneof![Just(ShardBackend::Hnsw), Just(ShardBackend::Lance)],
            any::<u64>(),
        )
            .prop_map(|(data, graph, backend, chunks)| IndexShard {
                data,
                graph,
                backend,
                chunks,
            })
    }

    fn index_version() -> impl Strategy<Value = IndexVersion> {
        let recipe = (
            "\\PC{1,10}",
            "\\PC{1,20}",
            "\\PC{0,10}",
            any::<u32>(),
            "[a-z_][a-z0-9_]{0,10}",
            "[a-z_][a-z0-9_]{0,10}",
            prop::option::of("[a-z_][a-z0-9_]{0,10}"),
            any::<u64>(),
            (any::<u32>(), any::<u32>()),
            (any::<u32>(), any::<u32>(), any::<u32>()),
        );
        let outcome = (
            prop::collection::vec(shard(), 0..3),
            prop_oneof![
                Just(IndexStatus::Building),
                Just(IndexStatus::Ready),
                Just(IndexStatus::Failed)
            ],
            prop::option::of("\\PC{0,40}"),
            any::<u64>(),
            any::<i64>(),
        );
        (recipe, outcome).prop_map(
            |(
                (
                    profile,
                    model,
                    model_version,
                    dims,
                    source_table,
                    source_column,
                    key_column,
                    source_table_version,
                    (chunk_size, overlap),
                    (m, ef_construction, ef_search),
                ),
                (shards, status, error, chunks_embedded, created_at_ms),
            )| IndexVersion {
                version: 0,
                profile,
                model,
                model_version,
                dims,
                source_table,
                source_column,
                key_column,
                source_table_version,
                chunking: Chunking {
                    chunk_size,
                    overlap,
                },
                hnsw: HnswParams {
                    m,
                    ef_construction,
                    ef_search,
                },
                shards,
                status,
                error,
                chunks_embedded,
                created_at_ms,
            },
        )
    }

    /// Indexes with versions numbered upwards from 1 with gaps (dropped ones).
    fn indexes() -> impl Strategy<Value = BTreeMap<String, VectorIndex>> {
        let index = (
            prop::collection::vec((1..3u64, index_version()), 1..4),
            any::<prop::sample::Index>(),
            any::<bool>(),
            0..3u64,
        );
        prop::collection::btree_map("[a-z_][a-z0-9_]{0,10}", index, 0..3).prop_map(|indexes| {
            indexes
                .into_iter()
                .map(|(name, (versions, active_pick, has_active, unused))| {
                    let mut number = 0;
                    let versions: Vec<IndexVersion> = versions
                        .into_iter()
                        .map(|(step, v)| {
                            number += step;
                            IndexVersion {
                                version: number,
                                ..v
                            }
                        })
                        .collect();
                    let active = has_active.then(|| active_pick.get(&versions).version);
                    let index = VectorIndex {
                        name: name.clone(),
                        versions,
                        active,
                        next_version: number + 1 + unused,
                    };
                    (name, index)
                })
                .collect()
        })
    }

    fn state() -> impl Strategy<Value = CatalogState> {
        let table = (
            metadata(),
            any::<i64>(),
            prop::collection::vec(version(), 1..4),
        );
        (
            prop::collection::btree_map("[a-z_][a-z0-9_]{0,10}", table, 0..4),
            prop::collection::btree_map(
                "[a-z_][a-z0-9_]{0,10}",
                ("\\PC{1,10}", any::<u64>(), any::<i64>()),
                0..3,
            ),
            any::<u64>(),
            any::<u64>(),
            prop::collection::btree_map(
                "[a-z_][a-z0-9_]{0,10}",
                ("\\PC{1,40}", schema(), "\\PC{1,10}", any::<i64>()),
                0..3,
            ),
            prop::collection::btree_map(
                "[a-z_*][a-z0-9_]{0,10}",
                prop::collection::btree_set("[a-z_*][a-z0-9_]{0,10}", 1..3),
                0..3,
            ),
            indexes(),
        )
            .prop_map(
                |(tables, leases, last_token, catalog_version, views, grants, indexes)| {
                    CatalogState {
                        grants,
                        indexes,
                        views: views
                            .into_iter()
                            .map(|(name, (sql, schema, owner, created_at_ms))| {
                                let view = View {
                                    name: name.clone(),
                                    sql,
                                    schema,
                                    owner,
                                    created_at_ms,
                                };
                                (name, view)
                            })
                            .collect(),
                        tables: tables
                            .into_iter()
                            .map(|(name, (metadata, created_at_ms, versions))| {
                                let versions = versions
                                    .into_iter()
                                    .enumerate()
                                    .map(|(i, v)| TableVersion {
                                        version: i as u64 + 1,
                                        ..v
                                    })
                                    .collect();
                                let table = Table {
                                    name: name.clone(),
                                    metadata,
                                    created_at_ms,
                                    versions,
                                };
                                (name, table)
                            })
                            .collect(),
                        leases: leases
                            .into_iter()
                            .map(|(table, (holder, token, expires_at_ms))| {
                                let lease = Lease {
                                    table: table.clone(),
                                    holder,
                                    token,
                                    expires_at_ms,
                                    issuer: Default::default(),
                                };
                                (table, lease)
                            })
                            .collect(),
                        last_token,
                        etcd_fences: BTreeMap::from([("fenced".to_string(), last_token)]),
                        catalog_version,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn manifest_roundtrips(state in state()) {
            let bytes = encode(&state).unwrap();
            let decoded = decode("test", bytes).unwrap();
            prop_assert_eq!(decoded, state);
        }
    }

    #[test]
    fn file_metadata_names_format_and_version() {
        let state = CatalogState {
            catalog_version: 42,
            ..Default::default()
        };
        let bytes = encode(&state).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        let kv = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap();
        let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
        assert_eq!(get(KEY_FORMAT_VERSION).as_deref(), Some(FORMAT_VERSION));
        assert_eq!(get(KEY_CATALOG_VERSION).as_deref(), Some("42"));
        assert_eq!(
            manifest_key(42),
            "_catalog/manifests/00000000000000000042.parquet"
        );
    }

    #[test]
    fn format_1_manifests_without_views_still_read() {
        let state = CatalogState {
            catalog_version: 7,
            last_token: 3,
            ..Default::default()
        };
        let decoded = decode("v1", encode_as(&state, "1", Vec::new()).unwrap()).unwrap();
        assert_eq!(decoded, state);
        assert!(decoded.views.is_empty());
        for older in ["3", "2", "1"] {
            let decoded = decode("old", encode_as(&state, older, Vec::new()).unwrap()).unwrap();
            assert!(decoded.indexes.is_empty(), "format {older} has no indexes");
            if older != "3" {
                assert!(decoded.grants.is_empty(), "format {older} has no grants");
            }
        }

        let err = decode("v9", encode_as(&state, "9", Vec::new()).unwrap()).unwrap_err();
        assert!(err.to_string().contains("newer lakehouse"), "{err}");
    }

    #[test]
    fn garbage_is_an_error_naming_the_key() {
        let err = decode(
            "_catalog/manifests/x.parquet",
            Bytes::from_static(b"not parquet"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("x.parquet"), "{err}");
    }

    #[tokio::test]
    async fn newest_readable_manifest_wins_and_prune_keeps_newest() {
        let dir = tempfile::tempdir().unwrap();
        let bucket =
            Bucket::open("primary", dir.path().to_str().unwrap(), &Default::default()).unwrap();
        assert!(read_latest(&bucket).await.unwrap().is_none());
        for v in 1..=4 {
            let state = CatalogState {
                catalog_version: v,
                last_token: v * 10,
                ..Default::default()
            };
            write(&bucket, &state).await.unwrap();
        }
        // A torn or foreign file at the newest key is skipped.
        bucket
            .store()
            .put(
                &Path::from(manifest_key(5)),
                PutPayload::from_static(b"torn"),
            )
            .await
            .unwrap();
        let latest = read_latest(&bucket).await.unwrap().unwrap();
        assert_eq!(latest.catalog_version, 4);
        assert_eq!(latest.last_token, 40);

        assert_eq!(prune(&bucket, 2).await.unwrap(), 3);
        let left: Vec<u64> = list(&bucket)
            .await
            .unwrap()
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        assert_eq!(left, vec![4, 5]);

        bucket
            .store()
            .delete(&Path::from(manifest_key(4)))
            .await
            .unwrap();
        let err = read_latest(&bucket).await.unwrap_err();
        assert!(err.to_string().contains("refusing"), "{err}");
    }
}
