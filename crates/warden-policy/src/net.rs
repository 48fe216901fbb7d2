//! Which addresses an outbound request from Warden may reach when the URL came from someone else
//! (a client's metadata document today, a `url` argument guard with the content-security issue).
//!
//! Defends against server-side request forgery into the operator's network: loopback, private
//! (RFC 1918, ULA), link-local (which holds cloud metadata at 169.254.169.254 and fd00:ec2::254),
//! carrier-grade NAT, benchmarking, documentation, multicast, reserved and unspecified addresses,
//! and IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by the
//! address they carry. Teredo is refused outright.
//! Does not defend against: DNS answers changing between this check and the connection — callers
//! must connect to the address they checked (pin it), not resolve the name again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// True when `ip` is a globally routable unicast address.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 0 && c == 2)
        || (a == 192 && b == 88 && c == 99)
        || (a == 198 && (18..20).contains(&b))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    match s {
        // Unspecified, loopback and the deprecated IPv4-compatible form.
        [0, 0, 0, 0, 0, 0, hi, lo] => hi != 0 && is_public_v4(embedded(hi, lo)),
        // NAT64 well-known prefix.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => is_public_v4(embedded(hi, lo)),
        // 6to4.
        [0x2002, hi, lo, ..] => is_public_v4(embedded(hi, lo)),
        // Teredo, documentation, ORCHID and benchmarking blocks.
        [0x2001, 0, ..] | [0x2001, 0xdb8, ..] | [0x2001, 0x10..=0x2f, ..] | [0x2001, 2, 0, ..] => false,
        [first, ..] => {
            first & 0xe000 == 0x2000 // only global unicast (2000::/3) is routable
                && first & 0xfe00 != 0xfc00
                && first & 0xffc0 != 0xfe80
        }
    }
}

/// The key a client address is counted under by per-address limits: an IPv4 address (an
/// IPv4-mapped IPv6 address is one), or an IPv6 /64 (one host usually holds a whole /64).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
        v4 => v4,
    }
}

/// True when `ip` must never be reached through a host name, even by an operator-configured
/// upstream: unspecified, link-local (cloud metadata at 169.254.169.254, `fe80::/10`), the other
/// clouds' metadata and host-agent addresses (Alibaba 100.100.100.200, Azure WireServer
/// 168.63.129.16, Oracle 192.0.0.192, AWS `fd00:ec2::254`), and IPv6 forms carrying such an
/// IPv4 address (mapped, compatible, NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`). A name that
/// resolves there is a DNS rebinding or a poisoned record.
pub fn is_metadata_or_link_local(ip: IpAddr) -> bool {
    let v4 = |v: Ipv4Addr| {
        let [a, b, ..] = v.octets();
        v.is_unspecified()
            || (a == 169 && b == 254)
            || v == Ipv4Addr::new(100, 100, 100, 200)
            || v == Ipv4Addr::new(168, 63, 129, 16)
            || v == Ipv4Addr::new(192, 0, 0, 192)
    };
    match ip {
        IpAddr::V4(v) => v4(v),
        IpAddr::V6(v) => {
            let s = v.segments();
            let carried = v.to_ipv4_mapped().or_else(|| match s {
                [0x64, 0xff9b, 0, 0, 0, 0, hi, lo]
                | [0x64, 0xff9b, 1, _, _, _, hi, lo]
                | [0, 0, 0, 0, 0, 0, hi, lo]
                    if hi != 0 =>
                {
                    Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8))
                }
                _ => None,
            });
            v.is_unspecified()
                || s[0] & 0xffc0 == 0xfe80
                || v == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || carried.is_some_and(v4)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{is_metadata_or_link_local, is_public_ip};

    #[test]
    fn metadata_and_link_local_addresses() {
        for bad in [
            "169.254.169.254",
            "169.254.1.1",
            "0.0.0.0",
            "100.100.100.200",
            "168.63.129.16",
            "192.0.0.192",
            "64:ff9b:1::a9fe:a9fe",
            "fe80::1",
            "fd00:ec2::254",
            "::",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_metadata_or_link_local(bad.parse().unwrap()), "{bad}");
        }
        for ok in ["127.0.0.1", "10.0.0.1", "192.168.1.1", "::1", "fd00::1", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_metadata_or_link_local(ok.parse().unwrap()), "{ok}");
        }
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_allowed() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001::1",
            "2001:db8::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
        ] {
            assert!(!is_public_ip(bad.parse().unwrap()), "{bad} must be refused");
        }
        for good in
            ["1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
        {
            assert!(is_public_ip(good.parse().unwrap()), "{good} must be allowed");
        }
    }
}
