//! Test hooks for crash tests, inert unless named in `DUKASYNC_FAILPOINTS` (comma-separated).
//!
//! They exist so a test can kill the real server process at the one instant that matters (for example after an
//! operation batch committed but before its answer was sent) instead of hoping to hit it by timing. Never set
//! `DUKASYNC_FAILPOINTS` in production; the server logs a warning at start when it is set.

use std::sync::OnceLock;

/// After an operation batch commits, the request hangs forever (the test then kills the process).
pub const REPLAY_HANG_AFTER_COMMIT: &str = "replay_hang_after_commit";

fn active() -> &'static [String] {
    static ACTIVE: OnceLock<Vec<String>> = OnceLock::new();
    ACTIVE.get_or_init(|| {
        std::env::var("DUKASYNC_FAILPOINTS")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    })
}

pub fn is_active(name: &str) -> bool {
    active().iter().any(|a| a == name)
}

/// Logs the failpoints in effect, if any.
pub fn warn_if_any() {
    if !active().is_empty() {
        tracing::warn!(failpoints = ?active(), "test failpoints are active: never do this in production");
    }
}

/// Waits forever when `name` is active.
pub async fn hang(name: &str) {
    if is_active(name) {
        tracing::warn!(failpoint = name, "failpoint reached: hanging");
        std::future::pending::<()>().await;
    }
}
