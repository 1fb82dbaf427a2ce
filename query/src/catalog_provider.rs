//! DataFusion's view of the replicated catalog: catalog `lakehouse`, schema
//! `public` (one schema per bucket later), a table per catalog table and a view
//! per catalog view. Views are planned from their SQL each time they are read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::TableReference;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::ViewTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::cache::cache_manager::FileStatisticsCache;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use lakehouse_catalog_raft::model::{TableVersion, View};
use lakehouse_catalog_raft::Catalog;

use crate::{lock, string_views};

pub const CATALOG_NAME: &str = "lakehouse";
pub const DEFAULT_SCHEMA: &str = "public";

/// Views within views deeper than this are refused: a view that reaches itself
/// through others would otherwise plan forever.
const MAX_VIEW_DEPTH: usize = 16;

tokio::task_local! {
    /// How many views the planning on this task is inside of.
    static VIEW_DEPTH: usize;
}

/// The planning session, fetched when a view is read (the provider lives inside
/// that session, so it cannot own it).
pub type SessionSource = Arc<dyn Fn() -> Option<SessionState> + Send + Sync>;

#[derive(Debug, Clone)]
pub struct LakehouseCatalogProvider {
    schema: Arc<LakehouseSchemaProvider>,
}

impl LakehouseCatalogProvider {
    /// Without [`Self::with_session`], views are listed but cannot be read.
    pub fn new(catalog: Catalog) -> Self {
        Self {
            schema: Arc::new(LakehouseSchemaProvider {
                catalog,
                session: None,
                statistics: None,
                tables: Mutex::default(),
            }),
        }
    }

    /// Views are planned in the session `session` returns.
    pub fn with_session(self, session: SessionSource) -> Self {
        self.with_schema(|schema| schema.session = Some(session))
    }

    /// File statistics are kept in `cache` across queries (planning otherwise
    /// derives them from every file's footer again for each query).
    pub fn with_statistics_cache(self, cache: Option<Arc<dyn FileStatisticsCache>>) -> Self {
        self.with_schema(|schema| schema.statistics = cache)
    }

    fn with_schema(self, change: impl FnOnce(&mut LakehouseSchemaProvider)) -> Self {
        let mut schema = LakehouseSchemaProvider {
            catalog: self.schema.catalog.clone(),
            session: self.schema.session.clone(),
            statistics: self.schema.statistics.clone(),
            tables: Mutex::default(),
        };
        change(&mut schema);
        Self {
            schema: Arc::new(schema),
        }
    }
}

impl CatalogProvider for LakehouseCatalogProvider {
    fn schema_names(&self) -> Vec<String> {
        vec![DEFAULT_SCHEMA.to_string()]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        (name == DEFAULT_SCHEMA).then(|| Arc::clone(&self.schema) as Arc<dyn SchemaProvider>)
    }
}

struct LakehouseSchemaProvider {
    catalog: Catalog,
    session: Option<SessionSource>,
    statistics: Option<Arc<dyn FileStatisticsCache>>,
    /// The provider of each table's current version, handed out again while
    /// the version stays: the plan cache tells table versions apart by provider.
    tables: Mutex<HashMap<String, KeptTable>>,
}

/// A table version's provider, as handed out.
type KeptTable = (VersionId, Arc<dyn TableProvider>);

/// What sets a table version apart, also from a version of the same number
/// of an earlier table of that name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VersionId {
    created_at_ms: i64,
    version: u64,
    committed_at_ms: i64,
    fencing_token: u64,
}

/// Providers kept for tables; beyond this many (dropped tables' among them) all are let go.
const MAX_KEPT_TABLES: usize = 4_096;

impl std::fmt::Debug for LakehouseSchemaProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakehouseSchemaProvider")
            .field("catalog", &self.catalog)
            .finish_non_exhaustive()
    }
}

impl LakehouseSchemaProvider {
    /// A listing table over `version`'s files of table `name`.
    fn version_provider(
        &self,
        name: &str,
        version: &TableVersion,
    ) -> Result<Arc<dyn TableProvider>> {
        let bucket = self.catalog.bucket();
        // The statistics cache is scoped by this reference: a version's files are
        // read with its schema only.
        let scope = TableReference::bare(format!("{name}@{}", version.version));
        let urls = version
            .files
            .iter()
            .map(|file| {
                if file.object.bucket != bucket.name() {
                    return Err(DataFusionError::Plan(format!(
                        "table `{name}` has a file in bucket `{}`, which this node does not serve",
                        file.object.bucket
                    )));
                }
                let url = ListingTableUrl::parse(bucket.url_of(&file.object.key))?;
                // Planning asks the store for each file's size; the catalog knows it.
                bucket
                    .committed_objects()
                    .record(url.prefix(), file.size_bytes);
                Ok(url.with_table_ref(scope.clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_collect_stat(true);
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(Arc::new(string_views::scan_schema(&version.schema)));
        let table = ListingTable::try_new(config)?.with_cache(self.statistics.clone());
        Ok(Arc::new(table))
    }

    /// Plans the view's `CREATE VIEW` statement (planning runs nothing) and keeps
    /// its query; the tables it reads are pinned now, like a table's files.
    async fn view(&self, view: View) -> Result<Arc<dyn TableProvider>> {
        let depth = VIEW_DEPTH.try_with(|d| *d).unwrap_or(0);
        if depth >= MAX_VIEW_DEPTH {
            return Err(DataFusionError::Plan(format!(
                "view `{}` is nested more than {MAX_VIEW_DEPTH} views deep; does it select from itself through another view?",
                view.name
            )));
        }
        let state = self.session.as_ref().and_then(|s| s()).ok_or_else(|| {
            DataFusionError::Internal(format!(
                "view `{}` cannot be read: no query session to plan it in",
                view.name
            ))
        })?;
        let plan = VIEW_DEPTH
            .scope(depth + 1, state.create_logical_plan(&view.sql))
            .await
            .map_err(|e| {
                DataFusionError::Plan(format!(
                    "view `{}` cannot be planned any more ({e}); drop it or create it again",
                    view.name
                ))
            })?;
        match plan {
            LogicalPlan::Ddl(DdlStatement::CreateView(create)) => Ok(Arc::new(ViewTable::new(
                Arc::unwrap_or_clone(create.input),
                Some(view.sql),
            ))),
            other => Err(DataFusionError::Internal(format!(
                "view `{}` is stored as a {} statement, not CREATE VIEW",
                view.name,
                other.display()
            ))),
        }
    }
}

#[async_trait]
impl SchemaProvider for LakehouseSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        let tables = self.catalog.tables().into_iter().map(|t| t.name);
        tables
            .chain(self.catalog.views().into_iter().map(|v| v.name))
            .collect()
    }

    /// The current version's files, pinned now: a commit during the query is not seen.
    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(table) = self.catalog.table(name) else {
            return match self.catalog.view(name) {
                Some(view) => self.view(view).await.map(Some),
                None => Ok(None),
            };
        };
        let Some(version) = table.current() else {
            return Ok(None);
        };
        let id = VersionId {
            created_at_ms: table.created_at_ms,
            version: version.version,
            committed_at_ms: version.committed_at_ms,
            fencing_token: version.fencing_token,
        };
        if let Some((kept, provider)) = lock(&self.tables).get(name) {
            if *kept == id {
                return Ok(Some(Arc::clone(provider)));
            }
        }
        let provider = self.version_provider(name, version)?;
        let mut tables = lock(&self.tables);
        if tables.len() >= MAX_KEPT_TABLES {
            tables.clear();
        }
        tables.insert(name.to_owned(), (id, Arc::clone(&provider)));
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.catalog.table(name).is_some() || self.catalog.view(name).is_some()
    }
}
