//! The sans-IO ring schedule: which piece of the buffer every rank sends and receives, in which
//! order, and which receive must be applied before a send may leave.
//!
//! All-reduce is reduce-scatter then all-gather over `n` ranks. The buffer is cut into `n`
//! segments (the first `len % n` one element longer) and every segment into pieces of at most
//! `piece_elems` elements. In reduce-scatter step `s` rank `r` sends segment `(r - s) mod n` to
//! its successor and adds the segment `(r - s - 1) mod n` it receives into its own; so segment
//! `c` is summed in the fixed order `x[c], x[c+1], …, x[c-1]` and rank `r` ends as the owner of
//! segment `(r + 1) mod n`. In all-gather step `s` rank `r` sends segment `(r + 1 - s) mod n` and
//! overwrites segment `(r - s) mod n` with the bytes it receives, so every rank ends with the
//! owner's bytes. A send of step `s > 0` carries the segment received in step `s - 1`: it waits
//! only for that same piece, which lets pieces pipeline through the ring.
//!
//! Broadcast from `root` forwards every piece of the whole buffer along the ring
//! `root, root + 1, …, root - 1`.

use std::ops::Range;

/// The `parts` segments of a buffer of `len` elements: sizes differ by at most one, the first
/// `len % parts` segments being the longer ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    len: usize,
    parts: usize,
}

impl Segments {
    /// `parts == 0` is treated as one segment.
    pub fn new(len: usize, parts: usize) -> Self {
        Self { len, parts: parts.max(1) }
    }

    /// Number of segments.
    pub fn count(&self) -> usize {
        self.parts
    }

    /// Element range of segment `index` (empty for `index >= parts`).
    pub fn range(&self, index: usize) -> Range<usize> {
        if index >= self.parts {
            return self.len..self.len;
        }
        let base = self.len / self.parts;
        let extra = self.len % self.parts;
        let start = index * base + index.min(extra);
        let size = base + usize::from(index < extra);
        start..start + size
    }
}

/// The phase of a ring operation a transfer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    ReduceScatter,
    AllGather,
    Broadcast,
}

/// One piece moving over one ring link: the same value describes the send on one side and
/// the receive on the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub phase: Phase,
    /// Position within the phase: `0 ..= n - 2`.
    pub ring_step: u32,
    /// Segment of the buffer (always 0 for broadcast).
    pub segment: u32,
    /// Piece within the segment.
    pub piece: u32,
    /// Elements of the whole buffer the piece covers.
    pub range: Range<usize>,
}

/// What a receiver does with the elements of a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvAction {
    /// Add the received values into the local ones (reduce-scatter).
    Accumulate,
    /// Replace the local values by the received ones (all-gather, broadcast).
    Overwrite,
}

/// A piece this rank sends to its successor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendStep {
    pub transfer: Transfer,
    /// How many receives (a prefix of [`RingPlan::recvs`]) must be applied before this piece
    /// holds the value to send.
    pub after_recvs: usize,
    /// The piece is a segment this rank owns fully reduced: under lossy wire compression the
    /// owner first rounds its own copy to the wire precision, so every rank ends bit-identical.
    pub owner_source: bool,
}

/// A piece this rank receives from its predecessor, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecvStep {
    pub transfer: Transfer,
    pub action: RecvAction,
}

/// Everything one rank does in one ring operation, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RingPlan {
    pub sends: Vec<SendStep>,
    pub recvs: Vec<RecvStep>,
}

/// Shape of a ring operation: ring size, this rank, buffer length and piece size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingShape {
    pub world: usize,
    pub rank: usize,
    pub len: usize,
    /// Maximum elements per piece (0 is treated as 1).
    pub piece_elems: usize,
}

impl RingShape {
    fn pieces(&self, range: Range<usize>) -> impl Iterator<Item = Range<usize>> {
        let step = self.piece_elems.max(1);
        let end = range.end;
        range.step_by(step).map(move |start| start..(start + step).min(end))
    }
}

impl RingPlan {
    pub fn is_empty(&self) -> bool {
        self.sends.is_empty() && self.recvs.is_empty()
    }

    /// Reduce-scatter then all-gather for `shape.rank` of `shape.world` ranks.
    ///
    /// # Panics
    /// Never; a rank outside the world yields an empty plan (callers validate ranks first).
    pub fn all_reduce(shape: RingShape) -> Self {
        let n = shape.world;
        if n < 2 || shape.rank >= n || shape.len == 0 {
            return Self::default();
        }
        let r = shape.rank;
        let segments = Segments::new(shape.len, n);
        let phases = [
            (Phase::ReduceScatter, RecvAction::Accumulate),
            (Phase::AllGather, RecvAction::Overwrite),
        ];
        let mut plan = Self::default();
        // Index of the first receive of each (phase, step) block, to resolve send dependencies.
        let mut block_start: Vec<usize> = Vec::with_capacity(2 * (n - 1));
        for (phase, action) in phases {
            for s in 0..n - 1 {
                let (send_seg, recv_seg) = match phase {
                    Phase::ReduceScatter => ((r + n - s) % n, (r + 2 * n - s - 1) % n),
                    _ => ((r + 1 + n - s) % n, (r + n - s) % n),
                };
                // The segment sent now is the one received in the previous block (for the
                // first reduce-scatter step: the local input).
                let previous = block_start.last().copied();
                for (piece, range) in shape.pieces(segments.range(send_seg)).enumerate() {
                    plan.sends.push(SendStep {
                        transfer: transfer(phase, s, send_seg, piece, range),
                        after_recvs: previous.map_or(0, |start| start + piece + 1),
                        owner_source: phase == Phase::AllGather && s == 0,
                    });
                }
                block_start.push(plan.recvs.len());
                for (piece, range) in shape.pieces(segments.range(recv_seg)).enumerate() {
                    plan.recvs.push(RecvStep {
                        transfer: transfer(phase, s, recv_seg, piece, range),
                        action,
                    });
                }
            }
        }
        plan
    }

    /// Broadcast of the whole buffer from `root` along the ring.
    pub fn broadcast(shape: RingShape, root: usize) -> Self {
        let n = shape.world;
        if n < 2 || shape.rank >= n || root >= n || shape.len == 0 {
            return Self::default();
        }
        // Distance from the root along the ring: the root is 0, its predecessor n - 1.
        let distance = (shape.rank + n - root) % n;
        let mut plan = Self::default();
        for (piece, range) in shape.pieces(0..shape.len).enumerate() {
            if distance > 0 {
                plan.recvs.push(RecvStep {
                    transfer: transfer(Phase::Broadcast, distance - 1, 0, piece, range.clone()),
                    action: RecvAction::Overwrite,
                });
            }
            if distance < n - 1 {
                plan.sends.push(SendStep {
                    transfer: transfer(Phase::Broadcast, distance, 0, piece, range),
                    after_recvs: if distance == 0 { 0 } else { piece + 1 },
                    owner_source: false,
                });
            }
        }
        plan
    }
}

fn transfer(
    phase: Phase,
    step: usize,
    segment: usize,
    piece: usize,
    range: Range<usize>,
) -> Transfer {
    // Ring sizes and piece counts fit u32: callers bound the world size and the buffer length
    // is limited by the piece count check in `validate_shape`.
    Transfer {
        phase,
        ring_step: u32::try_from(step).unwrap_or(u32::MAX),
        segment: u32::try_from(segment).unwrap_or(u32::MAX),
        piece: u32::try_from(piece).unwrap_or(u32::MAX),
        range,
    }
}

/// Why a ring shape cannot be scheduled.
pub fn validate_shape(shape: &RingShape) -> Result<(), String> {
    if shape.world == 0 {
        return Err("the quorum has no members".to_owned());
    }
    if shape.world > u32::MAX as usize {
        return Err(format!("world size {} does not fit the wire format", shape.world));
    }
    if shape.rank >= shape.world {
        return Err(format!("rank {} is outside a world of {} ranks", shape.rank, shape.world));
    }
    if shape.piece_elems == 0 {
        return Err("piece size must be at least one element".to_owned());
    }
    let pieces = shape.len.div_ceil(shape.piece_elems);
    if pieces > u32::MAX as usize {
        return Err(format!(
            "buffer of {} elements needs {pieces} pieces of {}, more than the wire allows",
            shape.len, shape.piece_elems
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "schedule_test.rs"]
mod schedule_test;
