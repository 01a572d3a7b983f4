//! The gRPC `CoordinatorService`: a thin shell that converts wire messages, forwards them to the
//! actor, and turns `NotYet`/`Pending` into long polls answered before the caller's deadline.

use std::time::Duration;

use albatross_proto::domain::{
    CheckpointReport, Heartbeat, JoinRequest, LeaveRequest, PeerFailureReport, QuorumOutcome,
    QuorumRequest, Vote,
};
use albatross_proto::wire::v1 as wire;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use crate::actor::Event;
use crate::commit::VoteStatus;
use crate::error::CoordinatorError;

/// A long poll answers at the latest after this long, even without a client deadline.
pub const MAX_POLL: Duration = Duration::from_secs(10);

/// The `CoordinatorService` implementation.
#[derive(Debug, Clone)]
pub struct CoordinatorGrpc {
    events: mpsc::Sender<Event>,
    quorum_version: watch::Receiver<u64>,
    decision_version: watch::Receiver<u64>,
}

impl CoordinatorGrpc {
    pub(crate) fn new(
        events: mpsc::Sender<Event>,
        quorum_version: watch::Receiver<u64>,
        decision_version: watch::Receiver<u64>,
    ) -> Self {
        Self { events, quorum_version, decision_version }
    }

    pub(crate) async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, CoordinatorError>>) -> Event,
    ) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        self.events.send(make(tx)).await.map_err(|_| CoordinatorError::ShuttingDown)?;
        Ok(rx.await.map_err(|_| CoordinatorError::ShuttingDown)??)
    }

    /// Ask until `done` holds or the poll deadline comes; re-ask whenever `version` moves.
    async fn poll<T>(
        &self,
        mut version: watch::Receiver<u64>,
        deadline: Instant,
        make: impl Fn(oneshot::Sender<Result<T, CoordinatorError>>) -> Event,
        done: impl Fn(&T) -> bool,
    ) -> Result<T, Status> {
        loop {
            version.borrow_and_update();
            let answer = self.call(&make).await?;
            if done(&answer) || Instant::now() >= deadline {
                return Ok(answer);
            }
            tokio::select! {
                changed = version.changed() => {
                    if changed.is_err() {
                        return Ok(answer);
                    }
                }
                // Ask once more so the "not yet" answer is current (live workers, reason).
                () = tokio::time::sleep_until(deadline) => return self.call(&make).await,
            }
        }
    }
}

/// When a long poll must answer: a fifth before the caller's `grpc-timeout` (so the answer
/// arrives in time), and never later than [`MAX_POLL`].
pub fn poll_deadline<T>(request: &Request<T>) -> Instant {
    let budget = request
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map_or(MAX_POLL, |t| t.saturating_sub(t / 5).min(MAX_POLL));
    Instant::now() + budget
}

/// Parse the gRPC `grpc-timeout` header: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn convert<W, D>(msg: W) -> Result<D, Status>
where
    D: TryFrom<W, Error = albatross_proto::convert::ConvertError>,
{
    D::try_from(msg).map_err(Status::from)
}

#[tonic::async_trait]
impl wire::coordinator_service_server::CoordinatorService for CoordinatorGrpc {
    async fn join(
        &self,
        request: Request<wire::JoinRequest>,
    ) -> Result<Response<wire::JoinResponse>, Status> {
        let req: JoinRequest = convert(request.into_inner())?;
        let accepted = self.call(|tx| Event::Join(req, tx)).await?;
        Ok(Response::new(accepted.into()))
    }

    async fn heartbeat(
        &self,
        request: Request<wire::HeartbeatRequest>,
    ) -> Result<Response<wire::HeartbeatResponse>, Status> {
        let hb: Heartbeat = convert(request.into_inner())?;
        let reply = self.call(|tx| Event::Heartbeat(hb, tx)).await?;
        Ok(Response::new(reply.into()))
    }

    async fn await_quorum(
        &self,
        request: Request<wire::AwaitQuorumRequest>,
    ) -> Result<Response<wire::AwaitQuorumResponse>, Status> {
        let deadline = poll_deadline(&request);
        let req: QuorumRequest = convert(request.into_inner())?;
        let outcome = self
            .poll(
                self.quorum_version.clone(),
                deadline,
                |tx| Event::AwaitQuorum(req.clone(), tx),
                |o| !matches!(o, QuorumOutcome::NotYet(_)),
            )
            .await?;
        Ok(Response::new(outcome.into()))
    }

    async fn vote(
        &self,
        request: Request<wire::VoteRequest>,
    ) -> Result<Response<wire::VoteResponse>, Status> {
        let deadline = poll_deadline(&request);
        let vote: Vote = convert(request.into_inner())?;
        let status = self
            .poll(
                self.decision_version.clone(),
                deadline,
                |tx| Event::Vote(vote.clone(), tx),
                |s| matches!(s, VoteStatus::Decided(_)),
            )
            .await?;
        match status {
            VoteStatus::Decided(d) => Ok(Response::new(d.into())),
            VoteStatus::Pending { voted, members } => Err(Status::deadline_exceeded(format!(
                "no decision yet: {voted} of {members} members voted; vote again to keep waiting"
            ))),
        }
    }

    async fn report_peer_failure(
        &self,
        request: Request<wire::ReportPeerFailureRequest>,
    ) -> Result<Response<wire::ReportPeerFailureResponse>, Status> {
        let report: PeerFailureReport = convert(request.into_inner())?;
        let (accepted, generation) = self.call(|tx| Event::PeerFailure(report, tx)).await?;
        Ok(Response::new(wire::ReportPeerFailureResponse { accepted, generation: generation.0 }))
    }

    async fn leave(
        &self,
        request: Request<wire::LeaveRequest>,
    ) -> Result<Response<wire::LeaveResponse>, Status> {
        let req: LeaveRequest = convert(request.into_inner())?;
        let generation = self.call(|tx| Event::Leave(req, tx)).await?;
        Ok(Response::new(wire::LeaveResponse { generation: generation.0 }))
    }

    async fn report_checkpoint(
        &self,
        request: Request<wire::ReportCheckpointRequest>,
    ) -> Result<Response<wire::ReportCheckpointResponse>, Status> {
        let report: CheckpointReport = convert(request.into_inner())?;
        self.call(|tx| Event::Checkpoint(report, tx)).await?;
        Ok(Response::new(wire::ReportCheckpointResponse {}))
    }

    async fn get_status(
        &self,
        _request: Request<wire::GetStatusRequest>,
    ) -> Result<Response<wire::GetStatusResponse>, Status> {
        let view = self.call(Event::Status).await?;
        Ok(Response::new(view.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units_parse_and_garbage_is_refused() {
        assert_eq!(parse_grpc_timeout("1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        for bad in ["", "S", "10x", "123456789S", "-1S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_poll_answers_a_fifth_before_the_client_deadline() {
        let mut request = Request::new(());
        request.metadata_mut().insert("grpc-timeout", "1000m".parse().expect("ascii"));
        let left = poll_deadline(&request) - Instant::now();
        assert!(
            left <= Duration::from_millis(800) && left > Duration::from_millis(700),
            "{left:?}"
        );
        let left = poll_deadline(&Request::new(())) - Instant::now();
        assert!(left <= MAX_POLL && left > MAX_POLL - Duration::from_secs(1), "{left:?}");
    }
}
