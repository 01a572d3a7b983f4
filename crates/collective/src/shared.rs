//! What the operations of one worker share: its settings, the registry its `PeerService`
//! fills, the channel pool, and the progress of the current operation.

use std::sync::Arc;

use albatross_proto::domain::OpTag;
use tokio::sync::watch;

use crate::channel::ChannelPool;
use crate::config::CollectiveConfig;
use crate::registry::Registry;

/// Where the latest ring operation of a worker stands (for status pages and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpProgress {
    pub tag: Option<OpTag>,
    pub sent: usize,
    pub sends: usize,
    pub received: usize,
    pub recvs: usize,
}

/// State shared by the operations of one worker.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: CollectiveConfig,
    pub registry: Arc<Registry>,
    pub pool: Arc<ChannelPool>,
    pub progress: watch::Sender<OpProgress>,
}
