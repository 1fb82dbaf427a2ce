//! Garbage collection of data files, under two prefixes:
//!
//! - `tables/<name>/...`: a writer puts files there before it commits them; a
//!   crash or a refused commit leaves files no version references. They are
//!   deleted, except under a table whose writer lease is live (that writer may
//!   be between writing and committing), in the catalog or in etcd.
//! - `indexes/<name>/v<k>/...`: the shards of version `k` of a vector index.
//!   Kept while version `k` is in the catalog, whatever its status: a build
//!   writes there only after `CreateIndexVersion` gave it the number `k`, so a
//!   building version's files are never taken, and a failed build's partial
//!   output stays until its version is dropped. Once `k` is dropped nothing
//!   writes there again, as an index never reuses a number. (Dropping a whole
//!   index and creating one of the same name starts again at `v1`; the new
//!   version is in the catalog before its build writes a file, and the
//!   protection below is re-read whenever the catalog changed, so only a
//!   delete already under way can meet it, as with a lease taken mid-sweep.)
//!   Other keys under `indexes/` are not laid out by a version and are left alone.
//!
//! Under either prefix, an object a table version or an index shard references
//! is never deleted, nor anything inside a Lance shard's dataset directory.

use std::collections::{HashMap, HashSet};

use futures::TryStreamExt;
use lakehouse_common::{Bucket, Clock};
use object_store::path::Path;
use object_store::ObjectStoreExt;

use crate::error::Result;
use crate::lease::EtcdLeases;
use crate::model::ShardBackend;
use crate::store::Shared;

pub(crate) const TABLES_DIR: &str = "tables";
pub(crate) const INDEXES_DIR: &str = "indexes";

/// What may not be deleted, as of one catalog version.
struct Protected {
    catalog_version: u64,
    /// Keys of objects in this bucket referenced by a table version or an index shard.
    referenced: HashSet<String>,
    /// Lance shards' dataset directories in this bucket, each ending in `/`.
    referenced_dirs: Vec<String>,
    /// Tables with a live writer lease (catalog or etcd).
    leased: HashSet<String>,
    /// Index name → the numbers of its versions in the catalog.
    index_versions: HashMap<String, HashSet<u64>>,
}

impl Protected {
    fn of(shared: &Shared, bucket: &Bucket, now_ms: i64, etcd_leased: &HashSet<String>) -> Self {
        let applied = shared.read();
        let catalog = &applied.catalog;
        let in_bucket = |object: &lakehouse_common::ObjectRef| object.bucket == bucket.name();
        let shards = catalog
            .indexes
            .values()
            .flat_map(|i| &i.versions)
            .flat_map(|v| &v.shards);
        let table_files = catalog
            .tables
            .values()
            .flat_map(|t| &t.versions)
            .flat_map(|v| &v.files)
            .map(|f| &f.object);
        let shard_objects = shards
            .clone()
            .flat_map(|s| std::iter::once(&s.data).chain(&s.graph));
        Self {
            catalog_version: catalog.catalog_version,
            referenced: table_files
                .chain(shard_objects)
                .filter(|o| in_bucket(o))
                .map(|o| o.key.clone())
                .collect(),
            referenced_dirs: shards
                .filter(|s| s.backend == ShardBackend::Lance && in_bucket(&s.data))
                .map(|s| format!("{}/", s.data.key.trim_end_matches('/')))
                .collect(),
            leased: catalog
                .leases
                .values()
                .filter(|l| l.expires_at_ms > now_ms)
                .map(|l| l.table.clone())
                .chain(etcd_leased.iter().cloned())
                .collect(),
            index_versions: catalog
                .indexes
                .values()
                .map(|i| {
                    (
                        i.name.clone(),
                        i.versions.iter().map(|v| v.version).collect(),
                    )
                })
                .collect(),
        }
    }

    fn keeps(&self, key: &str) -> bool {
        if self.referenced.contains(key) || self.referenced_dirs.iter().any(|d| key.starts_with(d))
        {
            return true;
        }
        if let Some(rest) = key.strip_prefix("tables/") {
            let table = rest.split('/').next().unwrap_or_default();
            return self.leased.contains(table);
        }
        match index_version_of(key) {
            Some((index, version)) => self
                .index_versions
                .get(index)
                .is_some_and(|versions| versions.contains(&version)),
            None => true,
        }
    }
}

/// The index and version of a key under `indexes/<name>/v<k>/`.
fn index_version_of(key: &str) -> Option<(&str, u64)> {
    let mut parts = key.strip_prefix("indexes/")?.splitn(3, '/');
    let index = parts.next()?;
    let version = parts.next()?.strip_prefix('v')?.parse().ok()?;
    // Only objects inside the version's directory are its files.
    parts.next().filter(|rest| !rest.is_empty())?;
    Some((index, version))
}

/// Deletes unreferenced objects under `tables/` and dropped index versions'
/// objects under `indexes/`; returns how many.
pub(crate) async fn collect_garbage(
    bucket: &Bucket,
    shared: &Shared,
    clock: &dyn Clock,
    etcd: Option<&EtcdLeases>,
) -> Result<usize> {
    let mut objects = Vec::new();
    for dir in [TABLES_DIR, INDEXES_DIR] {
        let listed: Vec<_> = bucket
            .store()
            .list(Some(&Path::from(dir)))
            .try_collect()
            .await
            .map_err(|e| bucket.storage_error(e))?;
        objects.extend(listed);
    }
    if objects.is_empty() {
        return Ok(0);
    }
    // Read after listing: a listed file was written under a lease taken before
    // the listing, so a writer that may still commit it holds its key now.
    let etcd_leased = match etcd {
        Some(etcd) => etcd.held_tables().await?,
        None => HashSet::new(),
    };
    let mut protected = Protected::of(shared, bucket, clock.now_ms(), &etcd_leased);
    if protected.catalog_version == 0 {
        // An empty catalog over existing data means the manifests are missing, not
        // that every file is garbage: delete nothing.
        tracing::warn!(
            objects = objects.len(),
            "the catalog is empty but the bucket holds data files under tables/ or indexes/; not collecting garbage"
        );
        return Ok(0);
    }
    let mut removed = 0;
    for object in objects {
        // A change since the last look (a new lease, a commit, a new index
        // version) may protect more files.
        if shared.read().catalog.catalog_version != protected.catalog_version {
            protected = Protected::of(shared, bucket, clock.now_ms(), &etcd_leased);
        }
        let key = object.location.as_ref();
        if protected.keeps(key) {
            continue;
        }
        match bucket.store().delete(&object.location).await {
            Ok(()) => {
                tracing::info!(key, "deleted unreferenced data file");
                removed += 1;
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(bucket.storage_error(e).into()),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_version_keys() {
        assert_eq!(
            index_version_of("indexes/cand/v12/shard-0.parquet"),
            Some(("cand", 12))
        );
        assert_eq!(
            index_version_of("indexes/cand/v3/lance/data/x.lance"),
            Some(("cand", 3))
        );
        for other in [
            "indexes/cand/v3",
            "indexes/cand/notes.txt",
            "indexes/cand/vx/a",
            "tables/cand/v1/a",
        ] {
            assert_eq!(index_version_of(other), None, "{other}");
        }
    }
}
