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
