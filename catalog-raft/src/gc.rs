//! Garbage collection of data files. A writer puts files under
//! `tables/<name>/...` before it commits them; a crash or a refused commit leaves
//! files no version references. They are deleted here, except under a table whose
//! writer lease is live (that writer may be between writing and committing).

use std::collections::HashSet;

use futures::TryStreamExt;
use lakehouse_common::{Bucket, Clock};
use object_store::path::Path;
use object_store::ObjectStoreExt;

use crate::error::Result;
use crate::store::Shared;

pub(crate) const TABLES_DIR: &str = "tables";

/// What may not be deleted, as of one catalog version.
struct Protected {
    catalog_version: u64,
    /// Keys of files in this bucket referenced by any version of any table.
    referenced: HashSet<String>,
    /// Tables with a live writer lease.
    leased: HashSet<String>,
}

impl Protected {
    fn of(shared: &Shared, bucket: &Bucket, now_ms: i64) -> Self {
        let applied = shared.read();
        let catalog = &applied.catalog;
        Self {
            catalog_version: catalog.catalog_version,
            referenced: catalog
                .tables
                .values()
                .flat_map(|t| &t.versions)
                .flat_map(|v| &v.files)
                .filter(|f| f.object.bucket == bucket.name())
                .map(|f| f.object.key.clone())
                .collect(),
            leased: catalog
                .leases
                .values()
                .filter(|l| l.expires_at_ms > now_ms)
                .map(|l| l.table.clone())
                .collect(),
        }
    }
}

/// Deletes unreferenced objects under `tables/`; returns how many.
pub(crate) async fn collect_garbage(
    bucket: &Bucket,
    shared: &Shared,
    clock: &dyn Clock,
) -> Result<usize> {
    let objects: Vec<_> = bucket
        .store()
        .list(Some(&Path::from(TABLES_DIR)))
        .try_collect()
        .await
        .map_err(|e| bucket.storage_error(e))?;
    if objects.is_empty() {
        return Ok(0);
    }
    let mut protected = Protected::of(shared, bucket, clock.now_ms());
    if protected.catalog_version == 0 {
        // An empty catalog over existing data means the manifests are missing, not
        // that every file is garbage: delete nothing.
        tracing::warn!(
            objects = objects.len(),
            "the catalog is empty but the bucket holds data files under tables/; not collecting garbage"
        );
        return Ok(0);
    }
    let mut removed = 0;
    for object in objects {
        // A change since the last look (a new lease, a commit) may protect more files.
        if shared.read().catalog.catalog_version != protected.catalog_version {
            protected = Protected::of(shared, bucket, clock.now_ms());
        }
        let key = object.location.as_ref();
        let table = key
            .strip_prefix("tables/")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default();
        if protected.referenced.contains(key) || protected.leased.contains(table) {
            continue;
        }
        match bucket.store().delete(&object.location).await {
            Ok(()) => {
                tracing::info!(table, key, "deleted unreferenced data file");
                removed += 1;
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(bucket.storage_error(e).into()),
        }
    }
    Ok(removed)
}
