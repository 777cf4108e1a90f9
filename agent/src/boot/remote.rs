//! Remote unlock in zroam's own ramdisk: with `zroam.net=` or `ip=`, the network comes up
//! beside the boot (never in its way), and when the ramdisk carries dropbear and an
//! authorized_keys file, an SSH server whose banner says to run `zroam unlock`. zroam
//! brings no SSH server and no keys of its own: whoever builds the ramdisk puts them in.
//! Before the root is switched, the server and its sessions are stopped and the addresses
//! removed, so the booted system configures its network from a clean slate.

use crate::decide::net::{Addr, NetPlan};
use crate::sys::modules;
use crate::sys::run::run;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An Ethernet driver and its link: seconds under emulation.
const LINK_BOUND: Duration = Duration::from_secs(15);
const DHCP_BOUND: Duration = Duration::from_secs(40);
const STEP: Duration = Duration::from_secs(10);

pub const BANNER: &str = "\nzroam: this machine is booting and waits for a key.\n\
    Run `zroam unlock` to answer its passphrase question (`zroam unlock --list` shows it).\n\n";

/// Where the lease's address is applied: udhcpc runs this with the lease in its environment.
const DHCP_SCRIPT: &str = "#!/bin/sh\n\
    case \"$1\" in bound|renew)\n\
    ip addr flush dev \"$interface\"\n\
    ip addr add \"$ip/${mask:-24}\" dev \"$interface\"\n\
    for r in $router; do ip route add default via \"$r\" dev \"$interface\" && break; done ;;\n\
    esac\n";

struct Remote {
    dev: Option<String>,
    sshd: Option<std::process::Child>,
}

static REMOTE: Mutex<Option<Remote>> = Mutex::new(None);

/// Bring the network (and SSH) up on a thread of its own; the boot goes on meanwhile.
pub fn start(plan: NetPlan) {
    *REMOTE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Remote { dev: None, sshd: None });
    std::thread::spawn(move || {
        if let Err(e) = up(&plan) {
            log::warn!("network for remote unlock: {e}");
        }
    });
}

fn ip(args: &str) -> Result<(), String> {
    let a: Vec<String> = args.split_whitespace().map(String::from).collect();
    let o = run("ip", &a, STEP);
    if o.ok() {
        Ok(())
    } else {
        Err(format!("ip {args}: {}", o.said()))
    }
}

/// The first Ethernet interface (ARPHRD_ETHER), by name.
fn first_ether() -> Option<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path().join("type")).is_ok_and(|t| t.trim() == "1"))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v.into_iter().next()
}

fn up(plan: &NetPlan) -> Result<(), String> {
    let t = Instant::now();
    let aliases = modules::present(Path::new("/sys"), modules::net_alias);
    if !aliases.is_empty() {
        if let Ok(mut c) = modules::spawn_modprobe(&aliases) {
            let _ = c.wait();
        }
    }
    let dev = loop {
        let found = match &plan.dev {
            Some(d) => Path::new("/sys/class/net").join(d).exists().then(|| d.clone()),
            None => first_ether(),
        };
        if let Some(d) = found {
            break d;
        }
        if t.elapsed() > LINK_BOUND {
            return Err(format!(
                "no network interface {}within {} s",
                plan.dev.as_ref().map(|d| format!("{d} ")).unwrap_or_default(),
                LINK_BOUND.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if let Some(r) = REMOTE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        r.dev = Some(dev.clone());
    }
    let _ = ip("link set lo up");
    ip(&format!("link set {dev} up"))?;
    match &plan.addr {
        Addr::Static { addr, prefix, gateway } => {
            ip(&format!("addr add {addr}/{prefix} dev {dev}"))?;
            if let Some(g) = gateway {
                ip(&format!("route add default via {g} dev {dev}"))?;
            }
        }
        Addr::Dhcp => {
            let script = "/run/zroam/udhcpc.sh";
            let _ = std::fs::create_dir_all("/run/zroam");
            std::fs::write(script, DHCP_SCRIPT).map_err(|e| format!("{script}: {e}"))?;
            let _ = std::fs::set_permissions(script, std::os::unix::fs::PermissionsExt::from_mode(0o700));
            let args: Vec<String> =
                ["-i", &dev, "-f", "-q", "-n", "-t", "10", "-T", "2", "-s", script].iter().map(|s| s.to_string()).collect();
            let o = run("udhcpc", &args, DHCP_BOUND);
            if !o.ok() {
                return Err(format!("no DHCP lease on {dev}: {}", o.said()));
            }
        }
    }
    let shown = run("ip", &["-4".into(), "-o".into(), "addr".into(), "show".into(), "dev".into(), dev.clone()], STEP);
    let addr = shown.stdout.split_whitespace().skip_while(|w| *w != "inet").nth(1).unwrap_or("?").to_string();
    log::info!("network: {dev} has {addr} ({} ms)", t.elapsed().as_millis());
    sshd(&addr)
}

fn sshd(addr: &str) -> Result<(), String> {
    let Some(dropbear) = modules::find_tool("dropbear") else {
        log::info!("network: no dropbear in this ramdisk, so no SSH");
        return Ok(());
    };
    if !Path::new("/root/.ssh/authorized_keys").exists() {
        return Err("dropbear is here but /root/.ssh/authorized_keys is not: no SSH server started".into());
    }
    if !std::fs::read_to_string("/etc/passwd").is_ok_and(|p| p.lines().any(|l| l.starts_with("root:"))) {
        let _ = std::fs::write("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    }
    let _ = std::fs::create_dir_all("/etc/dropbear");
    if !Path::new("/dev/pts/ptmx").exists() {
        let _ = std::fs::create_dir_all("/dev/pts");
        let flags = nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NOEXEC;
        if let Err(e) = nix::mount::mount(Some("devpts"), "/dev/pts", Some("devpts"), flags, Some("gid=5,mode=620,ptmxmode=000")) {
            log::warn!("mount devpts: {e} (SSH sessions get no terminal)");
        }
    }
    let banner = "/run/zroam/ssh-banner";
    let _ = std::fs::write(banner, BANNER);
    let log = std::fs::File::create("/run/zroam/dropbear.log").map_err(|e| e.to_string())?;
    // -R: host keys made on first use; -s: keys only, no passwords; -j -k: no forwarding.
    let child = std::process::Command::new(dropbear)
        .args(["-F", "-E", "-R", "-s", "-j", "-k", "-p", "22", "-b", banner])
        .env("PATH", crate::boot::setup::PATH)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        // Its own process group: stopping it stops its sessions too.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start dropbear: {e}"))?;
    log::info!("remote unlock: ssh root@{} and run `zroam unlock`", addr.split('/').next().unwrap_or(addr));
    if let Some(r) = REMOTE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        r.sshd = Some(child);
    }
    Ok(())
}

/// Stop the SSH server and its sessions and take the addresses down (before the switch).
pub fn stop() {
    let Some(mut r) = REMOTE.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
    if let Some(mut c) = r.sshd.take() {
        use nix::sys::signal::{killpg, Signal};
        let pg = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = killpg(pg, Signal::SIGTERM);
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until && matches!(c.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(pg, Signal::SIGKILL);
        let _ = c.kill();
        let _ = c.wait();
        // Sessions that made their own process group (the login shell's terminal).
        kill_named("dropbear");
    }
    if let Some(dev) = r.dev {
        let _ = ip(&format!("addr flush dev {dev}"));
        let _ = ip(&format!("link set {dev} down"));
    }
}

fn kill_named(comm: &str) {
    let Ok(rd) = std::fs::read_dir("/proc") else { return };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid != 1 && std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == comm) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
    }
}
