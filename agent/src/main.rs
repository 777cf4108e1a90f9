//! The `zroam` binary: everything is in the library; `cli` dispatches.

fn main() -> std::process::ExitCode {
    zroam::cli::main()
}
