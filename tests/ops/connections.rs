//! Issue 18, item 7b: idle and slowloris connections are closed (`DUKASYNC_IDLE_TIMEOUT_SECS`,
//! `DUKASYNC_HEADER_READ_TIMEOUT_SECS`), while a request in progress, a long-poll included, is never cut.

use crate::common::*;
use dukasync::wire::ChangesPage;
use reqwest::StatusCode;
use std::time::{Duration, Instant};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const TIMEOUTS: [(&str, &str); 3] = [
    ("DUKASYNC_IDLE_TIMEOUT_SECS", "1"),
    ("DUKASYNC_HEADER_READ_TIMEOUT_SECS", "1"),
    ("DUKASYNC_MAX_WAIT_SECS", "3"),
];

/// Reads until the server closes the connection (observable: end of stream or a reset); returns what it sent
/// and when it closed. Fails if it is still open after `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Instant) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&received).into_owned(), Instant::now()),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the connection is still open after {limit:?}; received {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
    let app = TestApp::start_with(&TIMEOUTS).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let opened = Instant::now();
    let (received, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(received.is_empty(), "{received}");
    assert!(
        closed - opened >= Duration::from_millis(900),
        "closed after {:?}",
        closed - opened
    );
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let app = TestApp::start_with(&TIMEOUTS).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: dukasync\r\n\r\n")
        .await
        .unwrap();
    let (received, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(received.starts_with("HTTP/1.1 200 OK"), "{received}");
    assert!(
        received.ends_with(r#"{"status":"ok"}"#),
        "answered, then closed: {received}"
    );
}

#[tokio::test]
async fn a_request_head_sent_a_byte_at_a_time_is_cut_off() {
    let app = TestApp::start_with(&TIMEOUTS).await;
    let stream = TcpStream::connect(app.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    // Well within the idle timeout between bytes, so only the head's own deadline can end it.
    let drip = tokio::spawn(async move {
        writer.write_all(b"GET /healthz HTTP/1.1\r\n").await?;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            writer.write_all(b"x").await?;
        }
        std::io::Result::Ok(())
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(4), reader.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the server still waits for the head after {:?}",
        started.elapsed()
    );
    drip.abort();
}

#[tokio::test]
async fn a_long_poll_longer_than_the_idle_timeout_is_answered() {
    let app = TestApp::start_with(&TIMEOUTS).await;
    let token = app.token(OWNER, "owner-phone").await;
    let head = app
        .get("/v1/scopes/water/changes?since=0&limit=1", Some(&token))
        .await
        .json::<ChangesPage>()
        .await
        .unwrap()
        .head;
    let started = Instant::now();
    let resp = app
        .get(&format!("/v1/scopes/water/changes?since={head}&wait=3"), Some(&token))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.json::<ChangesPage>().await.unwrap().changes.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "it waited its wait out"
    );
}
