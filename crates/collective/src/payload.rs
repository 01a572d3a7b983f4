//! A received payload as the HTTP/2 DATA frames delivered it: a list of `Bytes` segments that
//! share the connection's read buffers, so no byte is copied between the socket and the add.
//! Segment boundaries fall anywhere, also inside an element; [`Payload::element_runs`] hands
//! out whole elements only.

use bytes::Bytes;

/// The payload of one piece, in order.
#[derive(Debug, Clone, Default)]
pub struct Payload {
    segments: Vec<Bytes>,
    len: usize,
}

impl Payload {
    /// An empty payload.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a segment (empty ones are dropped).
    pub fn push(&mut self, segment: Bytes) {
        if !segment.is_empty() {
            self.len += segment.len();
            self.segments.push(segment);
        }
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segments, in order.
    pub fn segments(&self) -> &[Bytes] {
        &self.segments
    }

    /// One contiguous copy (for small payloads such as scalar sums).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for segment in &self.segments {
            out.extend_from_slice(segment);
        }
        out
    }

    /// Calls `f(first_element, bytes)` for consecutive runs of whole elements of
    /// `element_bytes` each, covering the payload in order. An element split between two
    /// segments is reassembled in a small stack buffer and passed as a run of one. Trailing
    /// bytes that do not form a whole element are ignored (callers check the length first).
    pub fn element_runs(&self, element_bytes: usize, mut f: impl FnMut(usize, &[u8])) {
        const MAX_ELEMENT: usize = 8;
        assert!(
            (1..=MAX_ELEMENT).contains(&element_bytes),
            "invariant: element size {element_bytes} is between 1 and {MAX_ELEMENT} bytes"
        );
        let mut carry = [0u8; MAX_ELEMENT];
        let mut carried = 0;
        let mut element = 0;
        for segment in &self.segments {
            let mut rest: &[u8] = segment;
            if carried > 0 {
                let take = (element_bytes - carried).min(rest.len());
                carry[carried..carried + take].copy_from_slice(&rest[..take]);
                carried += take;
                rest = &rest[take..];
                if carried < element_bytes {
                    continue;
                }
                f(element, &carry[..element_bytes]);
                element += 1;
            }
            let whole = rest.len() / element_bytes * element_bytes;
            if whole > 0 {
                f(element, &rest[..whole]);
                element += whole / element_bytes;
            }
            let tail = &rest[whole..];
            carry[..tail.len()].copy_from_slice(tail);
            carried = tail.len();
        }
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Self {
        let mut payload = Self::new();
        payload.push(bytes);
        payload
    }
}

#[cfg(test)]
impl Payload {
    /// `bytes` received in segments ending at `cuts`, as HTTP/2 frames may cut a payload (also
    /// inside an element).
    pub(crate) fn cut(bytes: &[u8], cuts: &[usize]) -> Self {
        let data = Bytes::copy_from_slice(bytes);
        let mut payload = Self::new();
        let mut start = 0;
        for &cut in cuts.iter().chain([bytes.len()].iter()) {
            payload.push(data.slice(start..cut));
            start = cut;
        }
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(bytes: &[u8], cuts: &[usize]) -> Payload {
        Payload::cut(bytes, cuts)
    }

    #[test]
    fn runs_cover_every_element_once_whatever_the_cuts() {
        let bytes: Vec<u8> = (0..40u8).collect();
        for cuts in [vec![], vec![1], vec![3, 4, 5], vec![7, 8, 13, 30], vec![2, 2, 39]] {
            let payload = split(&bytes, &cuts);
            assert_eq!(payload.len(), 40);
            assert_eq!(payload.to_vec(), bytes);
            for size in [2, 4, 8] {
                let mut seen = Vec::new();
                let mut next = 0;
                payload.element_runs(size, |first, run| {
                    assert_eq!(first, next, "runs are consecutive");
                    assert_eq!(run.len() % size, 0, "whole elements only");
                    next += run.len() / size;
                    seen.extend_from_slice(run);
                });
                assert_eq!(seen, bytes, "cuts {cuts:?}, element size {size}");
            }
        }
    }

    #[test]
    fn empty_segments_are_dropped() {
        let mut payload = Payload::from(Bytes::new());
        payload.push(Bytes::from_static(b"ab"));
        payload.push(Bytes::new());
        assert_eq!(payload.segments().len(), 1);
        assert!(!payload.is_empty());
        assert!(Payload::new().is_empty());
    }
}
