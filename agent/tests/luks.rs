//! LUKS headers made by the real cryptsetup (tests/fixtures/luks/make.sh).

use flate2::read::GzDecoder;
use std::fs;
use std::io::Read;
use std::path::Path;

#[test]
fn luks1_and_luks2_headers_from_cryptsetup() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/luks");
    for v in [1u16, 2] {
        let mut head = Vec::new();
        GzDecoder::new(fs::File::open(dir.join(format!("luks{v}-head.bin.gz"))).unwrap()).read_to_end(&mut head).unwrap();
        let uuid = fs::read_to_string(dir.join(format!("luks{v}.uuid"))).unwrap();
        let l = zroam::ondisk::luks::parse(&head).expect("LUKS header recognised");
        assert_eq!((l.version, l.uuid.as_str()), (v, uuid.trim()));
        // Not LUKS: a zeroed sector and a corrupted magic.
        head[0] ^= 0xff;
        assert_eq!(zroam::ondisk::luks::parse(&head), None);
    }
    assert_eq!(zroam::ondisk::luks::parse(&[0u8; 4096]), None);
}

#[test]
fn luks2_token_types_from_cryptsetup() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/luks");
    let mut head = Vec::new();
    GzDecoder::new(fs::File::open(dir.join("luks2-tokens-head.bin.gz")).unwrap()).read_to_end(&mut head).unwrap();
    assert_eq!(zroam::ondisk::luks::header_len(&head), 16384);
    let l = zroam::ondisk::luks::parse(&head).unwrap();
    assert_eq!(l.tokens, ["zroam-lab-one", "zroam-lab-two"]);
    // The 4 KiB fixture has no JSON area to read: no tokens known.
    let mut plain = Vec::new();
    GzDecoder::new(fs::File::open(dir.join("luks2-head.bin.gz")).unwrap()).read_to_end(&mut plain).unwrap();
    assert!(zroam::ondisk::luks::parse(&plain).unwrap().tokens.is_empty());
    // A JSON area that is not JSON, or whose tokens are not objects: none, no panic.
    use zroam::ondisk::luks::token_types;
    assert!(token_types(b"{\"tokens\": [1, 2]}\0\0").is_empty());
    assert!(token_types(b"\xff\xfe not json").is_empty());
    assert_eq!(token_types(b"{\"tokens\":{\"0\":{\"type\":\"a\\nb\"},\"1\":{}}}"), ["ab"]);
    assert_eq!(zroam::ondisk::luks::header_len(&[0u8; 4]), 0);
}
