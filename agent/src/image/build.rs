//! The executor of `zroam image`: stages the ramdisk's tree in a private temporary
//! directory with the build host's own tools (ldd for libraries, kmod's modprobe for module
//! dependencies, depmod for the index, xz/zstd to unpack modules), then writes it as one
//! reproducible cpio through the compressor. What every zroam image takes, whichever tool
//! builds it (the driver lists, /etc/zroam, key hooks, LUKS plugins), comes from the
//! install helper the dracut, initramfs-tools and mkinitcpio hooks share.

use super::cpio::{self, Entry, Kind};
use super::select::{self, Compress};
use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub kver: String,
    /// kmod's base directory: the modules are under `DIR/lib/modules/KVER`.
    pub modules_root: PathBuf,
    /// The zroam binary that becomes /init.
    pub zroam: PathBuf,
    /// Another OpenZFS userland (`make install DESTDIR=DIR`): its zpool, zfs and libraries.
    pub zfs_root: Option<PathBuf>,
    pub host_only: bool,
    /// LUKS support; None: when this host uses LUKS.
    pub luks: Option<bool>,
    pub modules: Vec<String>,
    pub include: Vec<String>,
    pub hostid: Option<u32>,
    pub pin: Option<PathBuf>,
    pub compress: Option<Compress>,
    pub mtime: u32,
    /// The install helper (zroam-install.sh).
    pub helper: PathBuf,
}

/// What was built, for the user.
#[derive(Debug, Default)]
pub struct Built {
    pub compress: Option<Compress>,
    pub files: usize,
    pub bytes: u64,
    pub modules: usize,
    pub warnings: Vec<String>,
}

type R<T> = Result<T, String>;

/// A private directory, removed when dropped.
pub struct Stage(pub PathBuf);

impl Stage {
    pub fn new() -> R<Stage> {
        use std::os::unix::fs::DirBuilderExt;
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let d = std::env::temp_dir().join(format!("zroam-image-{}-{t}", std::process::id()));
        fs::DirBuilder::new().mode(0o700).create(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        Ok(Stage(d))
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn run(argv: &[&str], env: &[(&str, &str)]) -> R<String> {
    let o = Command::new(argv[0])
        .args(&argv[1..])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    if !o.status.success() {
        let said = String::from_utf8_lossy(&o.stderr);
        return Err(format!("{} failed: {}", argv.join(" "), said.trim()));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Runs a function of the install helper, with `args`.
fn helper(o: &Options, func: &str, args: &[&str]) -> R<String> {
    let mut argv = vec!["sh", "-c", ". \"$0\" && \"$@\""];
    let h = o.helper.to_string_lossy();
    argv.push(&h);
    argv.push(func);
    argv.extend_from_slice(args);
    let zroam = o.zroam.to_string_lossy();
    let pin = o.pin.as_ref().map(|p| p.to_string_lossy().into_owned());
    let mut env = vec![("ZROAM_BIN", zroam.as_ref())];
    if let Some(p) = &pin {
        env.push(("ZROAM_PIN", p));
    }
    run(&argv, &env)
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// Copies `src` (its target, when a link) to `rel` under the stage, keeping its mode;
/// the first copy of a path wins.
fn put(stage: &Path, src: &Path, rel: &Path) -> R<bool> {
    let dst = stage.join(rel.strip_prefix("/").unwrap_or(rel));
    if dst.symlink_metadata().is_ok() {
        return Ok(false);
    }
    if let Some(d) = dst.parent() {
        fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    fs::copy(src, &dst).map_err(|e| format!("{}: {e}", src.display()))?;
    Ok(true)
}

struct Builder<'a> {
    o: &'a Options,
    stage: PathBuf,
    warnings: Vec<String>,
}

impl Builder<'_> {
    /// The directories a library is looked for in under the other OpenZFS userland.
    fn zfs_libdirs(&self) -> Vec<PathBuf> {
        let Some(r) = &self.o.zfs_root else { return vec![] };
        ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib", "lib64", "usr/lib64"].iter().map(|d| r.join(d)).collect()
    }

    /// Where a file of the build host goes in the ramdisk: its own path, or for the other
    /// OpenZFS userland, its path inside that tree.
    fn place(&self, p: &Path) -> PathBuf {
        match &self.o.zfs_root {
            Some(r) if p.starts_with(r) => Path::new("/").join(p.strip_prefix(r).unwrap_or(p)),
            _ => p.to_path_buf(),
        }
    }

    /// A program at /bin/NAME with the libraries ldd names.
    fn program(&mut self, src: &Path) -> R<()> {
        let name = src.file_name().ok_or_else(|| format!("{}: not a program", src.display()))?;
        put(&self.stage, src, &Path::new("/bin").join(name))?;
        self.libraries(src)
    }

    /// The libraries a program or library needs, at their paths.
    fn libraries(&mut self, src: &Path) -> R<()> {
        let ld_path = self.zfs_libdirs().iter().map(|d| d.to_string_lossy().into_owned()).collect::<Vec<_>>().join(":");
        let s = src.to_string_lossy();
        // ldd exits 1 for a static program, saying so.
        let out = Command::new("ldd").arg(src).env("LD_LIBRARY_PATH", &ld_path).output().map_err(|e| format!("cannot run ldd: {e}"))?;
        let (libs, missing) = select::ldd_libs(&String::from_utf8_lossy(&out.stdout));
        if !missing.is_empty() {
            return Err(format!("{s} needs {}, which this host lacks", missing.join(", ")));
        }
        for l in libs {
            let at = self.place(&l);
            put(&self.stage, &l, &at)?;
        }
        Ok(())
    }

    /// A program: an absolute path as it is; a name from the other OpenZFS userland
    /// (`--zfs-root`) when that tree has it (zpool and zfs, and any program of its own such
    /// as mount.zfs, so that the image never mixes two OpenZFS releases), else from PATH.
    fn find(&self, name: &str) -> Option<PathBuf> {
        if name.starts_with('/') {
            return Path::new(name).is_file().then(|| PathBuf::from(name));
        }
        if let Some(r) = &self.o.zfs_root {
            if let Some(p) =
                ["sbin", "usr/sbin", "bin", "usr/bin", "usr/local/sbin"].iter().map(|d| r.join(d).join(name)).find(|p| p.is_file())
            {
                return Some(p);
            }
        }
        let path = std::env::var("PATH").unwrap_or_default();
        let found =
            path.split(':').chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"]).map(|d| Path::new(d).join(name)).find(|p| p.is_file());
        found
    }

    fn need(&mut self, name: &str) -> R<()> {
        let p = self.find(name).ok_or_else(|| format!("{name} is not installed on this host"))?;
        self.program(&p)
    }

    fn modules_dir(&self) -> PathBuf {
        self.o.modules_root.join("lib/modules").join(&self.o.kver)
    }

    /// The modules, with what they depend on, unpacked (the kernel then need not), and
    /// depmod's index over just them. Returns how many.
    fn modules(&mut self, wanted: Vec<String>) -> R<usize> {
        let dir = self.modules_dir();
        let dep = fs::read_to_string(dir.join("modules.dep")).map_err(|e| format!("{}: {e}", dir.join("modules.dep").display()))?;
        let builtin = fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
        let mut wanted = wanted;
        if !self.o.host_only {
            wanted.extend(select::listed(&dep).into_iter().filter(|(p, _)| select::portable(p)).map(|(_, n)| n));
        }
        let (names, lacking) = select::known(&wanted, &dep, &builtin);
        for n in ["zfs", "spl"] {
            if lacking.iter().any(|l| l == n) {
                return Err(format!("kernel {} has no {n} module here ({}); install OpenZFS's modules for it", self.o.kver, dir.display()));
            }
        }
        if !lacking.is_empty() {
            self.warnings.push(format!("kernel {} lacks {}; left out", self.o.kver, lacking.join(", ")));
        }
        let root = self.o.modules_root.to_string_lossy();
        let mut argv = vec!["modprobe", "-d", &root, "-S", &self.o.kver, "--show-depends", "-a"];
        argv.extend(names.iter().map(String::as_str));
        let files = select::insmods(&run(&argv, &[])?);
        for ko in &files {
            let rel = ko.strip_prefix(&self.o.modules_root).map_err(|_| format!("{}: outside {root}", ko.display()))?;
            let name = rel.to_string_lossy();
            let (unpack, plain) = match name.rsplit_once('.') {
                Some((p, "xz")) => (Some(vec!["xz", "-dc"]), p.to_string()),
                Some((p, "zst")) => (Some(vec!["zstd", "-qdc"]), p.to_string()),
                Some((p, "gz")) => (Some(vec!["gzip", "-dc"]), p.to_string()),
                _ => (None, name.to_string()),
            };
            let dst = self.stage.join(plain.trim_start_matches('/'));
            if let Some(d) = dst.parent() {
                fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            }
            match unpack {
                Some(mut a) => {
                    let k = ko.to_string_lossy();
                    a.push(&k);
                    let out = Command::new(a[0])
                        .args(&a[1..])
                        .stderr(Stdio::inherit())
                        .output()
                        .map_err(|e| format!("cannot run {}: {e}", a[0]))?;
                    if !out.status.success() {
                        return Err(format!("{} could not unpack {k}", a[0]));
                    }
                    fs::write(&dst, out.stdout).map_err(|e| format!("{}: {e}", dst.display()))?;
                }
                None => {
                    fs::copy(ko, &dst).map_err(|e| format!("{}: {e}", ko.display()))?;
                }
            }
        }
        let inside = self.stage.join("lib/modules").join(&self.o.kver);
        fs::create_dir_all(&inside).map_err(|e| e.to_string())?;
        for f in ["modules.builtin", "modules.builtin.modinfo", "modules.order"] {
            if dir.join(f).is_file() {
                put(&self.stage, &dir.join(f), &Path::new("lib/modules").join(&self.o.kver).join(f))?;
            }
        }
        let st = self.stage.to_string_lossy();
        run(&["depmod", "-b", &st, &self.o.kver], &[])?;
        Ok(files.len())
    }

    /// Does this host open LUKS containers (crypttab, or one open now)?
    fn host_uses_luks() -> bool {
        let crypttab = fs::read_to_string("/etc/crypttab").unwrap_or_default();
        let listed = crypttab.lines().map(str::trim).any(|l| !l.is_empty() && !l.starts_with('#'));
        let open = fs::read_dir("/sys/block")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| fs::read_to_string(e.path().join("dm/uuid")).is_ok_and(|u| u.starts_with("CRYPT-LUKS")));
        listed || open
    }
}

/// The storage drivers of the machine whose sysfs is at `sys`: the modules in `modules_dir`
/// whose aliases match its storage devices' modaliases.
fn host_drivers(sys: &Path, modules_dir: &Path) -> Vec<String> {
    let mut al = crate::sys::drivers::Aliases::at(modules_dir);
    let mut out = BTreeSet::new();
    for a in crate::sys::modules::present_aliases(sys) {
        out.extend(al.modules_for(&a));
    }
    out.into_iter().collect()
}

/// Builds the ramdisk into `out` (written beside it, then renamed over it).
pub fn build(o: &Options, out: &Path) -> R<Built> {
    let stage = Stage::new()?;
    let mut b = Builder { o, stage: stage.0.clone(), warnings: Vec::new() };
    let root = b.stage.clone();
    for d in ["bin", "dev", "proc", "sys", "run", "sysroot", "tmp", "root", "etc/zfs", "etc/zroam"] {
        fs::create_dir_all(root.join(d)).map_err(|e| e.to_string())?;
    }
    // zroam as /init, and by its name for `zroam unlock` in an SSH session.
    fs::copy(&o.zroam, root.join("init")).map_err(|e| format!("{}: {e}", o.zroam.display()))?;
    std::os::unix::fs::symlink("/init", root.join("bin/zroam")).map_err(|e| e.to_string())?;

    // The helper's three driver lists, a line each, from one run of it.
    let lists = helper(o, "eval", &[r#"printf '%s\n' "$zroam_storage_drivers" "$zroam_luks_drivers" "$zroam_esp_drivers""#]);
    let lists: Vec<Vec<String>> = lists?.lines().map(words).collect();
    let [storage, luks_drivers, esp_drivers] =
        <[Vec<String>; 3]>::try_from(lists).map_err(|l| format!("{}: {} driver lists, not 3", o.helper.display(), l.len()))?;
    let luks = o.luks.unwrap_or_else(Builder::host_uses_luks);

    // Programs: OpenZFS's first (another userland's libraries share sonames with the
    // host's), kmod's modprobe (busybox's cannot read depmod's index), cryptsetup.
    for p in ["zpool", "zfs", "modprobe"] {
        b.need(p)?;
    }
    if luks {
        b.need("cryptsetup")?;
        for f in helper(o, "zroam_luks_extras", &[])?.lines().filter(|l| !l.is_empty()) {
            put(&root, Path::new(f), Path::new(f))?;
            b.libraries(Path::new(f))?;
        }
    }
    for p in &o.include {
        b.need(p)?;
    }
    // glibc loads libgcc_s for zpool's threads at run time; ldd does not name it.
    if let Ok(l) = helper(o, "zroam_libgcc_s", &[]) {
        let l = l.trim();
        put(&root, Path::new(l), Path::new(l))?;
    }
    // The emergency shell: busybox and its applets where no program took the name.
    match b.find("busybox") {
        Some(bb) => {
            b.program(&bb)?;
            for a in words(&run(&[&bb.to_string_lossy(), "--list"], &[])?) {
                let at = root.join("bin").join(&a);
                if !a.contains('/') && at.symlink_metadata().is_err() {
                    std::os::unix::fs::symlink("busybox", at).map_err(|e| e.to_string())?;
                }
            }
        }
        None => b.warnings.push("busybox is not installed: the image has no emergency shell".into()),
    }

    // /etc: the pin, zroam.conf, key hooks and what they need, as every generator stages them.
    let st = root.to_string_lossy().into_owned();
    helper(o, "zroam_stage_etc", &[&st])?;
    for f in helper(o, "zroam_hook_needs", &[&st])?.lines().filter(|l| !l.is_empty()) {
        // At its own path, a program also in /bin, with the libraries it needs.
        let p = Path::new(f);
        put(&root, p, p)?;
        if p.parent().is_some_and(|d| d.ends_with("bin") || d.ends_with("sbin")) {
            b.program(p)?;
        } else {
            b.libraries(p)?;
        }
    }
    if !root.join("etc/zroam/root.pin").exists() {
        b.warnings.push("no root pin: the image boots whichever pool zroam finds, refusing conflicts (zroam pin, --pin)".into());
    }
    match o.hostid {
        Some(h) => fs::write(root.join("etc/hostid"), h.to_le_bytes()).map_err(|e| e.to_string())?,
        None => {
            if Path::new("/etc/hostid").is_file() {
                put(&root, Path::new("/etc/hostid"), Path::new("etc/hostid"))?;
            }
        }
    }
    if !root.join("etc/passwd").exists() {
        fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").map_err(|e| e.to_string())?;
    }
    std::os::unix::fs::symlink("/proc/self/mounts", root.join("etc/mtab")).map_err(|e| e.to_string())?;

    // Modules: zfs, the storage drivers (every portable one, or this machine's), the ESP's,
    // LUKS's, and those asked for.
    let mut wanted: Vec<String> = ["spl", "zfs"].map(String::from).to_vec();
    wanted.extend(storage);
    wanted.extend(esp_drivers);
    if luks {
        wanted.extend(luks_drivers);
    }
    if o.host_only {
        wanted.extend(host_drivers(Path::new("/sys"), &b.modules_dir()));
        wanted.extend(["usbhid", "hid_generic"].map(String::from));
    }
    wanted.extend(o.modules.iter().cloned());
    let modules = b.modules(wanted)?;

    // The configuration the kernel was built with says what it can unpack.
    let config =
        ["boot", ""].iter().map(|d| o.modules_root.join(d).join(format!("config-{}", o.kver))).find_map(|p| fs::read_to_string(p).ok());
    let config = config.or_else(|| fs::read_to_string(format!("/boot/config-{}", o.kver)).ok());
    let compress = select::compression(o.compress, config.as_deref())?;

    let mut entries = vec![Entry { path: "dev/console".into(), mode: 0o600, kind: Kind::Char(5, 1) }];
    walk(&root, &root, &mut entries)?;
    let files = entries.len();
    let tmp = out.with_extension("zroam-new");
    let bytes = write_out(entries, o.mtime, compress, &tmp).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    fs::rename(&tmp, out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(Built { compress: Some(compress), files, bytes, modules, warnings: b.warnings })
}

/// The staged tree as archive entries.
fn walk(root: &Path, dir: &Path, out: &mut Vec<Entry>) -> R<()> {
    let mut names: Vec<_> = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?.flatten().map(|e| e.path()).collect();
    names.sort();
    for p in names {
        let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().into_owned();
        let md = p.symlink_metadata().map_err(|e| e.to_string())?;
        let mode = md.permissions().mode() & 0o7777;
        if md.file_type().is_symlink() {
            let t = fs::read_link(&p).map_err(|e| e.to_string())?;
            out.push(Entry { path: rel, mode: 0o777, kind: Kind::Symlink(t.to_string_lossy().into_owned()) });
        } else if md.is_dir() {
            out.push(Entry { path: rel, mode, kind: Kind::Dir });
            walk(root, &p, out)?;
        } else if md.is_file() {
            out.push(Entry { path: rel, mode, kind: Kind::Copy(p) });
        }
    }
    Ok(())
}

/// The archive through the compressor into `path`; returns the bytes written there.
fn write_out(entries: Vec<Entry>, mtime: u32, c: Compress, path: &Path) -> R<u64> {
    let f = fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let Some(argv) = c.argv() else {
        let mut w = std::io::BufWriter::new(f);
        let n = cpio::write(&mut w, entries, mtime).map_err(|e| e.to_string())?;
        w.flush().map_err(|e| e.to_string())?;
        return Ok(n);
    };
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(f)
        .spawn()
        .map_err(|e| format!("cannot run {} (install it, or choose --compress): {e}", argv[0]))?;
    let mut w = std::io::BufWriter::new(child.stdin.take().ok_or("no pipe to the compressor")?);
    let wrote = cpio::write(&mut w, entries, mtime).and_then(|_| w.flush());
    drop(w);
    let status = child.wait().map_err(|e| e.to_string())?;
    wrote.map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("{} failed", argv[0]));
    }
    Ok(fs::metadata(path).map_err(|e| e.to_string())?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine with an AHCI controller and a NIC, and a kernel whose aliases name drivers
    /// for both: only the storage driver is this machine's.
    #[test]
    fn host_only_takes_this_machines_storage_drivers() {
        let root = Stage::new().unwrap();
        let sys = root.0.join("sys");
        for (dev, alias) in [
            ("0000:00:1f.2", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"),
            ("0000:00:02.0", "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00"),
        ] {
            let d = sys.join("bus/pci/devices").join(dev);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("modalias"), alias).unwrap();
        }
        let mods = root.0.join("modules");
        fs::create_dir_all(&mods).unwrap();
        fs::write(mods.join("modules.alias"), "alias pci:v*d*sv*sd*bc01sc06i01* ahci\nalias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n")
            .unwrap();
        assert_eq!(host_drivers(&sys, &mods), ["ahci"]);
        // A kernel without an alias index: nothing is known to drive them.
        assert!(host_drivers(&sys, &root.0).is_empty());
    }
}
