//! What a portal is called from outside: the address SendTargets names and
//! the URLs the target prints. A portal bound to a wildcard (`0.0.0.0`,
//! `[::]`) is named by the address the initiator reached (the connection's
//! local address), as LIO and tgtd do, and printed once per host address it
//! covers; a portal with an advertised address (NAT) is named by that.

use std::net::{IpAddr, SocketAddr};

use super::config::Portal;

/// A portal as bound: the configured one with its real port (after `:0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundPortal {
    pub bound: SocketAddr,
    pub advertise: Option<SocketAddr>,
}

impl BoundPortal {
    pub fn new(cfg: &Portal, bound: SocketAddr) -> Self {
        BoundPortal {
            bound,
            advertise: cfg.advertise,
        }
    }

    /// The address to hand an initiator connected through `local` (the
    /// connection's own address on this host).
    pub fn seen_from(&self, local: SocketAddr) -> SocketAddr {
        if let Some(a) = self.advertise {
            return a;
        }
        if self.bound.ip().is_unspecified() {
            // An IPv4 client of a dual-stack [::] listener arrives as ::ffff:a.b.c.d.
            return SocketAddr::new(local.ip().to_canonical(), self.bound.port());
        }
        self.bound
    }

    /// Every address an initiator on another host (or this one) may use:
    /// the advertised one, the bound one, or for a wildcard each address of
    /// `host` the listener covers (loopback first; IPv6 link-local left out,
    /// since a URL cannot carry its scope).
    pub fn reachable(&self, host: &[IpAddr]) -> Vec<SocketAddr> {
        if let Some(a) = self.advertise {
            return vec![a];
        }
        if !self.bound.ip().is_unspecified() {
            return vec![self.bound];
        }
        let v6 = self.bound.is_ipv6();
        let mut ips: Vec<IpAddr> = host
            .iter()
            .copied()
            .filter(|ip| match ip {
                IpAddr::V4(_) => true,
                // [::] is dual-stack on Linux unless bindv6only: it covers both.
                IpAddr::V6(a) => v6 && (a.segments()[0] & 0xffc0) != 0xfe80,
            })
            .collect();
        ips.sort_by_key(|ip| (!ip.is_loopback(), ip.is_ipv6()));
        ips.dedup();
        ips.into_iter()
            .map(|ip| SocketAddr::new(ip, self.bound.port()))
            .collect()
    }
}

/// The addresses of this host's interfaces that are up (from getifaddrs).
pub fn host_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return vec![IpAddr::from([127, 0, 0, 1])];
    };
    let mut out = Vec::new();
    for a in addrs {
        if !a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP) {
            continue;
        }
        let Some(s) = a.address else { continue };
        if let Some(v4) = s.as_sockaddr_in() {
            out.push(IpAddr::V4(v4.ip()));
        } else if let Some(v6) = s.as_sockaddr_in6() {
            out.push(IpAddr::V6(v6.ip()));
        }
    }
    out
}

/// `host:port` as a URL or a TargetAddress writes it (IPv6 in brackets).
pub fn url_host_port(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn wildcards_are_named_by_the_address_the_initiator_reached() {
        let p = BoundPortal {
            bound: sa("0.0.0.0:3260"),
            advertise: None,
        };
        assert_eq!(p.seen_from(sa("10.77.0.1:3260")), sa("10.77.0.1:3260"));
        let p6 = BoundPortal {
            bound: sa("[::]:3260"),
            advertise: None,
        };
        assert_eq!(p6.seen_from(sa("[::1]:3260")), sa("[::1]:3260"));
        assert_eq!(
            p6.seen_from(sa("[::ffff:127.0.0.1]:3260")),
            sa("127.0.0.1:3260")
        );
        let fixed = BoundPortal {
            bound: sa("127.0.0.1:3260"),
            advertise: None,
        };
        assert_eq!(fixed.seen_from(sa("127.0.0.1:3260")), sa("127.0.0.1:3260"));
        let nat = BoundPortal {
            bound: sa("127.0.0.1:3260"),
            advertise: Some(sa("10.0.2.2:3260")),
        };
        assert_eq!(nat.seen_from(sa("127.0.0.1:3260")), sa("10.0.2.2:3260"));
        assert_eq!(nat.reachable(&[]), [sa("10.0.2.2:3260")]);
    }

    #[test]
    fn a_wildcard_covers_the_host_addresses_of_its_family() {
        let host: Vec<IpAddr> = ["10.0.0.5", "127.0.0.1", "fe80::1", "::1", "fd00::5"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let v4 = BoundPortal {
            bound: sa("0.0.0.0:3260"),
            advertise: None,
        };
        assert_eq!(
            v4.reachable(&host),
            [sa("127.0.0.1:3260"), sa("10.0.0.5:3260")]
        );
        let v6 = BoundPortal {
            bound: sa("[::]:3261"),
            advertise: None,
        };
        assert_eq!(
            v6.reachable(&host),
            [
                sa("127.0.0.1:3261"),
                sa("[::1]:3261"),
                sa("10.0.0.5:3261"),
                sa("[fd00::5]:3261")
            ]
        );
        assert_eq!(url_host_port(sa("[::1]:3261")), "[::1]:3261");
    }

    #[test]
    fn portals_parse_with_an_advertised_address() {
        let p: Portal = "127.0.0.1:3260=10.0.2.2:3260".parse().unwrap();
        assert_eq!(p.bind, sa("127.0.0.1:3260"));
        assert_eq!(p.advertise, Some(sa("10.0.2.2:3260")));
        assert_eq!(p.to_string(), "127.0.0.1:3260=10.0.2.2:3260");
        let v6: Portal = "[::1]:3260".parse().unwrap();
        assert_eq!(v6.to_string(), "[::1]:3260");
        for bad in [
            "3260",
            "127.0.0.1:3260=",
            "::1:3260",
            "127.0.0.1:1=0.0.0.0:3260",
        ] {
            let e = bad.parse::<Portal>().unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }
}
