//! Linux swap areas: the signature at the end of the first page says plain swap or a
//! hibernation image; the header's UUID and label are what `resume=UUID=`/`LABEL=` name.

#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;

/// The first page of a swap area (x86-64's page size: the kernel writes the header there).
pub const PAGE: usize = 4096;
/// Where the 10-byte signature sits in the first page.
pub const SIG_OFFSET: usize = PAGE - 10;
/// The signature of plain swap, which discarding an image restores.
pub const PLAIN: &[u8; 10] = b"SWAPSPACE2";
const UUID_OFFSET: usize = 1036;
const LABEL_OFFSET: usize = 1052;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Swap {
    /// The hibernation signature (`S1SUSPEND`, `S2SUSPEND`, `ULSUSPEND`, `LINHIB0001`)
    /// when the area holds an image; none for plain swap.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hibernation: Option<String>,
    /// As blkid prints it; none when all zeros.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub uuid: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub label: String,
}

/// Recognise a swap area from the first bytes of a device (at least `PAGE`). Pure.
pub fn parse(b: &[u8]) -> Option<Swap> {
    let sig = b.get(SIG_OFFSET..PAGE)?;
    // The kernel writes "S1SUSPEND" with its NUL: the 10th byte is not part of the name.
    let hibernation = if sig == PLAIN {
        None
    } else if sig == b"LINHIB0001" {
        Some("LINHIB0001")
    } else {
        Some(*["S1SUSPEND", "S2SUSPEND", "ULSUSPEND"].iter().find(|s| sig[..9] == *s.as_bytes())?)
    };
    // The image writers keep the rest of the page as mkswap left it, UUID and label included.
    let u = &b[UUID_OFFSET..UUID_OFFSET + 16];
    let uuid = uuid::Uuid::from_slice(u).ok().filter(|u| !u.is_nil()).map(|u| u.to_string());
    let l = &b[LABEL_OFFSET..LABEL_OFFSET + 16];
    let l = &l[..l.iter().position(|x| *x == 0).unwrap_or(16)];
    Some(Swap { hibernation: hibernation.map(str::to_string), uuid, label: String::from_utf8_lossy(l).into_owned() })
}

/// A first page as mkswap writes it, with `sig` at its end (tests build devices from it).
#[cfg(test)]
pub fn test_page(sig: &[u8], uuid: [u8; 16], label: &str) -> Vec<u8> {
    let mut p = vec![0u8; PAGE];
    p[1024] = 1;
    p[UUID_OFFSET..UUID_OFFSET + 16].copy_from_slice(&uuid);
    p[LABEL_OFFSET..LABEL_OFFSET + label.len()].copy_from_slice(label.as_bytes());
    p[SIG_OFFSET..SIG_OFFSET + sig.len()].copy_from_slice(sig);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_page as page;

    #[test]
    fn plain_and_hibernated() {
        let id = *b"\x12\x34\x56\x78\x9a\xbc\xde\xf0\x01\x23\x45\x67\x89\xab\xcd\xef";
        let s = parse(&page(PLAIN, id, "swap0")).unwrap();
        assert_eq!(s, Swap { hibernation: None, uuid: Some("12345678-9abc-def0-0123-456789abcdef".into()), label: "swap0".into() });
        for (sig, name) in [
            (&b"S1SUSPEND\0"[..], "S1SUSPEND"),
            (b"S2SUSPEND\0", "S2SUSPEND"),
            (b"ULSUSPEND\0", "ULSUSPEND"),
            (b"LINHIB0001", "LINHIB0001"),
        ] {
            let s = parse(&page(sig, id, "")).unwrap();
            assert_eq!(s.hibernation.as_deref(), Some(name));
            assert_eq!((s.uuid.is_some(), s.label.as_str()), (true, ""));
        }
        assert_eq!(parse(&page(PLAIN, [0; 16], &"x".repeat(16))).unwrap().uuid, None);
        assert_eq!(parse(&page(PLAIN, [0; 16], &"x".repeat(16))).unwrap().label.len(), 16);
    }

    #[test]
    fn anything_else_is_not_swap() {
        assert_eq!(parse(&page(b"SWAP-SPACE", [1; 16], "")), None);
        assert_eq!(parse(&page(b"S3SUSPEND\0", [1; 16], "")), None);
        assert_eq!(parse(&vec![0u8; PAGE]), None);
        // Short reads (a device smaller than a page) and any bytes: no panic.
        assert_eq!(parse(&page(PLAIN, [1; 16], "")[..PAGE - 1]), None);
        assert_eq!(parse(&[]), None);
        let mut p = page(b"ULSUSPEND\xff", [0xff; 16], "");
        p[LABEL_OFFSET..LABEL_OFFSET + 16].fill(0xff);
        assert_eq!(parse(&p).unwrap().hibernation.as_deref(), Some("ULSUSPEND"));
    }
}
