//! The log sink going away (the process that read the server's stderr exited: a pipe to a tool that quit, a
//! log collector restarted) must not take the server down with it. tracing-subscriber reports a failed write
//! with `eprintln!` by default, which panics when stderr is a closed pipe: every task that logged panicked,
//! so connections were dropped without an answer and SIGTERM was never acted on (the shutdown logs first).

use crate::common::*;
use reqwest::StatusCode;
use std::{
    io::Read,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The server process, killed if the test ends (or fails) before it stopped: the bug this test is about
/// makes it ignore SIGTERM.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test]
async fn with_its_stderr_pipe_closed_the_server_answers_and_stops_on_sigterm() {
    let url = fresh_database().await;
    let port = free_port();
    let child = serve_command(&url, port)
        .env("DUKASYNC_LOG", "info")
        .env("DUKASYNC_SHUTDOWN_GRACE_SECS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the dukasync binary starts");
    let mut server = Server(child);
    let child = &mut server.0;
    let base = format!("http://127.0.0.1:{port}");
    wait_until_serving(&base).await;
    // Read what it logged so far, then close the read end: every later write to stderr fails (EPIPE).
    let mut stderr = child.stderr.take().unwrap();
    let mut first = [0u8; 1];
    stderr.read_exact(&mut first).unwrap();
    drop(stderr);

    // Each of these logs at info (a refused request), so each write to stderr fails.
    for _ in 0..3 {
        let refused = reqwest::get(format!("{base}/v1/scopes"))
            .await
            .expect("an answer, not a dropped connection");
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            panic!("the server ignored SIGTERM for 20 s with its stderr closed");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "a clean stop: {exit:?}");
}
