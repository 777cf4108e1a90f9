//! Kernel uevents over netlink: how zroam hears about devices that appear after it starts,
//! instead of sleeping and looking again. `parse` is pure; `Listener` owns the socket.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uevent {
    pub action: String,
    pub devpath: String,
    pub subsystem: String,
    pub devname: Option<String>,
    pub devtype: Option<String>,
    pub modalias: Option<String>,
}

impl Uevent {
    /// A block device (disk or partition) that appeared or changed.
    pub fn is_block_change(&self) -> bool {
        self.subsystem == "block" && matches!(self.action.as_str(), "add" | "change" | "remove")
    }
}

/// A kernel uevent datagram: `ACTION@DEVPATH\0KEY=VALUE\0…`. udev's re-broadcasts (which start
/// with "libudev") and anything malformed give None.
pub fn parse(buf: &[u8]) -> Option<Uevent> {
    let mut parts = buf.split(|&b| b == 0).filter(|p| !p.is_empty());
    let head = std::str::from_utf8(parts.next()?).ok()?;
    head.split_once('@')?;
    let mut ev = Uevent::default();
    for p in parts {
        let Ok(s) = std::str::from_utf8(p) else { continue };
        let Some((k, v)) = s.split_once('=') else { continue };
        match k {
            "ACTION" => ev.action = v.to_string(),
            "DEVPATH" => ev.devpath = v.to_string(),
            "SUBSYSTEM" => ev.subsystem = v.to_string(),
            "DEVNAME" => ev.devname = Some(v.to_string()),
            "DEVTYPE" => ev.devtype = Some(v.to_string()),
            "MODALIAS" => ev.modalias = Some(v.to_string()),
            _ => {}
        }
    }
    (!ev.action.is_empty() && !ev.devpath.is_empty()).then_some(ev)
}

pub struct Listener {
    fd: OwnedFd,
}

impl Listener {
    /// Subscribe to the kernel's uevent multicast group.
    pub fn open() -> nix::Result<Self> {
        use nix::sys::socket::{bind, setsockopt, socket, sockopt, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType};
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            SockProtocol::NetlinkKObjectUEvent,
        )?;
        // A burst of hot-plug events must not overflow the queue (as root this ignores rmem_max).
        let _ = setsockopt(&fd, sockopt::RcvBufForce, &(4 << 20));
        bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &NetlinkAddr::new(0, 1))?;
        Ok(Listener { fd })
    }

    /// Wait until `until` for events; returns those that arrived (possibly none). After the
    /// first one, keeps reading for `settle` so a disk and its partitions come as one batch.
    pub fn wait(&self, until: Instant, settle: Duration) -> Vec<(Instant, Uevent)> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut limit = until;
        loop {
            let left = limit.saturating_duration_since(Instant::now());
            let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::ZERO);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Ok(0) => return out,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return out,
            }
            // The socket is non-blocking: read until it is empty.
            while let Ok(n) =
                nix::sys::socket::recv(std::os::fd::AsRawFd::as_raw_fd(&self.fd), &mut buf, nix::sys::socket::MsgFlags::empty())
            {
                if let Some(ev) = parse(&buf[..n]) {
                    out.push((Instant::now(), ev));
                }
            }
            if !out.is_empty() {
                limit = limit.min(Instant::now() + settle);
            }
            if Instant::now() >= limit {
                return out;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_message() {
        let m = b"add@/devices/pci0000:00/0000:00:04.0/virtio2/block/vdb/vdb2\0ACTION=add\0\
DEVPATH=/devices/pci0000:00/0000:00:04.0/virtio2/block/vdb/vdb2\0SUBSYSTEM=block\0DEVNAME=vdb2\0\
DEVTYPE=partition\0PARTN=2\0SEQNUM=1234\0";
        let e = parse(m).unwrap();
        assert!(e.is_block_change());
        assert_eq!((e.devname.as_deref(), e.devtype.as_deref()), (Some("vdb2"), Some("partition")));
        let u = parse(b"add@/devices/x\0ACTION=add\0DEVPATH=/devices/x\0SUBSYSTEM=usb\0MODALIAS=usb:v46F4p0001\0").unwrap();
        assert_eq!(u.modalias.as_deref(), Some("usb:v46F4p0001"));
        assert!(!u.is_block_change());
    }

    #[test]
    fn junk() {
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"libudev\0\xfe\xed"), None);
        assert_eq!(parse(b"add@/x\0garbage\0\xff\xff=\0"), None);
    }
}
