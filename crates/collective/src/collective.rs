//! The handle a worker holds: configuration, the registry shared with its `PeerService`, the
//! channel pool, and the operations (bulk all-reduce of f32 or exact i64, broadcast, scalar
//! sum).

use std::sync::{Arc, PoisonError};

use albatross_proto::domain::CollectiveOp;
use tokio::sync::watch;

use crate::channel::ChannelPool;
use crate::compress::WireFormat;
use crate::config::CollectiveConfig;
use crate::error::CollectiveError;
use crate::exact::WrappingI64;
use crate::op::OpContext;
use crate::ring::run_ring;
use crate::scalar::run_scalar;
use crate::schedule::{RingPlan, RingShape, validate_shape};
use crate::server::{PeerServer, SenderAuth, StateSlot, StateSource, TrustClaimedSender};
use crate::shared::{OpProgress, Shared};

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

    /// The ring shape of an operation on `buf` (pieces of `piece_bytes` of its elements).
    fn shape<E>(&self, ctx: &OpContext, buf: &[E]) -> Result<RingShape, CollectiveError> {
        ctx.validate()?;
        let shape = RingShape {
            world: ctx.world_size(),
            rank: ctx.rank as usize,
            len: buf.len(),
            piece_elems: self.shared.config.piece_elems(size_of::<E>()),
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
        let plan = RingPlan::all_reduce(self.shape(ctx, buf)?);
        run_ring(&self.shared, ctx, CollectiveOp::AllReduceSum, plan, wire, buf).await
    }

    /// Sum `buf` element-wise over all ranks of `ctx` with wrapping i64 addition, in place, as
    /// raw little-endian i64 on the wire (the configured wire format does not apply).
    ///
    /// Integer addition modulo 2^64 is associative and commutative: the result is exact and
    /// bit-identical whatever the world size, ring order or assignment of contributions to
    /// ranks (fixed-point gradients for a bit-exact training mode). Partial sums may wrap on
    /// the way; the caller bounds the magnitudes so that the true sum fits in an i64, and then
    /// gets exactly that sum. All ranks must call this one (a rank running
    /// [`Self::all_reduce_sum`] for the same operation has its chunks refused).
    ///
    /// # Errors
    /// As [`Self::all_reduce_sum`].
    pub async fn all_reduce_sum_i64(
        &self,
        ctx: &OpContext,
        buf: &mut [i64],
    ) -> Result<(), CollectiveError> {
        let plan = RingPlan::all_reduce(self.shape(ctx, buf)?);
        run_ring(&self.shared, ctx, CollectiveOp::AllReduceSum, plan, WrappingI64, buf).await
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
        let shape = self.shape(ctx, buf)?;
        if root as usize >= shape.world {
            return Err(CollectiveError::InvalidArgument(format!(
                "broadcast root {root} is outside the {} ranks",
                shape.world
            )));
        }
        let plan = RingPlan::broadcast(shape, root as usize);
        run_ring(&self.shared, ctx, CollectiveOp::Broadcast, plan, WireFormat::F32, buf).await
    }

    /// Sum a few f64 scalars over all ranks in one round trip (at most
    /// [`crate::scalar::MAX_SCALARS`]); bit-identical on every rank.
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
