//! The real `dukasync` binary as a process, and free ports for processes the tests start.

use std::{
    process::Command,
    time::{Duration, Instant},
};

/// A TCP port on 127.0.0.1 that nothing listens on now (bound, then released for the caller to use).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `dukasync serve` on `database_url`, listening on 127.0.0.1:`port`, with an otherwise empty environment;
/// the caller adds its settings and stdio, then spawns it.
pub fn serve_command(database_url: &str, port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dukasync"));
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DUKASYNC_DATABASE_URL", database_url)
        .env("DUKASYNC_LISTEN", format!("127.0.0.1:{port}"));
    command
}

/// Waits until the server at `base` answers `/healthz` (30 s at most).
pub async fn wait_until_serving(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
