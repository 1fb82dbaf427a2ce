//! The `lakehouse` binary: parses the command line and wires roles. Logic lives
//! in the role crates.

use std::io::IsTerminal;

use clap::Parser;
use lakehouse::cli;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod malloc;

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
    // Process-wide and thread-safe: the runtime's threads already running are covered.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    malloc::tune();
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
