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
    /// Opened with O_DIRECT (below); cleared for good if the device refuses a direct read.
    direct: std::sync::atomic::AtomicBool,
}

/// Alignment of direct reads: offset, length and memory. A multiple of every logical block
/// size Linux block devices have (512 and 4096).
pub const DIRECT_ALIGN: usize = 4096;

impl FileSource {
    pub fn open(path: &Path) -> io::Result<Self> {
        // O_DIRECT: the probe reads about 1 MiB per device once (four labels) and never
        // again through this descriptor, so the page cache is pure cost: buffered, every
        // byte was a page allocated, charged, copied out and (at the last close of a block
        // device) truncated again, the largest part of the probe's CPU time. Direct reads go
        // to the caller's buffer (or an aligned bounce buffer) and nothing stays behind.
        // The flag is set after the open, not by it: the kernel refuses O_DIRECT (EINVAL)
        // on what cannot do it (tmpfs files, FIFOs) only once the open is done, and a
        // second open could block again (a FIFO, a device that hardly answers); such a
        // file is read buffered.
        let file = File::open(path)?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        // SAFETY: fcntl on our own open descriptor; only its status flags change.
        let direct = unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            fl >= 0 && libc::fcntl(fd, libc::F_SETFL, fl | libc::O_DIRECT) == 0
        };
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
        let _ = unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_RANDOM) };
        Ok(Self { file, size, direct: direct.into() })
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
        use std::sync::atomic::Ordering;
        if self.direct.load(Ordering::Relaxed) {
            match self.read_direct(off, buf) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    // The device takes no direct reads of this alignment (a logical block
                    // larger than DIRECT_ALIGN, a file system's own rule): read it buffered.
                    let fd = std::os::fd::AsRawFd::as_raw_fd(&self.file);
                    // SAFETY: fcntl on our own open descriptor; only its status flags change.
                    unsafe {
                        let fl = libc::fcntl(fd, libc::F_GETFL);
                        if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_DIRECT) < 0 {
                            return Err(e);
                        }
                    }
                    self.direct.store(false, Ordering::Relaxed);
                }
                r => return r,
            }
        }
        let mut at = off;
        for chunk in buf.chunks_mut(READ_CHUNK) {
            self.file.read_exact_at(chunk, at)?;
            at += chunk.len() as u64;
        }
        Ok(())
    }
}

/// An aligned slice of `len` bytes inside `v` (grown once to `len + DIRECT_ALIGN`), for a
/// buffer that direct reads fill in place.
pub fn aligned(v: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if v.len() < len + DIRECT_ALIGN {
        v.resize(len + DIRECT_ALIGN, 0);
    }
    let pad = v.as_ptr().align_offset(DIRECT_ALIGN);
    &mut v[pad..pad + len]
}

impl FileSource {
    /// Reads `buf` at `off` with O_DIRECT, `READ_CHUNK` at a time: in place where the buffer,
    /// offset and length are aligned, else through an aligned bounce buffer covering the
    /// request rounded out to `DIRECT_ALIGN` (at the device's end the kernel shortens the
    /// last read to the device's size; only bytes asked for must be there).
    fn read_direct(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let a = DIRECT_ALIGN as u64;
        let end = off + buf.len() as u64;
        if off % a == 0 && buf.len() % DIRECT_ALIGN == 0 && (buf.as_ptr() as usize) % DIRECT_ALIGN == 0 {
            let mut at = off;
            for chunk in buf.chunks_mut(READ_CHUNK) {
                if pread_all(&self.file, chunk, at)? < chunk.len() {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of device"));
                }
                at += chunk.len() as u64;
            }
            return Ok(());
        }
        thread_local!(static BOUNCE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) });
        BOUNCE.with_borrow_mut(|b| {
            let bounce = aligned(b, READ_CHUNK);
            let mut at = off - off % a;
            while at < end {
                let n = READ_CHUNK.min((end.next_multiple_of(a) - at) as usize);
                let got = pread_all(&self.file, &mut bounce[..n], at)? as u64;
                let (lo, hi) = (at.max(off), (at + got).min(end));
                if hi < (at + n as u64).min(end) {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of device"));
                }
                if lo < hi {
                    buf[(lo - off) as usize..(hi - off) as usize].copy_from_slice(&bounce[(lo - at) as usize..(hi - at) as usize]);
                }
                at += n as u64;
            }
            Ok(())
        })
    }
}

/// One positional read, repeated until `buf` is full or the end of the file: the bytes read.
fn pread_all(file: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// A source whose first bytes were read once: the small reads of a device's start (GPT
/// header and entries, FAT boot sector and swap page, LUKS header, md 1.1 and 1.2
/// superblocks, the first label's start) are served from them. With direct reads every
/// read is a trip to the device, and these were five or more per device.
pub struct Head<'a> {
    inner: &'a dyn BlockSource,
    head: Vec<u8>,
}

impl<'a> Head<'a> {
    /// Reads the first `len` bytes (fewer on a smaller device). A failed read keeps
    /// nothing: every read then goes to the device and meets its error there.
    pub fn new(inner: &'a dyn BlockSource, len: usize) -> Self {
        let head = inner.read_vec(0, inner.size().min(len as u64) as usize).unwrap_or_default();
        Head { inner, head }
    }
}

impl BlockSource for Head<'_> {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let held = self.head.len() as u64;
        if off >= held {
            return self.inner.read_at(off, buf);
        }
        let n = ((held - off) as usize).min(buf.len());
        buf[..n].copy_from_slice(&self.head[off as usize..off as usize + n]);
        if n == buf.len() {
            return Ok(());
        }
        self.inner.read_at(held, &mut buf[n..])
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

    #[test]
    fn head_serves_the_start_and_passes_the_rest_on() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let s = RegionSource { size: 10_000, regions: vec![(0, data.clone())] };
        let h = Head::new(&s, 4096);
        for (off, len) in [(0, 10), (4090, 6), (4090, 100), (100, 9000), (5000, 5000), (9999, 1)] {
            assert_eq!(h.read_vec(off as u64, len).unwrap(), &data[off..off + len], "{off}+{len}");
        }
        assert!(h.read_vec(9999, 2).is_err());
        // A device smaller than the head is held whole.
        let small = RegionSource { size: 100, regions: vec![(0, data[..100].to_vec())] };
        assert_eq!(Head::new(&small, 4096).read_vec(0, 100).unwrap(), &data[..100]);
    }

    /// Direct reads (in place and through the bounce buffer, across chunks and at the odd
    /// end of a file) return exactly the bytes buffered reads do. The file lives in the
    /// build tree, on a file system that takes O_DIRECT where /tmp may not.
    #[test]
    fn direct_reads_match_the_bytes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/blockdev-test");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!("img-{}", std::process::id()));
        let size = 3 * READ_CHUNK + 5 * 512 + 77;
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4096) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let src = FileSource::open(&p).unwrap();
        assert_eq!(src.size(), size as u64);
        let mut big = Vec::new();
        let inplace = aligned(&mut big, 2 * READ_CHUNK);
        src.read_at(4096, inplace).unwrap();
        assert_eq!(inplace, &data[4096..4096 + 2 * READ_CHUNK]);
        for (off, len) in [
            (0, 1),
            (512, 512),
            (100, 5000),
            (4095, 2),
            (READ_CHUNK - 3, READ_CHUNK + 9),
            (size - 77, 77),
            (size - 600, 600),
            (7, size - 7),
        ] {
            assert_eq!(src.read_vec(off as u64, len).unwrap(), &data[off..off + len], "{off}+{len}");
        }
        assert!(src.read_vec(size as u64 - 10, 11).is_err());
        let mut past = vec![0u8; 600];
        assert!(src.read_at(size as u64 - 500, &mut past).is_err());
        drop(src);
        let _ = std::fs::remove_file(&p);
    }
}
