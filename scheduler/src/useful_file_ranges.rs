//! A physical optimizer rule for jobs: no task for a file range that holds no
//! row group.
//!
//! DataFusion splits a Parquet file larger than `repartition_file_min_size`
//! into byte ranges, one per partition, without knowing where its row groups
//! are; a range reads the row groups whose first page starts inside it. A file
//! written as one row group (any file of up to ~1M rows) split in two leaves one
//! range with nothing to read, and under Ballista every partition is a task:
//! pushed, started, written to a result file and reported, for no rows. On a
//! point query over 1M rows that empty task cost ~0.7 ms of a ~6 ms job
//! (docs/benchmarks.md). With the file's footer in the session's metadata cache
//! (planning reads it for statistics), ranges without a row group are dropped,
//! and partitions left with no file go too.
//!
//! Only scans whose partitioning is unknown are changed: nothing above such a
//! scan relies on its partition count, and properties are recomputed up the tree.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::metadata::CachedParquetMetaData;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
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

    /// Whether a scan of `file` reads anything: `false` only for a range that,
    /// by the cached footer, holds no row group's first page.
    fn has_row_groups(&self, file: &PartitionedFile) -> bool {
        let Some(range) = &file.range else {
            return true;
        };
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
        // The same test the Parquet opener applies to assign row groups to ranges.
        parquet.parquet_metadata().row_groups().iter().any(|group| {
            let first = group.column(0);
            let offset = first
                .dictionary_page_offset()
                .unwrap_or_else(|| first.data_page_offset());
            range.contains(offset)
        })
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
        let Some((config, _)) = scan.downcast_to_file_source::<ParquetSource>() else {
            return Ok(Transformed::no(node));
        };
        let groups: Vec<FileGroup> = config
            .file_groups
            .iter()
            .map(|group| {
                FileGroup::new(
                    group
                        .iter()
                        .filter(|file| self.has_row_groups(file))
                        .cloned()
                        .collect(),
                )
            })
            .filter(|group| !group.is_empty())
            .collect();
        let unchanged = groups.len() == config.file_groups.len()
            && groups
                .iter()
                .zip(&config.file_groups)
                .all(|(new, old)| new.len() == old.len());
        if unchanged || groups.is_empty() {
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
    use datafusion::dataframe::DataFrameWriteOptions;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

    /// One file of one row group, split in two ranges by DataFusion.
    async fn split_scan() -> (SessionContext, Arc<dyn ExecutionPlan>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let ids = Int64Array::from_iter_values(0..50_000);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(ids)]).unwrap();
        SessionContext::new()
            .read_batch(batch)
            .unwrap()
            .write_parquet(
                path.to_str().unwrap(),
                DataFrameWriteOptions::new().with_single_file_output(true),
                None,
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
            .sql("SELECT id FROM t WHERE id % 2 = 0")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        (ctx, plan, dir)
    }

    #[tokio::test]
    async fn a_range_without_row_groups_gets_no_partition_and_no_row_is_lost() {
        let (ctx, plan, _dir) = split_scan().await;
        assert_eq!(plan.properties().partitioning.partition_count(), 2);
        let metadata = ctx.runtime_env().cache_manager.get_file_metadata_cache();
        let rule = UsefulFileRanges::new(metadata);
        let pruned = rule
            .optimize(Arc::clone(&plan), &ConfigOptions::default())
            .unwrap();
        assert_eq!(pruned.properties().partitioning.partition_count(), 1);
        let rows: usize = collect(pruned, ctx.task_ctx())
            .await
            .unwrap()
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        assert_eq!(rows, 25_000);
    }

    #[tokio::test]
    async fn without_the_footer_cached_the_split_stays() {
        let (_ctx, plan, _dir) = split_scan().await;
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
