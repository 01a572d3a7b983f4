//! The worker's side of `CoordinatorService`: domain types in and out, a deadline on every
//! call (announced to the server and enforced here), the join token on every request. The
//! channel connects lazily and reconnects by itself, so a restarted coordinator is reached again
//! without rebuilding anything.

use std::time::Duration;

use albatross_proto::channel::{ChannelOptions, endpoint};
use albatross_proto::domain::{
    CheckpointReport, Generation, Heartbeat, HeartbeatReply, JoinAccepted, JoinRequest,
    LeaveRequest, PeerFailureReport, QuorumOutcome, QuorumRequest, Vote, VoteDecision,
};
use albatross_proto::refusal::Refusal;
use albatross_proto::wire::v1 as wire;
use albatross_proto::wire::v1::coordinator_service_client::CoordinatorServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::error::{Result, WorkerError};

/// Adds `authorization: Bearer <token>` when the job has a token.
#[derive(Debug, Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Inner = CoordinatorServiceClient<InterceptedService<Channel, Bearer>>;

/// A cheap-to-clone handle on the coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorClient {
    inner: Inner,
    /// Deadline of the short calls (join, heartbeat, reports, leave).
    rpc_timeout: Duration,
}

/// How long one long poll (quorum, vote) may be held open; the coordinator answers "not yet"
/// before it ends.
pub const LONG_POLL: Duration = Duration::from_secs(10);

/// How long past its deadline a call may take to come back before it is abandoned here: the
/// server gives up at the deadline it was told, and its answer still has to travel.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// Awaits one call for at most `timeout` (plus [`ANSWER_MARGIN`]), from the moment it is made.
/// tonic enforces a request's timeout once a connection has taken the request; a call queued
/// while the channel reconnects waits for the channel first. (In podman, workers whose
/// coordinator pod was replaced sent no heartbeat and no vote for half a minute.)
async fn within<T>(
    timeout: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<tonic::Response<T>, Status> {
    match tokio::time::timeout(timeout + ANSWER_MARGIN, call).await {
        Ok(answer) => answer,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no answer from the coordinator within {:.1} s",
            (timeout + ANSWER_MARGIN).as_secs_f64()
        ))),
    }
}

fn rpc_error(call: &'static str) -> impl Fn(Status) -> WorkerError {
    move |status| WorkerError::Rpc {
        call,
        code: status.code(),
        refusal: Refusal::of(&status),
        message: status.message().into(),
    }
}

fn convert<W, D: TryFrom<W, Error = albatross_proto::convert::ConvertError>>(
    call: &'static str,
    msg: W,
) -> Result<D> {
    D::try_from(msg).map_err(|e| WorkerError::Rpc {
        call,
        code: Code::Internal,
        refusal: None,
        message: format!("malformed answer from the coordinator: {e}"),
    })
}

impl CoordinatorClient {
    /// A client for `url` (`http://host:port`); nothing is dialled until the first call.
    ///
    /// # Errors
    /// When the URL or token cannot be used.
    pub fn new(
        url: &str,
        token: Option<&str>,
        rpc_timeout: Duration,
        tls: Option<&albatross_proto::tls::Tls>,
    ) -> Result<Self> {
        let options = ChannelOptions { tls: tls.cloned(), ..ChannelOptions::default() };
        let endpoint = endpoint(url, &options)
            .map_err(|e| WorkerError::Setup(format!("coordinator URL: {e}")))?;
        let bearer = match token {
            Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| {
                WorkerError::Setup("the join token holds characters not allowed in a header".into())
            })?),
            None => None,
        };
        let channel = endpoint.connect_lazy();
        Ok(Self {
            inner: CoordinatorServiceClient::with_interceptor(channel, Bearer(bearer)),
            rpc_timeout,
        })
    }

    fn request<T>(&self, message: T, timeout: Duration) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(timeout);
        request
    }

    pub async fn join(&self, req: JoinRequest) -> Result<JoinAccepted> {
        let request = self.request(wire::JoinRequest::from(req), self.rpc_timeout);
        let reply = within(self.rpc_timeout, self.inner.clone().join(request))
            .await
            .map_err(rpc_error("Join"))?;
        convert("Join", reply.into_inner())
    }

    pub async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatReply> {
        let request = self.request(wire::HeartbeatRequest::from(hb), self.rpc_timeout);
        let reply = within(self.rpc_timeout, self.inner.clone().heartbeat(request))
            .await
            .map_err(rpc_error("Heartbeat"))?;
        convert("Heartbeat", reply.into_inner())
    }

    /// One long poll; `NotYet` when no quorum formed within it.
    pub async fn await_quorum(&self, req: QuorumRequest) -> Result<QuorumOutcome> {
        let request = self.request(wire::AwaitQuorumRequest::from(req), LONG_POLL);
        let reply = within(LONG_POLL, self.inner.clone().await_quorum(request))
            .await
            .map_err(rpc_error("AwaitQuorum"))?;
        convert("AwaitQuorum", reply.into_inner())
    }

    /// One long poll; `None` while the other members have not all voted.
    pub async fn vote(&self, vote: Vote) -> Result<Option<VoteDecision>> {
        let request = self.request(wire::VoteRequest::from(vote), LONG_POLL);
        match within(LONG_POLL, self.inner.clone().vote(request)).await {
            Ok(reply) => convert("Vote", reply.into_inner()).map(Some),
            Err(status) if status.code() == Code::DeadlineExceeded => Ok(None),
            Err(status) => Err(rpc_error("Vote")(status)),
        }
    }

    /// Whether the coordinator confirmed the failure, and its generation.
    pub async fn report_peer_failure(
        &self,
        report: PeerFailureReport,
    ) -> Result<(bool, Generation)> {
        let request = self.request(wire::ReportPeerFailureRequest::from(report), self.rpc_timeout);
        let reply = within(self.rpc_timeout, self.inner.clone().report_peer_failure(request))
            .await
            .map_err(rpc_error("ReportPeerFailure"))?
            .into_inner();
        Ok((reply.accepted, Generation(reply.generation)))
    }

    pub async fn leave(&self, req: LeaveRequest) -> Result<()> {
        let request = self.request(wire::LeaveRequest::from(req), self.rpc_timeout);
        within(self.rpc_timeout, self.inner.clone().leave(request))
            .await
            .map_err(rpc_error("Leave"))?;
        Ok(())
    }

    pub async fn report_checkpoint(&self, report: CheckpointReport) -> Result<()> {
        let request = self.request(wire::ReportCheckpointRequest::from(report), self.rpc_timeout);
        within(self.rpc_timeout, self.inner.clone().report_checkpoint(request))
            .await
            .map_err(rpc_error("ReportCheckpoint"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use albatross_proto::domain::{WorkerId, WorkerRef};
    use tokio::net::TcpListener;

    use super::*;

    /// A "coordinator" that accepts connections and never answers: the call comes back by its
    /// deadline, not when the connection dies (it never does here).
    #[tokio::test]
    async fn a_call_nobody_answers_ends_at_its_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                held.push(connection);
            }
        });
        let rpc_timeout = Duration::from_millis(200);
        let client = CoordinatorClient::new(&format!("http://{address}"), None, rpc_timeout, None)
            .expect("client");
        let me = WorkerRef { id: WorkerId::new("w0").expect("id"), incarnation: 1 };
        let started = Instant::now();
        let outcome = client.leave(LeaveRequest { worker: me, reason: "test".into() }).await;
        let waited = started.elapsed();
        silent.abort();
        assert!(
            matches!(outcome, Err(WorkerError::Rpc { call: "Leave", .. })),
            "expected the call to fail, got {outcome:?}"
        );
        assert!(waited <= rpc_timeout + ANSWER_MARGIN + Duration::from_secs(1), "{waited:?}");
    }

    /// The deadline covers the wait for a connection too, which tonic's own request timeout
    /// does not: a call that cannot even be sent ends by its deadline.
    #[tokio::test]
    async fn the_deadline_covers_a_call_that_is_never_sent() {
        let never = std::future::pending::<Result<tonic::Response<()>, Status>>();
        let started = Instant::now();
        let outcome = within(Duration::from_millis(100), never).await;
        assert_eq!(outcome.expect_err("times out").code(), Code::DeadlineExceeded);
        assert!(started.elapsed() >= Duration::from_millis(100) + ANSWER_MARGIN);
    }
}
