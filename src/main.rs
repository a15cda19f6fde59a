//! The `hexbroker` binary: everything is in the library.
#![forbid(unsafe_code)]

/// mimalloc: the proxy allocates many small, short-lived buffers per request, where glibc's
/// allocator showed up at about an eighth of the CPU profile.
///
/// Built with `no_thp` (Cargo.toml): mimalloc otherwise asks for transparent huge pages on its
/// arenas, and each 2 MiB page that streaming touched stayed resident whole, so the peak RSS rose
/// with every round of long streams (28 to 59 MB after 17 GB through four parallel streams, 24 to
/// 31 MB of it huge pages); without them it stays near 30 MB (`proofs/memory`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hexbroker::cli::main()
}
