//! SQL planning against the replicated catalog. Every query is planned in a
//! Ballista session, so it runs as a scheduler job on the executors; tables
//! resolve to the Parquet files of their current version, pinned at plan time.

mod catalog_provider;
mod plan_cache;
pub mod string_views;

use std::sync::Arc;

use datafusion::catalog::information_schema::{InformationSchemaProvider, INFORMATION_SCHEMA};
use datafusion::catalog::SchemaProvider;
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::config::CatalogOptions;
use datafusion::execution::context::SessionContext;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::DataFrame;
use datafusion::sql::TableReference;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;
use lakehouse_catalog_raft::Catalog;
use lakehouse_common::config::QueryConfig;
use lakehouse_common::{Bucket, ErrorKind};

pub use catalog_provider::{LakehouseCatalogProvider, SessionSource, CATALOG_NAME, DEFAULT_SCHEMA};
pub use plan_cache::physical_plan;

use crate::plan_cache::{PlanCache, SessionSettings};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Plan(datafusion::error::DataFusionError),

    #[error("{statement} writes, so it cannot run as part of a query; send it on its own as a statement")]
    NotAQuery { statement: String },

    #[error("cannot reach the scheduler at {url}: {detail}")]
    Scheduler { url: String, detail: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Plan(e) => datafusion_error_kind(e),
            Error::NotAQuery { .. } => ErrorKind::InvalidInput,
            Error::Scheduler { .. } => ErrorKind::Unavailable,
        }
    }
}

/// Errors in the user's SQL are their input to fix; the rest are ours.
pub fn datafusion_error_kind(error: &datafusion::error::DataFusionError) -> ErrorKind {
    use datafusion::error::DataFusionError as E;
    match error.find_root() {
        E::SQL(..) | E::Plan(_) | E::SchemaError(..) | E::NotImplemented(_) => {
            ErrorKind::InvalidInput
        }
        E::ResourcesExhausted(_) => ErrorKind::TooLarge,
        E::ObjectStore(_) | E::IoError(_) => ErrorKind::Unavailable,
        E::ArrowError(..)
        | E::ParquetError(_)
        | E::Internal(_)
        | E::Execution(_)
        | E::ExecutionJoin(_)
        | E::Configuration(_)
        | E::External(_)
        | E::Context(..)
        | E::Substrait(_)
        | E::Diagnostic(..)
        | E::Collection(_)
        | E::Shared(_)
        | E::Ffi(_) => ErrorKind::Internal,
    }
}

/// Plans SQL against the catalog in a session whose physical plans run on Ballista.
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").finish_non_exhaustive()
    }
}

impl QueryEngine {
    /// `task_slots` is the executors' total slots: stages get that many partitions unless configured.
    /// `physical_codec` encodes our own execution nodes (the scheduler's and executors' codec).
    pub async fn connect(
        catalog: Catalog,
        scheduler_url: &str,
        settings: &QueryConfig,
        task_slots: usize,
        physical_codec: Arc<dyn PhysicalExtensionCodec>,
    ) -> Result<Self> {
        let partitions = match settings.target_partitions {
            0 => task_slots.max(1),
            n => n,
        };
        let config = lakehouse_scheduler::with_physical_codec(
            lakehouse_scheduler::ballista_session_config(partitions, settings.prefer_hash_join),
            physical_codec,
        )
        .with_information_schema(true)
        .with_default_catalog_and_schema(CATALOG_NAME, DEFAULT_SCHEMA)
        .with_create_default_catalog_and_schema(false)
        // Tables are scanned with views for their strings (`string_views`); a
        // schema inferred from files or written in SQL keeps plain strings, as
        // the catalog records them.
        .set_bool(
            "datafusion.execution.parquet.schema_force_view_types",
            false,
        )
        .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false)
        .with_extension(Arc::new(PlanCache::new(settings.plan_cache_entries)));
        let ctx = lakehouse_scheduler::remote_context(scheduler_url, config)
            .await
            .map_err(|e| Error::Scheduler {
                url: scheduler_url.to_string(),
                detail: e.to_string(),
            })?;
        register_bucket(&ctx, catalog.bucket());
        // Views are planned in this same session when a query reads them.
        let session = ctx.state_weak_ref();
        let statistics = ctx.runtime_env().cache_manager.get_file_statistic_cache();
        let provider = LakehouseCatalogProvider::new(catalog)
            .with_session(Arc::new(move || {
                session.upgrade().map(|state| state.read().clone())
            }))
            .with_statistics_cache(statistics);
        ctx.register_catalog(CATALOG_NAME, Arc::new(provider));
        Ok(Self { ctx })
    }

    /// Plans `sql`; nothing runs until the frame is executed (as a Ballista job).
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        let plan = self.logical_plan(sql).await?;
        self.execute_plan(plan).await
    }

    /// Parses and plans `sql` without running anything, so a caller can check the
    /// plan (which tables it reads, whether it writes) before DDL in it takes effect
    /// in [`QueryEngine::execute_plan`].
    pub async fn logical_plan(&self, sql: &str) -> Result<LogicalPlan> {
        let state = self.ctx.state();
        let plan = state.create_logical_plan(sql).await.map_err(Error::Plan)?;
        qualify_information_schema(plan, &state.config().options().catalog).map_err(Error::Plan)
    }

    /// The frame of a plan from [`QueryEngine::logical_plan`]. Plans that write
    /// (DML, DDL, COPY) are refused: DataFusion would run them against its
    /// in-memory defaults, past the table writer's lease and commit; Flight SQL
    /// takes them apart and writes through the writer instead.
    pub async fn execute_plan(&self, plan: LogicalPlan) -> Result<DataFrame> {
        if let Some(statement) = writes(&plan).map_err(Error::Plan)? {
            return Err(Error::NotAQuery { statement });
        }
        self.ctx
            .execute_logical_plan(plan)
            .await
            .map_err(Error::Plan)
    }

    /// An engine for one client session: the same catalog and executors, with
    /// `settings` (DataFusion option name → value, applied in order) over this
    /// engine's configuration. Nothing is shared back: a session's `SET` stays its own.
    pub fn with_settings<'a>(
        &self,
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self> {
        let mut state = self.ctx.state();
        let mut applied = Vec::new();
        for (name, value) in settings {
            state
                .config_mut()
                .options_mut()
                .set(name, value)
                .map_err(Error::Plan)?;
            applied.push((name.to_owned(), value.to_owned()));
        }
        // Plans kept for reuse are told apart by the settings they were made with.
        state
            .config_mut()
            .set_extension(Arc::new(SessionSettings(applied)));
        // Functions that read the configuration (the time zone of now(), …) see the session's.
        let options = Arc::clone(state.config().options());
        let updated: Vec<_> = state
            .scalar_functions()
            .values()
            .filter_map(|udf| udf.inner().with_updated_config(&options).map(Arc::new))
            .collect();
        for udf in updated {
            state.register_udf(udf).map_err(Error::Plan)?;
        }
        Ok(Self {
            ctx: SessionContext::new_with_state(state),
        })
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Statements that ran a plan kept from an earlier identical one (see
    /// [`physical_plan`]), for `/metrics`.
    pub fn plans_reused(&self) -> u64 {
        let cache = self
            .ctx
            .state_ref()
            .read()
            .config()
            .get_extension::<PlanCache>();
        cache.map_or(0, |cache| cache.reused())
    }

    /// Every table and view of the `lakehouse` catalog, `information_schema`
    /// included, as `information_schema.tables` lists them: Flight SQL's
    /// GetTables reads this so the two always agree. Schemas are the ones
    /// clients receive (string views expanded).
    pub async fn tables(&self) -> Result<Vec<TableEntry>> {
        let mut entries = Vec::new();
        for (schema_name, schema) in self.schemas() {
            for name in schema.table_names() {
                let Some(table) = schema.table(&name).await.map_err(Error::Plan)? else {
                    continue;
                };
                entries.push(TableEntry {
                    schema_name: schema_name.clone(),
                    table_type: table.table_type(),
                    schema: string_views::expand_schema(&table.schema()),
                    name,
                });
            }
        }
        Ok(entries)
    }

    /// The schemas of the `lakehouse` catalog; `information_schema` is not one of the
    /// catalog's own (DataFusion resolves it by name), so it is added here.
    pub fn schemas(&self) -> Vec<(String, Arc<dyn SchemaProvider>)> {
        let Some(catalog) = self.ctx.catalog(CATALOG_NAME) else {
            return Vec::new();
        };
        let mut schemas: Vec<(String, Arc<dyn SchemaProvider>)> = catalog
            .schema_names()
            .into_iter()
            .filter_map(|name| catalog.schema(&name).map(|schema| (name, schema)))
            .collect();
        let state = self.ctx.state();
        if state.config().information_schema() {
            let provider = InformationSchemaProvider::new(Arc::clone(state.catalog_list()));
            schemas.push((INFORMATION_SCHEMA.to_string(), Arc::new(provider)));
        }
        schemas
    }
}

/// One row of [`QueryEngine::tables`].
#[derive(Debug, Clone)]
pub struct TableEntry {
    pub schema_name: String,
    pub name: String,
    pub table_type: datafusion::logical_expr::TableType,
    pub schema: arrow_schema::SchemaRef,
}

/// The write statement in `plan`, if any. EXPLAIN (without ANALYZE) only shows
/// a plan, so it may describe a write.
fn writes(plan: &LogicalPlan) -> datafusion::error::Result<Option<String>> {
    if matches!(plan, LogicalPlan::Explain(_)) {
        return Ok(None);
    }
    let mut found = None;
    plan.apply_with_subqueries(|node| {
        found = match node {
            LogicalPlan::Dml(dml) => Some(format!("{} into table `{}`", dml.op, dml.table_name)),
            LogicalPlan::Ddl(ddl) => Some(ddl.name().to_string()),
            LogicalPlan::Copy(_) => Some("COPY".to_string()),
            _ => None,
        };
        Ok(if found.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(found)
}

/// Names every `information_schema` scan with its schema. Ballista answers such
/// scans in place only when their name says `information_schema`; a session whose
/// default schema is `information_schema` plans bare names that would otherwise be
/// sent to the executors, which cannot read these tables.
fn qualify_information_schema(
    plan: LogicalPlan,
    defaults: &CatalogOptions,
) -> datafusion::error::Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| match node {
        LogicalPlan::TableScan(mut scan) if scan.table_name.schema().is_none() => {
            let resolved = scan
                .table_name
                .clone()
                .resolve(&defaults.default_catalog, &defaults.default_schema);
            if resolved.schema.as_ref() != INFORMATION_SCHEMA {
                return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
            }
            scan.table_name =
                TableReference::full(resolved.catalog, resolved.schema, resolved.table);
            Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// Locks a map of shared, never-changed values (providers, plans): a panic
/// while it was held leaves nothing half-updated, so a poisoned lock is used as it is.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The planning session reads Parquet footers from the bucket, so it needs its store.
fn register_bucket(ctx: &SessionContext, bucket: &Bucket) {
    let (url, store) = bucket.engine_registration();
    ctx.register_object_store(&url, store);
}
