//! `mcp-coordinator`: parses the command line and runs one component until a signal stops it.
//! Everything else is in the library.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mcp_coordinator::cli::{Command, ExampleMcpArgs, QueryArgs, QueryWhat, StatusArgs};
use mcp_coordinator::controller::{self, args::ControllerArgs, metrics::Metrics, ops};
use mcp_coordinator::ingest::args::IngestArgs;
use mcp_coordinator::ingest::assemble::{assemble, Mode};
use mcp_coordinator::standalone::{self, args::StandaloneArgs};
use mcp_coordinator::{api_client, crd};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mcp_coordinator::allocator::prefer_small_pages();
    let cli = mcp_coordinator::cli::parse();
    init_tracing(&cli.log_format);
    match cli.command {
        Command::Crdgen => {
            print!(
                "{}",
                crd::crd_yaml().context("could not render the CRD as YAML")?
            );
            Ok(())
        }
        Command::Controller(args) => with_spans("controller", run_controller(*args)).await,
        Command::Ingest(args) => with_spans("ingest", run_ingest(*args)).await,
        Command::Standalone(args) => with_spans("standalone", run_standalone(*args)).await,
        Command::Status(args) => run_status(args).await,
        Command::Query(args) => run_query(args).await,
        Command::ExampleMcp(args) => run_example_mcp(args).await,
        Command::Completions { shell } => {
            let mut command = mcp_coordinator::cli::command();
            clap_complete::generate(
                shell,
                &mut command,
                "mcp-coordinator",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::CopyStore(args) => {
            let copied = mcp_coordinator::cli::copy_store::run(&args, |mcp, n| {
                println!("{mcp}: {n} interactions");
            })
            .await?;
            println!(
                "copied {} interactions ({} events) of {} MCPs into {}",
                copied.interactions,
                copied.events,
                copied.mcps,
                args.clickhouse.url.as_deref().unwrap_or_default()
            );
            Ok(())
        }
        Command::Ready(args) => {
            let store = match (&args.store_url, &args.token_file) {
                (Some(url), Some(file)) => {
                    let token = std::fs::read_to_string(file)
                        .with_context(|| format!("cannot read --token-file {}", file.display()))?;
                    Some((url.as_str(), token.trim().to_string()))
                }
                _ => None,
            };
            api_client::check_ready(&args.urls, args.ca_file.as_deref(), store).await?;
            match &args.store_url {
                Some(url) => println!(
                    "ready: {}; store behind {url}: written and read",
                    args.urls.join(", ")
                ),
                None => println!("ready: {}", args.urls.join(", ")),
            }
            Ok(())
        }
    }
}

/// Runs a component with its spans exported when the `OTEL_*` variables ask for it; what is
/// queued is sent when it stops.
async fn with_spans(
    component: &str,
    run: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let export = mcp_coordinator::telemetry::spans::init(component)?;
    if export.is_some() {
        tracing::info!(
            component,
            "exporting spans over OTLP/HTTP (OTEL_EXPORTER_OTLP_*)"
        );
    }
    let result = run.await;
    if let Some(export) = export {
        let _ = tokio::task::spawn_blocking(move || export.shutdown()).await;
    }
    result
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,rmcp=warn"));
    use std::io::IsTerminal;
    // Colours only for a terminal: a log file or a collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run_controller(args: ControllerArgs) -> anyhow::Result<()> {
    let mut settings = args.settings()?;
    let config = kube::Config::infer()
        .await
        .context("no Kubernetes configuration found: set KUBECONFIG or run inside a cluster")?;
    if !args.allow_api_server_probes {
        settings.probe_policy = settings
            .probe_policy
            .refusing_api_server(&config.cluster_url.to_string());
    }
    let client = kube::Client::try_from(config)
        .context("cannot build a Kubernetes client from the configuration found")?;
    let metrics = Arc::new(Metrics::new().context("could not register metrics")?);
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let shutdown_timeout = Duration::from_secs(args.shutdown_timeout_seconds);
    let ops = tokio::spawn(ops::serve_ops(
        args.metrics_addr,
        ops::ops_serving(shutdown_timeout.min(Duration::from_secs(5))),
        metrics.clone(),
        ready.clone(),
        shutdown(stop_rx.clone()),
    ));
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    tracing::info!(
        version = mcp_coordinator::COORDINATOR_VERSION,
        "starting controller"
    );
    let controller = controller::run(client, settings, metrics, ready, shutdown(stop_rx.clone()));
    // A reconcile waiting on an unreachable API server, or a client holding the metrics port,
    // must not keep the process from stopping: the stop is bounded in time.
    let overdue = async move {
        shutdown(stop_rx).await;
        tokio::time::sleep(shutdown_timeout).await;
    };
    let (ops_result, controller_result) = tokio::select! {
        results = async { tokio::join!(ops, controller) } => results,
        _ = overdue => {
            tracing::warn!(
                timeout = ?shutdown_timeout,
                "the controller did not stop within --shutdown-timeout-seconds; exiting anyway"
            );
            return Ok(());
        }
    };
    controller_result.context("controller failed to start")?;
    ops_result
        .context("ops server task failed")?
        .with_context(|| format!("could not serve metrics on {}", args.metrics_addr))?;
    Ok(())
}

async fn run_ingest(args: IngestArgs) -> anyhow::Result<()> {
    let parts = assemble(&args, Mode::Ingest).await?;
    parts.start_store_jobs(&args);
    let running = mcp_coordinator::ingest::start(
        parts.config,
        parts.store,
        parts.keys,
        parts.readers,
        wait_for_signal(),
    )
    .await?;
    tracing::info!(addr = %running.addr, store = %parts.store_name, "ingest server listening");
    if let Some(gateway) = running.gateway_addr {
        tracing::info!(url = %format!("http://{gateway}/mcp/{{namespace}}"), "MCP gateway listening");
    }
    running.done.await.context("ingest server task failed")?;
    Ok(())
}

async fn run_standalone(args: StandaloneArgs) -> anyhow::Result<()> {
    let (running, store_name) = standalone::run_from_args(&args, wait_for_signal()).await?;
    tracing::info!(
        addr = %running.addr,
        store = %store_name,
        registrations = %args.registrations.display(),
        "standalone coordinator running"
    );
    if let Some(gateway) = running.gateway_addr {
        let token = args.ingest.data_dir.join("caller.token");
        tracing::info!(
            url = %format!("http://{gateway}/mcp/default"),
            token = %token.display(),
            "MCP gateway: point MCP clients at this URL with Authorization: Bearer <the token in this file>"
        );
    }
    running.done.await.context("standalone task failed")?;
    Ok(())
}

async fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    let token = args.client.token()?;
    loop {
        let view = api_client::get_json(&args.client.url, "/v1/registrations", &token).await?;
        let table = args.output.render(&view).unwrap_or_else(|| {
            api_client::status_table(&view, jiff::Timestamp::now().as_millisecond())
        });
        match args.watch {
            None => {
                print!("{table}");
                return Ok(());
            }
            Some(secs) => {
                use std::io::IsTerminal;
                // Clear the screen on a terminal; a pipe gets the tables one after another.
                if std::io::stdout().is_terminal() {
                    print!("\x1b[2J\x1b[H{table}");
                } else {
                    println!("{table}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(secs.max(1))) => {}
                    _ = wait_for_signal() => return Ok(()),
                }
            }
        }
    }
}

async fn run_query(args: QueryArgs) -> anyhow::Result<()> {
    type Draw = fn(&serde_json::Value) -> String;
    let optional = |pairs: &[(&str, &Option<String>)]| -> String {
        pairs
            .iter()
            .filter_map(|(name, value)| Some(format!("&{name}={}", value.as_ref()?)))
            .collect()
    };
    // What each query asks of `/v1/mcps/{id}/…`, and how its table is drawn.
    let (client, mcp, output, query, draw): (_, _, _, String, Draw) = match args.what {
        QueryWhat::Interactions {
            mcp,
            limit,
            output,
            client,
        } => (
            client,
            mcp,
            output,
            format!("interactions?limit={limit}"),
            api_client::interactions_table,
        ),
        QueryWhat::Metrics {
            mcp,
            range,
            group_by,
            output,
            client,
        } => (
            client,
            mcp,
            output,
            format!(
                "metrics?range={range}{}",
                optional(&[("group_by", &group_by)])
            ),
            api_client::metrics_table,
        ),
        QueryWhat::Series {
            mcp,
            range,
            step,
            group_by,
            output,
            client,
        } => (
            client,
            mcp,
            output,
            format!(
                "metrics/series?range={range}{}",
                optional(&[("step", &step), ("group_by", &group_by)])
            ),
            api_client::series_table,
        ),
    };
    let token = client.token()?;
    let id = api_client::resolve_mcp(&client.url, &token, &mcp).await?;
    let found =
        api_client::get_json(&client.url, &format!("/v1/mcps/{id}/{query}"), &token).await?;
    print!("{}", output.render(&found).unwrap_or_else(|| draw(&found)));
    Ok(())
}

async fn run_example_mcp(args: ExampleMcpArgs) -> anyhow::Result<()> {
    let mut mcp = args.example_mcp()?;
    if let Some(path) = &args.registrar_token_file {
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the registrar token {}", path.display()))?;
        mcp.registrar_token = Some(token.trim().to_string());
    }
    let (addr, task) = mcp_coordinator::example_mcp::serve(mcp, wait_for_signal())
        .await
        .context("cannot start the example MCP")?;
    tracing::info!(%addr, "example MCP listening");
    task.await.context("example MCP task failed")?;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
