//! `albatross status`: fetch a coordinator's status over gRPC and render it as a table or JSON.
//! The HTTP `/status` document is the same JSON plus the loss curve and recent events.

use std::fmt::Write as _;
use std::time::Duration;

use albatross_proto::channel::{ChannelOptions, endpoint};
use albatross_proto::wire::v1 as wire;
use albatross_proto::wire::v1::coordinator_service_client::CoordinatorServiceClient;
use serde_json::{Value, json};

use crate::error::CoordinatorError;

/// Ask the coordinator at `url` (`http://host:port`) for its status, within `timeout`.
///
/// # Errors
/// [`CoordinatorError::Transport`] when it cannot be reached or answers with an error (the
/// message says which, e.g. a missing or wrong token).
pub async fn fetch_status(
    url: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<wire::GetStatusResponse, CoordinatorError> {
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
) -> Result<wire::GetStatusResponse, CoordinatorError> {
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
    Ok(reply.into_inner())
}

fn phase_name(phase: i32) -> String {
    wire::WorkerPhase::try_from(phase).map_or_else(
        |_| format!("unknown({phase})"),
        |p| p.as_str_name().trim_start_matches("WORKER_PHASE_").to_ascii_lowercase(),
    )
}

/// The status as JSON (the fields of `/status` without its history).
pub fn status_json(s: &wire::GetStatusResponse) -> Value {
    let cursor = |c: &Option<wire::DataCursor>| {
        c.as_ref().map(|c| json!({ "epoch": c.epoch, "next_sample": c.next_sample }))
    };
    let members: Vec<Value> = s
        .members
        .iter()
        .map(|m| {
            let member = m.member.clone().unwrap_or_default();
            let worker = member.worker.unwrap_or_default();
            json!({
                "worker_id": worker.worker_id,
                "incarnation": worker.incarnation,
                "address": member.address,
                "rank": member.rank,
                "in_quorum": m.in_quorum,
                "phase": phase_name(m.phase),
                "last_heartbeat_age_ms": m.last_heartbeat_age_ms,
            })
        })
        .collect();
    let checkpoint = s.latest_checkpoint.as_ref().map(|c| {
        json!({
            "step": c.step,
            "path": c.path,
            "manifest_sha256": hex::encode(&c.manifest_sha256),
            "cursor": cursor(&c.cursor),
        })
    });
    let last = s.last_step.unwrap_or_default();
    json!({
        "job": { "name": s.job_name, "fingerprint": hex::encode(&s.job_fingerprint) },
        "coordinator_instance": s.coordinator_instance,
        "generation": s.generation,
        "committed_step": s.committed_step,
        "total_steps": s.total_steps,
        "cursor": cursor(&s.cursor),
        "members": members,
        "latest_checkpoint": checkpoint,
        "aborted_steps": s.aborted_steps,
        "skipped_steps": s.skipped_steps,
        "recoveries": s.recoveries,
        "last_step": {
            "samples": last.samples,
            "tokens": last.tokens,
            "mlm_loss_sum": last.mlm_loss_sum,
            "sop_loss_sum": last.sop_loss_sum,
            "masked_tokens": last.masked_tokens,
            "grad_norm": last.grad_norm,
            "compute_ms": last.compute_ms,
            "reduce_ms": last.reduce_ms,
        },
    })
}

/// The status as a human-readable summary and member table.
pub fn status_table(s: &wire::GetStatusResponse) -> String {
    let cursor = s.cursor.unwrap_or_default();
    let mut out = format!(
        "job {} · generation {} · step {}/{} · cursor epoch {} sample {} · aborted {} · skipped {} \
         · recoveries {}\n",
        s.job_name,
        s.generation,
        s.committed_step,
        s.total_steps,
        cursor.epoch,
        cursor.next_sample,
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
        let member = m.member.clone().unwrap_or_default();
        let worker = member.worker.unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<5} {:<24} {:<22} {:<16} {:<6} {:>8}ms",
            member.rank,
            format!("{}#{}", worker.worker_id, worker.incarnation),
            member.address,
            phase_name(m.phase),
            if m.in_quorum { "yes" } else { "-" },
            m.last_heartbeat_age_ms
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> wire::GetStatusResponse {
        wire::GetStatusResponse {
            job_name: "demo".into(),
            generation: 3,
            committed_step: 7,
            total_steps: 100,
            cursor: Some(wire::DataCursor { epoch: 1, next_sample: 12 }),
            members: vec![wire::MemberStatus {
                member: Some(wire::Member {
                    worker: Some(wire::WorkerRef { worker_id: "w-0".into(), incarnation: 2 }),
                    address: "10.0.0.1:7000".into(),
                    rank: 0,
                }),
                phase: wire::WorkerPhase::Computing.into(),
                last_heartbeat_age_ms: 120,
                in_quorum: true,
            }],
            aborted_steps: 1,
            skipped_steps: 2,
            ..Default::default()
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
