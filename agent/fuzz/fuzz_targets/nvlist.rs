//! Any bytes as a packed nvlist: errors are fine, panics and runaway allocation are not.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(l) = zroam::nvlist::unpack(data) {
        // Everything downstream of a decoded label must cope with any decoded shape.
        let _ = zroam::nvlist::zdb_dump(&l, 4);
        if let Some(info) = zroam::vdev::LabelInfo::from_config(&l) {
            let found = zroam::assemble::Found { device: "/dev/fuzz".into(), info, uberblock: None };
            let _ = zroam::assemble::assemble(&[found.clone(), found]);
        }
    }
});
