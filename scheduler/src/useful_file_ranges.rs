//! A physical optimizer rule for jobs: no task for a file range that holds no
//! row a query can use.
//!
//! DataFusion splits a Parquet file larger than `repartition_file_min_size`
//! into byte ranges, one per partition, without knowing where its row groups
//! are; a range reads the row groups whose first page starts inside it, and
//! only at run time rules out those whose statistics cannot match the scan's
//! predicate. Under Ballista every partition is a task: pushed, started,
//! written to a result file and reported, for no rows. On a point query over
//! 1M rows such an empty task cost ~0.7 ms of a ~6 ms job (docs/benchmarks.md).
//! With the file's footer in the session's metadata cache (planning reads it
//! for statistics), the same two tests run at planning: ranges (and whole
//! files) left with no row group are dropped, and partitions left with no file
//! go too.
//!
//! Only scans whose partitioning is unknown are changed: nothing above such a
//! scan relies on its partition count, and properties are recomputed up the tree.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::metadata::CachedParquetMetaData;
use datafusion::datasource::physical_plan::parquet::{
    apply_file_schema_type_coercions, ParquetAccessPlan, ParquetFileMetrics,
    RowGroupAccessPlanFilter,
};
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfigBuilder, FileSource, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::parquet::arrow::parquet_to_arrow_schema;
use datafusion::physical_optimizer::pruning::{build_pruning_predicate, PruningPredicate};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet};
use datafusion::physical_plan::{ExecutionPlan, Partitioning};

#[derive(Debug)]
pub(crate) struct UsefulFileRanges {
    metadata: Arc<dyn FileMetadataCache>,
}

impl UsefulFileRanges {
    /// `metadata`: the planning session's Parquet metadata cache.
    pub(crate) fn new(metadata: Arc<dyn FileMetadataCache>) -> Self {
        Self { metadata }
    }

    /// Whether a scan of `file` may read a row: `false` only when, by the
    /// cached footer, no row group starts in its range or `predicate` (over
    /// `table_schema`) rules out, on their statistics, every one that does.
    /// These are the Parquet opener's own tests; the second is made only for a
    /// file whose columns are the table's (as the opener reads them), and
    /// where a test cannot be made the file stays.
    fn may_have_rows(
        &self,
        file: &PartitionedFile,
        predicate: Option<&PruningPredicate>,
        table_schema: &Schema,
    ) -> bool {
        let Some(entry) = self.metadata.get(&file.object_meta.location) else {
            return true;
        };
        if !entry.is_valid_for(&file.object_meta) {
            return true;
        }
        let Some(parquet) = entry
            .file_metadata
            .as_any()
            .downcast_ref::<CachedParquetMetaData>()
        else {
            return true;
        };
        let metadata = parquet.parquet_metadata();
        let groups = metadata.row_groups();
        let mut access = RowGroupAccessPlanFilter::new(ParquetAccessPlan::new_all(groups.len()));
        if let Some(range) = &file.range {
            access.prune_by_range(groups, range);
        }
        let file_metadata = metadata.file_metadata();
        let parquet_schema = file_metadata.schema_descr();
        let same_columns =
            parquet_to_arrow_schema(parquet_schema, file_metadata.key_value_metadata())
                .ok()
                .map(|schema| {
                    apply_file_schema_type_coercions(table_schema, &schema).unwrap_or(schema)
                })
                .filter(|schema| schema.fields() == table_schema.fields());
        if let (Some(predicate), Some(arrow_schema)) = (predicate, same_columns) {
            let unused = ExecutionPlanMetricsSet::new();
            let metrics = ParquetFileMetrics::new(0, file.object_meta.location.as_ref(), &unused);
            access.prune_by_statistics(&arrow_schema, parquet_schema, groups, predicate, &metrics);
        }
        access.remaining_row_group_count() > 0
    }

    fn prune(&self, node: Arc<dyn ExecutionPlan>) -> Result<Transformed<Arc<dyn ExecutionPlan>>> {
        let Some(scan) = node.downcast_ref::<DataSourceExec>() else {
            return Ok(Transformed::no(node));
        };
        if !matches!(
            scan.properties().partitioning,
            Partitioning::UnknownPartitioning(_)
        ) {
            return Ok(Transformed::no(node));
        }
        let Some((config, source)) = scan.downcast_to_file_source::<ParquetSource>() else {
            return Ok(Transformed::no(node));
        };
        let table_schema = config.file_schema();
        let predicate = source
            .filter()
            .filter(|_| source.table_parquet_options().global.pruning)
            .and_then(|predicate| build_pruning_predicate(predicate, table_schema, &Count::new()));
        let mut groups: Vec<FileGroup> = config
            .file_groups
            .iter()
            .map(|group| {
                FileGroup::new(
                    group
                        .iter()
                        .filter(|file| self.may_have_rows(file, predicate.as_deref(), table_schema))
                        .cloned()
                        .collect(),
                )
            })
            .filter(|group| !group.is_empty())
            .collect();
        if groups.is_empty() {
            // No row anywhere: one range still runs, to answer with no rows.
            let Some(first) = config.file_groups.iter().find_map(|g| g.iter().next()) else {
                return Ok(Transformed::no(node));
            };
            groups.push(FileGroup::new(vec![first.clone()]));
        }
        let unchanged = groups.len() == config.file_groups.len()
            && groups
                .iter()
                .zip(&config.file_groups)
                .all(|(new, old)| new.len() == old.len());
        if unchanged {
            return Ok(Transformed::no(node));
        }
        let config = FileScanConfigBuilder::from(config.clone())
            .with_file_groups(groups)
            .build();
        Ok(Transformed::yes(DataSourceExec::from_data_source(config)))
    }
}

impl PhysicalOptimizerRule for UsefulFileRanges {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| self.prune(node)).data()
    }

    fn name(&self) -> &str {
        "useful_file_ranges"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::common::config::TableParquetOptions;
    use datafusion::dataframe::DataFrameWriteOptions;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

    /// One file of 50,000 ids in row groups of `group_rows`, split in two
    /// ranges by DataFusion, and the plan of `sql` over it.
    async fn split_scan(
        sql: &str,
        group_rows: usize,
    ) -> (SessionContext, Arc<dyn ExecutionPlan>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let ids = Int64Array::from_iter_values(0..50_000);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(ids)]).unwrap();
        let mut layout = TableParquetOptions::default();
        layout.global.max_row_group_size = group_rows;
        SessionContext::new()
            .read_batch(batch)
            .unwrap()
            .write_parquet(
                path.to_str().unwrap(),
                DataFrameWriteOptions::new().with_single_file_output(true),
                Some(layout),
            )
            .await
            .unwrap();
        let mut config = SessionConfig::new().with_target_partitions(2);
        config.options_mut().optimizer.repartition_file_min_size = 0;
        let ctx = SessionContext::new_with_config(config);
        ctx.register_parquet("t", path.to_str().unwrap(), ParquetReadOptions::default())
            .await
            .unwrap();
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        (ctx, plan, dir)
    }

    /// `plan` after the rule, with the footer cache of `ctx`.
    fn optimized(ctx: &SessionContext, plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        let metadata = ctx.runtime_env().cache_manager.get_file_metadata_cache();
        UsefulFileRanges::new(metadata)
            .optimize(plan, &ConfigOptions::default())
            .unwrap()
    }

    async fn ids(ctx: &SessionContext, plan: Arc<dyn ExecutionPlan>) -> Vec<i64> {
        let batches = collect(plan, ctx.task_ctx()).await.unwrap();
        let mut ids: Vec<i64> = batches
            .iter()
            .flat_map(|batch| {
                let column = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap();
                column.values().to_vec()
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    #[tokio::test]
    async fn a_range_without_row_groups_gets_no_partition_and_no_row_is_lost() {
        let (ctx, plan, _dir) = split_scan("SELECT id FROM t WHERE id % 2 = 0", 1 << 20).await;
        assert_eq!(plan.properties().partitioning.partition_count(), 2);
        let pruned = optimized(&ctx, plan);
        assert_eq!(pruned.properties().partitioning.partition_count(), 1);
        assert_eq!(ids(&ctx, pruned).await.len(), 25_000);
    }

    #[tokio::test]
    async fn a_range_whose_row_groups_the_predicate_rules_out_gets_no_partition() {
        // Five row groups of 10,000 ids, two ranges: each range holds some.
        for (sql, expected) in [
            ("SELECT id FROM t WHERE id = 12345", vec![12_345]),
            ("SELECT id FROM t WHERE id = 45678", vec![45_678]),
            (
                "SELECT id FROM t WHERE id BETWEEN 9999 AND 10000",
                vec![9_999, 10_000],
            ),
        ] {
            let (ctx, plan, _dir) = split_scan(sql, 10_000).await;
            assert_eq!(plan.properties().partitioning.partition_count(), 2, "{sql}");
            let pruned = optimized(&ctx, plan);
            assert_eq!(ids(&ctx, Arc::clone(&pruned)).await, expected, "{sql}");
            if expected.len() == 1 {
                assert_eq!(
                    pruned.properties().partitioning.partition_count(),
                    1,
                    "{sql}"
                );
            }
        }
        // A predicate nothing matches still leaves one range, to answer with no rows.
        let (ctx, plan, _dir) = split_scan("SELECT id FROM t WHERE id = -1", 10_000).await;
        let pruned = optimized(&ctx, plan);
        assert_eq!(pruned.properties().partitioning.partition_count(), 1);
        assert!(ids(&ctx, pruned).await.is_empty());
    }

    #[tokio::test]
    async fn without_the_footer_cached_the_split_stays() {
        let (_ctx, plan, _dir) = split_scan("SELECT id FROM t WHERE id = 7", 10_000).await;
        let empty = SessionContext::new()
            .runtime_env()
            .cache_manager
            .get_file_metadata_cache();
        let out = UsefulFileRanges::new(empty)
            .optimize(plan, &ConfigOptions::default())
            .unwrap();
        assert_eq!(out.properties().partitioning.partition_count(), 2);
    }
}
