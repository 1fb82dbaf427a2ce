//! `lakehouse catalog`, `admin` and `status`: wiring and presentation only; the
//! cluster logic is in `lakehouse-catalog-raft`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lakehouse_catalog_raft::{CatalogClient, CatalogNode, Member};
use lakehouse_common::storage::PRIMARY_BUCKET;
use lakehouse_common::{Bucket, Config, SystemClock};
use tokio::net::TcpListener;

use crate::cli::BoxError;
use crate::up::{shutdown_signal, write_listen_file};

/// Runs one catalog node until Ctrl-C or SIGTERM.
pub(crate) async fn run(config: Config, listen_file: Option<PathBuf>) -> Result<(), BoxError> {
    let bucket = Bucket::open(
        PRIMARY_BUCKET,
        &config.primary_bucket_location(),
        &config.storage,
    )?;
    let listen = config.catalog.listen_addr;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen} (catalog.listen_addr): {e}"))?;
    let node = CatalogNode::start(
        &config.catalog,
        &config.catalog_dir(),
        bucket,
        Arc::new(SystemClock),
        listener,
    )
    .await?;
    if let Some(path) = listen_file {
        write_listen_file(
            &path,
            &serde_json::json!({ "catalog": node.addr.to_string() }),
        )?;
    }
    eprintln!(
        "catalog node {} is up on {} (Ctrl-C to stop)",
        config.catalog.node_id, node.addr
    );
    shutdown_signal().await;
    node.stop().await?;
    Ok(())
}

fn client(endpoints: &[String], config: &Config) -> Result<CatalogClient, BoxError> {
    Ok(CatalogClient::new(
        endpoints,
        Duration::from_millis(config.catalog.connect_timeout_ms),
    )?)
}

fn print_members(members: &[Member]) {
    for m in members {
        let role = if m.voter { "voter" } else { "learner" };
        println!("  node {} at {} ({role})", m.node_id, m.addr);
    }
}

pub(crate) async fn add_node(
    endpoints: &[String],
    node_id: u64,
    addr: &str,
    config: &Config,
) -> Result<(), BoxError> {
    let catch_up = Duration::from_millis(config.catalog.catch_up_timeout_ms);
    let members = client(endpoints, config)?
        .add_node(node_id, addr, catch_up)
        .await?;
    println!("catalog node {node_id} added; members:");
    print_members(&members);
    Ok(())
}

pub(crate) async fn remove_node(
    endpoints: &[String],
    node_id: u64,
    config: &Config,
) -> Result<(), BoxError> {
    let members = client(endpoints, config)?.remove_node(node_id).await?;
    println!("catalog node {node_id} removed; members:");
    print_members(&members);
    Ok(())
}

fn or_dash(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

pub(crate) async fn status(endpoints: &[String], config: &Config) -> Result<(), BoxError> {
    let connect = Duration::from_millis(config.catalog.connect_timeout_ms);
    let cluster = match client(endpoints, config)?.cluster_status(connect).await {
        Ok(cluster) => cluster,
        Err(e) => {
            println!("catalog: unreachable at {}: {e}", endpoints.join(","));
            return Err("the catalog cluster is unreachable".into());
        }
    };
    match &cluster.leader {
        Some(leader) => println!(
            "catalog: leader node {}, term {}, catalog version {}",
            leader.node_id, leader.current_term, leader.catalog_version
        ),
        None => println!("catalog: no leader reachable (an election may be under way)"),
    }
    println!(
        "{:<6} {:<22} {:<8} {:<10} {:>6} {:>9} {:>9} {:>5}",
        "node", "address", "role", "state", "term", "last log", "applied", "lag"
    );
    for (member, answer) in &cluster.nodes {
        let (node_id, addr) = (member.node_id, &member.addr);
        let role = if member.voter { "voter" } else { "learner" };
        match answer {
            Ok(s) => println!(
                "{:<6} {:<22} {:<8} {:<10} {:>6} {:>9} {:>9} {:>5}",
                node_id,
                addr,
                role,
                s.state,
                s.current_term,
                or_dash(s.last_log_index),
                or_dash(s.last_applied_index),
                or_dash(cluster.lag(node_id)),
            ),
            Err(e) => println!("{node_id:<6} {addr:<22} {role:<8} unreachable: {e}"),
        }
    }
    Ok(())
}
