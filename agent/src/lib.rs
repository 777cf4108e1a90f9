//! zroam: find a ZFS root pool wherever its disks are, and boot it.
//!
//! Pure parsing and deciding live in their own modules (nvlist, label, gpt, fat, mdraid,
//! luks, vdev, assemble); `probe` is the thin executor that reads devices.

pub mod assemble;
pub mod blockdev;
pub mod fat;
pub mod gpt;
pub mod label;
pub mod luks;
pub mod mdraid;
pub mod nvlist;
pub mod probe;
pub mod sysfs;
pub mod table;
pub mod vdev;
