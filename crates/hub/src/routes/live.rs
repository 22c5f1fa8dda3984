//! Live updates over Server-Sent Events (`GET /api/events`) and WebSocket
//! (`GET /api/services/ws`), both resumable: SSE with the standard
//! `Last-Event-ID` header (or `?last_event_id=`), WebSocket with
//! `?last_event_id=`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use futures::Stream;
use lookout_proto::service::StatusEventView;
use lookout_proto::FieldError;

use super::extract::QueryMap;
use super::extract::ServiceId;
use super::table::Routes;
use super::AppState;
use crate::auth::guard::Caller;
use crate::auth::{Access, Principal};
use crate::error::ApiError;
use crate::live::{feed, LiveEvent};
use crate::openapi::{doc, Answer, Doc, Takes, LIMIT};

pub fn routes(r: Routes) -> Routes {
    r.get("/events", Access::Viewer, sse)
        .doc(Doc {
            query: &[(
                "last_event_id",
                Takes::EventId,
                "resume after this event id",
            )],
            ..doc(
                "Live events (Server-Sent Events): status changes, results, registry changes",
                "live",
                Answer::Text("text/event-stream"),
            )
        })
        .get("/services/ws", Access::Viewer, websocket)
        .doc(doc(
            "Live events over a WebSocket (the same stream as /api/events)",
            "live",
            Answer::Upgrade,
        ))
        .get("/services/{id}/events", Access::Viewer, status_history)
        .doc(Doc {
            query: &[LIMIT],
            ..doc(
                "A service's status changes",
                "health",
                Answer::Many("StatusEventView"),
            )
        })
        .get("/services/{id}/stats", Access::Viewer, stats)
        .doc(doc(
            "Uptime over 24 h, 7 d and 30 d, and latency figures",
            "health",
            Answer::Object,
        ))
        .get("/services/{id}/history", Access::Viewer, history)
        .doc(Doc {
            query: &[(
                "range",
                Takes::Words(&["1h", "24h", "7d", "30d", ""]),
                "how far back (24h when left out or empty)",
            )],
            ..doc(
                "Check results over a range in buckets (count, passed, mean, min and max \
                 latency) and the service's incidents",
                "health",
                Answer::Object,
            )
        })
}

/// The id to resume after: the `Last-Event-ID` header, else `?last_event_id=`.
fn resume_after(
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<Option<i64>, ApiError> {
    let raw = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query.get("last_event_id").cloned());
    match raw {
        None => Ok(None),
        Some(raw) if raw.trim().is_empty() => Ok(None),
        Some(raw) => raw
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|id| *id >= 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::BadRequest(
                    format!("invalid Last-Event-ID {raw:?}"),
                    vec![FieldError::new(
                        "last_event_id",
                        "must be an event id (a non-negative integer)",
                    )],
                )
            }),
    }
}

fn sse_event(event: &LiveEvent) -> SseEvent {
    SseEvent::default()
        .id(event.id.to_string())
        .event(event.kind)
        .data(event.data.to_string())
}

/// How often a live stream asks whether its credential still holds.
pub const STREAM_RECHECK: Duration = Duration::from_secs(2);

/// Resolves once `who`'s credential no longer holds: a live stream ends
/// then, on whichever hub it is open.
pub(crate) async fn revoked(state: AppState, who: Principal) {
    loop {
        tokio::time::sleep(STREAM_RECHECK).await;
        if !state.auth.still_holds(&who).await {
            return;
        }
    }
}

async fn sse(
    State(state): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    QueryMap(query): QueryMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let after = resume_after(&headers, &query)?;
    let rx = feed(state.store.clone(), &state.live, after);
    // A first comment tells EventSource how soon to reconnect.
    let hello = futures::stream::once(async {
        Ok(SseEvent::default()
            .retry(Duration::from_secs(1))
            .comment("lookout"))
    });
    let stop = state.shutdown.clone();
    let cut = revoked(state.clone(), who);
    let events = futures::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        Some((Ok(sse_event(&event)), rx))
    });
    let events = futures::StreamExt::take_until(events, async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = cut => {}
        }
    });
    Ok(Sse::new(futures::StreamExt::chain(hello, events)).keep_alive(KeepAlive::default()))
}

async fn websocket(
    State(state): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    QueryMap(query): QueryMap,
    upgrade: WebSocketUpgrade,
) -> Result<impl IntoResponse, ApiError> {
    let after = resume_after(&headers, &query)?;
    // Subscribed before the upgrade is answered: an event published the
    // moment the client has its socket is not missed.
    let rx = feed(state.store.clone(), &state.live, after);
    Ok(upgrade.on_upgrade(move |socket| pump(socket, rx, state, who)))
}

/// Sends every event as a JSON text message `{id, type, data}` until either
/// side goes, or the credential that opened it no longer holds (closed with
/// 1008, policy violation).
async fn pump(
    mut socket: WebSocket,
    mut rx: tokio::sync::mpsc::Receiver<crate::live::LiveEvent>,
    state: AppState,
    who: Principal,
) {
    let cut = revoked(state.clone(), who);
    tokio::pin!(cut);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
            () = &mut cut => {
                let close = axum::extract::ws::CloseFrame {
                    code: 1008,
                    reason: "the credential of this stream was revoked or expired".into(),
                };
                let _ = socket.send(Message::Close(Some(close))).await;
                break;
            }
            event = rx.recv() => {
                let Some(event) = event else { break };
                let text = serde_json::to_string(&event).unwrap_or_default();
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {} // clients have nothing to say yet
            },
        }
    }
}

async fn status_history(
    State(state): State<AppState>,
    ServiceId(id): ServiceId,
    QueryMap(query): QueryMap,
) -> Result<Json<Vec<StatusEventView>>, ApiError> {
    let limit = super::extract::count_param(&query, "limit", 100)?;
    state
        .registry
        .get(id)
        .map(|e| e.service.clone())
        .ok_or_else(|| ApiError::not_found_service(id))?;
    Ok(Json(state.store.status_events(Some(id), limit).await?))
}

/// Uptime over 24 h / 7 d / 30 d and the latency of the last 50 checks.
async fn stats(
    State(state): State<AppState>,
    ServiceId(id): ServiceId,
) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .registry
        .get(id)
        .map(|e| e.service.clone())
        .ok_or_else(|| ApiError::not_found_service(id))?;
    // Both from memory: the status timeline and the last results.
    let uptime = state.registry.uptimes(id, state.clock.now());
    let latency: Vec<serde_json::Value> = state
        .registry
        .recent(id, chrono::DateTime::<chrono::Utc>::MIN_UTC)
        .iter()
        .map(|(at, ms, status)| serde_json::json!({"at": at, "ms": ms, "status": status.as_str()}))
        .collect();
    Ok(Json(
        serde_json::json!({ "service_id": id, "uptime": uptime, "latency": latency }),
    ))
}

/// A service's check results over a range (`?range=1h|24h|7d|30d`, 24h by
/// default) in the response-time chart's buckets, and its incidents.
async fn history(
    State(state): State<AppState>,
    ServiceId(id): ServiceId,
    QueryMap(query): QueryMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::history::Range;
    state
        .registry
        .get(id)
        .ok_or_else(|| ApiError::not_found_service(id))?;
    let range = match query.get("range").map(String::as_str) {
        None | Some("") => Range::Day,
        Some(text) => Range::parse(text).ok_or_else(|| {
            ApiError::BadRequest(
                "invalid query".into(),
                vec![FieldError::new("range", "must be 1h, 24h, 7d or 30d")],
            )
        })?,
    };
    let now = state.clock.now();
    let (buckets, changes) = tokio::try_join!(
        crate::history::latency_series(state.store.as_ref(), id, range, now),
        state.store.status_events(Some(id), 200),
    )?;
    let figure = |v: Option<f64>| v.map(|v| (v * 10.0).round() / 10.0);
    let buckets: Vec<serde_json::Value> = buckets
        .iter()
        .map(|b| {
            serde_json::json!({
                "start": b.start,
                "checks": b.count,
                "passed": b.passed,
                "mean_ms": figure(b.mean()),
                "min_ms": b.least(),
                "max_ms": b.most(),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "service_id": id,
        "range": range,
        "bucket_secs": range.bucket().num_seconds(),
        "buckets": buckets,
        "incidents": crate::history::incidents(&changes, now),
    })))
}
