//! A minimal Server-Sent Events client for tests: reads `id`, `event` and
//! `data` fields off a real streaming HTTP response.

use std::time::Duration;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct SseMessage {
    pub id: Option<i64>,
    pub event: String,
    pub data: Value,
}

pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
}

impl SseClient {
    /// Connects to `url`, resuming after `last_event_id` when given.
    pub async fn connect(
        client: &reqwest::Client,
        url: &str,
        last_event_id: Option<i64>,
    ) -> SseClient {
        let mut request = client.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.expect("connect to the event stream");
        assert_eq!(response.status(), 200, "event stream refused");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        SseClient {
            response,
            buffer: String::new(),
        }
    }

    /// The next message with data, or `None` after `deadline`.
    pub async fn next(&mut self, deadline: Duration) -> Option<SseMessage> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                if let Some(message) = parse_frame(&frame) {
                    return Some(message);
                }
            }
            let chunk = tokio::time::timeout_at(until, self.response.chunk())
                .await
                .ok()?;
            match chunk.expect("read the event stream") {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return None,
            }
        }
    }

    /// Whether the server ends the stream within `deadline` (whatever it
    /// sends before); `false` if it is still open then.
    pub async fn ended(&mut self, deadline: Duration) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            match tokio::time::timeout_at(until, self.response.chunk()).await {
                Err(_) => return false,
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None) | Err(_)) => return true,
            }
        }
    }

    /// Reads messages until one satisfies `pred`; panics after `deadline`.
    pub async fn wait_for(
        &mut self,
        deadline: Duration,
        pred: impl Fn(&SseMessage) -> bool,
    ) -> SseMessage {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(m) if pred(&m) => return m,
                Some(_) => {}
                None => panic!("no matching event within {deadline:?}"),
            }
        }
    }
}

fn parse_frame(frame: &str) -> Option<SseMessage> {
    let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
    for line in frame.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if data.is_empty() {
        return None; // comments, keep-alives, retry hints
    }
    Some(SseMessage {
        id,
        event,
        data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
    })
}
