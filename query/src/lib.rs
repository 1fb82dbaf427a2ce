//! SQL planning against the replicated catalog. Every query is planned in a
//! Ballista session, so it runs as a scheduler job on the executors; tables
//! resolve to the Parquet files of their current version, pinned at plan time.

mod catalog_provider;

use std::sync::Arc;

use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::DataFrame;
use lakehouse_catalog_raft::Catalog;
use lakehouse_common::config::QueryConfig;
use lakehouse_common::{Bucket, ErrorKind};

pub use catalog_provider::{LakehouseCatalogProvider, CATALOG_NAME, DEFAULT_SCHEMA};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Plan(datafusion::error::DataFusionError),

    #[error("cannot reach the scheduler at {url}: {detail}")]
    Scheduler { url: String, detail: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Plan(e) => datafusion_error_kind(e),
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
    pub async fn connect(
        catalog: Catalog,
        scheduler_url: &str,
        settings: &QueryConfig,
        task_slots: usize,
    ) -> Result<Self> {
        let partitions = match settings.target_partitions {
            0 => task_slots.max(1),
            n => n,
        };
        let config =
            lakehouse_scheduler::ballista_session_config(partitions, settings.prefer_hash_join)
                .with_information_schema(true)
                .with_default_catalog_and_schema(CATALOG_NAME, DEFAULT_SCHEMA)
                .with_create_default_catalog_and_schema(false)
                // Views (Utf8View) break older Flight SQL / JDBC clients: keep plain strings.
                .set_bool(
                    "datafusion.execution.parquet.schema_force_view_types",
                    false,
                )
                .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false);
        let ctx = lakehouse_scheduler::remote_context(scheduler_url, config)
            .await
            .map_err(|e| Error::Scheduler {
                url: scheduler_url.to_string(),
                detail: e.to_string(),
            })?;
        register_bucket(&ctx, catalog.bucket());
        ctx.register_catalog(
            CATALOG_NAME,
            Arc::new(LakehouseCatalogProvider::new(catalog)),
        );
        Ok(Self { ctx })
    }

    /// Plans `sql`; nothing runs until the frame is executed (as a Ballista job).
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        self.ctx.sql(sql).await.map_err(Error::Plan)
    }

    /// Parses and plans `sql` without running anything, so a caller can check the
    /// plan (which tables it reads, whether it writes) before DDL in it takes effect
    /// in [`QueryEngine::execute_plan`].
    pub async fn logical_plan(&self, sql: &str) -> Result<LogicalPlan> {
        self.ctx
            .state()
            .create_logical_plan(sql)
            .await
            .map_err(Error::Plan)
    }

    /// The frame of a plan from [`QueryEngine::logical_plan`]; DDL runs here, as in `sql`.
    pub async fn execute_plan(&self, plan: LogicalPlan) -> Result<DataFrame> {
        self.ctx
            .execute_logical_plan(plan)
            .await
            .map_err(Error::Plan)
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }
}

/// The planning session reads Parquet footers from the bucket, so it needs its store.
fn register_bucket(ctx: &SessionContext, bucket: &Bucket) {
    let (url, store) = bucket.engine_registration();
    ctx.register_object_store(&url, store);
}
