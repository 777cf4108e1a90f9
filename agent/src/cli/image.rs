//! `zroam image`: builds zroam's own ramdisk for a kernel (`image::build`), optionally a
//! unified kernel image around it, optionally installed on an ESP. With `--hook` (the
//! kernel hooks), does what `/etc/zroam/image.conf` says, or nothing without it.
//!
//! It is its own program, `zroam-image` (installed in PREFIX/lib/zroam, beside the install
//! helper it uses): `zroam image` runs it with zroam's own path, the binary that becomes
//! the ramdisk's /init. The builder never runs at boot and stays out of the binary every
//! ramdisk carries.

use super::Res;
use crate::image::{self, build, conf, install, select};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
const CMDLINE: &str = "root=zfs:AUTO";

/// The install helper the generators share: $ZROAM_LIBDIR, else beside this program
/// (PREFIX/lib/zroam).
fn helper() -> PathBuf {
    if let Some(d) = std::env::var_os("ZROAM_LIBDIR") {
        return Path::new(&d).join("zroam-install.sh");
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent().unwrap_or(Path::new("/usr/lib/zroam")).join("zroam-install.sh")
}

/// `zroam image ARGS`: runs `zroam-image ARGS` (beside this binary, as in a build tree, else
/// in PREFIX/lib/zroam for this binary's PREFIX/sbin) with this binary's path.
pub fn dispatch(mut args: lexopt::Parser) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let rest: Vec<std::ffi::OsString> = args.raw_args().map(|r| r.collect()).unwrap_or_default();
    // The kernel hooks run `zroam image --hook` on every system: without a stick set up
    // there is nothing to do, and nothing to say, whether the builder is installed or not.
    if rest.iter().any(|a| a == "--hook") && !Path::new(conf::PATH).exists() {
        return ExitCode::SUCCESS;
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| "/usr/sbin/zroam".into());
    let dir = exe.parent().unwrap_or(Path::new("/usr/sbin"));
    let beside = dir.join("zroam-image");
    let prog = if beside.is_file() { beside } else { dir.parent().unwrap_or(Path::new("/usr")).join("lib/zroam/zroam-image") };
    let e = std::process::Command::new(&prog).args(rest).env("ZROAM_BIN", &exe).exec();
    eprintln!("zroam image: cannot run {}: {e}", prog.display());
    ExitCode::from(1)
}

/// `zroam-image`'s main.
pub fn main() -> ExitCode {
    run(lexopt::Parser::from_env()).unwrap_or_else(|e| {
        eprintln!("zroam image: {e}\n{}", super::USAGE);
        ExitCode::from(2)
    })
}

fn list(v: &str) -> Vec<String> {
    v.split(',').filter(|s| !s.is_empty()).map(String::from).collect()
}

pub fn run(mut args: lexopt::Parser) -> Res {
    use lexopt::prelude::*;
    let mut o = build::Options { modules_root: "/".into(), helper: helper(), ..Default::default() };
    let (mut out, mut uki, mut esp, mut kernel, mut cmdline, mut compress) = (None, None, None, None, None, None);
    let mut stub = PathBuf::from(STUB);
    let mut hook = false;
    while let Some(arg) = args.next()? {
        match arg {
            Short('o') | Long("output") => out = Some(PathBuf::from(args.value()?)),
            Long("kver") => o.kver = args.value()?.string()?,
            Long("kernel") => kernel = Some(PathBuf::from(args.value()?)),
            Long("modules-root") => o.modules_root = PathBuf::from(args.value()?),
            Long("host-only") => o.host_only = true,
            Long("luks") => o.luks = Some(true),
            Long("no-luks") => o.luks = Some(false),
            Long("modules") => o.modules.extend(list(&args.value()?.string()?)),
            Long("include") => o.include.extend(list(&args.value()?.string()?)),
            Long("zfs-root") => o.zfs_root = Some(PathBuf::from(args.value()?)),
            Long("hostid") => {
                let v = args.value()?.string()?;
                o.hostid = Some(
                    u32::from_str_radix(v.trim_start_matches("0x"), 16)
                        .map_err(|_| lexopt::Error::from(format!("--hostid {v}: not 8 hex digits")))?,
                );
            }
            Long("pin") => o.pin = Some(PathBuf::from(args.value()?)),
            Long("compress") => compress = Some(args.value()?.string()?),
            Long("uki") => uki = Some(PathBuf::from(args.value()?)),
            Long("cmdline") => cmdline = Some(args.value()?.string()?),
            Long("stub") => stub = PathBuf::from(args.value()?),
            Long("install-esp") => esp = Some(PathBuf::from(args.value()?)),
            Long("hook") => hook = true,
            _ => return Err(arg.unexpected()),
        }
    }
    let fail = |m: String| {
        eprintln!("zroam image: {m}");
        Ok(ExitCode::from(1))
    };
    if hook {
        // The kernel hooks: the stick's settings, or nothing to do.
        let text = match std::fs::read_to_string(conf::PATH) {
            Ok(t) => t,
            Err(_) => return Ok(ExitCode::SUCCESS),
        };
        let c = conf::parse(&text);
        c.warnings.iter().for_each(|w| eprintln!("zroam image: {w}"));
        let Some(dir) = c.esp else { return fail(format!("{} names no esp=DIR: no image built", conf::PATH)) };
        esp = Some(dir);
        cmdline = cmdline.or(c.cmdline);
        o.host_only |= c.host_only;
        o.modules.extend(c.modules);
        o.include.extend(c.include);
        compress = compress.or(c.compress);
    }
    if out.is_none() && uki.is_none() && esp.is_none() {
        return Err("say where the image goes: -o FILE, --uki FILE or --install-esp DIR".into());
    }
    o.compress = match compress.as_deref().map(|c| select::Compress::parse(c).ok_or(c)) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(c)) => return Err(format!("--compress {c}: zstd, xz, gzip or none").into()),
    };
    // The kernel's version: given, else the one its image says, else the running one.
    if o.kver.is_empty() {
        o.kver = match kernel.as_deref().and_then(|k| std::fs::read(k).ok()).and_then(|b| select::bzimage_version(&b)) {
            Some(v) => v,
            None => nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
        };
    }
    let kernel = kernel.unwrap_or_else(|| PathBuf::from(format!("/boot/vmlinuz-{}", o.kver)));
    // The binary that becomes /init: the zroam that ran this (ZROAM_BIN), else the one in
    // PATH.
    o.zroam = match std::env::var_os("ZROAM_BIN").map(PathBuf::from).or_else(|| crate::sys::modules::find_tool("zroam")) {
        Some(z) => z,
        None => return fail("no zroam binary to put in the image (run zroam image, or set ZROAM_BIN)".into()),
    };
    o.mtime = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    if !o.helper.is_file() {
        return fail(format!("{} is missing (set ZROAM_LIBDIR to the directory of zroam-install.sh)", o.helper.display()));
    }
    if let Some(d) = &esp {
        if !install::on_fat(d) {
            return fail(format!("{} is not a mounted FAT file system: mount the stick's ESP there first", d.display()));
        }
    }

    // The ramdisk: at -o, or in a private directory when it only goes into the EFI image.
    let tmp = match build::Stage::new() {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let initrd = out.clone().unwrap_or_else(|| tmp.0.join("initrd"));
    let b = match build::build(&o, &initrd) {
        Ok(b) => b,
        Err(e) => return fail(format!("kernel {}: {e}", o.kver)),
    };
    b.warnings.iter().for_each(|w| eprintln!("zroam image: warning: {w}"));
    println!(
        "zroam image: ramdisk for {}: {} entries, {} modules, {:.1} MiB ({:?}){}",
        o.kver,
        b.files,
        b.modules,
        b.bytes as f64 / (1 << 20) as f64,
        b.compress.unwrap_or(select::Compress::None),
        out.as_ref().map(|p| format!(" at {}", p.display())).unwrap_or_default()
    );
    if uki.is_none() && esp.is_none() {
        return Ok(ExitCode::SUCCESS);
    }
    let efi = uki.clone().unwrap_or_else(|| tmp.0.join("uki.efi"));
    let osrel =
        ["/etc/os-release", "/usr/lib/os-release"].iter().map(Path::new).find(|p| p.is_file()).unwrap_or(Path::new("/etc/os-release"));
    // The command line kernel-install and ukify take by default, else root=zfs:AUTO (the pin
    // says which pool).
    let cmdline = cmdline.unwrap_or_else(|| {
        let etc = std::fs::read_to_string("/etc/kernel/cmdline").unwrap_or_default();
        let etc = etc.get(..etc.len().min(4096)).unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ");
        if etc.is_empty() {
            CMDLINE.to_string()
        } else {
            etc
        }
    });
    if let Err(e) = image::assemble_uki(&stub, &kernel, &initrd, &cmdline, osrel, o.mtime, &efi) {
        return fail(e);
    }
    let size = std::fs::metadata(&efi).map(|m| m.len()).unwrap_or(0);
    println!(
        "zroam image: EFI image for {} ({:.1} MiB), command line \"{cmdline}\"{}",
        o.kver,
        size as f64 / (1 << 20) as f64,
        uki.as_ref().map(|p| format!(" at {}", p.display())).unwrap_or_default()
    );
    let Some(dir) = esp else { return Ok(ExitCode::SUCCESS) };
    let bytes = match std::fs::read(&efi) {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: {e}", efi.display())),
    };
    match install::install(&dir, &bytes) {
        Ok(install::Done::Unchanged) => println!("zroam image: {} already holds this image", dir.join(install::BOOT).display()),
        Ok(install::Done::Installed { kept }) => println!(
            "zroam image: installed {}{}",
            dir.join(install::BOOT).display(),
            kept.map(|k| format!("; the file it replaced is kept at {}", k.display())).unwrap_or_default()
        ),
        Err(e) => return fail(e),
    }
    Ok(ExitCode::SUCCESS)
}
