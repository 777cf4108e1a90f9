// The zroam binary only: no .eh_frame_hdr (the release binary never unwinds: panic=abort),
// which keeps it under its 2 MiB bound. Tests unwind, so they keep theirs.
fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,--no-eh-frame-hdr");
}
