//! Positional reads from a block device, behind a trait so that parsers can be tested on
//! captured regions of real disks instead of whole images.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub trait BlockSource: Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from byte offset `off`; short reads are errors.
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Read `len` bytes at `off` into a new buffer, refusing reads past the end.
    fn read_vec(&self, off: u64, len: usize) -> io::Result<Vec<u8>> {
        let end = off.checked_add(len as u64);
        if end.is_none_or(|e| e > self.size()) {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of device"));
        }
        let mut v = vec![0u8; len];
        self.read_at(off, &mut v)?;
        Ok(v)
    }
}

/// A device node or image file opened read-only.
pub struct FileSource {
    file: File,
    size: u64,
}

impl FileSource {
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        // For block devices metadata().len() is 0; seeking to the end gives the size.
        let size = {
            use std::io::Seek;
            let mut f = &file;
            f.seek(io::SeekFrom::End(0))?
        };
        // No readahead: zroam reads a few known regions, and a read it gives up on (a
        // stuck disk) holds its thread, and any exec of this process, until that I/O ends.
        // Only what was asked for is in flight.
        // SAFETY: posix_fadvise only advises the kernel about this open descriptor.
        let _ = unsafe { libc::posix_fadvise(std::os::fd::AsRawFd::as_raw_fd(&file), 0, 0, libc::POSIX_FADV_RANDOM) };
        Ok(Self { file, size })
    }
}

/// Largest single read: a thread blocked on a device that hardly answers is released
/// (killed, or told its answer is no longer wanted) after at most one such read.
const READ_CHUNK: usize = 32 * 1024;

impl BlockSource for FileSource {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut at = off;
        for chunk in buf.chunks_mut(READ_CHUNK) {
            self.file.read_exact_at(chunk, at)?;
            at += chunk.len() as u64;
        }
        Ok(())
    }
}

/// A sparse device: a size plus some captured regions; everything else reads as zeros.
/// Fixtures (label regions of real pools) and fuzz inputs are served through it.
pub struct RegionSource {
    pub size: u64,
    pub regions: Vec<(u64, Vec<u8>)>,
}

impl BlockSource for RegionSource {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = off
            .checked_add(buf.len() as u64)
            .filter(|e| *e <= self.size)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past end"))?;
        buf.fill(0);
        for (start, data) in &self.regions {
            let rend = start + data.len() as u64;
            let lo = off.max(*start);
            let hi = end.min(rend);
            if lo < hi {
                let dst = &mut buf[(lo - off) as usize..(hi - off) as usize];
                dst.copy_from_slice(&data[(lo - start) as usize..(hi - start) as usize]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_overlay_zeros() {
        let s = RegionSource { size: 100, regions: vec![(10, vec![1; 5]), (90, vec![2; 10])] };
        let v = s.read_vec(8, 10).unwrap();
        assert_eq!(v, [0, 0, 1, 1, 1, 1, 1, 0, 0, 0]);
        assert_eq!(s.read_vec(95, 5).unwrap(), [2; 5]);
        assert!(s.read_vec(95, 6).is_err());
        assert!(s.read_vec(u64::MAX, 2).is_err());
    }
}
