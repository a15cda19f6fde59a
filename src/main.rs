//! The `hexbroker` binary: everything is in the library.
#![forbid(unsafe_code)]

/// mimalloc: the proxy allocates many small, short-lived buffers per request, where glibc's
/// allocator showed up at about an eighth of the CPU profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hexbroker::cli::main()
}
