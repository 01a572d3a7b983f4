//! The client side of `GetStatus`: fetch a coordinator's status over gRPC ([`JobStatus`]) and
//! render it as a table (`albatross status`; `--json` is [`crate::status::status_json`]).

use std::fmt::Write as _;
use std::time::Duration;

use albatross_proto::channel::{ChannelOptions, endpoint};
use albatross_proto::domain::JobStatus;
use albatross_proto::wire::v1 as wire;
use albatross_proto::wire::v1::coordinator_service_client::CoordinatorServiceClient;

use crate::error::CoordinatorError;
use crate::status::millis;

/// Ask the coordinator at `url` (`http://host:port`) for its status, within `timeout`.
///
/// # Errors
/// [`CoordinatorError::Transport`] when it cannot be reached or answers with an error (the
/// message says which, e.g. a missing or wrong token).
pub async fn fetch_status(
    url: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<JobStatus, CoordinatorError> {
    fetch_status_tls(url, token, None, timeout).await
}

/// [`fetch_status`] over mutual TLS when `tls` is given (the URL should then be `https://`).
///
/// # Errors
/// As [`fetch_status`], and a TLS configuration the transport refuses.
pub async fn fetch_status_tls(
    url: &str,
    token: Option<&str>,
    tls: Option<&albatross_proto::tls::Tls>,
    timeout: Duration,
) -> Result<JobStatus, CoordinatorError> {
    let unreachable = |e: &dyn std::fmt::Display| {
        CoordinatorError::Transport(format!("coordinator {url} is unreachable: {e}"))
    };
    let options =
        ChannelOptions { connect_timeout: timeout, tls: tls.cloned(), ..Default::default() };
    let channel = endpoint(url, &options)
        .map_err(|e| CoordinatorError::InvalidArgument(format!("coordinator URL: {e}")))?
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| unreachable(&e))?;
    let mut request = tonic::Request::new(wire::GetStatusRequest {});
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().map_err(|_| {
            CoordinatorError::InvalidArgument("the token is not printable ASCII".into())
        })?;
        request.metadata_mut().insert("authorization", value);
    }
    let reply = CoordinatorServiceClient::new(channel)
        .get_status(request)
        .await
        .map_err(|status| unreachable(&format!("{:?}: {}", status.code(), status.message())))?;
    JobStatus::try_from(reply.into_inner()).map_err(|e| {
        CoordinatorError::Transport(format!("coordinator {url} sent a malformed status: {e}"))
    })
}

/// The status as a human-readable summary and member table.
pub fn status_table(s: &JobStatus) -> String {
    let mut out = format!(
        "job {} · generation {} · step {}/{} · cursor epoch {} sample {} · aborted {} · skipped {} \
         · recoveries {}\n",
        s.job_name,
        s.generation.0,
        s.committed_step,
        s.total_steps,
        s.cursor.epoch,
        s.cursor.next_sample,
        s.aborted_steps,
        s.skipped_steps,
        s.recoveries
    );
    if let Some(c) = &s.latest_checkpoint {
        let _ = writeln!(out, "latest checkpoint: step {} at {}", c.step, c.path);
    }
    let _ = writeln!(
        out,
        "{:<5} {:<24} {:<22} {:<16} {:<6} {:>10}",
        "RANK", "WORKER", "ADDRESS", "PHASE", "QUORUM", "HEARTBEAT"
    );
    for m in &s.members {
        let _ = writeln!(
            out,
            "{:<5} {:<24} {:<22} {:<16} {:<6} {:>8}ms",
            m.member.rank,
            m.member.worker.to_string(),
            m.member.address,
            m.phase.name(),
            if m.in_quorum { "yes" } else { "-" },
            millis(m.last_heartbeat_age)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use albatross_proto::domain::{
        DataCursor, Generation, Member, MemberStatus, Sha256Digest, StepStats, WorkerId,
        WorkerPhase, WorkerRef,
    };
    use serde_json::{Value, json};

    use super::*;
    use crate::status::status_json;

    fn sample() -> JobStatus {
        JobStatus {
            job_name: "demo".into(),
            job_fingerprint: Sha256Digest([0; 32]),
            instance: String::new(),
            generation: Generation(3),
            committed_step: 7,
            total_steps: 100,
            cursor: DataCursor { epoch: 1, next_sample: 12 },
            members: vec![MemberStatus {
                member: Member {
                    worker: WorkerRef { id: WorkerId::new("w-0").expect("id"), incarnation: 2 },
                    address: "10.0.0.1:7000".into(),
                    rank: 0,
                },
                phase: WorkerPhase::Computing,
                last_heartbeat_age: Duration::from_millis(120),
                in_quorum: true,
            }],
            latest_checkpoint: None,
            aborted_steps: 1,
            skipped_steps: 2,
            recoveries: 0,
            last_step: StepStats::default(),
        }
    }

    #[test]
    fn table_lists_members_with_their_phase() {
        let table = status_table(&sample());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "job demo · generation 3 · step 7/100 · cursor epoch 1 sample 12 · aborted 1 · \
             skipped 2 · recoveries 0"
        );
        assert!(lines[1].starts_with("RANK  WORKER"), "{table}");
        assert!(
            lines[2].starts_with(
                "0     w-0#2                    10.0.0.1:7000          computing        yes"
            ),
            "{table}"
        );
        assert!(lines[2].ends_with("120ms"), "{table}");
    }

    #[test]
    fn json_names_fields_like_the_status_page() {
        let v = status_json(&sample());
        assert_eq!(v["generation"], 3);
        assert_eq!(v["members"][0]["phase"], "computing");
        assert_eq!(v["members"][0]["worker_id"], "w-0");
        assert_eq!(v["cursor"]["next_sample"], 12);
        assert_eq!((v["aborted_steps"].clone(), v["skipped_steps"].clone()), (json!(1), json!(2)));
        assert_eq!(v["latest_checkpoint"], Value::Null);
    }
}
