//! The exact encoding of i64 all-reduces: raw little-endian two's-complement i64, summed with
//! wrapping addition.
//!
//! Why: addition modulo 2^64 is associative and commutative, so the order in which the ring
//! adds contributions (it depends on the world size and on which rank owns which segment)
//! cannot change a single bit of the result: the same contributions give the same sum on any
//! ring, and a bit-exact training mode sums fixed-point gradients this way. Partial sums may
//! wrap on the way; as long as the caller bounds the magnitudes so that the true sum fits in
//! an i64, the final sum is that true sum. Nothing is ever rounded.

use bytes::Bytes;

use crate::compress::PodBytes;
use crate::payload::Payload;
use crate::schedule::RecvAction;

/// Bytes per i64 on the wire.
const I64_BYTES: usize = 8;

/// The codec of exact i64 ring operations (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct WrappingI64;

/// One element from exactly [`I64_BYTES`] little-endian bytes (a `chunks_exact` chunk).
/// Inlined, so the loops that call it load and add whole vectors: as a call it cost as much
/// as the rest of the summing loop.
#[inline(always)]
fn le_i64(b: &[u8]) -> i64 {
    let mut bytes = [0u8; I64_BYTES];
    bytes.copy_from_slice(b);
    i64::from_le_bytes(bytes)
}

/// Encode `values` as little-endian i64.
pub(crate) fn encode(values: &[i64]) -> Bytes {
    if cfg!(target_endian = "little") {
        // In memory i64 already is little-endian: one copy.
        return Bytes::copy_from_slice(bytemuck::cast_slice(values));
    }
    let mut out = Vec::with_capacity(values.len() * I64_BYTES);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Bytes::from(out)
}

/// Sums computed into a fresh vector, as a payload (without a copy where memory order is wire
/// order).
fn into_payload(sums: Vec<i64>) -> Bytes {
    if cfg!(target_endian = "little") {
        return Bytes::from_owner(PodBytes(sums));
    }
    encode(&sums)
}

/// The payload of `values + received` (wrapping, the additions [`apply`] makes) without writing
/// the sums back: a partial sum relayed in the reduce-scatter, in one pass.
pub(crate) fn add_encode(values: &[i64], received: &Payload) -> Bytes {
    let mut sums = Vec::with_capacity(values.len());
    received.element_runs(I64_BYTES, |first, run| {
        let local = &values[first.min(values.len())..];
        sums.extend(
            local.iter().zip(run.chunks_exact(I64_BYTES)).map(|(v, b)| v.wrapping_add(le_i64(b))),
        );
    });
    debug_assert_eq!(sums.len(), values.len(), "the caller checked the payload length");
    into_payload(sums)
}

/// Adds `received` into `values` (wrapping) and returns the sums encoded: the owner's last
/// reduce-scatter step, which keeps the result and sends it on, in one pass.
pub(crate) fn add_keep_encode(values: &mut [i64], received: &Payload) -> Bytes {
    let mut sums = Vec::with_capacity(values.len());
    received.element_runs(I64_BYTES, |first, run| {
        let start = first.min(values.len());
        sums.extend(values[start..].iter_mut().zip(run.chunks_exact(I64_BYTES)).map(|(v, b)| {
            *v = v.wrapping_add(le_i64(b));
            *v
        }));
    });
    debug_assert_eq!(sums.len(), values.len(), "the caller checked the payload length");
    into_payload(sums)
}

/// Apply a received payload to `values`: wrapping addition, or a copy of the exact bits. The
/// caller has checked that `payload` holds exactly `values.len()` elements.
pub(crate) fn apply(values: &mut [i64], payload: &Payload, action: RecvAction) {
    payload.element_runs(I64_BYTES, |first, run| {
        let count = run.len() / I64_BYTES;
        let Some(values) = values.get_mut(first..first + count) else {
            return;
        };
        match action {
            RecvAction::Accumulate => {
                for (v, b) in values.iter_mut().zip(run.chunks_exact(I64_BYTES)) {
                    *v = v.wrapping_add(le_i64(b));
                }
            }
            RecvAction::Overwrite if cfg!(target_endian = "little") => {
                let dst: &mut [u8] = bytemuck::cast_slice_mut(values);
                dst.copy_from_slice(&run[..dst.len()]);
            }
            RecvAction::Overwrite => {
                for (v, b) in values.iter_mut().zip(run.chunks_exact(I64_BYTES)) {
                    *v = le_i64(b);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(bytes: &Bytes, cuts: &[usize]) -> Payload {
        Payload::cut(bytes, cuts)
    }

    #[test]
    fn encoding_is_little_endian_twos_complement_and_exact() {
        let values = [1i64, -1, i64::MAX, i64::MIN, 0x0102_0304_0506_0708];
        let bytes = encode(&values);
        assert_eq!(bytes.len(), 40);
        assert_eq!(&bytes[..8], &1i64.to_le_bytes());
        assert_eq!(&bytes[8..16], &[0xff; 8]);
        assert_eq!(&bytes[32..], &[8, 7, 6, 5, 4, 3, 2, 1]);
        let payload = split(&bytes, &[3, 11, 12, 29]);
        let mut out = [42i64; 5];
        apply(&mut out, &payload, RecvAction::Overwrite);
        assert_eq!(out, values);
    }

    #[test]
    fn sums_wrap_at_the_ends_of_the_range() {
        let values = [i64::MAX, i64::MIN, -1, 0, 1 << 62];
        let received = [1i64, -1, i64::MIN, i64::MAX, 3 << 62];
        // 2^62 + 3·2^62 = 2^64 ≡ 0.
        let want = [i64::MIN, i64::MAX, i64::MAX, i64::MAX, 0];
        let payload = split(&encode(&received), &[5]);
        let mut out = values;
        apply(&mut out, &payload, RecvAction::Accumulate);
        assert_eq!(out, want);
        assert_eq!(add_encode(&values, &payload), encode(&want));
        let mut kept = values;
        assert_eq!(add_keep_encode(&mut kept, &payload), encode(&want));
        assert_eq!(kept, want);
    }

    #[test]
    fn add_encode_sends_exactly_what_apply_then_encode_would() {
        let values: Vec<i64> =
            (0..37i64).map(|i| (i - 18).wrapping_mul(0x1f3d_5b79_a2c4_e687) ^ (1 << 62)).collect();
        let received: Vec<i64> = (0..37i64).map(|i| i64::MAX - i * 0x0123_4567_89ab_cdef).collect();
        let bytes = encode(&received);
        for cuts in [vec![], vec![7], vec![1, 9, 15, 16, 100, 295]] {
            let payload = split(&bytes, &cuts);
            let mut reference = values.clone();
            apply(&mut reference, &payload, RecvAction::Accumulate);
            let direct: Vec<i64> =
                values.iter().zip(&received).map(|(v, r)| v.wrapping_add(*r)).collect();
            assert_eq!(reference, direct, "cuts {cuts:?}");
            assert_eq!(add_encode(&values, &payload), encode(&reference), "cuts {cuts:?}");
            let mut kept = values.clone();
            let sent = add_keep_encode(&mut kept, &payload);
            assert_eq!(sent, encode(&reference), "cuts {cuts:?}");
            assert_eq!(kept, reference, "cuts {cuts:?} kept");
        }
    }
}
