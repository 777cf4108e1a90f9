//! Stage `esp`: keep the EFI system partitions of a mirrored root alike. `set`, `tree` and
//! `manifest` decide and parse (pure); `sync` mounts, copies and reports.

pub mod manifest;
pub mod set;
pub mod sync;
pub mod tree;
