//! Pure decisions: the kernel command line, which pool, the import, which boot environment.
//! Data in, a decision out; `boot` and `zroam plan` apply the same functions.

pub mod be;
pub mod choose;
pub mod cmdline;
pub mod conf;
pub mod import;
pub mod menu;
pub mod net;
pub mod pin;
pub mod plan;
pub mod preload;
pub mod resume;
pub mod settle;
pub mod trust;
