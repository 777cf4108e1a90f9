//! zroam: find a ZFS root pool wherever its disks are, and boot it.
//!
//! Folders by concern (docs/design.md has the whole picture):
//! - `ondisk`: pure readers of what a disk carries (GPT, FAT, LUKS, md, ZFS labels).
//! - `probe`: read every block device with a bound, group labels into pools.
//! - `decide`: pure decisions: the command line, which pool, which BE, the import.
//! - `keys`: LUKS containers and ZFS encryption keys: who asks, where keys come from.
//! - `esp`: keeping the EFI system partitions of a mirrored root alike.
//! - `boot`: the stage sequence that applies the decisions, and PID 1's setup and pivot.
//! - `sys`: thin wrappers over the kernel and helpers (processes, modules, uevents, efivars).
//! - `report`: the typed record of one boot; depends on the others, nothing depends on it.
//! - `cli`: one file per subcommand.
//! - `fuzzing`: the fuzz harnesses, shared by `agent/fuzz` and the corpus replay test
//!   (`tests/fuzz_corpus.rs`); hidden from the docs, never called by the binary.

pub mod boot;
pub mod cli;
pub mod decide;
pub mod esp;
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
pub mod keys;
pub mod ondisk;
pub mod probe;
pub mod report;
pub mod sys;
