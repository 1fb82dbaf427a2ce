//! Offering the tasks of a lost executor to the executors that remain.
//!
//! When Ballista 54.1 declares an executor dead it resets that executor's tasks
//! (and the stages whose shuffle output it held) to pending, but in push-staged
//! mode nothing offers them again: offers are made only when some task status
//! arrives or an executor registers. If the surviving executors are idle by
//! then — they finished their share and wait for the lost one's — the job
//! hangs forever. (Upstream Ballista later posts a revive after an executor
//! loss; 54.1 does not.) Here, on every executor removal, an empty task status
//! update is sent in the name of a live executor: the one public way to make
//! the scheduler bind pending tasks to free slots.

use std::sync::Arc;
use std::time::Duration;

use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpc;
use ballista_core::serde::protobuf::UpdateTaskStatusParams;
use ballista_scheduler::cluster::{ClusterState, ClusterStateEvent};
use futures::StreamExt;
use tokio::sync::watch;
use tonic::Request;
use tracing::{info, warn};

use crate::in_process::Server;

/// When the pending tasks are offered after a removal is seen. Ballista posts
/// its executor-lost event (which resets the tasks) right after the removal;
/// the offer must come after that event, so it is made twice, the second time
/// well after any event queue has drained.
const OFFER_AFTER: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(5)];

/// Runs until `stopped` turns true or the cluster's event stream ends.
pub(crate) async fn reoffer_tasks_of_lost_executors(
    server: Server,
    cluster_state: Arc<dyn ClusterState>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut events = match cluster_state.cluster_state_events().await {
        Ok(events) => events,
        Err(e) => {
            warn!(error = %e, "cannot follow executor removals; tasks of a lost executor may wait for the next task update");
            return;
        }
    };
    loop {
        let event = tokio::select! {
            // Err: the handle was dropped, which also means stop.
            _ = async { drop(stopped.wait_for(|stop| *stop).await) } => return,
            event = events.next() => event,
        };
        match event {
            None => return,
            Some(ClusterStateEvent::RemovedExecutor { executor_id }) => {
                info!(%executor_id, "executor removed; offering its tasks to the others");
                tokio::spawn(offer_pending_tasks(
                    server.clone(),
                    Arc::clone(&cluster_state),
                ));
            }
            Some(ClusterStateEvent::RegisteredExecutor { .. }) => {}
        }
    }
}

async fn offer_pending_tasks(server: Server, cluster_state: Arc<dyn ClusterState>) {
    for delay in OFFER_AFTER {
        tokio::time::sleep(delay).await;
        let Some(live) = cluster_state
            .registered_executor_metadata()
            .await
            .into_iter()
            .next()
        else {
            // No executor left: the job timeout ends the job.
            return;
        };
        let update = UpdateTaskStatusParams {
            executor_id: live.id.clone(),
            task_status: Vec::new(),
        };
        if let Err(status) = SchedulerGrpc::update_task_status(&server, Request::new(update)).await
        {
            warn!(executor_id = %live.id, error = %status, "could not offer pending tasks");
        }
    }
}
