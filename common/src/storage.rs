//! Object-store buckets (ADR-001, ADR-017). Every stored object is named by an
//! [`ObjectRef`] that carries its bucket, so federated buckets can come later
//! without rewriting manifests. Only the `primary` bucket exists today.

use std::path::Path;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::committed_objects::{CommittedObjects, EngineStore};
use crate::config::StorageConfig;
use crate::error::{Error, Result};

/// Name of the bucket that always exists.
pub const PRIMARY_BUCKET: &str = "primary";

/// A stored object: its bucket and its key inside that bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

impl ObjectRef {
    pub fn primary(key: impl Into<String>) -> Self {
        Self {
            bucket: PRIMARY_BUCKET.to_string(),
            key: key.into(),
        }
    }
}

/// One bucket: a store rooted at the bucket (keys are relative to it) and the
/// URL under which query engines address the same objects.
#[derive(Debug, Clone)]
pub struct Bucket {
    name: String,
    store: Arc<dyn ObjectStore>,
    root_url: Url,
    /// The store query engines must register for `root_url`'s scheme and host.
    engine_store: Arc<dyn ObjectStore>,
    /// What that store knows without asking: shared by the clones of this bucket.
    committed: Arc<CommittedObjects>,
}

impl Bucket {
    /// Opens a bucket at a local directory (created if missing) or an `s3://bucket/prefix` URL.
    pub fn open(name: &str, location: &str, settings: &StorageConfig) -> Result<Self> {
        if let Some(rest) = location.strip_prefix("s3://") {
            Self::open_s3(name, location, rest, settings)
        } else {
            let path = location.strip_prefix("file://").unwrap_or(location);
            Self::open_local(name, Path::new(path))
        }
    }

    fn open_local(name: &str, dir: &Path) -> Result<Self> {
        let storage_err = |reason: String| {
            Error::Config(format!("bucket `{name}` at {}: {reason}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| storage_err(e.to_string()))?;
        let dir = dir.canonicalize().map_err(|e| storage_err(e.to_string()))?;
        let store = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|source| Error::Storage {
                bucket: name.to_string(),
                source,
            })?
            .with_automatic_cleanup(true);
        let root_url = Url::from_directory_path(&dir)
            .map_err(|()| storage_err("not an absolute directory".to_string()))?;
        Ok(Self::new(
            name,
            Arc::new(store),
            root_url,
            Arc::new(LocalFileSystem::new()),
        ))
    }

    fn open_s3(name: &str, location: &str, rest: &str, settings: &StorageConfig) -> Result<Self> {
        let (bucket_name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket_name.is_empty() {
            return Err(Error::Config(format!(
                "storage.primary = {location:?}: the URL names no bucket; use s3://BUCKET[/PREFIX]"
            )));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket_name)
            .with_allow_http(settings.s3_allow_http);
        if !settings.s3_region.is_empty() {
            builder = builder.with_region(&settings.s3_region);
        }
        if !settings.s3_endpoint.is_empty() {
            builder = builder.with_endpoint(&settings.s3_endpoint);
        }
        if !settings.s3_access_key_id.is_empty() {
            builder = builder.with_access_key_id(&settings.s3_access_key_id);
        }
        if !settings.s3_secret_access_key_ref.is_empty() {
            builder =
                builder.with_secret_access_key(resolve_secret(&settings.s3_secret_access_key_ref)?);
        }
        let s3: Arc<dyn ObjectStore> =
            Arc::new(builder.build().map_err(|source| Error::Storage {
                bucket: name.to_string(),
                source,
            })?);
        let prefix = prefix.trim_matches('/');
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::clone(&s3)
        } else {
            Arc::new(PrefixStore::new(Arc::clone(&s3), prefix))
        };
        let root = if prefix.is_empty() {
            format!("s3://{bucket_name}/")
        } else {
            format!("s3://{bucket_name}/{prefix}/")
        };
        let root_url = Url::parse(&root)
            .map_err(|e| Error::Config(format!("storage.primary = {location:?}: {e}")))?;
        Ok(Self::new(name, store, root_url, s3))
    }

    fn new(
        name: &str,
        store: Arc<dyn ObjectStore>,
        root_url: Url,
        engine_store: Arc<dyn ObjectStore>,
    ) -> Self {
        let committed = Arc::new(CommittedObjects::default());
        Self {
            name: name.to_string(),
            store,
            root_url,
            engine_store: Arc::new(EngineStore::new(engine_store, Arc::clone(&committed))),
            committed,
        }
    }

    /// Committed objects of this bucket, as its query engines' store sees them.
    pub fn committed_objects(&self) -> &CommittedObjects {
        &self.committed
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store with keys relative to this bucket.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// `(url, store)` a query engine registers to read this bucket's objects.
    pub fn engine_registration(&self) -> (Url, Arc<dyn ObjectStore>) {
        let mut base = self.root_url.clone();
        base.set_path("/");
        (base, Arc::clone(&self.engine_store))
    }

    /// The URL a query engine uses for `key`.
    pub fn url_of(&self, key: &str) -> String {
        format!("{}{}", self.root_url, key.trim_start_matches('/'))
    }

    pub fn object_ref(&self, key: impl Into<String>) -> ObjectRef {
        ObjectRef {
            bucket: self.name.clone(),
            key: key.into(),
        }
    }

    pub fn storage_error(&self, source: object_store::Error) -> Error {
        Error::Storage {
            bucket: self.name.clone(),
            source,
        }
    }
}

/// Resolves a `secret_ref`: `env:VAR` reads a variable, `file:PATH` a file's
/// first line. Secrets never live in `lakehouse.toml` (ADR-017).
pub fn resolve_secret(reference: &str) -> Result<String> {
    let fail = |reason: String| Error::Secret {
        reference: reference.to_string(),
        reason,
    };
    if let Some(var) = reference.strip_prefix("env:") {
        std::env::var(var).map_err(|_| fail(format!("environment variable {var} is not set")))
    } else if let Some(path) = reference.strip_prefix("file:") {
        let text =
            std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read {path}: {e}")))?;
        Ok(text.lines().next().unwrap_or_default().trim().to_string())
    } else {
        Err(fail("use env:VAR or file:PATH".to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn local_bucket_urls_are_absolute_file_urls() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(
            PRIMARY_BUCKET,
            dir.path().to_str().unwrap(),
            &StorageConfig::default(),
        )
        .unwrap();
        let url = bucket.url_of("tables/t/a.parquet");
        assert!(url.starts_with("file:///"), "{url}");
        assert!(url.ends_with("/tables/t/a.parquet"), "{url}");
    }

    #[test]
    fn s3_url_without_bucket_is_refused() {
        let err = Bucket::open(PRIMARY_BUCKET, "s3://", &StorageConfig::default()).unwrap_err();
        assert!(err.to_string().contains("names no bucket"), "{err}");
    }

    #[test]
    fn secret_refs() {
        std::env::set_var("LAKEHOUSE_TEST_SECRET", "s3cr3t");
        assert_eq!(
            resolve_secret("env:LAKEHOUSE_TEST_SECRET").unwrap(),
            "s3cr3t"
        );
        assert!(resolve_secret("plain").is_err());
    }
}
