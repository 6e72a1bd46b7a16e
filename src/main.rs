#![deny(clippy::unwrap_used)]

/// mimalloc instead of glibc's allocator: a cached page's answer makes about 75 allocations (most of them
/// hyper's, axum's and tower's), and with mimalloc the server does 15% fewer instructions per answer
/// (callgrind, benches/README.md "Layers around every route"), for 12–23 MiB more resident memory
/// (deploy/MEMORY.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    dukasync::cli::run()
}
