//! Live recovery: a worker that is new or behind streams a healthy peer's full state
//! (`PeerService.FetchState`) instead of reading a checkpoint.
//!
//! The serving side publishes a [`Snapshot`] after every applied step: the state as bytes and
//! its hash, computed once and shared by the vote, the transfer and checkpoints. The stream is
//! one header, the parameter section, the optimizer section (pieces of at most
//! [`PIECE_BYTES`], each a zero-copy slice), then a trailer with the SHA-256 of every payload.
//! The receiving side checks the header against its own job and layout, every piece's place,
//! the trailer's checksum, and finally that the state it rebuilt hashes to the header's state
//! hash — so what it loads is bit for bit what the source votes with.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use albatross_collective::{ChannelOptions, StateSource, StateStream, connect};
use albatross_proto::domain::{Member, Sha256Digest, StateHash, WorkerRef};
use albatross_proto::wire::v1 as wire;
use albatross_proto::wire::v1::peer_service_client::PeerServiceClient;
use albatross_proto::wire::v1::state_chunk::Part;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::error::{Result, WorkerError};
use crate::state::{StateHasher, TrainerState, f32s_to_le_bytes};

/// Largest data piece of a transfer (well under the peer server's message limit).
pub const PIECE_BYTES: usize = 1 << 20;

/// A replica's state after some applied step, hashed once; encoded to bytes only when a peer
/// asks for it (every step publishes one, few are ever transferred).
pub struct Snapshot {
    pub applied_step: u64,
    pub state_hash: StateHash,
    /// The state as f32 sections (transfers and checkpoints are made from it).
    pub state: Arc<TrainerState>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("applied_step", &self.applied_step)
            .field("state_hash", &self.state_hash)
            .field("elements", &(self.state.parameters.len() + self.state.optimizer.len()))
            .finish()
    }
}

impl Snapshot {
    /// `state` (after step `applied_step`), hashed under `layout`.
    pub fn new(applied_step: u64, state: Arc<TrainerState>, layout: &[u8; 32]) -> Self {
        let state_hash = state.hash(layout);
        Self { applied_step, state_hash, state }
    }

    /// `state` (after step `applied_step`) whose hash under the layout is already known to be
    /// `state_hash`: a state received from a peer was hashed and checked on arrival.
    pub fn verified(applied_step: u64, state: Arc<TrainerState>, state_hash: StateHash) -> Self {
        Self { applied_step, state_hash, state }
    }

    /// The same state relabelled as the state after a later step (a skipped step changes
    /// nothing but the step).
    pub fn relabel(&self, applied_step: u64) -> Self {
        Self { applied_step, state_hash: self.state_hash, state: Arc::clone(&self.state) }
    }
}

/// The worker's [`StateSource`]: serves whatever snapshot was published last.
#[derive(Debug)]
pub struct PublishedState {
    job_fingerprint: Sha256Digest,
    layout_fingerprint: [u8; 32],
    current: RwLock<Option<Arc<Snapshot>>>,
}

impl PublishedState {
    pub fn new(job_fingerprint: Sha256Digest, layout_fingerprint: [u8; 32]) -> Self {
        Self { job_fingerprint, layout_fingerprint, current: RwLock::new(None) }
    }

    pub fn publish(&self, snapshot: Arc<Snapshot>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
    }

    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

fn section_pieces(
    section: wire::StateSection,
    bytes: Bytes,
) -> impl Iterator<Item = wire::StateChunk> {
    (0..bytes.len()).step_by(PIECE_BYTES).map(move |offset| wire::StateChunk {
        part: Some(Part::Data(wire::StateData {
            section: section as i32,
            byte_offset: offset as u64,
            payload: bytes.slice(offset..(offset + PIECE_BYTES).min(bytes.len())),
        })),
    })
}

/// A transfer's chunks: the header, the pieces, then the trailer, whose checksum is summed
/// piece by piece as the stream is read, so hashing overlaps the transfer instead of holding
/// back its first byte (~70 ms for albert-base's 142 MB).
struct Chunks<I> {
    header: Option<wire::StateChunk>,
    pieces: I,
    /// `None` once the trailer went out.
    checksum: Option<Sha256>,
}

impl<I: Iterator<Item = wire::StateChunk>> Iterator for Chunks<I> {
    type Item = wire::StateChunk;

    fn next(&mut self) -> Option<wire::StateChunk> {
        if let Some(header) = self.header.take() {
            return Some(header);
        }
        if let Some(piece) = self.pieces.next() {
            if let (Some(Part::Data(data)), Some(sum)) = (&piece.part, self.checksum.as_mut()) {
                sum.update(&data.payload);
            }
            return Some(piece);
        }
        let sum = self.checksum.take()?.finalize();
        Some(wire::StateChunk {
            part: Some(Part::Trailer(wire::StateTrailer { sha256: Bytes::copy_from_slice(&sum) })),
        })
    }
}

impl StateSource for PublishedState {
    fn fetch_state(&self, request: wire::FetchStateRequest) -> Result<StateStream, Status> {
        let Some(snapshot) = self.current() else {
            return Err(Status::unavailable("this worker holds no state yet"));
        };
        if snapshot.applied_step != request.target_step {
            return Err(Status::failed_precondition(format!(
                "this worker holds step {}, the request wants step {}",
                snapshot.applied_step, request.target_step
            )));
        }
        let requester = request.requester.map(|r| r.worker_id).unwrap_or_default();
        let parameters = Bytes::from(f32s_to_le_bytes(&snapshot.state.parameters));
        let optimizer = Bytes::from(f32s_to_le_bytes(&snapshot.state.optimizer));
        tracing::info!(%requester, step = snapshot.applied_step, "serving state to a healing peer");
        let header = wire::StateHeader {
            tag: Some(wire::StepTag { generation: request.generation, step: request.target_step }),
            applied_step: snapshot.applied_step,
            cursor: None,
            job_fingerprint: Bytes::copy_from_slice(self.job_fingerprint.as_bytes()),
            layout_fingerprint: Bytes::copy_from_slice(&self.layout_fingerprint),
            state_hash: Bytes::copy_from_slice(snapshot.state_hash.as_bytes()),
            sections: vec![
                wire::SectionLength {
                    section: wire::StateSection::Parameters as i32,
                    byte_len: parameters.len() as u64,
                },
                wire::SectionLength {
                    section: wire::StateSection::Optimizer as i32,
                    byte_len: optimizer.len() as u64,
                },
            ],
        };
        let chunks = Chunks {
            header: Some(wire::StateChunk { part: Some(Part::Header(header)) }),
            pieces: section_pieces(wire::StateSection::Parameters, parameters)
                .chain(section_pieces(wire::StateSection::Optimizer, optimizer)),
            checksum: Some(Sha256::new()),
        };
        Ok(Box::pin(tokio_stream::iter(chunks.map(Ok))))
    }
}

/// What the healing worker must end up with.
#[derive(Debug, Clone)]
pub struct FetchTarget<'a> {
    pub me: &'a WorkerRef,
    pub source: &'a Member,
    pub generation: u64,
    pub step: u64,
    pub job_fingerprint: Sha256Digest,
    pub layout_fingerprint: [u8; 32],
    /// Bytes of the parameter section the layout implies.
    pub parameter_bytes: usize,
    pub deadline: Instant,
    /// How to dial the source (TLS included).
    pub channel: &'a ChannelOptions,
}

fn refuse(source: &Member, reason: impl Into<String>) -> WorkerError {
    WorkerError::Transfer {
        peer: format!("{} ({})", source.worker, source.address),
        reason: reason.into(),
    }
}

/// Streams `target.source`'s state after `target.step`, verified, within the deadline.
pub async fn fetch_state(
    target: &FetchTarget<'_>,
    cancel: &CancellationToken,
) -> Result<(TrainerState, StateHash)> {
    let source = target.source;
    let work = async {
        let channel =
            connect(&source.address, target.channel, target.deadline, cancel, "state transfer")
                .await?;
        let mut client =
            PeerServiceClient::new(channel).max_decoding_message_size(PIECE_BYTES + (64 << 10));
        let mut request = tonic::Request::new(wire::FetchStateRequest {
            requester: Some(target.me.clone().into()),
            generation: target.generation,
            target_step: target.step,
        });
        request.set_timeout(target.deadline.saturating_duration_since(Instant::now()));
        let mut stream = client
            .fetch_state(request)
            .await
            .map_err(|s| refuse(source, format!("{}: {}", s.code(), s.message())))?
            .into_inner();
        receive(target, &mut stream).await
    };
    tokio::select! {
        () = cancel.cancelled() => Err(refuse(source, "cancelled")),
        () = tokio::time::sleep_until(target.deadline) => Err(refuse(source, "deadline passed")),
        result = work => result,
    }
}

async fn receive(
    target: &FetchTarget<'_>,
    stream: &mut tonic::Streaming<wire::StateChunk>,
) -> Result<(TrainerState, StateHash)> {
    let source = target.source;
    let started = Instant::now();
    let next = |m: Option<Result<wire::StateChunk, Status>>| -> Result<Part> {
        match m {
            None => Err(refuse(source, "stream ended early")),
            Some(Err(s)) => Err(refuse(source, format!("{}: {}", s.code(), s.message()))),
            Some(Ok(chunk)) => chunk.part.ok_or_else(|| refuse(source, "empty chunk")),
        }
    };
    let Part::Header(header) = next(stream.next().await)? else {
        return Err(refuse(source, "the stream does not start with a header"));
    };
    if header.applied_step != target.step {
        return Err(refuse(
            source,
            format!("sent step {}, wanted {}", header.applied_step, target.step),
        ));
    }
    if header.job_fingerprint.as_ref() != target.job_fingerprint.as_bytes() {
        return Err(refuse(source, "runs another job (job fingerprint differs)"));
    }
    if header.layout_fingerprint.as_ref() != target.layout_fingerprint {
        return Err(refuse(source, "has another parameter layout"));
    }
    let expected_hash = StateHash::try_from(header.state_hash.as_ref())
        .map_err(|e| refuse(source, format!("state_hash: {e}")))?;
    let mut lengths = [0usize; 2];
    for s in &header.sections {
        let index = section_index(s.section).ok_or_else(|| refuse(source, "unknown section"))?;
        lengths[index] =
            usize::try_from(s.byte_len).map_err(|_| refuse(source, "section too large"))?;
    }
    let [param_len, optim_len] = lengths;
    if param_len != target.parameter_bytes || (optim_len != 0 && optim_len != 2 * param_len) {
        return Err(refuse(
            source,
            format!("section sizes {param_len} and {optim_len} bytes do not fit the layout"),
        ));
    }
    if param_len % 4 != 0 || optim_len % 4 != 0 {
        return Err(refuse(source, "section sizes are not whole f32 values"));
    }
    let mut assembly = Assembly::new(&target.layout_fingerprint, [param_len / 4, optim_len / 4]);
    loop {
        match next(stream.next().await)? {
            Part::Header(_) => return Err(refuse(source, "a second header")),
            Part::Data(data) => {
                let index = section_index(data.section)
                    .ok_or_else(|| refuse(source, "data of an unknown section"))?;
                assembly
                    .piece(index, data.byte_offset, &data.payload)
                    .map_err(|why| refuse(source, why))?;
            }
            Part::Trailer(trailer) => {
                if trailer.sha256.as_ref() != assembly.checksum.finalize_reset().as_slice() {
                    return Err(refuse(source, "the transfer checksum does not match"));
                }
                break;
            }
        }
    }
    let streamed = started.elapsed();
    let (state, hash) = assembly.finish().map_err(|why| refuse(source, why))?;
    tracing::debug!(
        bytes = param_len + optim_len,
        stream_ms = streamed.as_millis(),
        finish_ms = (started.elapsed() - streamed).as_millis(),
        "state received"
    );
    if hash != expected_hash {
        return Err(refuse(
            source,
            format!("state hash {hash} differs from the announced {expected_hash}"),
        ));
    }
    Ok((state, hash))
}

/// A state being received: pieces are copied straight into the f32 sections, and summed into
/// the trailer's checksum and the state hash as they arrive, so the state is ready and hashed
/// when the stream ends.
struct Assembly {
    sections: [Vec<f32>; 2],
    /// Bytes received per section.
    filled: [usize; 2],
    /// The section receiving; sections arrive in order, each whole before the next.
    current: usize,
    checksum: Sha256,
    hasher: StateHasher,
}

impl Assembly {
    /// For sections of `elements` f32 values each.
    fn new(layout: &[u8; 32], elements: [usize; 2]) -> Self {
        let mut hasher = StateHasher::new(layout);
        hasher.section(elements[0]);
        Self {
            sections: elements.map(|n| vec![0.0; n]),
            filled: [0; 2],
            current: 0,
            checksum: Sha256::new(),
            hasher,
        }
    }

    fn len(&self, index: usize) -> usize {
        self.sections[index].len() * 4
    }

    /// Moves on to the optimizer section, once the parameters are whole.
    fn next_section(&mut self) -> std::result::Result<(), String> {
        if self.filled[0] != self.len(0) {
            return Err("the optimizer section started before the parameters were whole".into());
        }
        self.current = 1;
        self.hasher.section(self.sections[1].len());
        Ok(())
    }

    fn piece(
        &mut self,
        index: usize,
        offset: u64,
        payload: &[u8],
    ) -> std::result::Result<(), String> {
        if index < self.current {
            return Err("sections out of order".into());
        }
        if index > self.current {
            self.next_section()?;
        }
        let at = self.filled[index];
        if offset != at as u64 || at + payload.len() > self.len(index) {
            return Err(format!("piece at byte {offset} is out of place"));
        }
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.sections[index]);
        bytes[at..at + payload.len()].copy_from_slice(payload);
        self.filled[index] += payload.len();
        self.checksum.update(payload);
        self.hasher.update(payload);
        Ok(())
    }

    /// The whole state and its hash.
    fn finish(mut self) -> std::result::Result<(TrainerState, StateHash), String> {
        if self.current == 0 {
            self.next_section()?;
        }
        if self.filled[1] != self.len(1) {
            return Err("the stream ended before every section was complete".into());
        }
        let [mut parameters, mut optimizer] = self.sections;
        if cfg!(target_endian = "big") {
            // The bytes were little-endian; read each value back in this machine's order.
            for v in parameters.iter_mut().chain(optimizer.iter_mut()) {
                *v = f32::from_le_bytes(v.to_ne_bytes());
            }
        }
        Ok((TrainerState { parameters, optimizer }, self.hasher.finalize()))
    }
}

fn section_index(section: i32) -> Option<usize> {
    match wire::StateSection::try_from(section).ok()? {
        wire::StateSection::Parameters => Some(0),
        wire::StateSection::Optimizer => Some(1),
        wire::StateSection::Unspecified => None,
    }
}

/// Default time allowed for a state transfer of `bytes`: 10 s plus 20 MB/s.
pub fn transfer_deadline(bytes: usize) -> Duration {
    Duration::from_secs(10) + Duration::from_secs_f64(bytes as f64 / 20e6)
}
