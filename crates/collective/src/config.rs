//! The settings of a worker's collective layer, and their checks.

use crate::compress::WireFormat;
use crate::error::CollectiveError;
use crate::server::ServerOptions;
use albatross_proto::channel::ChannelOptions;

/// Room for a piece's header fields and gRPC prefix (they take well under 1 KiB).
const PIECE_HEADER_BYTES: usize = 1024;
/// The largest flow-control window HTTP/2 allows (RFC 9113, 6.9.1).
const MAX_WINDOW_BYTES: u32 = (1 << 31) - 1;

/// Settings of the collective layer; every rank of a job must use the same `piece_bytes` and
/// `wire` format (a receiver rejects pieces that do not match its own plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectiveConfig {
    /// Pipelined piece size in bytes of the caller's buffer (the unit of overlap between send,
    /// receive, add): `piece_bytes / 4` elements of an f32 buffer, `piece_bytes / 8` of i64.
    pub piece_bytes: usize,
    /// Pieces queued per direction (bounds the extra memory per rank).
    pub queue_pieces: usize,
    /// Wire format of `all_reduce_sum` (broadcast is always exact).
    pub wire: WireFormat,
    pub server: ServerOptions,
    pub channel: ChannelOptions,
}

impl Default for CollectiveConfig {
    fn default() -> Self {
        Self {
            piece_bytes: 1 << 20,
            queue_pieces: 4,
            wire: WireFormat::F32,
            server: ServerOptions::default(),
            channel: ChannelOptions::default(),
        }
    }
}

impl CollectiveConfig {
    /// # Errors
    /// When a piece would not fit the message size limit or a stream's flow-control window, a
    /// connection window is below its stream window or above HTTP/2's limit, or a size is zero.
    pub fn validate(&self) -> Result<(), CollectiveError> {
        let invalid = |m: String| Err(CollectiveError::InvalidArgument(m));
        if self.piece_bytes < 4 {
            return invalid(format!("piece_bytes {} is below one f32", self.piece_bytes));
        }
        let piece_message = self.piece_bytes.saturating_add(PIECE_HEADER_BYTES);
        if piece_message > self.server.max_message_bytes {
            return invalid(format!(
                "piece_bytes {} does not fit max_message_bytes {}",
                self.piece_bytes, self.server.max_message_bytes
            ));
        }
        if self.queue_pieces == 0 {
            return invalid("queue_pieces must be at least 1".to_owned());
        }
        // A piece that does not fit its stream's window is sent a window at a time, each part
        // waiting for the receiver to acknowledge the last: slow for no gain.
        for (what, stream, connection) in [
            ("server", self.server.stream_window_bytes, self.server.connection_window_bytes),
            ("channel", self.channel.stream_window_bytes, self.channel.connection_window_bytes),
        ] {
            if (stream as usize) < piece_message {
                return invalid(format!(
                    "{what}.stream_window_bytes {stream} is below one piece ({} bytes with its \
                     header): raise it, or use CollectiveConfig::with_piece_bytes",
                    piece_message
                ));
            }
            if connection > MAX_WINDOW_BYTES {
                return invalid(format!(
                    "{what}.connection_window_bytes {connection} is above HTTP/2's largest \
                     window, {MAX_WINDOW_BYTES}"
                ));
            }
            if connection < stream {
                return invalid(format!(
                    "{what}.connection_window_bytes {connection} is below \
                     {what}.stream_window_bytes {stream}"
                ));
            }
        }
        Ok(())
    }

    /// This configuration with pieces of `piece_bytes`, its flow-control windows raised (never
    /// lowered) to hold two such pieces per stream as the defaults do for 1 MiB pieces.
    #[must_use]
    pub fn with_piece_bytes(mut self, piece_bytes: usize) -> Self {
        self.piece_bytes = piece_bytes;
        let two_pieces = piece_bytes.saturating_mul(2);
        let two_pieces = u32::try_from(two_pieces).unwrap_or(u32::MAX).min(MAX_WINDOW_BYTES);
        for (stream, connection) in [
            (&mut self.server.stream_window_bytes, &mut self.server.connection_window_bytes),
            (&mut self.channel.stream_window_bytes, &mut self.channel.connection_window_bytes),
        ] {
            *stream = (*stream).max(two_pieces);
            *connection = (*connection).max(stream.saturating_mul(2).min(MAX_WINDOW_BYTES));
        }
        self
    }

    /// Elements per piece of a buffer of `element_bytes`-byte elements.
    pub(crate) fn piece_elems(&self, element_bytes: usize) -> usize {
        (self.piece_bytes / element_bytes.max(1)).max(1)
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn the_defaults_hold_two_pieces_per_stream() {
        let config = CollectiveConfig::default();
        config.validate().expect("defaults are valid");
        assert!(config.server.stream_window_bytes as usize >= 2 * config.piece_bytes);
        assert_eq!(config.server.stream_window_bytes, config.channel.stream_window_bytes);
    }

    #[test]
    fn a_window_smaller_than_a_piece_is_named() {
        let mut config = CollectiveConfig { piece_bytes: 4 << 20, ..CollectiveConfig::default() };
        let err = config.validate().expect_err("2 MiB windows cannot hold a 4 MiB piece");
        assert!(err.to_string().contains("server.stream_window_bytes"), "{err}");
        config.server.stream_window_bytes = 8 << 20;
        config.server.connection_window_bytes = 4 << 20;
        let err = config.validate().expect_err("connection below stream");
        assert!(err.to_string().contains("server.connection_window_bytes"), "{err}");
        config.server.connection_window_bytes = 8 << 20;
        let err = config.validate().expect_err("the channel's windows are checked too");
        assert!(err.to_string().contains("channel.stream_window_bytes"), "{err}");
        config.channel.stream_window_bytes = 8 << 20;
        config.channel.connection_window_bytes = u32::MAX;
        let err = config.validate().expect_err("above HTTP/2's largest window");
        assert!(err.to_string().contains("channel.connection_window_bytes"), "{err}");
    }

    #[test]
    fn with_piece_bytes_raises_the_windows_and_never_lowers_them() {
        let big = CollectiveConfig::default().with_piece_bytes(4 << 20);
        big.validate().expect("raised windows hold the pieces");
        assert_eq!(big.piece_bytes, 4 << 20);
        for (stream, connection) in [
            (big.server.stream_window_bytes, big.server.connection_window_bytes),
            (big.channel.stream_window_bytes, big.channel.connection_window_bytes),
        ] {
            assert_eq!(stream as usize, 2 * (4 << 20));
            assert_eq!(connection, 2 * stream);
        }
        let same = CollectiveConfig::default().with_piece_bytes(1 << 20);
        assert_eq!(same, CollectiveConfig::default(), "1 MiB pieces are the defaults' own");
        let small = CollectiveConfig::default().with_piece_bytes(64 << 10);
        let defaults = CollectiveConfig::default();
        assert_eq!(small.server, defaults.server);
        assert_eq!(small.channel, defaults.channel);
        small.validate().expect("valid");
        // Pieces too large for any message still give windows HTTP/2 accepts.
        let huge = CollectiveConfig::default().with_piece_bytes(usize::MAX);
        assert_eq!(huge.channel.stream_window_bytes, MAX_WINDOW_BYTES);
        assert_eq!(huge.channel.connection_window_bytes, MAX_WINDOW_BYTES);
        assert!(huge.validate().is_err(), "the piece itself is still refused");
    }
}
