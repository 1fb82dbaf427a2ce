//! A pool of Flight clients for shuffle reads from other executors.
//!
//! Ballista's own `DefaultBallistaClientPool` lives in a private module of
//! `ballista-executor` 54.1, so an executor wired by hand (as ours is) has to
//! bring its own. Without one every remote shuffle fetch opens and drops a
//! connection, which costs a round trip per partition and can exhaust
//! ephemeral ports on shuffle-heavy queries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ballista_core::client::BallistaClient;
use ballista_core::client_pool::{BallistaClientPool, PooledClient};
use ballista_core::extension::BallistaConfigGrpcEndpoint;
use ballista_core::utils::GrpcClientConfig;

type Key = (String, u16, GrpcClientConfig);
type Idle = HashMap<Key, Vec<(BallistaClient, Instant)>>;

/// Idle clients per (host, port, client config); the most recently returned
/// one is handed out first.
pub(crate) struct FlightClientPool {
    idle: Arc<Mutex<Idle>>,
    idle_timeout: Duration,
}

impl std::fmt::Debug for FlightClientPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self
            .idle
            .lock()
            .map_or(0, |idle| idle.values().map(Vec::len).sum());
        f.debug_struct("FlightClientPool")
            .field("idle", &idle)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl FlightClientPool {
    /// Creates the pool and a background task that drops clients idle for
    /// longer than `idle_timeout`; the task ends when the pool is dropped.
    pub(crate) fn new(idle_timeout: Duration) -> Self {
        let idle: Arc<Mutex<Idle>> = Arc::default();
        let weak: Weak<Mutex<Idle>> = Arc::downgrade(&idle);
        let period = (idle_timeout / 3).max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            loop {
                ticker.tick().await;
                match weak.upgrade() {
                    Some(idle) => evict(&idle, idle_timeout),
                    None => break,
                }
            }
        });
        Self { idle, idle_timeout }
    }
}

fn evict(idle: &Mutex<Idle>, timeout: Duration) {
    let Some(deadline) = Instant::now().checked_sub(timeout) else {
        return;
    };
    let mut idle = idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    idle.retain(|_, clients| {
        clients.retain(|(_, since)| *since >= deadline);
        !clients.is_empty()
    });
}

#[async_trait::async_trait]
impl BallistaClientPool for FlightClientPool {
    async fn acquire(
        &self,
        host: &str,
        port: u16,
        config: &GrpcClientConfig,
        customize_endpoint: Option<Arc<BallistaConfigGrpcEndpoint>>,
    ) -> ballista_core::error::Result<PooledClient> {
        let key: Key = (host.to_owned(), port, config.clone());
        let cached = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.get_mut(&key)
                .and_then(Vec::pop)
                .map(|(client, _)| client)
        };
        let client = match cached {
            Some(client) => client,
            None => {
                BallistaClient::try_new(
                    host,
                    port,
                    config.max_message_size,
                    config.use_tls,
                    customize_endpoint,
                    config.io_retries_times,
                    config.io_retry_wait_time_ms,
                    config.initial_connection_window_size,
                    config.initial_stream_window_size,
                )
                .await?
            }
        };
        let idle = Arc::clone(&self.idle);
        Ok(PooledClient::new(
            client,
            Box::new(move |client| {
                let mut idle = idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.entry(key).or_default().push((client, Instant::now()));
            }),
        ))
    }

    async fn evict_idle(&self) {
        evict(&self.idle, self.idle_timeout);
    }
}
