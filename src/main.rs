#![deny(clippy::unwrap_used)]
fn main() -> std::process::ExitCode {
    dukasync::cli::run()
}
