//! One proxied connection: each direction a pipeline of chunks stamped with the instant they
//! may be delivered, under the fault in force.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use albatross_rng::SplitMix64;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::shared::Shared;
use super::spec::NetFault;

/// Size of each socket read; also the largest chunk a fault decision applies to.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Bytes one direction may hold read-but-undelivered before it stops reading. Bounds memory and
/// gives the sender real TCP back-pressure; 8 MiB still lets a 100 ms delay carry ~80 MB/s.
const MAX_QUEUED_BYTES: usize = 8 * 1024 * 1024;
/// How long a new connection waits for the upstream to accept before giving up on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Counts a connection as open for as long as it lives, even if its task is aborted.
#[derive(Debug)]
pub(super) struct OpenConnection(Arc<Shared>);

impl OpenConnection {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        shared.counters.open.fetch_add(1, Ordering::Relaxed);
        Self(shared)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One client connection: waits out a partition, connects upstream, then pumps both directions.
pub(super) async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    upstream: SocketAddr,
    id: u64,
    open: OpenConnection,
) {
    let shared = &open.0;
    let mut fault = shared.fault.subscribe();
    debug!(connection = id, %peer, "netfault: connection accepted");

    // During a partition the upstream must not even see the handshake, so hold the client here.
    loop {
        let current = fault.borrow_and_update().clone();
        match current {
            NetFault::Reset => {
                abort_on_close(&client);
                debug!(connection = id, %peer, "netfault: connection reset on accept");
                return;
            }
            NetFault::Partition => {
                tokio::select! {
                    biased;
                    () = shared.cancel.cancelled() => return,
                    changed = fault.changed() => if changed.is_err() { return },
                }
            }
            _ => break,
        }
    }

    let connected = tokio::select! {
        biased;
        () = shared.cancel.cancelled() => return,
        connected = timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)) => connected,
    };
    let server = match connected {
        Ok(Ok(server)) => server,
        Ok(Err(err)) => {
            debug!(connection = id, %peer, %upstream, %err, "netfault: upstream connect failed");
            return;
        }
        Err(_) => {
            debug!(connection = id, %peer, %upstream, "netfault: upstream connect timed out");
            return;
        }
    };
    // The proxy decides when bytes go out; Nagle would add its own stalls to small chunks.
    for stream in [&client, &server] {
        if let Err(err) = stream.set_nodelay(true) {
            debug!(connection = id, %err, "netfault: cannot set TCP_NODELAY");
        }
    }

    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // A failure in one direction ends the other too; the shutdown token ends both.
    let cancel = shared.cancel.child_token();
    let to_upstream = Pump {
        reader: client_read,
        fault: shared.fault.subscribe(),
        cancel: cancel.clone(),
        delivered: &shared.counters.to_upstream,
        stream: id.wrapping_mul(2),
    };
    let to_client = Pump {
        reader: server_read,
        fault: shared.fault.subscribe(),
        cancel,
        delivered: &shared.counters.to_client,
        stream: id.wrapping_mul(2).wrapping_add(1),
    };
    let (up, down) = tokio::join!(to_upstream.run(server_write), to_client.run(client_write));
    debug!(connection = id, %peer, to_upstream = ?up, to_client = ?down, "netfault: connection closed");
}

/// Makes closing `stream` abort the connection with an RST instead of a FIN.
#[allow(
    deprecated,
    reason = "deprecated because a non-zero linger blocks the thread in close(); a zero linger \
              never blocks, it makes close() send RST at once, which is what a reset fault is"
)]
fn abort_on_close(stream: &TcpStream) {
    if let Err(err) = stream.set_linger(Some(Duration::ZERO)) {
        debug!(%err, "netfault: cannot set SO_LINGER, closing with FIN");
    }
}

/// How one direction of a connection ended.
#[derive(Debug)]
enum PumpEnd {
    /// The source closed and everything read was delivered.
    Finished,
    /// A reset fault aborted the connection.
    Reset,
    /// The proxy shut down or the other direction failed.
    Cancelled,
    /// A read or write failed.
    Failed(io::ErrorKind),
}

/// A chunk read but not yet (fully) delivered.
#[derive(Debug)]
struct Chunk {
    due: Instant,
    data: Vec<u8>,
    written: usize,
}

/// One direction of a connection: reads `reader`, writes the other socket.
#[derive(Debug)]
struct Pump<'a> {
    reader: OwnedReadHalf,
    fault: watch::Receiver<NetFault>,
    cancel: CancellationToken,
    delivered: &'a AtomicU64,
    /// Distinguishes this direction's random sequence from every other one's under one seed.
    stream: u64,
}

impl Pump<'_> {
    async fn run(mut self, writer: OwnedWriteHalf) -> PumpEnd {
        let end = self.pump(&writer).await;
        match end {
            PumpEnd::Reset => {
                abort_on_close(self.reader.as_ref());
                abort_on_close(writer.as_ref());
                // Dropping a write half would send FIN first; the reset must be an RST alone.
                writer.forget();
            }
            PumpEnd::Failed(kind) => {
                debug!(?kind, "netfault: forwarding failed, closing the connection");
                self.cancel.cancel();
            }
            // Dropping the write half sends FIN: a finished source is passed on as a half-close.
            PumpEnd::Finished | PumpEnd::Cancelled => {}
        }
        end
    }

    async fn pump(&mut self, writer: &OwnedWriteHalf) -> PumpEnd {
        let mut buf = vec![0_u8; READ_BUFFER_BYTES];
        let mut backlog = Backlog::default();
        let mut source_closed = false;
        let mut rng = stream_rng(0, self.stream);
        let mut seeded_with = None;
        loop {
            let current = self.fault.borrow_and_update().clone();
            match current {
                NetFault::Reset => return PumpEnd::Reset,
                NetFault::Loss { seed, .. } => {
                    if seeded_with != Some(seed) {
                        rng = stream_rng(seed, self.stream);
                        seeded_with = Some(seed);
                    }
                }
                _ => seeded_with = None,
            }
            if source_closed && backlog.is_empty() {
                return PumpEnd::Finished;
            }
            // In a partition nothing moves: unread bytes stay in the kernel (the sender blocks),
            // read ones stay queued, and all of it flows again once the partition heals.
            let partitioned = current == NetFault::Partition;
            let may_read = !partitioned && !source_closed && backlog.bytes < MAX_QUEUED_BYTES;
            let next_due = if partitioned { None } else { backlog.next_due() };

            tokio::select! {
                // Cancellation and fault changes first, so bytes that became readable together
                // with a fault change are handled under the new fault.
                biased;
                () = self.cancel.cancelled() => return PumpEnd::Cancelled,
                changed = self.fault.changed() => if changed.is_err() {
                    return PumpEnd::Cancelled;
                },
                ready = self.reader.readable(), if may_read => {
                    if let Err(err) = ready {
                        return PumpEnd::Failed(err.kind());
                    }
                    let n = match self.reader.try_read(&mut buf) {
                        Ok(0) => {
                            source_closed = true;
                            continue;
                        }
                        Ok(n) => n,
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(err) => return PumpEnd::Failed(err.kind()),
                    };
                    let hold = hold_for(&current, &mut rng);
                    if let Err(kind) = backlog.forward(&buf[..n], hold, writer, self.delivered) {
                        return PumpEnd::Failed(kind);
                    }
                }
                ready = writable_at(writer, next_due), if next_due.is_some() => {
                    if let Err(err) = ready {
                        return PumpEnd::Failed(err.kind());
                    }
                    if let Err(kind) = backlog.write_due(writer, self.delivered) {
                        return PumpEnd::Failed(kind);
                    }
                }
            }
        }
    }
}

/// One direction's bytes read but not yet delivered, in order.
#[derive(Debug, Default)]
struct Backlog {
    queue: VecDeque<Chunk>,
    bytes: usize,
}

impl Backlog {
    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|c| c.due)
    }

    /// Passes on `data` just read, held back by `hold`: straight from the read buffer when
    /// nothing waits, else queued, never before the chunk ahead of it (delay and stalls keep
    /// byte order).
    fn forward(
        &mut self,
        mut data: &[u8],
        hold: Duration,
        writer: &OwnedWriteHalf,
        delivered: &AtomicU64,
    ) -> Result<(), io::ErrorKind> {
        let now = Instant::now();
        if hold.is_zero() && self.queue.is_empty() {
            match writer.try_write(data) {
                Ok(written) => {
                    delivered.fetch_add(as_u64(written), Ordering::Relaxed);
                    data = &data[written..];
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err.kind()),
            }
        }
        if !data.is_empty() {
            let due = self.queue.back().map_or(now + hold, |last| last.due.max(now + hold));
            self.bytes += data.len();
            self.queue.push_back(Chunk { due, data: data.to_vec(), written: 0 });
        }
        Ok(())
    }

    /// Writes every chunk that is due, as far as `writer` takes them.
    fn write_due(
        &mut self,
        writer: &OwnedWriteHalf,
        delivered: &AtomicU64,
    ) -> Result<(), io::ErrorKind> {
        let now = Instant::now();
        while let Some(chunk) = self.queue.front_mut() {
            if chunk.due > now {
                break;
            }
            match writer.try_write(&chunk.data[chunk.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero),
                Ok(written) => {
                    delivered.fetch_add(as_u64(written), Ordering::Relaxed);
                    chunk.written += written;
                    if chunk.written == chunk.data.len() {
                        self.bytes -= chunk.data.len();
                        self.queue.pop_front();
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(err.kind()),
            }
        }
        Ok(())
    }
}

/// Waits until `due` (if any) and then until `writer` can take bytes.
async fn writable_at(writer: &OwnedWriteHalf, due: Option<Instant>) -> io::Result<()> {
    if let Some(due) = due {
        sleep_until(due).await;
    }
    writer.writable().await
}

/// How long a chunk read now is held back under `fault`.
pub(super) fn hold_for(fault: &NetFault, rng: &mut SplitMix64) -> Duration {
    match *fault {
        NetFault::Delay { latency, jitter } => {
            let jitter_nanos = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
            // Uniform in 0..=jitter.
            let extra = rng.below(jitter_nanos.saturating_add(1));
            latency.saturating_add(Duration::from_nanos(extra))
        }
        NetFault::Loss { probability, stall, .. } => {
            // Never for 0, always for 1: next_f64 is in [0, 1).
            if rng.next_f64() < probability { stall } else { Duration::ZERO }
        }
        NetFault::None | NetFault::Partition | NetFault::Reset => Duration::ZERO,
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The generator of one direction of one connection (`stream`) under `seed`: the workspace's
/// versioned SplitMix64, so loss decisions replay from the seed on any build.
pub(super) fn stream_rng(seed: u64, stream: u64) -> SplitMix64 {
    SplitMix64::from_parts(&[seed, stream])
}
