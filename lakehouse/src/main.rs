//! The `lakehouse` binary: parses the command line and wires roles. Logic lives
//! in the role crates.

use std::io::IsTerminal;

use clap::Parser;
use lakehouse::cli;

// A query's buffers (decompressed pages, batches) are freed when it ends and
// asked for again by the next: mimalloc serves them from memory it keeps, where
// glibc malloc handed large ones back to the kernel and faulted them in again,
// zeroed. DataFusion's CLI and Python bindings use it for the same reason.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LAKEHOUSE_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "info,ballista=warn,datafusion=warn,openraft=warn",
                )
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
