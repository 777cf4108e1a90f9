//! LUKS header recognition, through blkid-rs (that is all it does for us).

use crate::ondisk::blockdev::BlockSource;
use blkid_rs::{LuksHeader, LuksVersionedHeader};
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Luks {
    pub version: u16,
    pub uuid: String,
}

/// Recognise a LUKS1/LUKS2 header in the first 4 KiB of a device.
pub fn parse(head: &[u8]) -> Option<Luks> {
    if head.len() < 6 || &head[..6] != b"LUKS\xba\xbe" {
        return None;
    }
    let h = LuksHeader::read(head).ok()?;
    Some(Luks { version: h.version(), uuid: h.uuid().ok()?.hyphenated().to_string() })
}

pub fn probe(src: &dyn BlockSource) -> Option<Luks> {
    src.read_vec(0, 4096).ok().and_then(|b| parse(&b))
}
