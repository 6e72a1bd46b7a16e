//! Redis: the shared one of `deploy/services.sh`, and private `redis-server` processes a test may pause or kill.

use super::{free_port, service_env};
use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub fn redis_url() -> String {
    service_env()
        .get("DUKASYNC_REDIS_URL")
        .cloned()
        .expect("no DUKASYNC_REDIS_URL: run `deploy/services.sh start`")
}

/// A private `redis-server` process on a free loopback port, killed on drop.
pub struct RedisProcess {
    pub port: u16,
    child: Child,
}

impl RedisProcess {
    pub fn start() -> RedisProcess {
        let port = free_port();
        Self::start_on(port)
    }

    /// A new `redis-server` on `port` (e.g. the port of one that was killed, to test reconnecting).
    pub fn start_on(port: u16) -> RedisProcess {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (deploy/services.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(10));
        }
        RedisProcess { port, child }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Sends a signal (`STOP`, `CONT`, ...) with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGKILL, and wait until the port is closed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
