//! Sizes of the objects that committed table versions hold, so that planning a
//! query does not ask the store about each file again.
//!
//! DataFusion's `ListingTable` sends a HEAD for every file URL it is given, on
//! every query: one request per file per query on S3, a blocking-pool round
//! trip per file on a local disk. The catalog already knows each committed
//! file's size, and committed objects never change (every write makes new
//! keys), so a query engine's store answers those HEADs from here.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Entries kept before the map starts over; the catalog records a table's
/// files each time a query resolves the table, so a dropped entry comes back.
const MAX_ENTRIES: usize = 1 << 18;

/// Committed objects by their path in the query engine's store, with their size.
#[derive(Debug, Default)]
pub struct CommittedObjects {
    sizes: RwLock<HashMap<Path, u64>>,
}

impl CommittedObjects {
    /// Records that `path` holds a committed object of `size` bytes.
    pub fn record(&self, path: &Path, size: u64) {
        if self.size(path) == Some(size) {
            return;
        }
        let mut sizes = self.sizes.write().unwrap_or_else(|p| p.into_inner());
        if sizes.len() >= MAX_ENTRIES {
            sizes.clear();
        }
        sizes.insert(path.clone(), size);
    }

    fn size(&self, path: &Path) -> Option<u64> {
        let sizes = self.sizes.read().unwrap_or_else(|p| p.into_inner());
        sizes.get(path).copied()
    }

    /// The metadata a HEAD of `path` would return. The modification time is a
    /// fixed one: caches keyed on (size, time) then hold across queries, which
    /// is right for an object that never changes.
    fn meta(&self, path: &Path) -> Option<ObjectMeta> {
        self.size(path).map(|size| ObjectMeta {
            location: path.clone(),
            last_modified: Default::default(),
            size,
            e_tag: None,
            version: None,
        })
    }
}

/// A query engine's store: a plain HEAD of a committed object is answered from
/// [`CommittedObjects`]; every other call goes to the store itself.
pub(crate) struct EngineStore {
    inner: Arc<dyn ObjectStore>,
    committed: Arc<CommittedObjects>,
}

impl EngineStore {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>, committed: Arc<CommittedObjects>) -> Self {
        Self { inner, committed }
    }
}

impl fmt::Debug for EngineStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineStore")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for EngineStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EngineStore({})", self.inner)
    }
}

/// A HEAD with no condition, range or version: what a listing asks.
fn is_plain_head(options: &GetOptions) -> bool {
    options.head
        && options.range.is_none()
        && options.version.is_none()
        && options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none()
}

#[async_trait]
impl ObjectStore for EngineStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if is_plain_head(&options) {
            if let Some(meta) = self.committed.meta(location) {
                return Ok(GetResult {
                    payload: GetResultPayload::Stream(Box::pin(futures::stream::empty())),
                    range: 0..meta.size,
                    meta,
                    attributes: Default::default(),
                });
            }
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    use super::*;

    #[tokio::test]
    async fn a_committed_object_is_headed_from_the_catalog_and_read_from_the_store() {
        let inner = Arc::new(InMemory::new());
        let committed = Arc::new(CommittedObjects::default());
        let store = EngineStore::new(inner.clone(), Arc::clone(&committed));
        let path = Path::from("tables/t/a.parquet");
        inner
            .put(&path, PutPayload::from_static(b"12345"))
            .await
            .unwrap();

        let before = store.head(&path).await.unwrap();
        committed.record(&path, 5);
        let after = store.head(&path).await.unwrap();
        assert_eq!((before.size, after.size), (5, 5));
        // Answered here: the store's own time would be the put's.
        assert_ne!(before.last_modified, after.last_modified);
        assert_eq!(after.last_modified.timestamp(), 0);
        assert_eq!(
            store.get(&path).await.unwrap().bytes().await.unwrap(),
            "12345"
        );
    }

    #[tokio::test]
    async fn other_objects_and_conditional_heads_go_to_the_store() {
        let inner = Arc::new(InMemory::new());
        let committed = Arc::new(CommittedObjects::default());
        let store = EngineStore::new(inner, Arc::clone(&committed));
        let path = Path::from("tables/t/gone.parquet");
        committed.record(&Path::from("tables/t/other.parquet"), 5);
        assert!(matches!(
            store.head(&path).await,
            Err(object_store::Error::NotFound { .. })
        ));

        committed.record(&path, 5);
        let conditional = GetOptions::new()
            .with_head(true)
            .with_if_match(Some("etag".to_owned()));
        assert!(store.get_opts(&path, conditional).await.is_err());
    }
}
