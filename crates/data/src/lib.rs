//! The data pipeline: corpus readers (Wikipedia XML, WikiExtractor, parquet, JSON Lines, plain
//! text), the ALBERT tokenizer, SOP pairs with n-gram masking, verified shards and the
//! exactly-once sampler.
//!
//! Not implemented yet (issue "Data pipeline"). Invariants it will keep:
//! - an epoch's sample order is a pure function of (seed, epoch); a position in that order names
//!   one sample on every worker;
//! - masking is a pure function of (seed, epoch, sample id);
//! - a shard whose checksum does not match its manifest is never read.
