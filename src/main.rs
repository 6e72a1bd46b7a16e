fn main() -> std::process::ExitCode {
    dukasync::cli::run()
}
