//! LUKS header recognition, through blkid-rs (that is all it does for us), and the token
//! types of a LUKS2 header's JSON area (a container enrolled with systemd-cryptenroll or
//! bound with clevis), so that only containers with tokens are tried with them.

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
    /// LUKS2 token types (`systemd-tpm2`, `clevis`, …), as the header says.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub tokens: Vec<String>,
}

/// The LUKS2 binary header; the JSON area follows it, up to the header size.
const BINARY_HEADER: usize = 4096;
/// Larger JSON areas are not read (cryptsetup's default is 12 KiB, its largest 4 MiB).
pub const MAX_JSON: usize = 64 * 1024;
/// Token types kept per header.
const MAX_TOKENS: usize = 32;

/// How many bytes of the device hold the header whose first 4 KiB are `head` (LUKS2:
/// hdr_size, big-endian at offset 8), bounded by MAX_JSON.
pub fn header_len(head: &[u8]) -> usize {
    let Some(b) = head.get(8..16) else { return 0 };
    let n = u64::from_be_bytes(b.try_into().unwrap_or_default());
    (n.min((BINARY_HEADER + MAX_JSON) as u64) as usize).max(BINARY_HEADER)
}

/// The token types in a LUKS2 JSON area (NUL-padded). Pure; anything malformed: none.
pub fn token_types(json: &[u8]) -> Vec<String> {
    let json = &json[..json.len().min(MAX_JSON)];
    let end = json.iter().position(|&c| c == 0).unwrap_or(json.len());
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&json[..end]) else { return Vec::new() };
    let Some(tokens) = v.get("tokens").and_then(|t| t.as_object()) else { return Vec::new() };
    tokens
        .values()
        .filter_map(|t| t.get("type")?.as_str())
        .map(|t| t.chars().filter(|c| c.is_ascii_graphic()).take(64).collect::<String>())
        .take(MAX_TOKENS)
        .collect()
}

/// Recognise a LUKS1/LUKS2 header in the first 4 KiB of a device.
pub fn parse(head: &[u8]) -> Option<Luks> {
    if head.len() < 6 || &head[..6] != b"LUKS\xba\xbe" {
        return None;
    }
    let h = LuksHeader::read(head).ok()?;
    let tokens = if h.version() == 2 { head.get(BINARY_HEADER..).map(token_types).unwrap_or_default() } else { Vec::new() };
    Some(Luks { version: h.version(), uuid: h.uuid().ok()?.hyphenated().to_string(), tokens })
}

pub fn probe(src: &dyn BlockSource) -> Option<Luks> {
    let head = src.read_vec(0, BINARY_HEADER).ok()?;
    let mut l = parse(&head)?;
    if l.version == 2 {
        let len = header_len(&head);
        if len > BINARY_HEADER {
            l.tokens = src.read_vec(BINARY_HEADER as u64, len - BINARY_HEADER).map(|j| token_types(&j)).unwrap_or_default();
        }
    }
    Some(l)
}
