//! The HTTP side (`--http`): `/status` JSON, `/metrics` Prometheus text, and `/`, a
//! self-contained HTML page with the member table and a live loss curve.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};

use crate::actor::{Event, StatusPage};
use crate::service::CoordinatorGrpc;
use crate::status::status_json;

#[derive(Clone)]
struct HttpState {
    actor: CoordinatorGrpc,
    metrics: PrometheusHandle,
}

/// The status/metrics router.
pub(crate) fn router(actor: CoordinatorGrpc, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/status", get(status))
        .route("/metrics", get(prometheus))
        .with_state(HttpState { actor, metrics })
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn prometheus(State(s): State<HttpState>) -> Response {
    let text = s.metrics.render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn status(State(s): State<HttpState>) -> Response {
    match s.actor.call(Event::StatusPage).await {
        Ok(snapshot) => axum::Json(to_json(&snapshot)).into_response(),
        Err(status) => {
            (StatusCode::SERVICE_UNAVAILABLE, status.message().to_owned()).into_response()
        }
    }
}

fn to_json(s: &StatusPage) -> Value {
    let mut doc = status_json(&s.view);
    if let Value::Object(map) = &mut doc {
        let loss: Vec<Value> = s.losses.iter().map(|(step, loss)| json!([step, loss])).collect();
        let recent: Vec<Value> =
            s.recent.iter().map(|(at, text)| json!({ "at_s": at, "event": text })).collect();
        map.insert("loss".into(), Value::Array(loss));
        map.insert("recent_events".into(), Value::Array(recent));
    }
    doc
}

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Albatross</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
canvas{border:1px solid #ccc}#events{font-family:monospace;font-size:.85em;white-space:pre}
</style></head><body>
<h1>Albatross <span id="job"></span></h1>
<p id="summary">loading…</p>
<table><thead><tr><th>rank</th><th>worker</th><th>address</th><th>phase</th><th>in quorum</th><th>last heartbeat</th></tr></thead>
<tbody id="members"></tbody></table>
<h2>Loss</h2><canvas id="loss" width="720" height="240"></canvas>
<h2>Recent events</h2><div id="events"></div>
<script>
function esc(s){return String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]))}
function draw(points){
  const c=document.getElementById('loss'),g=c.getContext('2d');g.clearRect(0,0,c.width,c.height);
  if(points.length<2)return;
  const xs=points.map(p=>p[0]),ys=points.map(p=>p[1]);
  const x0=Math.min(...xs),x1=Math.max(...xs),y0=Math.min(...ys),y1=Math.max(...ys);
  const X=x=>10+(c.width-20)*(x-x0)/Math.max(1,x1-x0),Y=y=>c.height-10-(c.height-20)*(y-y0)/Math.max(1e-9,y1-y0);
  g.beginPath();points.forEach((p,i)=>i?g.lineTo(X(p[0]),Y(p[1])):g.moveTo(X(p[0]),Y(p[1])));g.stroke();
  g.fillText(y1.toFixed(3),12,12);g.fillText(y0.toFixed(3),12,c.height-12);
}
async function refresh(){
  try{
    const s=await (await fetch('/status')).json();
    document.getElementById('job').textContent=s.job.name;
    document.getElementById('summary').textContent=`generation ${s.generation} · step ${s.committed_step}/${s.total_steps} · cursor epoch ${s.cursor.epoch} sample ${s.cursor.next_sample} · aborted ${s.aborted_steps} · skipped ${s.skipped_steps} · recoveries ${s.recoveries}`;
    document.getElementById('members').innerHTML=s.members.map(m=>`<tr><td>${m.rank}</td><td>${esc(m.worker_id)}#${m.incarnation}</td><td>${esc(m.address)}</td><td>${esc(m.phase)}</td><td>${m.in_quorum?'yes':''}</td><td>${m.last_heartbeat_age_ms} ms</td></tr>`).join('');
    document.getElementById('events').textContent=s.recent_events.map(e=>`${e.at_s.toFixed(1)}s  ${e.event}`).reverse().join('\n');
    draw(s.loss);
  }catch(e){document.getElementById('summary').textContent='unreachable: '+e}
}
refresh();setInterval(refresh,2000);
</script></body></html>
"#;
