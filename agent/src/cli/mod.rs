//! The `zroam` command line: one file per subcommand; `main.rs` only calls `main`.

mod ask;
mod be;
mod boot;
mod esp;
pub mod image;
mod init;
mod pin;
mod plan;
mod preload;
mod probe;
mod status;
mod unlock;

use std::process::ExitCode;

pub(crate) const USAGE: &str =
    "usage: zroam init | boot | preload | probe | plan | pin | image | status | unlock | ask | esp | be   (zroam --version)

  init    PID 1 of a zroam ramdisk (also when run as /init): mount /proc /sys /dev /run,
          load storage and zfs modules, then boot; on failure, the report and a shell.
  boot [--sysroot DIR] [--no-switch] [--cmdline STR]
          find the pool (waiting on uevents), import it, choose the boot environment, mount
          it at DIR (default /sysroot) and switch root into its init, or with --no-switch
          stop after mounting (for dracut, initramfs-tools and mkinitcpio hooks).
  preload [--drivers] [--cmdline STR]
          modprobe zfs now when boot would take this root (a generator's earliest hook,
          so the module loads while udev does); --drivers: the storage drivers present
          first. Otherwise nothing. Always exits 0.
  probe [--json] [--timeout S] [--dev PATH]...
          read every block device: partition tables, ESPs, LUKS, md, ZFS labels; group the
          labels into pools. Read-only.
  plan [--json] [--cmdline STR] [--dev PATH]... [--hostid HEX] [--efivars DIR] [--pin FILE] [--init]
          what boot would decide now (pool, why, hostid, hibernation, import command), as
          zroam boot (or, with --init, as the ramdisk's /init); changes nothing.
  pin [--pool NAME|GUID] [--dev PATH]... [-o FILE]
          the root's identity for the ramdisk (/etc/zroam/root.pin): pool GUID, members,
          LUKS containers, ESPs; the pool of / unless --pool names another.
  image [-o FILE] [--uki FILE] [--install-esp DIR] [--kver V] [--kernel FILE] [--host-only]
        [--modules M,...] [--include PROG,...] [--luks|--no-luks] [--pin FILE] [--hostid HEX]
        [--compress zstd|xz|gzip|none] [--cmdline STR] [--stub FILE] [--modules-root DIR]
        [--zfs-root DIR] [--hook]
          zroam's own ramdisk (zroam as /init) for kernel V from this system's files: zpool,
          zfs, kmod, cryptsetup, busybox, the zfs modules and every storage, USB, MMC, NVMe
          and virtio driver (--host-only: this machine's), the root pin, zroam.conf, the
          hostid; the same inputs give the same bytes. --uki: with the kernel in one EFI
          file; --install-esp: that file at DIR/EFI/BOOT/BOOTX64.EFI, the old one kept.
          --hook: what /etc/zroam/image.conf says (the kernel hooks), else nothing.
  status [--json] [--timeline] [--svg FILE] [--report PATH]
          this boot's report (/run/zroam/report.json); --timeline charts its stages on
          one time axis, --svg writes that chart to FILE as an SVG image.
  unlock [--list] [--id ID] [--wait S]
          answer the boot's passphrase questions from an SSH session or another console:
          asks here (or reads a line from a pipe), sends it to the asker, and says whether
          zroam accepted it. --list shows what is asked; waits S s (30) for a question.
  ask [--id ID] [--timeout S] [--no-console] MESSAGE
          ask for a secret as the boot does (password agents, the console, Plymouth) and
          print it: for key hooks that need a PIN. --no-console: agents only.
  esp sync [--dry-run] | esp status | esp add|remove PARTUUID
          the ESP mirror on a running system: sync every secondary from the ESP the firmware
          booted, show each ESP's role and drift, or change the ESP set.
  be list [--json] [POOL] | be next BE | be next --clear [POOL] | be activate BE
  be snapshot [BE] [--name NAME]
          boot environments (POOL/ROOT/*) on a running system: list them with what the next
          boot picks, name one for the next boot only (org.zroam:nextboot), set the pool's
          bootfs, or snapshot one with its children (default: the BE at /).

Kernel command line: root=ZFS=POOL[/DATASET][@SNAP] | root=zfs:AUTO, zroam.pool=NAME|GUID,
zroam.wait=S (30), zroam.grace=S (2), zroam.force=1 (zfs_force=1), zroam.hostid=adopt|strict,
zroam.readonly=1, zroam.esp=sync|check|off, zroam.esp.budget=S (15), zroam.shell=1,
zroam.pin=off, zroam.ignore=DEV|SERIAL[,...], zroam.debug=1, init=PATH, quiet,
resume=DEV, noresume, zroam.resume=discard, zroam.rewind=checkpoint, zroam.menu[=S],
zroam.net=dhcp|ADDR/PREFIX[,GW][@DEV] (ip=), zroam.key=PATH[:DEV],
rollback=1, bootfs.snapshot[=NAME], bootfs.rollback[=NAME], rootflags=, and the stock
tools' zfs=, rpool=, bootfs=, spl_hostid=, rootdelay=, zfs_wait= (see the README).
";

/// A subcommand's result; an argument error prints the usage.
type Res = Result<ExitCode, lexopt::Error>;

/// The kernel command line, or the one given with `--cmdline`.
fn read_cmdline(over: Option<String>) -> String {
    over.unwrap_or_else(|| std::fs::read_to_string("/proc/cmdline").unwrap_or_default())
}

/// Dispatch on argv[0] (`init` when the ramdisk's /init is zroam) and the subcommand.
pub fn main() -> ExitCode {
    // As PID 1, the kernel's own boot work before exec is on this process's clock.
    crate::sys::usage::mark_start();
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&argv0).file_name().is_some_and(|n| n == "init") {
        return init::run();
    }
    let mut args = lexopt::Parser::from_env();
    let sub = match args.next() {
        Ok(Some(lexopt::Arg::Value(v))) => v.to_string_lossy().into_owned(),
        Ok(Some(lexopt::Arg::Long("help") | lexopt::Arg::Short('h'))) | Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Some(lexopt::Arg::Long("version"))) => {
            println!("zroam {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let r = match sub.as_str() {
        "init" => return init::run(),
        "boot" => boot::run(args),
        "preload" => preload::run(args),
        "probe" => probe::run(args),
        "plan" => plan::run(args),
        "status" => status::run(args),
        "esp" => esp::run(args),
        "be" => be::run(args),
        "pin" => pin::run(args),
        "image" => return image::dispatch(args),
        "unlock" => unlock::run(args),
        "ask" => ask::run(args),
        other => {
            eprintln!("zroam: unknown command '{other}'\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    r.unwrap_or_else(|e| {
        eprintln!("zroam: {e}\n{USAGE}");
        ExitCode::from(2)
    })
}
