//! Physical plans of recent statements, so a statement planned again (a
//! dashboard's refresh, an ADBC cursor that prepares the same SQL anew) skips
//! DataFusion's optimizer and physical planner: about a millisecond of a ~7 ms
//! point query.
//!
//! A plan is reused only while nothing it was made from has changed. The key
//! holds the logical plan as the caller's checks left it (grants applied,
//! parameters bound, views inlined), the session's settings and the table
//! providers it scans. The catalog provider hands out one provider per table
//! version, so a commit, a replaced or dropped table makes a new key. Plans
//! that read the clock or anything else outside their inputs (`now()`, any
//! function that is not immutable) or a temporary table (a vector search) are
//! planned every time, as are plans answered in place (`information_schema`):
//! only plans that run as a scheduler job are kept.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::error::Result;
use datafusion::execution::config::SessionConfig;
use datafusion::logical_expr::{Expr, LogicalPlan, TableType, Volatility};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::DataFrame;
use lakehouse_scheduler::RemoteQueryExec;

/// The physical plan of `frame`, whose session configuration is `config`:
/// a new run of a kept plan when the statement was planned before and nothing
/// it depends on has changed, else planned (and kept when it may be reused).
pub async fn physical_plan(
    frame: &DataFrame,
    config: &SessionConfig,
) -> Result<Arc<dyn ExecutionPlan>> {
    match config.get_extension::<PlanCache>() {
        Some(cache) => {
            let settings = config.get_extension::<SessionSettings>();
            cache.physical_plan(frame, settings).await
        }
        None => frame.create_physical_plan().await,
    }
}

/// The settings a session applies over its engine's configuration, in order;
/// part of a kept plan's key.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct SessionSettings(pub(crate) Vec<(String, String)>);

/// A table a plan scans, by identity: the catalog provider hands out one
/// provider per table version, so the same provider means the same files.
#[derive(Debug, Clone)]
struct Scanned(Arc<dyn TableProvider>);

impl PartialEq for Scanned {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Scanned {}

impl Hash for Scanned {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0).cast::<()>().hash(state);
    }
}

/// What a kept plan was made from.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Key {
    settings: Option<Arc<SessionSettings>>,
    plan: LogicalPlan,
    /// The logical plan names its tables; these are the versions it read.
    tables: Vec<Scanned>,
}

#[derive(Default)]
struct Inner {
    kept: HashMap<Arc<Key>, Arc<dyn ExecutionPlan>>,
    /// Oldest first; beyond the capacity the oldest goes.
    order: VecDeque<Arc<Key>>,
}

/// Kept in the engine's session configuration, so every session engine made
/// from it (and every frame they plan) shares it.
pub(crate) struct PlanCache {
    capacity: usize,
    inner: Mutex<Inner>,
    reused: AtomicU64,
}

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanCache")
            .field("capacity", &self.capacity)
            .field("kept", &self.lock().kept.len())
            .finish()
    }
}

impl PlanCache {
    /// Keeps up to `capacity` plans; 0 keeps none.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::default(),
            reused: AtomicU64::new(0),
        }
    }

    /// Statements that ran a kept plan instead of being planned.
    pub(crate) fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    async fn physical_plan(
        &self,
        frame: &DataFrame,
        settings: Option<Arc<SessionSettings>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let tables = match scanned_tables(frame.logical_plan())? {
            Some(tables) if self.capacity > 0 => tables,
            _ => return frame.create_physical_plan().await,
        };
        let key = Arc::new(Key {
            settings,
            plan: frame.logical_plan().clone(),
            tables,
        });
        let kept = self.lock().kept.get(&key).cloned();
        if let Some(run) = kept.as_ref().and_then(RemoteQueryExec::from_plan) {
            self.reused.fetch_add(1, Ordering::Relaxed);
            return Ok(run.rerun());
        }
        let plan = frame.create_physical_plan().await?;
        if RemoteQueryExec::from_plan(&plan).is_some() {
            self.keep(key, Arc::clone(&plan));
        }
        Ok(plan)
    }

    fn keep(&self, key: Arc<Key>, plan: Arc<dyn ExecutionPlan>) {
        let mut inner = self.lock();
        if inner.kept.insert(Arc::clone(&key), plan).is_some() {
            return;
        }
        inner.order.push_back(key);
        while inner.order.len() > self.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.kept.remove(&oldest);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        crate::lock(&self.inner)
    }
}

/// The tables `plan` scans (in subqueries and the views it reads, which are
/// inlined as they are planned) when its physical plan depends on nothing but
/// them, the plan itself and the settings: only catalog tables (no temporary
/// table), no extension node, no function that is not immutable (DataFusion
/// folds `now()` into a constant when it optimizes). `None` when it depends on more.
fn scanned_tables(plan: &LogicalPlan) -> Result<Option<Vec<Scanned>>> {
    let mut tables = Vec::new();
    let mut reusable = true;
    plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::Extension(_) => reusable = false,
            LogicalPlan::TableScan(scan) => match source_as_provider(&scan.source) {
                Ok(table) if table.table_type() == TableType::Base => tables.push(Scanned(table)),
                _ => reusable = false,
            },
            _ => {}
        }
        if reusable {
            node.apply_expressions(|expr| {
                expr.apply(|e| {
                    reusable = immutable(e);
                    Ok(stop_unless(reusable))
                })
            })?;
        }
        Ok(stop_unless(reusable))
    })?;
    Ok(reusable.then_some(tables))
}

fn stop_unless(go_on: bool) -> TreeNodeRecursion {
    if go_on {
        TreeNodeRecursion::Continue
    } else {
        TreeNodeRecursion::Stop
    }
}

fn immutable(expr: &Expr) -> bool {
    let volatility = match expr {
        Expr::ScalarFunction(f) => f.func.signature().volatility,
        Expr::AggregateFunction(f) => f.func.signature().volatility,
        Expr::WindowFunction(f) => f.fun.signature().volatility,
        _ => Volatility::Immutable,
    };
    volatility == Volatility::Immutable
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn plan(ctx: &SessionContext, sql: &str) -> LogicalPlan {
        ctx.sql(sql).await.unwrap().logical_plan().clone()
    }

    async fn reusable(ctx: &SessionContext, sql: &str) -> bool {
        scanned_tables(&plan(ctx, sql).await).unwrap().is_some()
    }

    #[tokio::test]
    async fn plans_that_read_the_clock_are_not_reused() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (a INT) AS VALUES (1)")
            .await
            .unwrap();
        ctx.sql("CREATE VIEW v AS SELECT a FROM t").await.unwrap();
        let tables = scanned_tables(&plan(&ctx, "SELECT a FROM t JOIN t AS u USING (a)").await);
        assert_eq!(tables.unwrap().unwrap().len(), 2);
        assert!(reusable(&ctx, "SELECT a + 1 FROM t WHERE a = 1").await);
        assert!(!reusable(&ctx, "SELECT now(), a FROM t").await);
        assert!(!reusable(&ctx, "SELECT a FROM t WHERE random() < 0.5").await);
        assert!(
            !reusable(
                &ctx,
                "SELECT a FROM t WHERE a IN (SELECT a FROM t WHERE now() IS NOT NULL)"
            )
            .await
        );
        // A view is inlined when planned: its tables are scanned like the query's own.
        let tables = scanned_tables(&plan(&ctx, "SELECT a FROM v").await);
        assert_eq!(tables.unwrap().unwrap().len(), 1);
    }
}
