//! What the accept loop, the connection tasks and the handles of one proxy share.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::spec::NetFault;

/// Counters of a proxy since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Client connections accepted.
    pub connections_accepted: u64,
    /// Client connections not yet closed.
    pub connections_open: u64,
    /// Bytes written to the upstream.
    pub bytes_to_upstream: u64,
    /// Bytes written back to clients.
    pub bytes_to_client: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub accepted: AtomicU64,
    pub open: AtomicU64,
    pub to_upstream: AtomicU64,
    pub to_client: AtomicU64,
}

/// State shared by the accept loop, the connection tasks and the handles.
#[derive(Debug)]
pub(super) struct Shared {
    pub fault: watch::Sender<NetFault>,
    pub counters: Counters,
    pub cancel: CancellationToken,
}

impl Shared {
    pub fn set(&self, fault: NetFault) {
        debug!(from = %*self.fault.borrow(), to = %fault, "netfault: setting fault");
        // `send_replace` stores the value even while no connection is subscribed.
        self.fault.send_replace(fault);
    }

    pub fn fault(&self) -> NetFault {
        self.fault.borrow().clone()
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.counters;
        ProxyStats {
            connections_accepted: c.accepted.load(Ordering::Relaxed),
            connections_open: c.open.load(Ordering::Relaxed),
            bytes_to_upstream: c.to_upstream.load(Ordering::Relaxed),
            bytes_to_client: c.to_client.load(Ordering::Relaxed),
        }
    }
}
