//! A user-space TCP fault proxy: sits between processes of a training cluster on loopback and
//! injects network faults (delay, loss, partition, reset) into the traffic it forwards.
//!
//! The kernels this runs on have no `netem`, so everything happens here, per chunk read from a
//! socket. Each direction of a connection is a small pipeline: chunks are read, stamped with the
//! instant they may be delivered and written once that instant has passed. Stamps never decrease,
//! so a connection's byte order is preserved exactly as TCP would preserve it, and a delay does
//! not serialise the stream (many chunks can be in flight at once).
//!
//! The current fault lives in a [`watch`] channel that every connection task listens to, so a
//! change applies to existing connections at once, not only to new ones.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use albatross_rng::SplitMix64;
use anyhow::{anyhow, bail};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Size of each socket read; also the largest chunk a fault decision applies to.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Bytes one direction may hold read-but-undelivered before it stops reading. Bounds memory and
/// gives the sender real TCP back-pressure; 8 MiB still lets a 100 ms delay carry ~80 MB/s.
const MAX_QUEUED_BYTES: usize = 8 * 1024 * 1024;
/// How long a new connection waits for the upstream to accept before giving up on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Stall of a lost chunk when the spec does not name one: about a first TCP retransmission.
const DEFAULT_LOSS_STALL: Duration = Duration::from_millis(200);
/// Pause after a failed `accept` (e.g. out of file descriptors) so a lasting error cannot spin.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// What the proxy does to traffic right now.
#[derive(Debug, Clone, PartialEq)]
pub enum NetFault {
    /// Forward untouched.
    None,
    /// Every forwarded chunk, in each direction, is delivered `latency` (plus a uniformly random
    /// `0..=jitter`) after it was read. Order within a connection is preserved and chunks are
    /// pipelined, so throughput is bounded by buffering, not by the latency per chunk.
    Delay {
        /// Fixed delay of every chunk.
        latency: Duration,
        /// Upper bound of the extra random delay of each chunk.
        jitter: Duration,
    },
    /// TCP-like packet loss: each chunk is, with probability `probability`, held back for `stall`
    /// (as a retransmission timeout would) before delivery. Order is preserved, so a stalled chunk
    /// also holds back the ones behind it. The decisions for the n-th connection's each direction
    /// are reproducible from `seed`.
    Loss {
        /// Chance in `0.0..=1.0` that a chunk is stalled.
        probability: f64,
        /// How long a stalled chunk is held back.
        stall: Duration,
        /// Seed of the decision sequence.
        seed: u64,
    },
    /// A partition: packets vanish. Existing connections stop reading from both sockets, so
    /// kernel buffers fill and senders block; nothing is closed. New connections are accepted but
    /// not connected upstream until the partition heals. When the fault changes, everything held
    /// is delivered with no byte lost, like TCP retransmission after a healed partition.
    Partition,
    /// Every existing connection is closed at once (with a TCP RST), and new connections are
    /// accepted and closed immediately, until the fault changes.
    Reset,
}

/// Counters of a proxy since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Client connections accepted.
    pub connections_accepted: u64,
    /// Client connections not yet closed.
    pub connections_open: u64,
    /// Bytes written to the upstream.
    pub bytes_to_upstream: u64,
    /// Bytes written back to clients.
    pub bytes_to_client: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    open: AtomicU64,
    to_upstream: AtomicU64,
    to_client: AtomicU64,
}

/// State shared by the accept loop, the connection tasks and the handles.
#[derive(Debug)]
struct Shared {
    fault: watch::Sender<NetFault>,
    counters: Counters,
    cancel: CancellationToken,
}

impl Shared {
    fn set(&self, fault: NetFault) {
        debug!(from = %*self.fault.borrow(), to = %fault, "netfault: setting fault");
        // `send_replace` stores the value even while no connection is subscribed.
        self.fault.send_replace(fault);
    }

    fn fault(&self) -> NetFault {
        self.fault.borrow().clone()
    }

    fn stats(&self) -> ProxyStats {
        let c = &self.counters;
        ProxyStats {
            connections_accepted: c.accepted.load(Ordering::Relaxed),
            connections_open: c.open.load(Ordering::Relaxed),
            bytes_to_upstream: c.to_upstream.load(Ordering::Relaxed),
            bytes_to_client: c.to_client.load(Ordering::Relaxed),
        }
    }
}

/// A fault proxy running inside the caller's tokio runtime. Dropping it stops it too, but only
/// [`FaultProxy::shutdown`] waits until every connection is closed.
#[derive(Debug)]
pub struct FaultProxy {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    accept_task: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Binds `listen` (port 0 allowed) and forwards every accepted connection to `upstream`.
    ///
    /// # Errors
    /// When `listen` cannot be bound.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let (fault, _) = watch::channel(NetFault::None);
        let shared = Arc::new(Shared {
            fault,
            counters: Counters::default(),
            cancel: CancellationToken::new(),
        });
        let accept_task = tokio::spawn(accept_loop(listener, upstream, Arc::clone(&shared)));
        debug!(%local_addr, %upstream, "netfault: proxy listening");
        Ok(Self { shared, local_addr, accept_task: Some(accept_task) })
    }

    /// The address clients connect to.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Changes the fault; applies to existing and new connections immediately.
    pub fn set(&self, fault: NetFault) {
        self.shared.set(fault);
    }

    /// The fault in force.
    #[must_use]
    pub fn fault(&self) -> NetFault {
        self.shared.fault()
    }

    /// Counters since the proxy started.
    #[must_use]
    pub fn stats(&self) -> ProxyStats {
        self.shared.stats()
    }

    /// Stops accepting, closes every connection and waits for the tasks to end.
    pub async fn shutdown(mut self) {
        self.shared.cancel.cancel();
        if let Some(task) = self.accept_task.take()
            && let Err(err) = task.await
        {
            debug!(%err, "netfault: accept task ended abnormally");
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The tasks notice the cancellation and end on their own; nobody is left to await them.
        self.shared.cancel.cancel();
    }
}

/// The same proxy on its own thread with a current-thread runtime, for synchronous callers.
/// Stopped by [`BackgroundProxy::shutdown`] or on drop.
#[derive(Debug)]
pub struct BackgroundProxy {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    thread: Option<thread::JoinHandle<()>>,
}

type Started = io::Result<(Arc<Shared>, SocketAddr)>;

impl BackgroundProxy {
    /// Starts the proxy thread, binds `listen` (port 0 allowed) and forwards every accepted
    /// connection to `upstream`. Returns once the listener is bound.
    ///
    /// # Errors
    /// When `listen` cannot be bound or the thread or its runtime cannot be created.
    pub fn start(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Started>(1);
        // Everything, binding included, happens on the new thread so that `start` also works
        // when the caller happens to be inside a runtime (a nested `block_on` would panic).
        let thread = thread::Builder::new().name("netfault-proxy".to_owned()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = ready_tx.send(Err(err));
                    return;
                }
            };
            runtime.block_on(async move {
                let proxy = match FaultProxy::start(listen, upstream).await {
                    Ok(proxy) => proxy,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                let cancel = proxy.shared.cancel.clone();
                if ready_tx.send(Ok((Arc::clone(&proxy.shared), proxy.local_addr))).is_ok() {
                    cancel.cancelled().await;
                }
                proxy.shutdown().await;
            });
        })?;
        match ready_rx.recv() {
            Ok(Ok((shared, local_addr))) => Ok(Self { shared, local_addr, thread: Some(thread) }),
            Ok(Err(err)) => {
                let _ = thread.join();
                Err(err)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other("the fault proxy thread ended before it started listening"))
            }
        }
    }

    /// The address clients connect to.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Changes the fault; applies to existing and new connections immediately.
    pub fn set(&self, fault: NetFault) {
        self.shared.set(fault);
    }

    /// The fault in force.
    #[must_use]
    pub fn fault(&self) -> NetFault {
        self.shared.fault()
    }

    /// Counters since the proxy started.
    #[must_use]
    pub fn stats(&self) -> ProxyStats {
        self.shared.stats()
    }

    /// Stops accepting, closes every connection and waits for the proxy thread to end.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shared.cancel.cancel();
            if thread.join().is_err() {
                debug!("netfault: proxy thread panicked");
            }
        }
    }
}

impl Drop for BackgroundProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Accepts until cancelled, then waits for every connection task to finish.
async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    let mut next_id = 0_u64;
    loop {
        tokio::select! {
            biased;
            () = shared.cancel.cancelled() => break,
            // Reap finished connections so the set does not grow with every one ever accepted.
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(err) = joined {
                    debug!(%err, "netfault: connection task ended abnormally");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    let id = next_id;
                    next_id += 1;
                    shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
                    let open = OpenConnection::new(Arc::clone(&shared));
                    connections.spawn(serve(client, peer, upstream, id, open));
                }
                Err(err) => {
                    debug!(%err, "netfault: accept failed");
                    tokio::select! {
                        () = shared.cancel.cancelled() => break,
                        () = sleep(ACCEPT_RETRY_PAUSE) => {}
                    }
                }
            },
        }
    }
    drop(listener);
    while let Some(joined) = connections.join_next().await {
        if let Err(err) = joined {
            debug!(%err, "netfault: connection task ended abnormally");
        }
    }
}

/// Counts a connection as open for as long as it lives, even if its task is aborted.
#[derive(Debug)]
struct OpenConnection(Arc<Shared>);

impl OpenConnection {
    fn new(shared: Arc<Shared>) -> Self {
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
async fn serve(
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
        let mut queue: VecDeque<Chunk> = VecDeque::new();
        let mut queued_bytes = 0_usize;
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
            if source_closed && queue.is_empty() {
                return PumpEnd::Finished;
            }
            // In a partition nothing moves: unread bytes stay in the kernel (the sender blocks),
            // read ones stay queued, and all of it flows again once the partition heals.
            let partitioned = current == NetFault::Partition;
            let may_read = !partitioned && !source_closed && queued_bytes < MAX_QUEUED_BYTES;
            let next_due = if partitioned { None } else { queue.front().map(|c| c.due) };

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
                    let now = Instant::now();
                    let hold = hold_for(&current, &mut rng);
                    let mut data = &buf[..n];
                    // Fast path: nothing to wait for, so write straight from the read buffer.
                    if hold.is_zero() && queue.is_empty() {
                        match writer.try_write(data) {
                            Ok(written) => {
                                self.delivered.fetch_add(as_u64(written), Ordering::Relaxed);
                                data = &data[written..];
                            }
                            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                            Err(err) => return PumpEnd::Failed(err.kind()),
                        }
                    }
                    if !data.is_empty() {
                        // Never before the chunk ahead of it: delay and stalls keep byte order.
                        let due = queue.back().map_or(now + hold, |last| last.due.max(now + hold));
                        queued_bytes += data.len();
                        queue.push_back(Chunk { due, data: data.to_vec(), written: 0 });
                    }
                }
                ready = writable_at(writer, next_due), if next_due.is_some() => {
                    if let Err(err) = ready {
                        return PumpEnd::Failed(err.kind());
                    }
                    let now = Instant::now();
                    while let Some(chunk) = queue.front_mut() {
                        if chunk.due > now {
                            break;
                        }
                        match writer.try_write(&chunk.data[chunk.written..]) {
                            Ok(0) => return PumpEnd::Failed(io::ErrorKind::WriteZero),
                            Ok(written) => {
                                self.delivered.fetch_add(as_u64(written), Ordering::Relaxed);
                                chunk.written += written;
                                if chunk.written == chunk.data.len() {
                                    queued_bytes -= chunk.data.len();
                                    queue.pop_front();
                                }
                            }
                            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                            Err(err) => return PumpEnd::Failed(err.kind()),
                        }
                    }
                }
            }
        }
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
fn hold_for(fault: &NetFault, rng: &mut SplitMix64) -> Duration {
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
fn stream_rng(seed: u64, stream: u64) -> SplitMix64 {
    SplitMix64::from_parts(&[seed, stream])
}

/// The grammar, for error messages.
const SPEC_FORMS: &str = "none, delay=<latency>[~<jitter>], \
                          loss=<percent>%[/<stall>][,seed=<n>], partition or reset";

impl FromStr for NetFault {
    type Err = anyhow::Error;

    /// Parses `none`, `delay=200ms`, `delay=200ms~50ms`, `loss=5%`, `loss=5%/300ms`,
    /// `loss=5%/300ms,seed=7`, `partition` or `reset`. Durations are humantime (`1s 500ms`).
    fn from_str(spec: &str) -> anyhow::Result<Self> {
        let trimmed = spec.trim();
        let (name, value) = match trimmed.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (trimmed, None),
        };
        match (name, value) {
            ("none", None) => Ok(Self::None),
            ("partition", None) => Ok(Self::Partition),
            ("reset", None) => Ok(Self::Reset),
            ("none" | "partition" | "reset", Some(value)) => {
                bail!("network fault `{spec}`: `{name}` takes no value, but got `{value}`")
            }
            ("delay" | "loss", None) => {
                bail!(
                    "network fault `{spec}`: `{name}` needs a value, as in `{name}=...` ({SPEC_FORMS})"
                )
            }
            ("delay", Some(value)) => {
                let (latency, jitter) = match value.split_once('~') {
                    Some((latency, jitter)) => (latency, Some(jitter)),
                    None => (value, None),
                };
                let latency = parse_duration(spec, "latency", latency)?;
                let jitter = match jitter {
                    Some(jitter) => parse_duration(spec, "jitter", jitter)?,
                    None => Duration::ZERO,
                };
                Ok(Self::Delay { latency, jitter })
            }
            ("loss", Some(value)) => {
                let (value, seed) = match value.split_once(',') {
                    Some((value, option)) => {
                        let seed = option.trim().strip_prefix("seed=").ok_or_else(|| {
                            anyhow!("network fault `{spec}`: unknown loss option `{option}`, expected `seed=<n>`")
                        })?;
                        let seed = seed.trim().parse::<u64>().map_err(|err| {
                            anyhow!("network fault `{spec}`: bad loss seed `{seed}`: {err}")
                        })?;
                        (value, seed)
                    }
                    None => (value, 0),
                };
                let (probability, stall) = match value.split_once('/') {
                    Some((probability, stall)) => {
                        (probability, parse_duration(spec, "loss stall", stall)?)
                    }
                    None => (value, DEFAULT_LOSS_STALL),
                };
                let probability = parse_probability(spec, probability.trim())?;
                Ok(Self::Loss { probability, stall, seed })
            }
            _ => bail!("unknown network fault `{name}` in `{spec}`; expected {SPEC_FORMS}"),
        }
    }
}

fn parse_duration(spec: &str, what: &str, text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    humantime::parse_duration(text)
        .map_err(|err| anyhow!("network fault `{spec}`: bad {what} `{text}`: {err}"))
}

/// `5%` or a plain fraction such as `0.05`; must lie within 0..=1.
fn parse_probability(spec: &str, text: &str) -> anyhow::Result<f64> {
    let bad = |why: &str| anyhow!("network fault `{spec}`: bad loss probability `{text}`: {why}");
    let probability = match text.strip_suffix('%') {
        Some(percent) => {
            percent.trim().parse::<f64>().map_err(|err| bad(&err.to_string()))? / 100.0
        }
        None => text.parse::<f64>().map_err(|err| bad(&err.to_string()))?,
    };
    if !(0.0..=1.0).contains(&probability) {
        return Err(bad("must be within 0%..=100%"));
    }
    Ok(probability)
}

/// The shortest decimal percentage that parses back (as [`parse_probability`] does) to exactly
/// `probability`: `0.05` is `5`, not the `5.000000000000001` that `0.05 * 100.0` prints as.
fn percent_text(probability: f64) -> Option<String> {
    let percent = probability * 100.0;
    (0..=17).map(|decimals| format!("{percent:.decimals$}")).find(|text| {
        text.parse::<f64>().is_ok_and(|parsed| (parsed / 100.0).to_bits() == probability.to_bits())
    })
}

impl fmt::Display for NetFault {
    /// The form [`FromStr`] parses back to an equal value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Partition => f.write_str("partition"),
            Self::Reset => f.write_str("reset"),
            Self::Delay { latency, jitter } => {
                write!(f, "delay={}", humantime::format_duration(*latency))?;
                if !jitter.is_zero() {
                    write!(f, "~{}", humantime::format_duration(*jitter))?;
                }
                Ok(())
            }
            Self::Loss { probability, stall, seed } => {
                match percent_text(*probability) {
                    Some(percent) => write!(f, "loss={percent}%")?,
                    None => write!(f, "loss={probability}")?,
                }
                if *stall != DEFAULT_LOSS_STALL {
                    write!(f, "/{}", humantime::format_duration(*stall))?;
                }
                if *seed != 0 {
                    write!(f, ",seed={seed}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    const LOCALHOST: &str = "127.0.0.1:0";

    fn any_port() -> SocketAddr {
        LOCALHOST.parse().expect("address")
    }

    async fn write_all(stream: &TcpStream, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            stream.writable().await?;
            match stream.try_write(data) {
                Ok(n) => data = &data[n..],
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    async fn read_some(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            stream.readable().await?;
            match stream.try_read(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                result => return result,
            }
        }
    }

    async fn read_exact(stream: &TcpStream, len: usize) -> io::Result<Vec<u8>> {
        let mut out = vec![0; len];
        let mut filled = 0;
        while filled < len {
            match read_some(stream, &mut out[filled..]).await? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => filled += n,
            }
        }
        Ok(out)
    }

    /// An echo server on loopback; runs until the test's runtime ends.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(LOCALHOST).await.expect("bind echo server");
        let addr = listener.local_addr().expect("echo address");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    stream.set_nodelay(true).expect("nodelay");
                    let mut buf = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = read_some(&stream, &mut buf).await {
                        if write_all(&stream, &buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn connect(addr: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(addr).await.expect("connect to proxy");
        stream.set_nodelay(true).expect("nodelay");
        stream
    }

    async fn round_trip(stream: &TcpStream, message: &[u8]) -> Duration {
        let start = Instant::now();
        write_all(stream, message).await.expect("write");
        let echoed = timeout(Duration::from_secs(3), read_exact(stream, message.len()))
            .await
            .expect("echo in time")
            .expect("echo");
        assert_eq!(echoed, message);
        start.elapsed()
    }

    /// True when `stream` is closed (EOF or error) within `within`.
    async fn closes_within(stream: &TcpStream, within: Duration) -> bool {
        let mut buf = [0; 16];
        matches!(timeout(within, read_some(stream, &mut buf)).await, Ok(Ok(0) | Err(_)))
    }

    async fn shutdown_in_time(proxy: FaultProxy) {
        timeout(Duration::from_secs(2), proxy.shutdown()).await.expect("shutdown in time");
    }

    #[tokio::test]
    async fn pass_through_forwards_a_mebibyte_intact() {
        let proxy = FaultProxy::start(any_port(), echo_server().await).await.expect("proxy");
        let client = Arc::new(connect(proxy.local_addr()).await);
        let data: Vec<u8> = (0..=250_u8).cycle().take(1 << 20).collect();
        // Write concurrently with reading: the echo would otherwise fill every buffer and stall.
        let writer = {
            let (client, data) = (Arc::clone(&client), data.clone());
            tokio::spawn(async move { write_all(&client, &data).await })
        };
        let echoed = timeout(Duration::from_secs(4), read_exact(&client, data.len()))
            .await
            .expect("echo in time")
            .expect("echo");
        writer.await.expect("writer task").expect("write");
        assert!(echoed == data, "echoed bytes differ");
        let stats = proxy.stats();
        assert_eq!(stats.connections_accepted, 1);
        assert_eq!(stats.connections_open, 1);
        assert_eq!(stats.bytes_to_upstream, 1 << 20);
        assert_eq!(stats.bytes_to_client, 1 << 20);
        shutdown_in_time(proxy).await;
        assert!(closes_within(&client, Duration::from_secs(1)).await, "shutdown closes clients");
    }

    #[tokio::test]
    async fn delay_applies_per_direction_and_pipelines() {
        let proxy = FaultProxy::start(any_port(), echo_server().await).await.expect("proxy");
        let client = connect(proxy.local_addr()).await;
        round_trip(&client, b"warm").await;
        proxy.set(NetFault::Delay { latency: Duration::from_millis(100), jitter: Duration::ZERO });

        let took = round_trip(&client, b"ping").await;
        assert!(took >= Duration::from_millis(200), "round trip took only {took:?}");
        assert!(took < Duration::from_secs(1), "round trip took {took:?}");

        // 20 separate small writes, 10 ms apart: serial per-chunk delays would need > 2 s per
        // direction, pipelined ones ~200 ms of writing plus ~200 ms of delay.
        let start = Instant::now();
        for i in 0..20_u8 {
            write_all(&client, &[i]).await.expect("write");
            sleep(Duration::from_millis(10)).await;
        }
        let echoed = timeout(Duration::from_secs(3), read_exact(&client, 20))
            .await
            .expect("echo in time")
            .expect("echo");
        let took = start.elapsed();
        assert_eq!(echoed, (0..20).collect::<Vec<u8>>(), "order preserved");
        assert!(took >= Duration::from_millis(200), "took only {took:?}");
        assert!(took < Duration::from_secs(1), "not pipelined: took {took:?}");
        shutdown_in_time(proxy).await;
    }

    #[tokio::test]
    async fn loss_stalls_chunks_by_probability() {
        let proxy = FaultProxy::start(any_port(), echo_server().await).await.expect("proxy");
        let client = connect(proxy.local_addr()).await;
        round_trip(&client, b"warm").await;

        let stall = Duration::from_millis(150);
        proxy.set(NetFault::Loss { probability: 1.0, stall, seed: 3 });
        for _ in 0..2 {
            let took = round_trip(&client, b"lost").await;
            assert!(took >= 2 * stall, "each direction stalls: took only {took:?}");
            assert!(took < Duration::from_secs(1), "took {took:?}");
        }

        proxy.set(NetFault::Loss { probability: 0.0, stall, seed: 3 });
        let took = round_trip(&client, b"kept").await;
        assert!(took < Duration::from_millis(100), "no loss took {took:?}");
        shutdown_in_time(proxy).await;
    }

    #[test]
    fn loss_decisions_are_reproducible_from_the_seed() {
        let decisions = |seed, stream, p| {
            let mut rng = stream_rng(seed, stream);
            (0..200).map(|_| rng.next_f64() < p).collect::<Vec<bool>>()
        };
        assert_eq!(decisions(42, 0, 0.3), decisions(42, 0, 0.3));
        assert_ne!(decisions(42, 0, 0.3), decisions(43, 0, 0.3));
        assert_ne!(decisions(42, 0, 0.3), decisions(42, 1, 0.3), "directions differ");
        assert!(decisions(42, 0, 0.0).iter().all(|&lost| !lost));
        assert!(decisions(42, 0, 1.0).iter().all(|&lost| lost));

        let loss = NetFault::Loss { probability: 0.25, stall: Duration::from_secs(1), seed: 7 };
        let mut rng = stream_rng(7, 0);
        let lost = (0..10_000).filter(|_| !hold_for(&loss, &mut rng).is_zero()).count();
        assert!((2_200..2_800).contains(&lost), "{lost} of 10000 lost at 25%");

        let mut rng = stream_rng(1, 0);
        let jitter = Duration::from_millis(50);
        let delay = NetFault::Delay { latency: Duration::from_millis(100), jitter };
        for _ in 0..100 {
            let hold = hold_for(&delay, &mut rng);
            assert!(hold >= Duration::from_millis(100) && hold <= Duration::from_millis(150));
        }
    }

    #[tokio::test]
    async fn partition_holds_traffic_and_heals_without_loss() {
        let proxy = FaultProxy::start(any_port(), echo_server().await).await.expect("proxy");
        let established = connect(proxy.local_addr()).await;
        round_trip(&established, b"before").await;

        proxy.set(NetFault::Partition);
        write_all(&established, b"sent during the partition").await.expect("write");
        let mut buf = [0; 64];
        assert!(
            timeout(Duration::from_millis(300), read_some(&established, &mut buf)).await.is_err(),
            "nothing is delivered during a partition"
        );
        let newcomer = connect(proxy.local_addr()).await;
        write_all(&newcomer, b"hello").await.expect("write");
        assert!(
            timeout(Duration::from_millis(300), read_some(&newcomer, &mut buf)).await.is_err(),
            "a new connection gets no echo during a partition"
        );
        assert_eq!(proxy.stats().bytes_to_upstream, 6, "only the bytes sent before");

        proxy.set(NetFault::None);
        let held = timeout(Duration::from_secs(2), read_exact(&established, 25))
            .await
            .expect("held bytes arrive after healing")
            .expect("read");
        assert_eq!(held, b"sent during the partition");
        let held = timeout(Duration::from_secs(2), read_exact(&newcomer, 5))
            .await
            .expect("the new connection works after healing")
            .expect("read");
        assert_eq!(held, b"hello");
        round_trip(&newcomer, b"after").await;
        shutdown_in_time(proxy).await;
    }

    #[tokio::test]
    async fn reset_closes_connections_until_cleared() {
        let proxy = FaultProxy::start(any_port(), echo_server().await).await.expect("proxy");
        let established = connect(proxy.local_addr()).await;
        round_trip(&established, b"before").await;

        proxy.set(NetFault::Reset);
        let mut buf = [0; 16];
        let read = timeout(Duration::from_secs(1), read_some(&established, &mut buf)).await;
        assert!(
            matches!(&read, Ok(Err(err)) if err.kind() == io::ErrorKind::ConnectionReset),
            "an established connection is reset: {read:?}"
        );
        // The kernel may complete the handshake before the proxy closes the connection.
        if let Ok(newcomer) = TcpStream::connect(proxy.local_addr()).await {
            assert!(
                closes_within(&newcomer, Duration::from_secs(1)).await,
                "a new connection is closed"
            );
        }

        proxy.set(NetFault::None);
        let after = connect(proxy.local_addr()).await;
        round_trip(&after, b"after").await;
        let deadline = Instant::now() + Duration::from_secs(1);
        while proxy.stats().connections_open != 1 && Instant::now() < deadline {
            sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(proxy.stats().connections_open, 1, "{:?}", proxy.stats());
        shutdown_in_time(proxy).await;
    }

    #[tokio::test]
    async fn refused_upstream_closes_the_client() {
        let unused = TcpListener::bind(LOCALHOST).await.expect("bind");
        let upstream = unused.local_addr().expect("address");
        drop(unused);
        let proxy = FaultProxy::start(any_port(), upstream).await.expect("proxy");
        let client = connect(proxy.local_addr()).await;
        assert!(closes_within(&client, Duration::from_secs(1)).await);
        shutdown_in_time(proxy).await;
    }

    #[test]
    fn background_proxy_serves_synchronous_callers() {
        let upstream = std::net::TcpListener::bind(LOCALHOST).expect("bind echo server");
        let upstream_addr = upstream.local_addr().expect("echo address");
        thread::spawn(move || {
            for stream in upstream.incoming() {
                let Ok(mut stream) = stream else { return };
                thread::spawn(move || {
                    let mut buf = [0; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut buf) {
                        if stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });

        let proxy = BackgroundProxy::start(any_port(), upstream_addr).expect("proxy");
        let mut client = std::net::TcpStream::connect(proxy.local_addr()).expect("connect");
        client.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let mut buf = [0; 5];
        client.write_all(b"hello").expect("write");
        client.read_exact(&mut buf).expect("echo");
        assert_eq!(&buf, b"hello");

        proxy.set(NetFault::Partition);
        assert_eq!(proxy.fault(), NetFault::Partition);
        client.write_all(b"x").expect("write");
        client.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
        let err = client.read(&mut buf).expect_err("partitioned");
        assert!(matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut));

        proxy.set(NetFault::None);
        client.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        client.read_exact(&mut buf[..1]).expect("healed");
        assert_eq!(buf[0], b'x');
        // The proxy thread counts a write just after making it, so the client may be faster.
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while proxy.stats().bytes_to_client < 6 && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        let stats = proxy.stats();
        assert_eq!((stats.bytes_to_upstream, stats.bytes_to_client), (6, 6));
        assert_eq!(stats.connections_accepted, 1);

        proxy.shutdown();
        assert!(matches!(client.read(&mut buf), Ok(0) | Err(_)), "shutdown closes clients");
    }

    #[test]
    fn specs_round_trip_through_display() {
        let ms = Duration::from_millis;
        let cases = [
            ("none", NetFault::None),
            ("delay=200ms", NetFault::Delay { latency: ms(200), jitter: Duration::ZERO }),
            ("delay=200ms~50ms", NetFault::Delay { latency: ms(200), jitter: ms(50) }),
            ("loss=5%", NetFault::Loss { probability: 0.05, stall: ms(200), seed: 0 }),
            ("loss=5%/300ms", NetFault::Loss { probability: 0.05, stall: ms(300), seed: 0 }),
            (
                "loss=100%/1s 500ms,seed=7",
                NetFault::Loss { probability: 1.0, stall: ms(1500), seed: 7 },
            ),
            ("partition", NetFault::Partition),
            ("reset", NetFault::Reset),
        ];
        for (spec, fault) in cases {
            assert_eq!(spec.parse::<NetFault>().expect(spec), fault, "{spec}");
            assert_eq!(fault.to_string(), spec);
        }
        for fault in [
            NetFault::Loss { probability: 0.07, stall: ms(10), seed: u64::MAX },
            NetFault::Loss { probability: 1.0 / 3.0, stall: ms(1), seed: 1 },
            NetFault::Delay { latency: Duration::from_nanos(1_500_000_001), jitter: ms(1) },
        ] {
            assert_eq!(fault.to_string().parse::<NetFault>().expect("parses"), fault);
        }
        assert_eq!(" loss = 0.5 ".parse::<NetFault>().expect("fraction").to_string(), "loss=50%");
    }

    #[test]
    fn malformed_specs_name_the_bad_part() {
        for (spec, bad_part) in [
            ("delay=", "latency ``"),
            ("delay", "needs a value"),
            ("delay=fast", "`fast`"),
            ("delay=1s~", "jitter ``"),
            ("loss=150%", "`150%`"),
            ("loss=-1%", "`-1%`"),
            ("loss=NaN%", "`NaN%`"),
            ("loss=5%/soon", "stall `soon`"),
            ("loss=5%,seed=x", "seed `x`"),
            ("loss=5%,colour=red", "`colour=red`"),
            ("reset=1", "takes no value"),
            ("bogus", "`bogus`"),
        ] {
            let err = spec.parse::<NetFault>().expect_err(spec).to_string();
            assert!(err.contains(bad_part), "{spec}: {err}");
            assert!(err.contains(spec), "{spec}: {err}");
        }
    }
}
