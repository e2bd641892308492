//! The `bon-proxy` binary: parse configuration, load the reward model, bind, serve until SIGTERM; or, as
//! `bon-proxy eval`, measure what Best-of-N buys.

use anyhow::Context;
#[cfg(feature = "eval")]
use bon_proxy::eval::{self, EvalArgs};
use bon_proxy::{
    AppState,
    config::{Config, LogFormat},
    serve, shutdown_signal,
};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// The proxy's flags, or a subcommand.
#[derive(Parser)]
#[command(name = "bon-proxy", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[cfg(feature = "eval")]
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[cfg(feature = "eval")]
#[derive(clap::Subcommand)]
enum Command {
    /// Measure what Best-of-N buys: reward (and judge ratings) of the best of n vs one sample vs greedy, per n; with
    /// reference answers, the accuracy of every selection strategy.
    Eval(EvalArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    #[cfg(feature = "eval")]
    if let Some(Command::Eval(args)) = cli.command {
        return run_eval(args).await;
    }
    let config = cli.config;
    let filter = filter();
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    match config.server.log_format {
        LogFormat::Text => logs.with_ansi(ansi).init(),
        LogFormat::Json => logs.json().init(),
    }
    let (listen, delay) = (config.server.listen, config.server.shutdown_delay);
    // `draining` turns /ready to 503; `stop` then closes the listener and drains in-flight requests.
    let (draining, stop) = (CancellationToken::new(), CancellationToken::new());
    // Configuration and the reward model are checked before binding: a bad start is one clear message.
    let state = AppState::build(config, draining.clone()).await.context("cannot start bon-proxy")?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, "listening on {}", listener.local_addr()?);
    let server = serve(listener, state, stop.clone());
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result.context("server failed"),
        () = shutdown_signal() => draining.cancel(),
    }
    // Keep serving while load balancers notice /ready is 503 and stop sending new requests.
    tracing::info!(?delay, "shutdown signal: /ready is 503; still serving during --shutdown-delay");
    tokio::select! {
        result = &mut server => return result.context("server failed"),
        () = tokio::time::sleep(delay) => stop.cancel(),
    }
    server.await.context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(feature = "eval")]
async fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    // No colour codes in a log redirected to a file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(ansi).with_env_filter(filter()).init();
    let out = args.out.clone();
    let results = eval::run(args).await.context("bon-proxy eval failed")?;
    tracing::info!(prompts = results.prompts, report = %out.join("report.md").display(), "evaluation written");
    Ok(())
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_env("BON_LOG").unwrap_or_else(|_| EnvFilter::new("info"))
}
