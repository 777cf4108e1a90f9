//! Thin wrappers over the kernel and helper programs: processes with bounds, kernel
//! modules, uevents, the storage scans and drivers still in flight, udev's database, EFI
//! variables, the hostid, zfs module parameters, the console log, a terminal's mode while
//! asking.

pub mod confine;
pub mod console;
pub mod drivers;
pub mod efi;
pub mod hostid;
pub mod modules;
pub mod mounts;
pub mod run;
pub mod scan;
pub mod tty;
pub mod udevdb;
pub mod uevent;
pub mod usage;
pub mod zfsparam;
