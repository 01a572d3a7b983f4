//! What the ring driver needs to know of a buffer's element type: the dtype its chunks carry,
//! how values are encoded, and how received values combine with local ones. The driver is
//! generic over a [`RingCodec`] and monomorphised per codec, so the f32 path runs the very
//! functions of [`crate::compress`] (with their fast paths, no extra copy) it always ran.

use albatross_proto::domain::ElementType;
use bytes::Bytes;

use crate::compress::{self, WireFormat};
use crate::exact::{self, WrappingI64};
use crate::payload::Payload;
use crate::schedule::RecvAction;

/// An element type of ring operations and its wire encoding. Every method that takes a
/// payload may assume its length was checked against the plan (exactly `values.len()`
/// elements of [`Self::element_bytes`]); segment boundaries fall anywhere in it.
pub(crate) trait RingCodec: Copy + Send + Sync {
    /// The element of the caller's buffer.
    type Elem: bytemuck::Pod + Send + Sync;

    /// The dtype every chunk of the operation carries: the receiver refuses any other.
    fn element_type(self) -> ElementType;

    /// Bytes per element on the wire.
    fn element_bytes(self) -> usize {
        self.element_type().bytes()
    }

    /// `values` as wire bytes.
    fn encode(self, values: &[Self::Elem]) -> Bytes;

    /// Adds a received payload into `values`, or overwrites them with it.
    fn apply(self, values: &mut [Self::Elem], payload: &Payload, action: RecvAction);

    /// The payload of `values + received` (the additions [`Self::apply`] makes) without writing
    /// the sums back: a partial sum relayed in the reduce-scatter.
    fn add_encode(self, values: &[Self::Elem], received: &Payload) -> Bytes;

    /// Adds `received` into `values`, rounds them as [`Self::round_in_place`] and returns them
    /// encoded: the owner's last reduce-scatter step, which keeps the sum and sends it on.
    fn add_keep_encode(self, values: &mut [Self::Elem], received: &Payload) -> Bytes;

    /// Rounds `values` to the wire precision, so an owner keeps what the others receive.
    fn round_in_place(self, values: &mut [Self::Elem]);
}

impl RingCodec for WireFormat {
    type Elem = f32;

    fn element_type(self) -> ElementType {
        match self {
            Self::F32 => ElementType::F32,
            Self::Bf16 => ElementType::Bf16,
        }
    }

    fn encode(self, values: &[f32]) -> Bytes {
        compress::encode(values, self)
    }

    fn apply(self, values: &mut [f32], payload: &Payload, action: RecvAction) {
        compress::apply(values, payload, self, action);
    }

    fn add_encode(self, values: &[f32], received: &Payload) -> Bytes {
        compress::add_encode(values, received, self)
    }

    fn add_keep_encode(self, values: &mut [f32], received: &Payload) -> Bytes {
        compress::add_keep_encode(values, received, self)
    }

    fn round_in_place(self, values: &mut [f32]) {
        compress::round_in_place(values, self);
    }
}

impl RingCodec for WrappingI64 {
    type Elem = i64;

    fn element_type(self) -> ElementType {
        ElementType::I64
    }

    fn encode(self, values: &[i64]) -> Bytes {
        exact::encode(values)
    }

    fn apply(self, values: &mut [i64], payload: &Payload, action: RecvAction) {
        exact::apply(values, payload, action);
    }

    fn add_encode(self, values: &[i64], received: &Payload) -> Bytes {
        exact::add_encode(values, received)
    }

    fn add_keep_encode(self, values: &mut [i64], received: &Payload) -> Bytes {
        exact::add_keep_encode(values, received)
    }

    /// Exact: nothing to round.
    fn round_in_place(self, _values: &mut [i64]) {}
}
