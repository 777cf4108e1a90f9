//! Setup (PID 1, and efivarfs for a generator's hook too, before any stage): the pseudo-filesystems a ramdisk needs, without
//! failing on those already mounted (a kernel with devtmpfs.mount=1, or a generator that did it first).

use nix::mount::{mount, MsFlags};
use std::path::Path;

/// The search path of everything zroam starts as PID 1: the kernel gives init none.
pub const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Gives the process the search path it lacks (set once, first thing, before any thread).
pub fn search_path() {
    if std::env::var_os("PATH").is_none() {
        std::env::set_var("PATH", PATH);
    }
}

const PSEUDO: &[(&str, &str, &str, &str)] = &[
    ("proc", "/proc", "proc", ""),
    ("sysfs", "/sys", "sysfs", ""),
    ("devtmpfs", "/dev", "devtmpfs", "mode=0755"),
    ("tmpfs", "/run", "tmpfs", "mode=0755"),
];

fn mounted(target: &str) -> bool {
    // /proc may not exist yet; then nothing is mounted.
    std::fs::read_to_string("/proc/self/mounts").map(|m| m.lines().any(|l| l.split_whitespace().nth(1) == Some(target))).unwrap_or(false)
}

/// Mount what is missing; returns warnings.
pub fn pseudo_filesystems() -> Vec<String> {
    let mut warn = Vec::new();
    for (src, target, fs, data) in PSEUDO {
        if mounted(target) {
            continue;
        }
        let _ = std::fs::create_dir_all(target);
        let flags = MsFlags::MS_NOSUID | if *fs == "devtmpfs" { MsFlags::empty() } else { MsFlags::MS_NODEV };
        if let Err(e) = mount(Some(*src), *target, Some(*fs), flags, Some(*data)) {
            if e != nix::errno::Errno::EBUSY {
                warn.push(format!("mount {fs} on {target}: {e}"));
            }
        }
    }
    kernel_modprobe();
    warn.extend(efivarfs());
    warn
}

/// Mounts efivarfs where the firmware's variables are expected, when this is an EFI boot and
/// nobody did: the ESP stage learns the booted ESP there. zroam's own ramdisk calls it as PID
/// 1; in a generator's image `zroam boot` calls it, since only systemd mounts efivarfs by
/// itself (initramfs-tools, mkinitcpio and dracut without systemd do not). The mount moves
/// into the root with /sys, where systemd finds it already there. Returns a warning.
pub fn efivarfs() -> Option<String> {
    let efi = "/sys/firmware/efi/efivars";
    if !Path::new(efi).is_dir() || mounted(efi) {
        return None;
    }
    let m = || mount(Some("efivarfs"), efi, Some("efivarfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, None::<&str>);
    let mut r = m();
    if r == Err(nix::errno::Errno::ENODEV) {
        // efivarfs is a module in distribution kernels (Debian's among them).
        let _ = crate::sys::run::run("modprobe", &["-q".to_string(), "efivarfs".to_string()], std::time::Duration::from_secs(10));
        r = m();
    }
    r.err().map(|e| format!("mount efivarfs: {e} (the booted ESP will be unknown)"))
}

/// The kernel loads modules on demand (ciphers for dm-crypt, for one) by running the
/// program named in /proc/sys/kernel/modprobe, /sbin/modprobe by default: point it at the
/// ramdisk's modprobe when that is elsewhere.
fn kernel_modprobe() {
    let knob = "/proc/sys/kernel/modprobe";
    let Ok(cur) = std::fs::read_to_string(knob) else { return };
    if Path::new(cur.trim()).exists() {
        return;
    }
    if let Some(mp) = crate::sys::modules::find_tool("modprobe") {
        let _ = std::fs::write(knob, mp.as_os_str().as_encoded_bytes());
    }
}

/// Make fds 0-2 the console when the kernel could not (no /dev/console in the ramdisk).
pub fn console_stdio() {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl and dup2 on plain descriptor numbers.
    if unsafe { libc::fcntl(2, libc::F_GETFD) } >= 0 {
        return;
    }
    if let Ok(f) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/console") {
        for fd in 0..3 {
            unsafe { libc::dup2(f.as_raw_fd(), fd) };
        }
        std::mem::forget(f);
    }
}
