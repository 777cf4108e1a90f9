//! `zroam image`'s program (see `zroam::cli::image`): never in a ramdisk.
fn main() -> std::process::ExitCode {
    zroam::cli::image::main()
}
