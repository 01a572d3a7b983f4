//! The handle a worker holds: configuration, the registry shared with its `PeerService`, the
//! channel pool, and the three operations (bulk all-reduce, broadcast, scalar sum).

use std::sync::{Arc, PoisonError};

use albatross_proto::domain::OpTag;
use albatross_proto::wire::v1::OpKind;
use tokio::sync::watch;

use crate::channel::{ChannelOptions, ChannelPool};
use crate::compress::WireFormat;
use crate::error::CollectiveError;
use crate::op::{OpContext, run_ring};
use crate::registry::Registry;
use crate::scalar::run_scalar;
use crate::schedule::{RingPlan, RingShape, validate_shape};
use crate::server::{
    PeerServer, SenderAuth, ServerOptions, StateSlot, StateSource, TrustClaimedSender,
};

/// Room for a piece's header fields and gRPC prefix (they take well under 1 KiB).
const PIECE_HEADER_BYTES: usize = 1024;
/// The largest flow-control window HTTP/2 allows (RFC 9113, 6.9.1).
const MAX_WINDOW_BYTES: u32 = (1 << 31) - 1;

/// Settings of the collective layer; every rank of a job must use the same `piece_bytes` and
/// `wire` format (a receiver rejects pieces that do not match its own plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectiveConfig {
    /// Pipelined piece size in bytes of f32 (the unit of overlap between send, receive, add).
    pub piece_bytes: usize,
    /// Pieces queued per direction (bounds the extra memory per rank).
    pub queue_pieces: usize,
    /// Wire format of `all_reduce_sum` (broadcast is always exact).
    pub wire: WireFormat,
    pub server: ServerOptions,
    pub channel: ChannelOptions,
}

impl Default for CollectiveConfig {
    fn default() -> Self {
        Self {
            piece_bytes: 1 << 20,
            queue_pieces: 4,
            wire: WireFormat::F32,
            server: ServerOptions::default(),
            channel: ChannelOptions::default(),
        }
    }
}

impl CollectiveConfig {
    /// # Errors
    /// When a piece would not fit the message size limit or a stream's flow-control window, a
    /// connection window is below its stream window or above HTTP/2's limit, or a size is zero.
    pub fn validate(&self) -> Result<(), CollectiveError> {
        let invalid = |m: String| Err(CollectiveError::InvalidArgument(m));
        if self.piece_bytes < 4 {
            return invalid(format!("piece_bytes {} is below one f32", self.piece_bytes));
        }
        let piece_message = self.piece_bytes.saturating_add(PIECE_HEADER_BYTES);
        if piece_message > self.server.max_message_bytes {
            return invalid(format!(
                "piece_bytes {} does not fit max_message_bytes {}",
                self.piece_bytes, self.server.max_message_bytes
            ));
        }
        if self.queue_pieces == 0 {
            return invalid("queue_pieces must be at least 1".to_owned());
        }
        // A piece that does not fit its stream's window is sent a window at a time, each part
        // waiting for the receiver to acknowledge the last: slow for no gain.
        for (what, stream, connection) in [
            ("server", self.server.stream_window_bytes, self.server.connection_window_bytes),
            ("channel", self.channel.stream_window_bytes, self.channel.connection_window_bytes),
        ] {
            if (stream as usize) < piece_message {
                return invalid(format!(
                    "{what}.stream_window_bytes {stream} is below one piece ({} bytes with its \
                     header): raise it, or use CollectiveConfig::with_piece_bytes",
                    piece_message
                ));
            }
            if connection > MAX_WINDOW_BYTES {
                return invalid(format!(
                    "{what}.connection_window_bytes {connection} is above HTTP/2's largest \
                     window, {MAX_WINDOW_BYTES}"
                ));
            }
            if connection < stream {
                return invalid(format!(
                    "{what}.connection_window_bytes {connection} is below \
                     {what}.stream_window_bytes {stream}"
                ));
            }
        }
        Ok(())
    }

    /// This configuration with pieces of `piece_bytes`, its flow-control windows raised (never
    /// lowered) to hold two such pieces per stream as the defaults do for 1 MiB pieces.
    #[must_use]
    pub fn with_piece_bytes(mut self, piece_bytes: usize) -> Self {
        self.piece_bytes = piece_bytes;
        let two_pieces = piece_bytes.saturating_mul(2);
        let two_pieces = u32::try_from(two_pieces).unwrap_or(u32::MAX).min(MAX_WINDOW_BYTES);
        for (stream, connection) in [
            (&mut self.server.stream_window_bytes, &mut self.server.connection_window_bytes),
            (&mut self.channel.stream_window_bytes, &mut self.channel.connection_window_bytes),
        ] {
            *stream = (*stream).max(two_pieces);
            *connection = (*connection).max(stream.saturating_mul(2).min(MAX_WINDOW_BYTES));
        }
        self
    }

    fn piece_elems(&self) -> usize {
        (self.piece_bytes / 4).max(1)
    }
}

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

/// One worker's collective layer. Cheap to clone; run one operation at a time.
#[derive(Debug, Clone)]
pub struct Collective {
    shared: Arc<Shared>,
    auth: Arc<dyn SenderAuth>,
    state: StateSlot,
}

impl Collective {
    /// # Errors
    /// When `config` is inconsistent (see [`CollectiveConfig::validate`]).
    pub fn new(config: CollectiveConfig) -> Result<Self, CollectiveError> {
        config.validate()?;
        let pool = Arc::new(ChannelPool::new(config.channel.clone()));
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                registry: Arc::default(),
                pool,
                progress: watch::Sender::new(OpProgress::default()),
            }),
            auth: Arc::new(TrustClaimedSender),
            state: StateSlot::default(),
        })
    }

    /// Replace the authentication hook of the peer service (before calling
    /// [`Self::peer_server`]).
    #[must_use]
    pub fn with_auth(mut self, auth: Arc<dyn SenderAuth>) -> Self {
        self.auth = auth;
        self
    }

    /// Progress of the current (or last) ring operation, updated per piece.
    pub fn progress(&self) -> watch::Receiver<OpProgress> {
        self.shared.progress.subscribe()
    }

    pub fn config(&self) -> &CollectiveConfig {
        &self.shared.config
    }

    /// Install (or replace) the state served through `FetchState`.
    pub fn install_state_source(&self, source: Arc<dyn StateSource>) {
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = Some(source);
    }

    /// The `PeerService` of this worker; serve it with
    /// [`ServerOptions::server_builder`] (`self.config().server`).
    pub fn peer_server(&self) -> PeerServer {
        PeerServer::new(
            Arc::clone(&self.shared.registry),
            Arc::clone(&self.auth),
            Arc::clone(&self.state),
            self.shared.config.server.clone(),
        )
    }

    fn shape(&self, ctx: &OpContext, len: usize) -> Result<RingShape, CollectiveError> {
        ctx.validate()?;
        let shape = RingShape {
            world: ctx.world_size(),
            rank: ctx.rank as usize,
            len,
            piece_elems: self.shared.config.piece_elems(),
        };
        validate_shape(&shape).map_err(CollectiveError::InvalidArgument)?;
        Ok(shape)
    }

    /// Sum `buf` element-wise over all ranks of `ctx`, in place, with the configured wire
    /// format. Every rank ends with bit-identical values.
    ///
    /// # Errors
    /// Any failure (peer lost, stalled past the deadline, cancelled, refused): `buf` then holds
    /// partial sums and must not be used.
    pub async fn all_reduce_sum(
        &self,
        ctx: &OpContext,
        buf: &mut [f32],
    ) -> Result<(), CollectiveError> {
        self.all_reduce_sum_with(ctx, buf, self.shared.config.wire).await
    }

    /// [`Self::all_reduce_sum`] with an explicit wire format (all ranks must pass the same).
    ///
    /// # Errors
    /// As [`Self::all_reduce_sum`].
    pub async fn all_reduce_sum_with(
        &self,
        ctx: &OpContext,
        buf: &mut [f32],
        wire: WireFormat,
    ) -> Result<(), CollectiveError> {
        let plan = RingPlan::all_reduce(self.shape(ctx, buf.len())?);
        run_ring(&self.shared, ctx, OpKind::AllReduceSum, plan, wire, buf).await
    }

    /// Copy rank `root`'s `buf` to every rank (exact f32 bytes).
    ///
    /// # Errors
    /// As [`Self::all_reduce_sum`]; also when `root` is not a rank of `ctx`.
    pub async fn broadcast(
        &self,
        ctx: &OpContext,
        root: u32,
        buf: &mut [f32],
    ) -> Result<(), CollectiveError> {
        let shape = self.shape(ctx, buf.len())?;
        if root as usize >= shape.world {
            return Err(CollectiveError::InvalidArgument(format!(
                "broadcast root {root} is outside the {} ranks",
                shape.world
            )));
        }
        let plan = RingPlan::broadcast(shape, root as usize);
        run_ring(&self.shared, ctx, OpKind::Broadcast, plan, WireFormat::F32, buf).await
    }

    /// Sum a few f64 scalars over all ranks in one round trip (at most
    /// [`crate::MAX_SCALARS`]); bit-identical on every rank.
    ///
    /// # Errors
    /// As [`Self::all_reduce_sum`].
    pub async fn scalar_sum(
        &self,
        ctx: &OpContext,
        values: &mut [f64],
    ) -> Result<(), CollectiveError> {
        ctx.validate()?;
        run_scalar(&self.shared, ctx, values).await
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn the_defaults_hold_two_pieces_per_stream() {
        let config = CollectiveConfig::default();
        config.validate().expect("defaults are valid");
        assert!(config.server.stream_window_bytes as usize >= 2 * config.piece_bytes);
        assert_eq!(config.server.stream_window_bytes, config.channel.stream_window_bytes);
    }

    #[test]
    fn a_window_smaller_than_a_piece_is_named() {
        let mut config = CollectiveConfig { piece_bytes: 4 << 20, ..CollectiveConfig::default() };
        let err = config.validate().expect_err("2 MiB windows cannot hold a 4 MiB piece");
        assert!(err.to_string().contains("server.stream_window_bytes"), "{err}");
        config.server.stream_window_bytes = 8 << 20;
        config.server.connection_window_bytes = 4 << 20;
        let err = config.validate().expect_err("connection below stream");
        assert!(err.to_string().contains("server.connection_window_bytes"), "{err}");
        config.server.connection_window_bytes = 8 << 20;
        let err = config.validate().expect_err("the channel's windows are checked too");
        assert!(err.to_string().contains("channel.stream_window_bytes"), "{err}");
        config.channel.stream_window_bytes = 8 << 20;
        config.channel.connection_window_bytes = u32::MAX;
        let err = config.validate().expect_err("above HTTP/2's largest window");
        assert!(err.to_string().contains("channel.connection_window_bytes"), "{err}");
    }

    #[test]
    fn with_piece_bytes_raises_the_windows_and_never_lowers_them() {
        let big = CollectiveConfig::default().with_piece_bytes(4 << 20);
        big.validate().expect("raised windows hold the pieces");
        assert_eq!(big.piece_bytes, 4 << 20);
        for (stream, connection) in [
            (big.server.stream_window_bytes, big.server.connection_window_bytes),
            (big.channel.stream_window_bytes, big.channel.connection_window_bytes),
        ] {
            assert_eq!(stream as usize, 2 * (4 << 20));
            assert_eq!(connection, 2 * stream);
        }
        let same = CollectiveConfig::default().with_piece_bytes(1 << 20);
        assert_eq!(same, CollectiveConfig::default(), "1 MiB pieces are the defaults' own");
        let small = CollectiveConfig::default().with_piece_bytes(64 << 10);
        let defaults = CollectiveConfig::default();
        assert_eq!(small.server, defaults.server);
        assert_eq!(small.channel, defaults.channel);
        small.validate().expect("valid");
        // Pieces too large for any message still give windows HTTP/2 accepts.
        let huge = CollectiveConfig::default().with_piece_bytes(usize::MAX);
        assert_eq!(huge.channel.stream_window_bytes, MAX_WINDOW_BYTES);
        assert_eq!(huge.channel.connection_window_bytes, MAX_WINDOW_BYTES);
        assert!(huge.validate().is_err(), "the piece itself is still refused");
    }
}
