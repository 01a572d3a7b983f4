//! The coordinator: membership, per-step quorum, failure detection, the exactly-once data cursor,
//! checkpoint scheduling, durable state, status and metrics.
//!
//! Not implemented yet (issue "Coordinator"). Invariants it will keep:
//! - the decision core is sans-IO (events plus an injected clock in, decisions out);
//! - a step commits only if every member of its quorum voted ok with the same state hash;
//! - the data cursor advances only on commit;
//! - generations strictly increase, across restarts too (persisted before use).
