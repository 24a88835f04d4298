//! `strata`: flags and environment → Config, telemetry, bind, serve until SIGINT/SIGTERM.
//!
//! No files of its own (see `broker` for the data directory).

use clap::Parser;
use std::path::PathBuf;
use strata::config::{Config, FlushPolicy, Overrides};
use strata::security::tls::TlsServer;
use strata::server::Bound;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOC: strata::alloc::LazyLargeAlloc = strata::alloc::LazyLargeAlloc;

/// A Kafka-wire-compatible broker. Every setting has a default; see config/strata.yaml.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// YAML config file.
    #[arg(long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    /// Address of the one PLAINTEXT listener when the Kafka property `listeners` is not
    /// set (with it, this is ignored) [default: 0.0.0.0:9092].
    #[arg(long, env = "STRATA_LISTEN", value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address clients are told to connect to, for that listener [default: localhost:9092].
    #[arg(long, env = "STRATA_ADVERTISED_LISTENER", value_name = "HOST:PORT")]
    advertised_listener: Option<String>,
    /// Where partitions live [default: ./data].
    #[arg(long, env = "STRATA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// When acknowledged writes are fsynced: always, interval or os [default: os].
    #[arg(long, env = "STRATA_FLUSH")]
    flush: Option<FlushPolicy>,
    /// The HTTP listener for /metrics, /health, /ready and the console, or `none`
    /// [default: 127.0.0.1:9644].
    #[arg(long, env = "STRATA_HTTP_LISTEN", value_name = "HOST:PORT|none")]
    http_listen: Option<String>,
    /// A Kafka broker property, as kafka-server-start.sh --override: NAME=VALUE.
    #[arg(long = "override", value_name = "NAME=VALUE")]
    overrides: Vec<String>,
}

fn main() -> std::process::ExitCode {
    // Archive parts are 8 MiB. glibc raises its mmap threshold after freeing such a block
    // and from then on keeps them on the heap, where freed memory stays in RSS (135 MiB
    // after a benchmark run instead of 16). A fixed threshold maps and unmaps them; the
    // trim threshold keeps the megabyte fetch buffers on the heap, as fast as before.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator, before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
    let args = Args::parse();
    // Colours only on a terminal: a log file, `docker logs` or journald get plain text that
    // grep finds, not escape codes between a field's name and its value.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .init();
    let config = match Config::load(
        args.config.as_deref(),
        Overrides {
            listen: args.listen,
            advertised_listener: args.advertised_listener,
            data_dir: args.data_dir,
            flush: args.flush,
            http_listen: args.http_listen,
            properties: args.overrides,
        },
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("strata: config: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strata: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config));
    // Everything is flushed by now; a blocking task still running (a delayed fsync of a
    // rolled segment, an archive read) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let (limit, cached) = strata::log::file_cache::init_from_limits();
    tracing::info!(
        open_file_limit = limit,
        segment_files_kept_open = cached,
        "segment files open on demand"
    );
    let mut bound = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let tls = if l.protocol.uses_tls() {
            let server = TlsServer::new(
                &config.props,
                &l.name,
                l.protocol == strata::security::SecurityProtocol::Ssl,
            )
            .map_err(|e| anyhow::anyhow!("listener {} ({}): {e}", l.name, l.protocol.as_str()))?;
            Some(std::sync::Arc::new(server))
        } else {
            None
        };
        let address = l.bind_address();
        let socket = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|e| anyhow::anyhow!("binding listener {} on {address}: {e}", l.name))?;
        tracing::info!(
            listener = %l.name,
            protocol = l.protocol.as_str(),
            bound = %socket.local_addr()?,
            advertised = %format!("{}:{}", l.advertised_host, l.advertised_port),
            tls = %tls.as_ref().map(|t| t.describe()).unwrap_or_else(|| "off".into()),
            "listening"
        );
        bound.push(Bound {
            socket,
            listener: std::sync::Arc::new(l.runtime()),
            tls,
        });
    }
    // Up before recovery, so that /health answers and /ready says "not yet" meanwhile.
    let http_state = strata::http::HttpState::new();
    let (http_stop, http_stop_rx) = tokio::sync::watch::channel(false);
    let http = match &config.http_listen {
        Some(address) => strata::http::bind(address).await?,
        None => match strata::http::bind(strata::config::defaults::HTTP_LISTEN).await {
            Ok(socket) => socket,
            Err(e) => {
                tracing::warn!("{e:#}; running without it (set --http-listen to choose a port)");
                None
            }
        },
    }
    .map(|socket| strata::http::spawn(socket, http_state.clone(), http_stop_rx));
    let broker = strata::broker::Broker::open(config)?;
    if let Err(e) = broker.restore_from_archive().await {
        tracing::warn!(error = %e, "could not look for topics to restore in the archive");
    }
    broker.spawn_maintenance();
    tracing::info!(
        listeners = bound.len(),
        data_dir = %broker.config.data_dir.display(),
        flush = ?broker.config.flush,
        "strata is serving"
    );
    http_state.set_broker(broker.clone());
    // Partitions' logs open in the background; a request for one not open yet opens it.
    let (b, state) = (broker.clone(), http_state.clone());
    tokio::spawn(async move {
        b.open_all_logs().await;
        state.set_ready(b);
    });
    strata::server::run(bound, broker, shutdown_signal()).await;
    let _ = http_stop.send(true);
    if let Some(task) = http {
        let _ = task.await;
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
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
