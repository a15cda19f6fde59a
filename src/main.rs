//! The `hexbroker` binary: everything is in the library.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    hexbroker::cli::main()
}
