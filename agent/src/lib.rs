//! zroam: find a ZFS root pool wherever its disks are, and boot it.
//!
//! Pure parsing and deciding live in their own modules (nvlist, label, gpt, fat, mdraid,
//! luks, vdev, assemble, cmdline, efi, choose, be, import, uevent::parse); the executors
//! that touch devices and processes are `probe`, `boot`, `setup`, `pivot`, `emergency`, `run`.

pub mod ask;
pub mod assemble;
pub mod be;
pub mod blockdev;
pub mod boot;
pub mod choose;
pub mod cmdline;
pub mod console;
pub mod efi;
pub mod emergency;
pub mod espset;
pub mod espsync;
pub mod esptree;
pub mod fat;
pub mod gpt;
pub mod hostid;
pub mod import;
pub mod keyfile;
pub mod keys;
pub mod label;
pub mod luks;
pub mod mdraid;
pub mod modules;
pub mod nvlist;
pub mod pivot;
pub mod probe;
pub mod report;
pub mod run;
pub mod setup;
pub mod sysfs;
pub mod table;
pub mod udevdb;
pub mod uevent;
pub mod unlock;
pub mod vdev;
pub mod zfskey;
pub mod zfsparam;
