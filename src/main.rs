/// glibc's malloc took about a fifth of the server's CPU on the benchmark's read paths (arena locks,
/// consolidation); mimalloc's thread-local free lists do not. Set here, not in the library, so the binary
/// that users run is what the benchmark measures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    dukasync::cli::run()
}
