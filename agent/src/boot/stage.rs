//! The boot's stages, by the names the log, the report and the docs use.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Start loading zfs.ko, and (own ramdisk only) the storage drivers of the hardware present.
    Modules,
    /// Probe on every new block device until the pool is ready (or the bound).
    Wait,
    /// Several pools match and nothing tells them apart (a failure, not a timed stage).
    ChoosePool,
    /// The label's hostid refuses the import (a failure, not a timed stage).
    Hostid,
    /// Wait for zfs.ko's init to finish.
    ZfsModule,
    Import,
    ChooseBe,
    /// LUKS containers stay locked (a failure raised while waiting).
    Unlock,
    /// Native-encryption keys of the BE's mounts.
    Keys,
    /// Snapshots, rollbacks and clones asked for on the command line.
    Snapshots,
    Mount,
    Esp,
    Pivot,
}

impl Stage {
    pub const ALL: [Stage; 13] = [
        Stage::Modules,
        Stage::Wait,
        Stage::ChoosePool,
        Stage::Hostid,
        Stage::ZfsModule,
        Stage::Import,
        Stage::ChooseBe,
        Stage::Unlock,
        Stage::Keys,
        Stage::Snapshots,
        Stage::Mount,
        Stage::Esp,
        Stage::Pivot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Modules => "modules",
            Stage::Wait => "wait",
            Stage::ChoosePool => "choose-pool",
            Stage::Hostid => "hostid",
            Stage::ZfsModule => "zfs-module",
            Stage::Import => "import",
            Stage::ChooseBe => "choose-be",
            Stage::Unlock => "unlock",
            Stage::Keys => "keys",
            Stage::Snapshots => "snapshots",
            Stage::Mount => "mount",
            Stage::Esp => "esp",
            Stage::Pivot => "pivot",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Stage;

    #[test]
    fn display_is_the_report_name() {
        for s in Stage::ALL {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<Stage>(&format!("\"{s}\"")).unwrap(), s);
        }
    }
}
