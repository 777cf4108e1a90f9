//! Pure readers of what a disk carries. Every input comes from a device anyone may have
//! made: sizes are bounded, nothing panics, and nothing here does I/O beyond `BlockSource`.

pub mod blockdev;
pub mod fat;
pub mod gpt;
pub mod label;
pub mod luks;
pub mod mdraid;
pub mod nvlist;
pub mod swap;
pub mod vdev;
