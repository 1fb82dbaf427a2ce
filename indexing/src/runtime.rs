//! What index tasks need on the node that runs them: the bucket, the embedding
//! models and the shards already loaded. The codec hands it to every plan it
//! decodes, so a task's plan carries only object references and parameters.

use std::sync::Arc;

use bytes::Bytes;
use lakehouse_common::{Bucket, ObjectRef};
use lakehouse_embedding::Embedders;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Error, Result};
use crate::loaded::{LoadedShard, ShardCache, ShardRef};

#[derive(Debug)]
pub struct IndexRuntime {
    bucket: Bucket,
    embedders: Arc<Embedders>,
    shards: ShardCache,
}

impl IndexRuntime {
    pub fn new(bucket: Bucket, embedders: Arc<Embedders>) -> Arc<Self> {
        Arc::new(Self {
            bucket,
            embedders,
            shards: ShardCache::default(),
        })
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

pub(crate) fn describe(object: &ObjectRef) -> String {
    format!("{}:{}", object.bucket, object.key)
}
