//! `/etc/zroam/image.conf`: how the kernel hooks rebuild a stick's unified kernel image
//! when its kernel changes. No file: the hooks build nothing. Pure: text in, settings out.

use std::path::PathBuf;

pub const PATH: &str = "/etc/zroam/image.conf";
const MAX_BYTES: usize = 16 * 1024;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImageConf {
    /// The stick's ESP, where it is mounted: the image goes to its removable-media path.
    pub esp: Option<PathBuf>,
    pub cmdline: Option<String>,
    pub host_only: bool,
    pub modules: Vec<String>,
    pub include: Vec<String>,
    pub compress: Option<String>,
    pub warnings: Vec<String>,
}

fn list(v: &str) -> Vec<String> {
    v.split([',', ' ']).filter(|s| !s.is_empty()).map(String::from).collect()
}

pub fn parse(text: &str) -> ImageConf {
    let mut c = ImageConf::default();
    for line in text.lines().take(MAX_BYTES / 2).map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let Some((k, v)) = line.split_once('=').map(|(k, v)| (k.trim(), v.trim().trim_matches('"'))) else {
            c.warnings.push(format!("{PATH}: {line:.60} is not KEY=VALUE; ignored"));
            continue;
        };
        match k {
            "esp" => c.esp = Some(PathBuf::from(v)),
            "cmdline" => c.cmdline = Some(v.to_string()),
            "host_only" => c.host_only = matches!(v, "yes" | "1" | "true"),
            "modules" => c.modules = list(v),
            "include" => c.include = list(v),
            "compress" => c.compress = Some(v.to_string()),
            _ => c.warnings.push(format!("{PATH}: unknown key {k:.30}; ignored")),
        }
    }
    if text.len() > MAX_BYTES {
        c.warnings.push(format!("{PATH} is larger than {MAX_BYTES} bytes; the rest is ignored"));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let c = parse("# a stick\nesp = /boot/efi\ncmdline=\"root=zfs:AUTO quiet\"\nhost_only=no\nmodules=e1000e, r8169\ncolour=blue\n");
        assert_eq!(c.esp, Some(PathBuf::from("/boot/efi")));
        assert_eq!(c.cmdline.as_deref(), Some("root=zfs:AUTO quiet"));
        assert!(!c.host_only);
        assert_eq!(c.modules, ["e1000e", "r8169"]);
        assert_eq!(c.warnings.len(), 1);
        assert_eq!(parse(""), ImageConf::default());
    }
}
