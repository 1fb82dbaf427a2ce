//! What index tasks need on the node that runs them: the bucket, the embedding
//! models and the shards already loaded. The codec hands it to every plan it
//! decodes, so a task's plan carries only object references and parameters.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use lakehouse_common::config::VectorConfig;
use lakehouse_common::{Bucket, ObjectRef};
use lakehouse_embedding::Embedders;
use lakehouse_vector::LanceParams;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::file::metadata::PageIndexPolicy;

use crate::error::{Error, Result};
use crate::loaded::{LoadedShard, ShardCache, ShardRef};

#[derive(Debug)]
pub struct IndexRuntime {
    bucket: Bucket,
    embedders: Arc<Embedders>,
    /// How Lance shards are built and searched on this node.
    lance: LanceParams,
    shards: ShardCache,
}

/// The `[vector]` Lance settings.
pub(crate) fn lance_params(vector: &VectorConfig) -> LanceParams {
    LanceParams {
        partitions: vector.lance_partitions,
        nprobes: vector.lance_nprobes,
        ef: vector.lance_ef,
        refine_factor: vector.lance_refine_factor,
    }
}

impl IndexRuntime {
    /// `vector`: the node's `[vector]` settings (how it opens and searches Lance shards).
    pub fn new(bucket: Bucket, embedders: Arc<Embedders>, vector: &VectorConfig) -> Arc<Self> {
        Arc::new(Self {
            bucket,
            embedders,
            lance: lance_params(vector),
            shards: ShardCache::default(),
        })
    }

    pub(crate) fn lance(&self) -> &LanceParams {
        &self.lance
    }

    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    pub fn embedders(&self) -> &Arc<Embedders> {
        &self.embedders
    }

    /// `shard`, loaded on this node (once; later calls find it in memory).
    pub(crate) async fn load(&self, shard: &ShardRef) -> Result<Arc<LoadedShard>> {
        self.shards.get(shard, self).await
    }

    /// The store holding `object` and its path there. Only the primary bucket is
    /// configured today; federated buckets (ADR-012) resolve here.
    pub(crate) fn locate(&self, object: &ObjectRef) -> Result<(&Arc<dyn ObjectStore>, Path)> {
        if object.bucket != self.bucket.name() {
            return Err(Error::UnknownBucket {
                location: describe(object),
                bucket: object.bucket.clone(),
            });
        }
        let path = Path::parse(&object.key).map_err(|e| Error::BadShard {
            location: describe(object),
            reason: e.to_string(),
        })?;
        Ok((self.bucket.store(), path))
    }

    /// The URI Lance opens the dataset `object` at. Lance is built without its
    /// cloud object stores (they bring the AWS SDK), so only local buckets.
    pub(crate) fn lance_uri(&self, object: &ObjectRef) -> Result<String> {
        self.locate(object)?;
        let url = self.bucket.url_of(&object.key);
        if url.starts_with("file://") {
            Ok(url)
        } else {
            Err(Error::InvalidArgument(format!(
                "shard {}: Lance shards need a local bucket in this build, and bucket `{}` is at {url}; \
                 use vector_backend = \"parquet\" and a vector.ram_ceiling_bytes that every shard fits under",
                describe(object),
                self.bucket.name()
            )))
        }
    }

    /// Deletes every object under the directory `object`.
    pub(crate) async fn delete_under(&self, object: &ObjectRef) -> Result<()> {
        let (store, path) = self.locate(object)?;
        let found: Vec<_> = store.list(Some(&path)).try_collect().await?;
        for meta in found {
            store.delete(&meta.location).await?;
        }
        Ok(())
    }

    /// Bytes of every object under the directory `object`.
    pub(crate) async fn size_under(&self, object: &ObjectRef) -> Result<u64> {
        let (store, path) = self.locate(object)?;
        let found: Vec<_> = store.list(Some(&path)).try_collect().await?;
        Ok(found.iter().map(|m| m.size).sum())
    }

    /// Opens the Parquet file `object` for ranged reads: its footer and page
    /// index are read now, the rest by the readers of [`RangedParquet`].
    pub(crate) async fn parquet(&self, object: &ObjectRef) -> Result<RangedParquet> {
        let (store, path) = self.locate(object)?;
        let mut reader = ParquetObjectReader::new(Arc::clone(store), path);
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let metadata = ArrowReaderMetadata::load_async(&mut reader, options)
            .await
            .map_err(|e| Error::BadShard {
                location: describe(object),
                reason: format!("not readable as Parquet: {e}"),
            })?;
        Ok(RangedParquet { reader, metadata })
    }

    pub(crate) async fn get(&self, object: &ObjectRef) -> Result<Bytes> {
        let (store, path) = self.locate(object)?;
        Ok(store.get(&path).await?.bytes().await?)
    }

    /// Writes `object` whole. Task outputs have deterministic names, so a
    /// retried task overwrites its own earlier attempt and nothing else.
    pub(crate) async fn put(&self, object: &ObjectRef, bytes: Vec<u8>) -> Result<()> {
        let (store, path) = self.locate(object)?;
        store
            .put(&path, PutPayload::from(Bytes::from(bytes)))
            .await?;
        Ok(())
    }
}

/// A Parquet object whose footer has been read: each [`RangedParquet::reader`]
/// fetches only the byte ranges of the row groups, pages and columns it selects.
pub(crate) struct RangedParquet {
    reader: ParquetObjectReader,
    metadata: ArrowReaderMetadata,
}

impl RangedParquet {
    pub(crate) fn reader(&self) -> ParquetRecordBatchStreamBuilder<ParquetObjectReader> {
        ParquetRecordBatchStreamBuilder::new_with_metadata(
            self.reader.clone(),
            self.metadata.clone(),
        )
    }
}

pub(crate) fn describe(object: &ObjectRef) -> String {
    format!("{}:{}", object.bucket, object.key)
}
