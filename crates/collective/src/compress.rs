//! Payload encodings: raw little-endian f32, bf16 (half the bytes, accumulated in f32 by the
//! receiver) and f64 for scalar sums. Encoding is one pass over the slice into one allocation;
//! decoding adds or copies straight from the received bytes without an intermediate vector.

use bytes::Bytes;

use crate::payload::Payload;
use crate::schedule::RecvAction;

/// How f32 buffers travel on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireFormat {
    /// Exact: raw little-endian f32.
    #[default]
    F32,
    /// bfloat16 (round to nearest even), summed in f32 by the receiver: half the bytes, about
    /// three significant decimal digits per hop.
    Bf16,
}

impl WireFormat {
    /// Bytes per element on the wire.
    pub fn element_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::Bf16 => 2,
        }
    }
}

/// f32 → bf16 bits, rounding to nearest even; NaN stays a (quiet) NaN.
pub fn f32_to_bf16(value: f32) -> u16 {
    let bits = value.to_bits();
    if value.is_nan() {
        return ((bits >> 16) as u16) | 0x0040;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// bf16 bits → f32 (exact).
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Round an f32 to the nearest value representable in bf16.
pub fn round_to_bf16(value: f32) -> f32 {
    bf16_to_f32(f32_to_bf16(value))
}

/// Encode `values` in `format`.
pub fn encode(values: &[f32], format: WireFormat) -> Bytes {
    if format == WireFormat::F32 && cfg!(target_endian = "little") {
        // In memory f32 already is little-endian: one copy.
        return Bytes::copy_from_slice(bytemuck::cast_slice(values));
    }
    let mut out = vec![0u8; values.len() * format.element_bytes()];
    match format {
        WireFormat::F32 => {
            for (dst, v) in out.chunks_exact_mut(4).zip(values) {
                dst.copy_from_slice(&v.to_le_bytes());
            }
        }
        WireFormat::Bf16 => {
            for (dst, v) in out.chunks_exact_mut(2).zip(values) {
                dst.copy_from_slice(&f32_to_bf16(*v).to_le_bytes());
            }
        }
    }
    Bytes::from(out)
}

/// Values viewed as their in-memory bytes, so a vector of sums becomes a payload without a
/// copy: the wire bytes only on a little-endian target (callers check `target_endian`).
pub(crate) struct PodBytes<T>(pub Vec<T>);

impl<T: bytemuck::Pod> AsRef<[u8]> for PodBytes<T> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

/// The payload of `values + received` (element-wise, the same additions [`apply`] makes) in
/// `format`, without writing the sums back: the partial sums a rank forwards in the
/// reduce-scatter are never read again by it, so they go straight into the outgoing payload
/// (one pass instead of an add and then an encode).
pub fn add_encode(values: &[f32], received: &Payload, format: WireFormat) -> Bytes {
    let mut sums = Vec::with_capacity(values.len());
    received.element_runs(format.element_bytes(), |first, run| {
        let local = &values[first.min(values.len())..];
        match format {
            WireFormat::F32 => sums.extend(
                local
                    .iter()
                    .zip(run.chunks_exact(4))
                    .map(|(v, b)| v + f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            WireFormat::Bf16 => sums.extend(
                local
                    .iter()
                    .zip(run.chunks_exact(2))
                    .map(|(v, b)| v + bf16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
            ),
        }
    });
    debug_assert_eq!(sums.len(), values.len(), "the caller checked the payload length");
    if format == WireFormat::F32 && cfg!(target_endian = "little") {
        return Bytes::from_owner(PodBytes(sums));
    }
    encode(&sums, format)
}

/// Adds `received` into `values` (as [`apply`] does), rounds the sums to the wire precision
/// (as [`round_in_place`] does before an owner sends its segment), and returns them encoded:
/// the last reduce-scatter step of a segment's owner, which keeps the result and sends it on,
/// in one pass.
pub fn add_keep_encode(values: &mut [f32], received: &Payload, format: WireFormat) -> Bytes {
    if format == WireFormat::F32 && cfg!(target_endian = "little") {
        let mut sums = Vec::with_capacity(values.len());
        received.element_runs(4, |first, run| {
            let start = first.min(values.len());
            sums.extend(values[start..].iter_mut().zip(run.chunks_exact(4)).map(|(v, b)| {
                *v += f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                *v
            }));
        });
        return Bytes::from_owner(PodBytes(sums));
    }
    // bf16 (half the bytes, rounding on the way): the plain passes.
    apply(values, received, format, RecvAction::Accumulate);
    round_in_place(values, format);
    encode(values, format)
}

/// Round `values` in place to the precision of `format` (a no-op for f32).
pub fn round_in_place(values: &mut [f32], format: WireFormat) {
    if format == WireFormat::Bf16 {
        for v in values {
            *v = round_to_bf16(*v);
        }
    }
}

/// Apply a received payload (the segments it arrived in) to `values`. The caller has checked
/// that `payload` holds exactly `values.len()` elements of `format`.
pub fn apply(values: &mut [f32], payload: &Payload, format: WireFormat, action: RecvAction) {
    payload.element_runs(format.element_bytes(), |first, run| {
        let count = run.len() / format.element_bytes();
        if let Some(values) = values.get_mut(first..first + count) {
            apply_run(values, run, format, action);
        }
    });
}

/// [`apply`] on one run of whole elements.
fn apply_run(values: &mut [f32], payload: &[u8], format: WireFormat, action: RecvAction) {
    match (format, action) {
        (WireFormat::F32, RecvAction::Accumulate) => {
            for (v, b) in values.iter_mut().zip(payload.chunks_exact(4)) {
                *v += f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        (WireFormat::F32, RecvAction::Overwrite) if cfg!(target_endian = "little") => {
            let dst: &mut [u8] = bytemuck::cast_slice_mut(values);
            dst.copy_from_slice(&payload[..dst.len()]);
        }
        (WireFormat::F32, RecvAction::Overwrite) => {
            for (v, b) in values.iter_mut().zip(payload.chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        (WireFormat::Bf16, RecvAction::Accumulate) => {
            for (v, b) in values.iter_mut().zip(payload.chunks_exact(2)) {
                *v += bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        (WireFormat::Bf16, RecvAction::Overwrite) => {
            for (v, b) in values.iter_mut().zip(payload.chunks_exact(2)) {
                *v = bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
    }
}

/// Encode f64 scalars as little-endian bytes.
pub fn encode_f64(values: &[f64]) -> Bytes {
    let mut out = Vec::with_capacity(values.len() * 8);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Bytes::from(out)
}

/// Decode little-endian f64 scalars (the caller has checked the length).
pub fn decode_f64(payload: &[u8]) -> Vec<f64> {
    payload
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even_and_keeps_specials() {
        assert_eq!(bf16_to_f32(f32_to_bf16(1.0)), 1.0);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        assert_eq!(round_to_bf16(1.0 + 2f32.powi(-8)), 1.0);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties go to 1 + 2^-6.
        assert_eq!(round_to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 1.0 + 2f32.powi(-6));
        assert_eq!(round_to_bf16(f32::INFINITY), f32::INFINITY);
        assert_eq!(round_to_bf16(-0.0).to_bits(), (-0.0f32).to_bits());
        assert!(round_to_bf16(f32::NAN).is_nan());
        // Relative error of one rounding is at most 2^-8 (8 significant bits).
        for i in 1..10_000u32 {
            let x = i as f32 * 0.123_456_7;
            assert!(((round_to_bf16(x) - x) / x).abs() <= 2f32.powi(-8), "{x}");
        }
    }

    #[test]
    fn f32_roundtrip_is_exact_and_little_endian() {
        let values = [1.5f32, -0.0, f32::MIN_POSITIVE, 3.4e38];
        let bytes = encode(&values, WireFormat::F32);
        assert_eq!(&bytes[..4], &1.5f32.to_le_bytes());
        // Cut mid-element, as HTTP/2 frames may: every element still lands once.
        let mut bytes = Payload::from(bytes.slice(..6));
        bytes.push(encode(&values, WireFormat::F32).slice(6..));
        let mut out = [0f32; 4];
        apply(&mut out, &bytes, WireFormat::F32, RecvAction::Overwrite);
        assert_eq!(out.map(f32::to_bits), values.map(f32::to_bits));
        apply(&mut out, &bytes, WireFormat::F32, RecvAction::Accumulate);
        assert_eq!(out[0], 3.0);
    }

    #[test]
    fn bf16_payload_is_half_size_and_accumulates_in_f32() {
        let values = [1.0f32, 2.5, -3.0];
        let bytes = Payload::from(encode(&values, WireFormat::Bf16));
        assert_eq!(bytes.len(), 6);
        let mut out = [0.25f32; 3];
        apply(&mut out, &bytes, WireFormat::Bf16, RecvAction::Accumulate);
        assert_eq!(out, [1.25, 2.75, -2.75]);
    }

    #[test]
    fn add_encode_sends_exactly_what_apply_then_encode_would() {
        let values: Vec<f32> = (0..37).map(|i| i as f32 * 0.37 - 5.0).collect();
        let received: Vec<f32> = (0..37).map(|i| 1.0 / (i as f32 + 0.5)).collect();
        for format in [WireFormat::F32, WireFormat::Bf16] {
            let bytes = encode(&received, format);
            let mut payload = Payload::from(bytes.slice(..7));
            payload.push(bytes.slice(7..));
            let mut reference = values.clone();
            apply(&mut reference, &payload, format, RecvAction::Accumulate);
            assert_eq!(
                add_encode(&values, &payload, format),
                encode(&reference, format),
                "{format:?}"
            );
            round_in_place(&mut reference, format);
            let mut kept = values.clone();
            let sent = add_keep_encode(&mut kept, &payload, format);
            assert_eq!(sent, encode(&reference, format), "{format:?}");
            assert_eq!(
                kept.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                reference.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{format:?} kept"
            );
        }
    }

    #[test]
    fn f64_roundtrip() {
        let values = [0.1f64, -2.0, f64::MAX];
        assert_eq!(decode_f64(&encode_f64(&values)), values);
    }
}
