//! A physical optimizer rule for the scheduler's sessions: leave a job's
//! result in the partitions that produced it.
//!
//! DataFusion ends an unordered multi-partition plan with a
//! `CoalescePartitionsExec`; Ballista turns that boundary into one more stage
//! (a task pushed and reported, a shuffle written to disk and read back) only
//! to merge streams that the client merges anyway: the job's final partitions
//! are fetched one after another by `RemoteQueryExec`. Dropping it saves a
//! stage on every such query — on a point query, a third of the job's time.
//! A coalesce with a fetch (LIMIT) is kept: the limit applies across partitions.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::ExecutionPlan;

#[derive(Debug, Default)]
pub(crate) struct KeepResultPartitions;

impl PhysicalOptimizerRule for KeepResultPartitions {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match plan.downcast_ref::<CoalescePartitionsExec>() {
            Some(coalesce) if coalesce.fetch().is_none() => Ok(Arc::clone(coalesce.input())),
            _ => Ok(plan),
        }
    }

    fn name(&self) -> &str {
        "keep_result_partitions"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::empty::EmptyExec;

    fn input() -> Arc<dyn ExecutionPlan> {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, true)]));
        Arc::new(EmptyExec::new(schema).with_partitions(2))
    }

    #[test]
    fn a_root_coalesce_is_dropped_but_one_with_a_limit_is_kept() {
        let rule = KeepResultPartitions;
        let options = ConfigOptions::default();
        let plain = Arc::new(CoalescePartitionsExec::new(input()));
        let out = rule.optimize(plain, &options).unwrap();
        assert!(out.is::<EmptyExec>());
        assert_eq!(out.properties().partitioning.partition_count(), 2);

        let limited = Arc::new(CoalescePartitionsExec::new(input()).with_fetch(Some(5)));
        let out = rule.optimize(limited, &options).unwrap();
        assert!(out.is::<CoalescePartitionsExec>());
    }
}
