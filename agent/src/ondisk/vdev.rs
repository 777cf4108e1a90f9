//! The meaning of a label's config: pool identity, this device's place in the vdev tree.

use crate::ondisk::nvlist::NvList;
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;

/// pool_state_t as stored in labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(rename_all = "snake_case")]
pub enum PoolState {
    Active,
    Exported,
    Destroyed,
    Spare,
    L2cache,
    Uninitialized,
    Unavail,
    PotentiallyActive,
    Unknown,
}

impl PoolState {
    pub fn from_label(v: Option<u64>) -> Self {
        match v {
            Some(0) => Self::Active,
            Some(1) => Self::Exported,
            Some(2) => Self::Destroyed,
            Some(3) => Self::Spare,
            Some(4) => Self::L2cache,
            Some(5) => Self::Uninitialized,
            Some(6) => Self::Unavail,
            Some(7) => Self::PotentiallyActive,
            _ => Self::Unknown,
        }
    }
}

/// One node of a vdev tree as the label describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Vdev {
    /// "mirror", "raidz", "draid", "disk", "file", "replacing", "spare", "hole", …
    #[serde(rename = "type")]
    pub kind: String,
    pub id: u64,
    pub guid: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nparity: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ashift: Option<u64>,
    pub is_log: bool,
    /// "special", "dedup" or "log" for allocation classes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub alloc_bias: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub children: Vec<Vdev>,
}

/// Cap on vdev tree nesting accepted from a label (real trees are at most 4 deep).
const MAX_VDEV_DEPTH: usize = 8;

impl Vdev {
    pub fn from_nv(nv: &NvList) -> Option<Vdev> {
        Self::from_nv_depth(nv, 0)
    }

    fn from_nv_depth(nv: &NvList, depth: usize) -> Option<Vdev> {
        if depth > MAX_VDEV_DEPTH {
            return None;
        }
        Some(Vdev {
            kind: nv.str("type")?.to_string(),
            id: nv.u64("id").unwrap_or(0),
            guid: nv.u64("guid")?,
            path: nv.str("path").map(str::to_string),
            nparity: nv.u64("nparity"),
            ashift: nv.u64("ashift"),
            is_log: nv.u64("is_log").unwrap_or(0) != 0,
            alloc_bias: nv.str("alloc_bias").map(str::to_string),
            children: nv.lists("children").iter().filter_map(|c| Self::from_nv_depth(c, depth + 1)).collect(),
        })
    }

    pub fn is_leaf(&self) -> bool {
        self.children.is_empty() && matches!(self.kind.as_str(), "disk" | "file")
    }

    /// Every leaf below (or at) this node.
    pub fn leaves(&self) -> Vec<&Vdev> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(v) = stack.pop() {
            if v.children.is_empty() {
                out.push(v);
            } else {
                stack.extend(v.children.iter().rev());
            }
        }
        out
    }

    /// Human name of the top-level vdev as zpool prints it (`mirror-0`, `raidz2-1`).
    pub fn display_name(&self) -> String {
        match self.kind.as_str() {
            "raidz" | "draid" => format!("{}{}-{}", self.kind, self.nparity.unwrap_or(1), self.id),
            "disk" | "file" => self.path.clone().unwrap_or_else(|| format!("guid {}", self.guid)),
            k => format!("{k}-{}", self.id),
        }
    }
}

/// What one device's chosen label says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct LabelInfo {
    pub pool_name: Option<String>,
    pub pool_guid: Option<u64>,
    pub state: PoolState,
    pub txg: u64,
    pub version: Option<u64>,
    pub hostid: Option<u64>,
    pub hostname: Option<String>,
    /// This device's own vdev guid.
    pub guid: u64,
    pub top_guid: Option<u64>,
    pub vdev_children: Option<u64>,
    pub hole_array: Vec<u64>,
    pub errata: Option<u64>,
    pub features_for_read: Vec<String>,
    /// The device's top-level vdev subtree.
    pub top: Option<Vdev>,
}

impl LabelInfo {
    pub fn from_config(c: &NvList) -> Option<LabelInfo> {
        Some(LabelInfo {
            pool_name: c.str("name").map(str::to_string),
            pool_guid: c.u64("pool_guid"),
            state: PoolState::from_label(c.u64("state")),
            txg: c.u64("txg").unwrap_or(0),
            version: c.u64("version"),
            hostid: c.u64("hostid"),
            hostname: c.str("hostname").map(str::to_string),
            guid: c.u64("guid")?,
            top_guid: c.u64("top_guid"),
            vdev_children: c.u64("vdev_children"),
            hole_array: c.u64s("hole_array").to_vec(),
            errata: c.u64("errata"),
            features_for_read: c.list("features_for_read").map(|f| f.names().map(str::to_string).collect()).unwrap_or_default(),
            top: c.list("vdev_tree").and_then(Vdev::from_nv),
        })
    }

    /// Spare and L2ARC devices carry a label with no pool config of their own.
    pub fn is_aux(&self) -> bool {
        matches!(self.state, PoolState::Spare | PoolState::L2cache)
    }
}
