//! The constants of the shard format (the layout is in the parent module's documentation).

/// First bytes of every shard.
pub const MAGIC: &[u8; 8] = b"ALBSHARD";
/// Shard format version written by this crate.
pub const VERSION: u32 = 1;
/// Size of the fixed header.
pub const HEADER_BYTES: usize = 64;
