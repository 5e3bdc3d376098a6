//! Where the PBX's Asterisk Manager Interface listens, read from its
//! `manager.conf` `[general]`: the watchers' credentials files and AMI users
//! are rendered with it (`%{ami.host}`, `%{ami.port}`), so a PBX whose AMI is
//! not on 127.0.0.1:5038 still gets watchers that can log in.

use crate::asterisk_config;

/// Asterisk's own defaults (manager.c: `DEFAULT_MANAGER_PORT`, bind to any).
pub const DEFAULT_AMI_PORT: u16 = 5038;

/// The address a local client connects to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmiAddress {
    /// An IPv4 address: `bindaddr`, or 127.0.0.1 when AMI binds to every address.
    pub host: String,
    /// TCP port: `port` of `[general]`, or 5038 ([`DEFAULT_AMI_PORT`]).
    pub port: u16,
}

impl Default for AmiAddress {
    fn default() -> AmiAddress {
        AmiAddress {
            host: "127.0.0.1".into(),
            port: DEFAULT_AMI_PORT,
        }
    }
}

/// Reads `port` and `bindaddr` from `[general]` of a manager.conf (`None`: the
/// file does not exist, so Asterisk's defaults hold). A value Asterisk would
/// not take (not a port, not an IPv4 address) is ignored as Asterisk ignores
/// it, keeping the default; the last value of a key wins, as in manager.c.
pub fn read(manager_conf: Option<&[u8]>) -> AmiAddress {
    let mut address = AmiAddress::default();
    let Some(text) = manager_conf else {
        return address;
    };
    // A file Asterisk could not parse leaves AMI on its defaults too; featpkg's
    // own checks of manager.conf report the error.
    let Ok(parsed) = asterisk_config::parse(text, "manager.conf") else {
        return address;
    };
    let general = parsed
        .sections
        .iter()
        .filter(|s| s.name.eq_ignore_ascii_case("general"))
        .flat_map(|s| s.entries.iter());
    for entry in general {
        let value = entry.value.trim();
        if entry.key.eq_ignore_ascii_case("port") {
            if let Ok(port) = value.parse::<u16>()
                && port != 0
            {
                address.port = port;
            }
        } else if entry.key.eq_ignore_ascii_case("bindaddr")
            && let Ok(ip) = value.parse::<std::net::Ipv4Addr>()
        {
            address.host = if ip.is_unspecified() {
                "127.0.0.1".into()
            } else {
                ip.to_string()
            };
        }
    }
    address
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_or_section_gives_asterisks_defaults() {
        assert_eq!(read(None), AmiAddress::default());
        assert_eq!(read(Some(b"[admin]\nsecret = x\n")), AmiAddress::default());
    }

    #[test]
    fn port_and_bindaddr_come_from_general() {
        let conf =
            b"[general]\nenabled = yes\nport = 15038\nbindaddr = 127.0.0.2\n\n[admin]\nport = 1\n";
        assert_eq!(
            read(Some(conf)),
            AmiAddress {
                host: "127.0.0.2".into(),
                port: 15038
            }
        );
    }

    #[test]
    fn any_address_means_loopback_and_bad_values_keep_the_defaults() {
        let conf = b"[general]\nbindaddr = 0.0.0.0\nport = 99999\n";
        assert_eq!(read(Some(conf)), AmiAddress::default());
        let conf = b"[general]\nbindaddr = pbx.example\nport = abc\n";
        assert_eq!(read(Some(conf)), AmiAddress::default());
    }
}
