//! The proxies: one inside the caller's runtime ([`FaultProxy`]), one on a thread of its own
//! ([`BackgroundProxy`]), and the accept loop they share.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::connection::{OpenConnection, serve};
use super::shared::{Counters, ProxyStats, Shared};
use super::spec::NetFault;

/// Pause after a failed `accept` (e.g. out of file descriptors) so a lasting error cannot spin.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// A fault proxy running inside the caller's tokio runtime. Dropping it stops it too, but only
/// [`FaultProxy::shutdown`] waits until every connection is closed.
#[derive(Debug)]
pub struct FaultProxy {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    accept_task: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Binds `listen` (port 0 allowed) and forwards every accepted connection to `upstream`.
    ///
    /// # Errors
    /// When `listen` cannot be bound.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let (fault, _) = watch::channel(NetFault::None);
        let shared = Arc::new(Shared {
            fault,
            counters: Counters::default(),
            cancel: CancellationToken::new(),
        });
        let accept_task = tokio::spawn(accept_loop(listener, upstream, Arc::clone(&shared)));
        debug!(%local_addr, %upstream, "netfault: proxy listening");
        Ok(Self { shared, local_addr, accept_task: Some(accept_task) })
    }

    /// The address clients connect to.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Changes the fault; applies to existing and new connections immediately.
    pub fn set(&self, fault: NetFault) {
        self.shared.set(fault);
    }

    /// The fault in force.
    #[must_use]
    pub fn fault(&self) -> NetFault {
        self.shared.fault()
    }

    /// Counters since the proxy started.
    #[must_use]
    pub fn stats(&self) -> ProxyStats {
        self.shared.stats()
    }

    /// Stops accepting, closes every connection and waits for the tasks to end.
    pub async fn shutdown(mut self) {
        self.shared.cancel.cancel();
        if let Some(task) = self.accept_task.take()
            && let Err(err) = task.await
        {
            debug!(%err, "netfault: accept task ended abnormally");
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The tasks notice the cancellation and end on their own; nobody is left to await them.
        self.shared.cancel.cancel();
    }
}

/// The same proxy on its own thread with a current-thread runtime, for synchronous callers.
/// Stopped by [`BackgroundProxy::shutdown`] or on drop.
#[derive(Debug)]
pub struct BackgroundProxy {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    thread: Option<thread::JoinHandle<()>>,
}

type Started = io::Result<(Arc<Shared>, SocketAddr)>;

impl BackgroundProxy {
    /// Starts the proxy thread, binds `listen` (port 0 allowed) and forwards every accepted
    /// connection to `upstream`. Returns once the listener is bound.
    ///
    /// # Errors
    /// When `listen` cannot be bound or the thread or its runtime cannot be created.
    pub fn start(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Started>(1);
        // Everything, binding included, happens on the new thread so that `start` also works
        // when the caller happens to be inside a runtime (a nested `block_on` would panic).
        let thread = thread::Builder::new().name("netfault-proxy".to_owned()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = ready_tx.send(Err(err));
                    return;
                }
            };
            runtime.block_on(async move {
                let proxy = match FaultProxy::start(listen, upstream).await {
                    Ok(proxy) => proxy,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                let cancel = proxy.shared.cancel.clone();
                if ready_tx.send(Ok((Arc::clone(&proxy.shared), proxy.local_addr))).is_ok() {
                    cancel.cancelled().await;
                }
                proxy.shutdown().await;
            });
        })?;
        match ready_rx.recv() {
            Ok(Ok((shared, local_addr))) => Ok(Self { shared, local_addr, thread: Some(thread) }),
            Ok(Err(err)) => {
                let _ = thread.join();
                Err(err)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other("the fault proxy thread ended before it started listening"))
            }
        }
    }

    /// The address clients connect to.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Changes the fault; applies to existing and new connections immediately.
    pub fn set(&self, fault: NetFault) {
        self.shared.set(fault);
    }

    /// The fault in force.
    #[must_use]
    pub fn fault(&self) -> NetFault {
        self.shared.fault()
    }

    /// Counters since the proxy started.
    #[must_use]
    pub fn stats(&self) -> ProxyStats {
        self.shared.stats()
    }

    /// Stops accepting, closes every connection and waits for the proxy thread to end.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shared.cancel.cancel();
            if thread.join().is_err() {
                debug!("netfault: proxy thread panicked");
            }
        }
    }
}

impl Drop for BackgroundProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Accepts until cancelled, then waits for every connection task to finish.
async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    let mut next_id = 0_u64;
    loop {
        tokio::select! {
            biased;
            () = shared.cancel.cancelled() => break,
            // Reap finished connections so the set does not grow with every one ever accepted.
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(err) = joined {
                    debug!(%err, "netfault: connection task ended abnormally");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    let id = next_id;
                    next_id += 1;
                    shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
                    let open = OpenConnection::new(Arc::clone(&shared));
                    connections.spawn(serve(client, peer, upstream, id, open));
                }
                Err(err) => {
                    debug!(%err, "netfault: accept failed");
                    tokio::select! {
                        () = shared.cancel.cancelled() => break,
                        () = sleep(ACCEPT_RETRY_PAUSE) => {}
                    }
                }
            },
        }
    }
    drop(listener);
    while let Some(joined) = connections.join_next().await {
        if let Err(err) = joined {
            debug!(%err, "netfault: connection task ended abnormally");
        }
    }
}
