//! Any bytes as a packed nvlist: errors are fine, panics and runaway allocation are not.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(l) = zroam::ondisk::nvlist::unpack(data) {
        // Everything downstream of a decoded label must cope with any decoded shape.
        let _ = zroam::ondisk::nvlist::zdb_dump(&l, 4);
        if let Some(info) = zroam::ondisk::vdev::LabelInfo::from_config(&l) {
            let found = zroam::probe::assemble::Found { device: "/dev/fuzz".into(), info, uberblock: None };
            let _ = zroam::probe::assemble::assemble(&[found.clone(), found]);
        }
    }
});
