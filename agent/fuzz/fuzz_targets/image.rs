//! Target `image`: the harness is `zroam::fuzzing::image` (agent/src/fuzzing.rs), which
//! `cargo test` also runs over this target's corpus (agent/tests/fuzz_corpus.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zroam::fuzzing::image(data));
