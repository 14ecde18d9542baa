//! Binding, accepting, and the handle that stops it all.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{SimBuilder, SimConfig};
use crate::stats::Stats;

use super::state::ServerState;
use super::{SpawnError, handle};

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<ServerState>,
    mut rx: watch::Receiver<bool>,
) {
    let idle = shared.config.idle_timeout;
    loop {
        tokio::select! {
            _ = rx.changed() => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(shared.clone(), req));
                    let conn = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(idle)
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = rx.changed() => {}
                    }
                });
            }
        }
    }
}

/// A running simulator. Dropping it shuts the server down (the listener
/// and every connection close); [`shutdown`](SimHandle::shutdown) does the
/// same and waits for the accept loop to end.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<ServerState>,
    tx: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SimHandle {
    /// `http://IP:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The accepted API keys (use one as `Authorization: Bearer KEY`).
    pub fn api_keys(&self) -> &[String] {
        &self.shared.config.api_keys
    }

    /// The configuration it runs.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// A snapshot of the counters (cheap; safe while requests run).
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Stops accepting, closes connections and waits for the accept loop.
    pub async fn shutdown(self) {
        let _ = self.tx.send(true);
        let _ = self.task.await;
    }
}

impl SimBuilder {
    /// Binds the listener and starts serving on the current tokio runtime.
    pub async fn spawn(self) -> Result<SimHandle, SpawnError> {
        self.config.validate().map_err(SpawnError::Config)?;
        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(SpawnError::Bind)?;
        let addr = listener.local_addr().map_err(SpawnError::Bind)?;
        let shared = Arc::new(ServerState::new(self.config));
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared.clone(), rx));
        Ok(SimHandle {
            addr,
            shared,
            tx,
            task,
        })
    }
}
