//! Stage `esp`: keep the EFI system partitions of a mirrored root alike. `set` and `tree`
//! decide (pure); `sync` mounts, copies and reports.

pub mod set;
pub mod sync;
pub mod tree;
