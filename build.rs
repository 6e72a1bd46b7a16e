//! Build script: the commit the binary is built from, as the compile-time variable `DUKASYNC_COMMIT`, for
//! `dukasync_build_info` (`src/metrics/process.rs`).
//!
//! In order: `DUKASYNC_COMMIT` set at build time (a Docker build or a tarball without `.git` passes it); else
//! `git rev-parse HEAD` when the sources are a git checkout and git is installed; else "unknown". A build never
//! fails for want of git.

use std::{path::Path, process::Command};

fn main() {
    println!("cargo:rerun-if-env-changed=DUKASYNC_COMMIT");
    let commit = std::env::var("DUKASYNC_COMMIT")
        .ok()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=DUKASYNC_COMMIT={commit}");
}

/// The checked-out commit (12 hex digits), and the files whose change means another commit: `HEAD` (a checkout),
/// the branch's ref (a new commit) and `packed-refs`.
fn git_commit() -> Option<String> {
    // Sources unpacked inside some other repository are not a checkout of their own.
    let top = git(&["rev-parse", "--show-toplevel"])?;
    let here = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    if std::fs::canonicalize(top).ok()? != std::fs::canonicalize(here).ok()? {
        return None;
    }
    let commit = git(&["rev-parse", "HEAD"])?;
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        // Only files that exist: cargo reruns the script on every build for a missing one.
        if let Some(path) = git(&["rev-parse", "--git-path", &name]).filter(|p| Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(commit.chars().take(12).collect())
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}
