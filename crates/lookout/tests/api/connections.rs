//! Connections a hostile client opens and then starves: half a request, or
//! nothing at all. The hub closes them after its header timeout, caps how
//! many one client may hold before sending a request, and keeps live
//! streams open past the timeout.

use std::time::{Duration, Instant};

use lookout_testkit::{spawn_hub_with, SseClient};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

const TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the hub closes `stream` within `deadline` (a read returns end of
/// file or an error); whatever it sends before is read and dropped.
async fn closed_within(stream: &mut TcpStream, deadline: Duration) -> bool {
    let until = tokio::time::Instant::now() + deadline;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// A connection from `ip` (any address of 127.0.0.0/8) to the hub.
async fn connect_from(ip: [u8; 4], hub: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((ip, 0))).unwrap();
    socket.connect(hub).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_silent_connections_are_closed_and_capped() {
    let hub = spawn_hub_with(|c| c.header_timeout = TIMEOUT).await;

    // Half a request: closed once the header timeout has passed.
    let started = Instant::now();
    let mut slow = TcpStream::connect(hub.addr).await.unwrap();
    slow.write_all(b"GET /api/services HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut slow, Duration::from_secs(10)).await);
    assert!(started.elapsed() >= TIMEOUT, "{:?}", started.elapsed());

    // A keep-alive connection that answered once, then idles: closed too.
    let mut idle = TcpStream::connect(hub.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 512];
    let n = idle.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
    assert!(closed_within(&mut idle, Duration::from_secs(10)).await);

    // One client may hold 32 connections without a request; the next is
    // closed at once, while another client is served.
    let mut held = Vec::new();
    for _ in 0..lookout_hub::serve::MAX_WAITING_PER_CLIENT {
        held.push(connect_from([127, 0, 2, 1], hub.addr).await);
    }
    // The hub accepts connections in order and counts each as it accepts
    // it, so the next one is refused.
    let mut one_too_many = connect_from([127, 0, 2, 1], hub.addr).await;
    assert!(
        closed_within(&mut one_too_many, Duration::from_millis(500)).await,
        "the 33rd waiting connection of one client is closed at once"
    );
    let mut other = connect_from([127, 0, 2, 2], hub.addr).await;
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let n = other.read(&mut answer).await.unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "another client is served"
    );
    // Once the held ones time out, the client may connect again.
    for mut stream in held {
        assert!(closed_within(&mut stream, Duration::from_secs(10)).await);
    }
    let mut again = connect_from([127, 0, 2, 1], hub.addr).await;
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let n = again.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
}

/// A live stream is past its headers: it stays open longer than the header
/// timeout and keeps delivering.
#[tokio::test(flavor = "multi_thread")]
async fn live_streams_outlast_the_header_timeout() {
    let hub = spawn_hub_with(|c| c.header_timeout = TIMEOUT).await;
    let mut events = SseClient::connect(&hub.client, &hub.url("/api/events"), None).await;
    tokio::time::sleep(TIMEOUT * 3).await;
    let s = hub.create_service(json!({"name": "later"})).await;
    let created = events
        .wait_for(Duration::from_secs(5), |m| m.event == "service.created")
        .await;
    assert_eq!(created.data["id"], s["id"]);
}
