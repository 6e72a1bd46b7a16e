//! Test hooks for crash tests, compiled only with the cargo feature `failpoints` (which `deploy/dev test` and
//! CI enable) and then inert unless named in `DUKASYNC_FAILPOINTS` (comma-separated).
//!
//! They exist so a test can kill the real server process at the one instant that matters (for example after an
//! operation batch committed but before its answer was sent) instead of hoping to hit it by timing. A build
//! without the feature (a release build: `cargo build --release`) never reads `DUKASYNC_FAILPOINTS`: every hook
//! is a no-op, and the server only warns at start that the variable is ignored.

/// After an operation batch commits, the request hangs forever (the test then kills the process).
pub const REPLAY_HANG_AFTER_COMMIT: &str = "replay_hang_after_commit";

/// A pull's handler panics (tests that a panic answers the documented 500 `internal`).
pub const PULL_PANIC: &str = "pull_panic";

const VARIABLE: &str = "DUKASYNC_FAILPOINTS";

#[cfg(feature = "failpoints")]
fn active() -> &'static [String] {
    use std::sync::OnceLock;
    static ACTIVE: OnceLock<Vec<String>> = OnceLock::new();
    ACTIVE.get_or_init(|| {
        std::env::var(VARIABLE)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Without the feature nothing is ever active, whatever the environment says.
#[cfg(not(feature = "failpoints"))]
fn active() -> &'static [String] {
    &[]
}

pub fn is_active(name: &str) -> bool {
    active().iter().any(|a| a == name)
}

/// Logs the failpoints in effect, if any; in a build without them, that the variable is ignored.
pub fn warn_if_any() {
    if !active().is_empty() {
        tracing::warn!(failpoints = ?active(), "test failpoints are active: never do this in production");
    } else if !cfg!(feature = "failpoints") && std::env::var_os(VARIABLE).is_some() {
        tracing::warn!("{VARIABLE} is set, but this build has no test failpoints: ignored");
    }
}

/// Waits forever when `name` is active.
pub async fn hang(name: &str) {
    if is_active(name) {
        tracing::warn!(failpoint = name, "failpoint reached: hanging");
        std::future::pending::<()>().await;
    }
}

/// Panics when `name` is active.
pub fn panic_if(name: &str) {
    if is_active(name) {
        panic!("failpoint {name} reached");
    }
}

#[cfg(all(test, not(feature = "failpoints")))]
mod tests {
    /// What a release build does with the variable set: nothing.
    #[test]
    fn without_the_feature_the_variable_is_ignored() {
        std::env::set_var(
            super::VARIABLE,
            format!("{},{}", super::REPLAY_HANG_AFTER_COMMIT, super::PULL_PANIC),
        );
        assert!(!super::is_active(super::REPLAY_HANG_AFTER_COMMIT));
        assert!(!super::is_active(super::PULL_PANIC));
        super::panic_if(super::PULL_PANIC);
    }
}
