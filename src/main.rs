//! The `bon-proxy` binary: parse configuration, load the reward model, bind, serve until SIGTERM.

use anyhow::Context;
use bon_proxy::{
    AppState,
    config::{Config, LogFormat},
    serve, shutdown_signal,
};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let filter = EnvFilter::try_from_env("BON_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    match config.log_format {
        LogFormat::Text => logs.with_ansi(ansi).init(),
        LogFormat::Json => logs.json().init(),
    }
    let listen = config.listen;
    let shutdown = CancellationToken::new();
    // Configuration and the reward model are checked before binding: a bad start is one clear message.
    let state = AppState::build(config, shutdown.clone()).await.context("cannot start bon-proxy")?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, "listening on {}", listener.local_addr()?);
    let signal = shutdown.clone();
    let server = serve(listener, state, shutdown);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result.context("server failed"),
        () = shutdown_signal() => signal.cancel(),
    }
    server.await.context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}
