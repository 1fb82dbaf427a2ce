//! `information_schema` lists only what the caller may read: a query of its
//! `tables`, `columns` or `views` gets a filter that drops rows of our catalog's
//! tables without a grant, so it agrees with what GetTables shows the caller.

use datafusion::common::tree_node::Transformed;
use datafusion::common::Column;
use datafusion::config::CatalogOptions;
use datafusion::error::Result;
use datafusion::logical_expr::{lit, Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::sql::TableReference;
use lakehouse_query::{CATALOG_NAME, DEFAULT_SCHEMA};

use super::INFORMATION_SCHEMA;

/// The `information_schema` tables with a row per table of our catalog.
const LISTINGS: [&str; 3] = ["tables", "columns", "views"];

/// `plan` with every scan of a listing filtered to the tables `readable` names
/// (asked only when the plan has such a scan). `defaults` resolve unqualified names.
pub(super) fn hide_unreadable(
    plan: LogicalPlan,
    defaults: &CatalogOptions,
    readable: impl FnOnce() -> Vec<String>,
) -> Result<LogicalPlan> {
    let mut readable = Some(readable);
    let mut names: Option<Vec<Expr>> = None;
    plan.transform_up_with_subqueries(|node| {
        let LogicalPlan::TableScan(scan) = &node else {
            return Ok(Transformed::no(node));
        };
        if !is_listing(&scan.table_name, defaults) {
            return Ok(Transformed::no(node));
        }
        let names = names
            .get_or_insert_with(|| {
                readable
                    .take()
                    .map(|f| f())
                    .unwrap_or_default()
                    .into_iter()
                    .map(lit)
                    .collect()
            })
            .clone();
        let column = |name: &str| Expr::Column(Column::new(Some(scan.table_name.clone()), name));
        let ours = column("table_catalog")
            .eq(lit(CATALOG_NAME))
            .and(column("table_schema").eq(lit(DEFAULT_SCHEMA)));
        let visible = (!ours).or(column("table_name").in_list(names, false));
        LogicalPlanBuilder::from(node)
            .filter(visible)?
            .build()
            .map(Transformed::yes)
    })
    .map(|t| t.data)
}

fn is_listing(table: &TableReference, defaults: &CatalogOptions) -> bool {
    let resolved = table
        .clone()
        .resolve(&defaults.default_catalog, &defaults.default_schema);
    resolved.schema.as_ref() == INFORMATION_SCHEMA && LISTINGS.contains(&resolved.table.as_ref())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    #[tokio::test]
    async fn listings_keep_other_schemas_and_readable_tables_only() {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(CATALOG_NAME, DEFAULT_SCHEMA);
        let ctx = SessionContext::new_with_config(config);
        for table in ["granted_t", "secret_t"] {
            ctx.sql(&format!("CREATE TABLE {table} (x INT)"))
                .await
                .unwrap();
        }
        let state = ctx.state();
        let defaults = state.config().options().catalog.clone();
        for (sql, column) in [
            (
                "SELECT table_schema, table_name FROM information_schema.tables",
                "table_name",
            ),
            (
                "SELECT DISTINCT table_name FROM information_schema.columns",
                "table_name",
            ),
        ] {
            let plan = state.create_logical_plan(sql).await.unwrap();
            let plan = hide_unreadable(plan, &defaults, || vec!["granted_t".to_string()]).unwrap();
            let batches = ctx
                .execute_logical_plan(plan)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let names: Vec<String> = batches
                .iter()
                .flat_map(|b| {
                    let array = b.column_by_name(column).unwrap();
                    let strings = arrow::array::cast::as_string_array(array.as_ref());
                    strings
                        .iter()
                        .flatten()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .collect();
            assert!(names.contains(&"granted_t".to_string()), "{sql}: {names:?}");
            assert!(!names.contains(&"secret_t".to_string()), "{sql}: {names:?}");
            if sql.contains(".tables") {
                assert!(
                    names.contains(&"columns".to_string()),
                    "information_schema stays listed"
                );
            }
        }
        // Other tables pass untouched.
        let plan = state
            .create_logical_plan("SELECT * FROM secret_t")
            .await
            .unwrap();
        let same = hide_unreadable(plan.clone(), &defaults, || unreachable!()).unwrap();
        assert_eq!(same, plan);
    }
}
