//! What becomes of each received piece of a ring operation, decided once from its plan.

use std::collections::HashMap;

use crate::schedule::{RecvAction, RecvStep, SendStep};

/// What becomes of a received piece, decided once per operation from the plan, so that no
/// range is encoded again when the bytes to send are already in hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Landing {
    /// Applied to the buffer, never sent on (the last pieces a rank receives).
    Apply,
    /// Copied into the buffer and forwarded as received: the all-gather and broadcast send
    /// exactly the bytes they received for a range.
    ApplyAndForward,
    /// An inner reduce-scatter step: the sum goes straight into the outgoing payload, never
    /// into the buffer (the all-gather overwrites that range later).
    Relay,
    /// The owner's last reduce-scatter step: added into the buffer, rounded to the wire
    /// precision and encoded in the same pass for its all-gather send.
    Keep,
}

/// The [`Landing`] of every receive step, in plan order.
pub(crate) fn landings(sends: &[SendStep], recvs: &[RecvStep]) -> Vec<Landing> {
    let sent: HashMap<(usize, usize), bool> = sends
        .iter()
        .map(|s| ((s.transfer.range.start, s.transfer.range.end), s.owner_source))
        .collect();
    recvs
        .iter()
        .map(|r| {
            let owner_sends = sent.get(&(r.transfer.range.start, r.transfer.range.end));
            match (r.action, owner_sends) {
                (_, None) => Landing::Apply,
                (RecvAction::Overwrite, Some(_)) => Landing::ApplyAndForward,
                (RecvAction::Accumulate, Some(false)) => Landing::Relay,
                (RecvAction::Accumulate, Some(true)) => Landing::Keep,
            }
        })
        .collect()
}
