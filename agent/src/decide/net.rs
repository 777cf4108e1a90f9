//! The ramdisk's network, for remote unlock (SSH) and key hooks that reach a key server:
//! `zroam.net=` (zroam's spelling) or the kernel's and dracut's `ip=`. Pure.
//!
//! `zroam.net=dhcp[@DEV]` | `zroam.net=ADDR/PREFIX[,GATEWAY][@DEV]` | `zroam.net=off`;
//! `ip=dhcp|on|any`, `ip=DEV:dhcp`, `ip=CLIENT:SERVER:GATEWAY:NETMASK:HOSTNAME:DEV:AUTOCONF`,
//! `ip=off|none`. `zroam.net=` wins over `ip=`.

use serde::Serialize;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[serde(rename_all = "snake_case")]
pub enum Addr {
    Dhcp,
    Static { addr: Ipv4Addr, prefix: u8, gateway: Option<Ipv4Addr> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(serde::Deserialize))]
pub struct NetPlan {
    /// The interface; None: the first Ethernet interface that shows up.
    pub dev: Option<String>,
    pub addr: Addr,
}

/// A netmask as a prefix length (contiguous masks only).
fn prefix_of(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    (m.leading_ones() + m.trailing_zeros() == 32).then_some(m.leading_ones() as u8)
}

/// Interface names as the kernel allows them: at most 15 bytes, no '/', no whitespace.
fn dev_name(s: &str) -> Option<String> {
    (!s.is_empty() && s.len() <= 15 && s.chars().all(|c| c.is_ascii_graphic() && c != '/' && c != ':')).then(|| s.to_string())
}

fn dhcp_word(s: &str) -> bool {
    matches!(s, "dhcp" | "on" | "any" | "both")
}

/// `zroam.net=`'s value. Ok(None): off.
pub fn parse_zroam(v: &str) -> Result<Option<NetPlan>, String> {
    let bad = || format!("zroam.net={v} is neither dhcp[@DEV], ADDR/PREFIX[,GATEWAY][@DEV] nor off");
    if matches!(v, "off" | "none" | "0") {
        return Ok(None);
    }
    let (what, dev) = match v.split_once('@') {
        Some((w, d)) => (w, Some(dev_name(d).ok_or_else(bad)?)),
        None => (v, None),
    };
    if what == "dhcp" {
        return Ok(Some(NetPlan { dev, addr: Addr::Dhcp }));
    }
    let (cidr, gw) = match what.split_once(',') {
        Some((c, g)) => (c, Some(g.parse::<Ipv4Addr>().map_err(|_| bad())?)),
        None => (what, None),
    };
    let (a, p) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let prefix: u8 = p.parse().ok().filter(|p| (1..=32).contains(p)).ok_or_else(bad)?;
    Ok(Some(NetPlan { dev, addr: Addr::Static { addr, prefix, gateway: gw } }))
}

/// `ip=`'s value. Ok(None): off, or a form that asks for no address here.
pub fn parse_ip(v: &str) -> Result<Option<NetPlan>, String> {
    let bad = || format!("ip={v} is not a form zroam reads (dhcp, DEV:dhcp, or CLIENT::GATEWAY:NETMASK:HOST:DEV:off)");
    if matches!(v, "off" | "none") {
        return Ok(None);
    }
    if dhcp_word(v) {
        return Ok(Some(NetPlan { dev: None, addr: Addr::Dhcp }));
    }
    let f: Vec<&str> = v.split(':').collect();
    if f.len() == 2 && dhcp_word(f[1]) {
        return Ok(Some(NetPlan { dev: Some(dev_name(f[0]).ok_or_else(bad)?), addr: Addr::Dhcp }));
    }
    if f.len() < 2 {
        return Err(bad());
    }
    let get = |i: usize| f.get(i).copied().unwrap_or("");
    let dev = if get(5).is_empty() { None } else { Some(dev_name(get(5)).ok_or_else(bad)?) };
    if get(0).is_empty() || dhcp_word(get(6)) {
        // No client address: the autoconf field decides (empty means any method: DHCP).
        return match get(6) {
            "off" | "none" => Err(bad()),
            _ => Ok(Some(NetPlan { dev, addr: Addr::Dhcp })),
        };
    }
    let addr: Ipv4Addr = get(0).parse().map_err(|_| bad())?;
    let gateway = if get(2).is_empty() { None } else { Some(get(2).parse::<Ipv4Addr>().map_err(|_| bad())?) };
    let prefix = if get(3).is_empty() {
        24
    } else if let Ok(p) = get(3).parse::<u8>() {
        p.clamp(1, 32)
    } else {
        prefix_of(get(3).parse::<Ipv4Addr>().map_err(|_| bad())?).ok_or_else(bad)?
    };
    Ok(Some(NetPlan { dev, addr: Addr::Static { addr, prefix, gateway } }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(a: [u8; 4], prefix: u8, gw: Option<[u8; 4]>) -> Addr {
        Addr::Static { addr: a.into(), prefix, gateway: gw.map(Ipv4Addr::from) }
    }

    #[test]
    fn zroams_spelling() {
        assert_eq!(parse_zroam("dhcp"), Ok(Some(NetPlan { dev: None, addr: Addr::Dhcp })));
        assert_eq!(parse_zroam("dhcp@enp1s0").unwrap().unwrap().dev.as_deref(), Some("enp1s0"));
        assert_eq!(parse_zroam("10.0.2.15/24,10.0.2.2@eth0").unwrap().unwrap().addr, st([10, 0, 2, 15], 24, Some([10, 0, 2, 2])));
        assert_eq!(parse_zroam("192.168.1.9/16").unwrap().unwrap().addr, st([192, 168, 1, 9], 16, None));
        assert_eq!(parse_zroam("off"), Ok(None));
        for bad in ["", "dhcpx", "10.0.2.15", "10.0.2.15/33", "10.0.2.15/24,gw", "dhcp@", "dhcp@a/b", "dhcp@waytoolonginterfacename"] {
            assert!(parse_zroam(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_kernels_and_dracuts_spelling() {
        assert_eq!(parse_ip("dhcp"), Ok(Some(NetPlan { dev: None, addr: Addr::Dhcp })));
        assert_eq!(parse_ip("eth0:dhcp"), Ok(Some(NetPlan { dev: Some("eth0".into()), addr: Addr::Dhcp })));
        let p = parse_ip("10.0.2.15::10.0.2.2:255.255.255.0:box:eth0:off").unwrap().unwrap();
        assert_eq!((p.dev.as_deref(), p.addr), (Some("eth0"), st([10, 0, 2, 15], 24, Some([10, 0, 2, 2]))));
        assert_eq!(parse_ip("10.1.2.3:::255.255.0.0").unwrap().unwrap().addr, st([10, 1, 2, 3], 16, None));
        assert_eq!(parse_ip(":::::eth1:dhcp").unwrap().unwrap(), NetPlan { dev: Some("eth1".into()), addr: Addr::Dhcp });
        assert_eq!(parse_ip("off"), Ok(None));
        for bad in ["10.0.2.15::x:255.255.255.0", "10.0.2.15:::255.0.255.0", "nonsense", ":::::eth0:off"] {
            assert!(parse_ip(bad).is_err(), "{bad}");
        }
    }
}
