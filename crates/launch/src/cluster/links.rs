//! A worker's network links through the launcher's fault proxies.

use std::net::SocketAddr;

use anyhow::Context;

use crate::netfault::{BackgroundProxy, NetFault};

/// A worker's network links when the schedule has network faults: peers reach the worker
/// through `inbound` (the address it advertises) and it reaches the coordinator through
/// `to_coordinator`, so a fault set on both cuts, slows or drops everything it exchanges.
#[derive(Debug)]
pub(super) struct WorkerLinks {
    /// The worker's own listening address (fixed, so a restarted worker is reachable again
    /// through the same proxy).
    pub listen: SocketAddr,
    pub inbound: BackgroundProxy,
    pub to_coordinator: BackgroundProxy,
}

impl WorkerLinks {
    pub(super) fn new(coordinator: SocketAddr) -> anyhow::Result<Self> {
        let listen = free_loopback_port()?;
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Ok(Self {
            listen,
            inbound: BackgroundProxy::start(any, listen).context("cannot start a fault proxy")?,
            to_coordinator: BackgroundProxy::start(any, coordinator)
                .context("cannot start a fault proxy")?,
        })
    }

    pub(super) fn set(&self, fault: &NetFault) {
        self.inbound.set(fault.clone());
        self.to_coordinator.set(fault.clone());
    }
}

/// A loopback port free right now (the worker binds it a moment later).
fn free_loopback_port() -> anyhow::Result<SocketAddr> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    probe.local_addr().context("cannot read a bound address")
}
