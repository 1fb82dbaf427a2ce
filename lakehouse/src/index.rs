//! `lakehouse index …`: vector indexes through a running server's HTTP API,
//! with a progress bar that follows a build's jobs.

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lakehouse_gateway::client::{urlencode, Method};
use serde_json::{json, Value};

use crate::cli::{BoxError, HttpServer};

#[derive(Debug, Subcommand)]
pub(crate) enum IndexCommand {
    /// Embed a text column and build a searchable index (or its next version),
    /// as jobs on the executors.
    Create(CreateArgs),
    /// The indexes and their versions.
    List(HttpServer),
    /// One index: every version with its model, source, chunking and shards.
    Show(NamedArgs),
    /// Make a ready version the one searches use.
    Activate(ActivateArgs),
    /// Drop an index, or one version of it (--version).
    Drop(DropArgs),
    /// A new version over the source table's current rows; only new or changed
    /// text is embedded again.
    Refresh(NamedArgs),
    /// Try HNSW settings on a sample of the active version: recall@10 and latency.
    Tune(TuneArgs),
}

#[derive(Debug, Args)]
pub(crate) struct NamedArgs {
    /// The index.
    name: String,
    #[command(flatten)]
    server: HttpServer,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The index: letters, digits, `_` or `-`.
    name: String,
    /// The table to read.
    #[arg(long)]
    table: String,
    /// Its text column to embed.
    #[arg(long)]
    column: String,
    /// The `[embedding]` profile (default: minilm).
    #[arg(long)]
    profile: Option<String>,
    /// The column whose values identify rows in results (default: `id` or the first `*_id`).
    #[arg(long)]
    key: Option<String>,
    /// Characters per chunk (default: vector.chunk_size).
    #[arg(long)]
    chunk_size: Option<u32>,
    /// Characters consecutive chunks share (default: vector.chunk_overlap).
    #[arg(long)]
    overlap: Option<u32>,
    #[command(flatten)]
    server: HttpServer,
}

#[derive(Debug, Args)]
pub(crate) struct ActivateArgs {
    name: String,
    /// The version to activate.
    version: u64,
    #[command(flatten)]
    server: HttpServer,
}

#[derive(Debug, Args)]
pub(crate) struct DropArgs {
    name: String,
    /// Only this version.
    #[arg(long)]
    version: Option<u64>,
    #[command(flatten)]
    server: HttpServer,
}

#[derive(Debug, Args)]
pub(crate) struct TuneArgs {
    name: String,
    /// Vectors to sample (default 5000); up to 100 other rows are the queries.
    #[arg(long)]
    sample: Option<usize>,
    #[command(flatten)]
    server: HttpServer,
}

pub(crate) async fn run(command: IndexCommand) -> Result<(), BoxError> {
    match command {
        IndexCommand::Create(args) => {
            let body = json!({
                "name": args.name,
                "table": args.table,
                "column": args.column,
                "profile": args.profile,
                "key": args.key,
                "chunk_size": args.chunk_size,
                "overlap": args.overlap,
            });
            build(&args.server, "/v1/indexes", &body).await
        }
        IndexCommand::Refresh(args) => {
            let path = format!("/v1/indexes/{}/refresh", urlencode(&args.name));
            build(&args.server, &path, &json!({})).await
        }
        IndexCommand::Tune(args) => {
            let path = format!("/v1/indexes/{}/tune", urlencode(&args.name));
            let body = json!({ "sample": args.sample });
            let report = args
                .server
                .client()?
                .call(Method::POST, &path, Some(&body))
                .await?;
            print_tune(&report);
            Ok(())
        }
        IndexCommand::List(args) => {
            let answer = args
                .client()?
                .call(Method::GET, "/v1/indexes", None)
                .await?;
            print_list(&answer);
            Ok(())
        }
        IndexCommand::Show(args) => {
            let path = format!("/v1/indexes/{}", urlencode(&args.name));
            let answer = args.server.client()?.call(Method::GET, &path, None).await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(())
        }
        IndexCommand::Activate(args) => {
            let path = format!("/v1/indexes/{}/activate", urlencode(&args.name));
            let body = json!({ "version": args.version });
            args.server
                .client()?
                .call(Method::POST, &path, Some(&body))
                .await?;
            println!("{}: version {} is active", args.name, args.version);
            Ok(())
        }
        IndexCommand::Drop(args) => {
            let mut path = format!("/v1/indexes/{}", urlencode(&args.name));
            if let Some(version) = args.version {
                path.push_str(&format!("?version={version}"));
            }
            args.server
                .client()?
                .call(Method::DELETE, &path, None)
                .await?;
            match args.version {
                Some(v) => println!("{}: version {v} dropped", args.name),
                None => println!("{}: dropped", args.name),
            }
            Ok(())
        }
    }
}

/// Posts a build and draws its progress: parts embedded, then shards built.
async fn build(server: &HttpServer, path: &str, body: &Value) -> Result<(), BoxError> {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{spinner} {msg:<22} [{bar:30}] {pos}/{len} {elapsed}")?
            .progress_chars("=> "),
    );
    // Counted by the last embedding event only; the ones before say 0.
    let (mut blank_rows, mut repeated) = (0, 0);
    let last = server
        .client()?
        .post_streaming(path, body, |event| {
            if event["event"] == "embedding" {
                blank_rows = blank_rows.max(event["blank_rows"].as_u64().unwrap_or(0));
                repeated = repeated.max(event["repeated_chunks"].as_u64().unwrap_or(0));
            }
            show_progress(&bar, event)
        })
        .await?;
    bar.finish_and_clear();
    match last["event"].as_str() {
        Some("done") => {
            let version = &last["version"];
            let chunks: u64 = version["shards"]
                .as_array()
                .map(|shards| shards.iter().filter_map(|s| s["chunks"].as_u64()).sum())
                .unwrap_or(0);
            println!(
                "{} version {} ready: {} chunks in {} shards ({} embedded, the rest reused), model {} ({} dims)",
                body["name"].as_str().unwrap_or_else(|| path.trim_start_matches("/v1/indexes/").trim_end_matches("/refresh")),
                version["version"],
                chunks,
                version["shards"].as_array().map_or(0, Vec::len),
                version["chunks_embedded"],
                version["model"].as_str().unwrap_or("?"),
                version["dims"],
            );
            if blank_rows > 0 {
                println!("{blank_rows} rows had no text (null or blank) and were skipped");
            }
            if repeated > 0 {
                println!(
                    "{repeated} chunks repeated an earlier chunk of their row and were stored once"
                );
            }
            Ok(())
        }
        Some("error") => Err(last["detail"]
            .as_str()
            .unwrap_or("the build failed")
            .to_string()
            .into()),
        _ => Err("the server closed the build's progress stream before the build ended".into()),
    }
}

fn show_progress(bar: &ProgressBar, event: &Value) {
    let count = |name: &str| event[name].as_u64().unwrap_or(0);
    match event["event"].as_str() {
        Some("started") => {
            bar.set_message(format!("version {}: embedding", count("version")));
            bar.set_length(count("parts"));
        }
        Some("embedding") => {
            bar.set_length(count("parts"));
            bar.set_position(count("parts_done"));
        }
        Some("building") => {
            bar.set_message("building shards");
            bar.set_length(count("shards"));
            bar.set_position(count("shards_done"));
        }
        _ => {}
    }
}

fn print_list(answer: &Value) {
    let indexes = answer["indexes"].as_array().cloned().unwrap_or_default();
    if indexes.is_empty() {
        println!(
            "no vector indexes; create one with `lakehouse index create NAME --table T --column C`"
        );
        return;
    }
    for index in indexes {
        println!(
            "{}  (active: {})",
            index["name"].as_str().unwrap_or("?"),
            index["active"]
        );
        for v in index["versions"].as_array().cloned().unwrap_or_default() {
            println!(
                "  v{}  {:<8}  {}  {}  {} chunks",
                v["version"],
                v["status"].as_str().unwrap_or("?"),
                v["source"].as_str().unwrap_or("?"),
                v["model"].as_str().unwrap_or("?"),
                v["chunks"],
            );
        }
    }
}

fn print_tune(report: &Value) {
    println!(
        "{} version {}: {} vectors, {} queries",
        report["index"].as_str().unwrap_or("?"),
        report["version"],
        report["vectors"],
        report["queries"],
    );
    println!(
        "{:>4} {:>15} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "m", "ef_construction", "ef_search", "recall@10", "p50 µs", "p95 µs", "build ms"
    );
    for trial in report["trials"].as_array().cloned().unwrap_or_default() {
        println!("{}", trial_line(&trial));
    }
    let target = report["target_recall"].as_f64().unwrap_or(0.95);
    match &report["best"] {
        Value::Null => println!("no trials"),
        best if best["recall_at_10"].as_f64().unwrap_or(0.0) >= target => {
            println!("best (fastest with recall@10 >= {target}):");
            println!("{}", trial_line(best));
        }
        best => {
            println!("no setting reached recall@10 {target}; the most accurate:");
            println!("{}", trial_line(best));
        }
    }
}

fn trial_line(trial: &Value) -> String {
    let number = |name: &str| trial[name].as_f64().unwrap_or(f64::NAN);
    format!(
        "{:>4} {:>15} {:>9} {:>9.3} {:>10.1} {:>10.1} {:>10.1}",
        trial["m"],
        trial["ef_construction"],
        trial["ef_search"],
        number("recall_at_10"),
        number("p50_us"),
        number("p95_us"),
        number("build_ms"),
    )
}
