//! Which of this host's addresses `gwctl register` announces: the pure [`pick_addr`] over a list
//! of [`Iface`]s (kept apart from the system call in [`local_interfaces`], so it can be tested
//! with any list), and the [`Selector`] it applies (`--prefix` or `--cidr`).
//!
//! The rules, from CONTRACT.md and what a user of `--prefix 172.28.4` expects:
//!
//! - A prefix matches the address's text (`172.28.4.7`, `fd00::7`), by whole octets or groups:
//!   `172.28.4` matches `172.28.4.7` but not `172.28.40.1`, because a prefix that does not end
//!   with a separator must be followed by one (`.` or `:`) or by the end of the address. A prefix
//!   that ends with one (`172.28.`) matches any address that starts with it.
//! - A CIDR matches the addresses inside it.
//! - Loopback (`127.0.0.0/8`, `::1`) and link-local (`169.254.0.0/16`, `fe80::/10`) addresses are
//!   never picked unless the selector asks for them, i.e. lies entirely inside that range
//!   (`--prefix 127`, `--prefix 169.254`, `--prefix fe80`, `--cidr 127.0.0.0/8`, ...). A wide
//!   selector such as `--cidr 0.0.0.0/0` therefore never picks `127.0.0.1`.
//! - Several addresses eligible: the first in interface order wins and the others are named (the
//!   caller warns). None: the error lists every address seen. There is no fallback to another
//!   network: a service announced on the wrong network is unreachable and fails far from here.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// One address of one network interface, as the system lists them (an interface with several
/// addresses appears once per address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    /// The interface name, e.g. `eth0`.
    pub name: String,
    /// One of its addresses.
    pub addr: IpAddr,
}

impl fmt::Display for Iface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.addr, self.name)
    }
}

/// This host's addresses, in the system's interface order (`getifaddrs`).
pub fn local_interfaces() -> std::io::Result<Vec<Iface>> {
    Ok(if_addrs::get_if_addrs()?
        .into_iter()
        .map(|i| Iface {
            addr: i.ip(),
            name: i.name,
        })
        .collect())
}

/// Address ranges that are never picked unless the selector asks for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// `127.0.0.0/8` and `::1`.
    Loopback,
    /// `169.254.0.0/16` and `fe80::/10`.
    LinkLocal,
}

impl Special {
    /// The special range `addr` is in, if any.
    pub fn of(addr: IpAddr) -> Option<Self> {
        match addr {
            IpAddr::V4(a) if a.is_loopback() => Some(Self::Loopback),
            IpAddr::V4(a) if a.is_link_local() => Some(Self::LinkLocal),
            IpAddr::V6(a) if a.is_loopback() => Some(Self::Loopback),
            IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => Some(Self::LinkLocal),
            _ => None,
        }
    }

    /// The networks of the range.
    fn networks(self) -> [IpNet; 2] {
        // Both are valid literals; `IpNet::new` cannot fail for these lengths.
        let net = |addr: IpAddr, len| IpNet::new(addr, len).unwrap_or_default();
        match self {
            Self::Loopback => [
                net(IpAddr::from([127, 0, 0, 0]), 8),
                net(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), 128),
            ],
            Self::LinkLocal => [
                net(IpAddr::from([169, 254, 0, 0]), 16),
                net(IpAddr::from([0xfe80u16, 0, 0, 0, 0, 0, 0, 0]), 10),
            ],
        }
    }
}

impl fmt::Display for Special {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Loopback => "loopback",
            Self::LinkLocal => "link-local",
        })
    }
}

/// A `--prefix` value: validated, lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    /// Parse a prefix such as `172.28.4`, `172.28.`, `10`, `fd00:` or `fe80`.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let bad = |reason: &str| SelectorError::Prefix {
            prefix: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(bad("it is empty (it would match every address)"));
        }
        if text.contains('/') {
            return Err(bad(
                "a prefix is address text like 172.28.4; use --cidr for a CIDR",
            ));
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_hexdigit() || *c == '.' || *c == ':'))
        {
            return Err(bad(&format!(
                "{c:?} cannot appear in an address (digits, a-f, '.' and ':' only)"
            )));
        }
        let lower = text.to_ascii_lowercase();
        match (lower.contains('.'), lower.contains(':')) {
            (true, true) => return Err(bad("mixes IPv4 '.' and IPv6 ':' separators")),
            (true, false) => check_v4(&lower).map_err(|r| bad(&r))?,
            (false, true) => check_v6(&lower).map_err(|r| bad(&r))?,
            (false, false) => {
                // One group: an IPv4 octet (`10`) or an IPv6 group (`fd00`).
                if !is_octet(&lower) && lower.len() > 4 {
                    return Err(bad("is neither an IPv4 octet nor an IPv6 group"));
                }
            }
        }
        Ok(Self(lower))
    }

    /// The prefix text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the prefix is IPv4 text: it has a `.`, or it is one decimal octet (`10`), which
    /// a user means as `10.x.x.x`, not as the IPv6 group `0010`.
    fn is_v4(&self) -> bool {
        let p = self.0.as_str();
        !p.contains(':') && (p.contains('.') || is_octet(p))
    }

    /// Whether `addr`'s text starts with this prefix at an octet or group boundary.
    pub fn matches(&self, addr: IpAddr) -> bool {
        if addr.is_ipv4() != self.is_v4() {
            return false;
        }
        let text = addr.to_string();
        let p = self.0.as_str();
        if p.ends_with('.') || p.ends_with(':') {
            return text.starts_with(p);
        }
        text.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', ':']))
    }

    /// Whether every address this prefix can match lies in `range` (so the user asked for it).
    fn asks_for(&self, range: Special) -> bool {
        let p = self.0.as_str();
        let whole = |start: &str, sep: char| {
            p.strip_prefix(start)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(sep))
        };
        match range {
            Special::Loopback => whole("127", '.') || p == "::1",
            Special::LinkLocal => {
                if whole("169.254", '.') {
                    return true;
                }
                // The first IPv6 group, complete (4 digits), inside fe80::/10.
                let first = p.split(':').next().unwrap_or_default();
                first.len() == 4
                    && !p.contains('.')
                    && u16::from_str_radix(first, 16).is_ok_and(|g| g & 0xffc0 == 0xfe80)
            }
        }
    }
}

/// A decimal 0-255 as an address writes it (no leading zero).
fn is_octet(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && !leading_zero(text)
        && text.parse::<u16>().is_ok_and(|n| n <= 255)
}

fn leading_zero(octet: &str) -> bool {
    octet.len() > 1 && octet.starts_with('0')
}

/// `a.b.c` or `a.b.c.`: decimal octets 0-255 without leading zeros, at most four.
fn check_v4(p: &str) -> Result<(), String> {
    let mut octets: Vec<&str> = p.split('.').collect();
    if octets.last() == Some(&"") {
        octets.pop();
    }
    if octets.len() > 4 || (octets.len() == 4 && p.ends_with('.')) {
        return Err("has more than four octets".to_owned());
    }
    for octet in octets {
        if octet.is_empty() {
            return Err("has an empty octet".to_owned());
        }
        if !octet.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("octet {octet:?} is not decimal"));
        }
        if leading_zero(octet) || octet.parse::<u16>().map_or(true, |n| n > 255) {
            return Err(format!(
                "octet {octet:?} is not 0-255 as an address writes it"
            ));
        }
    }
    Ok(())
}

/// Hex groups of at most four digits separated by `:` (with at most one `::`).
fn check_v6(p: &str) -> Result<(), String> {
    if p.contains(":::") || p.matches("::").count() > 1 {
        return Err("is not IPv6 text (':::' or two '::')".to_owned());
    }
    let groups = p.split(':').filter(|g| !g.is_empty()).count();
    if groups > 8 {
        return Err("has more than eight groups".to_owned());
    }
    match p.split(':').find(|g| g.len() > 4) {
        Some(g) => Err(format!("group {g:?} has more than four hex digits")),
        None => Ok(()),
    }
}

/// How `gwctl register` chooses the address: `--prefix` or `--cidr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `--prefix P`: the address text starts with `P` (whole octets or groups).
    Prefix(Prefix),
    /// `--cidr C`: the address lies in `C`.
    Cidr(IpNet),
}

impl Selector {
    /// `--prefix TEXT`.
    pub fn prefix(text: &str) -> Result<Self, SelectorError> {
        Prefix::parse(text).map(Self::Prefix)
    }

    /// `--cidr TEXT` (`172.28.4.0/24`; host bits are ignored).
    pub fn cidr(text: &str) -> Result<Self, SelectorError> {
        text.parse::<IpNet>()
            .map(|net| Self::Cidr(net.trunc()))
            .map_err(|_| SelectorError::Cidr {
                cidr: text.to_owned(),
            })
    }

    /// Whether `addr` matches, before the loopback and link-local rule.
    pub fn matches(&self, addr: IpAddr) -> bool {
        match self {
            Self::Prefix(p) => p.matches(addr),
            Self::Cidr(net) => net.contains(&addr),
        }
    }

    /// Whether the selector asks for addresses of `range`: every address it matches is in it.
    pub fn asks_for(&self, range: Special) -> bool {
        match self {
            Self::Prefix(p) => p.asks_for(range),
            Self::Cidr(net) => range.networks().iter().any(|r| r.contains(net)),
        }
    }

    /// Whether `addr` may be picked: it matches, and it is not loopback or link-local unless
    /// the selector asks for that.
    pub fn eligible(&self, addr: IpAddr) -> bool {
        self.matches(addr) && Special::of(addr).is_none_or(|range| self.asks_for(range))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Prefix(p) => write!(f, "--prefix {}", p.as_str()),
            Self::Cidr(net) => write!(f, "--cidr {net}"),
        }
    }
}

/// A `--prefix` or `--cidr` that cannot select anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The prefix is not the start of an address's text.
    #[error("invalid --prefix {prefix:?}: {reason}")]
    Prefix {
        /// As given.
        prefix: String,
        /// Why it was refused.
        reason: String,
    },
    /// The CIDR does not parse.
    #[error("invalid --cidr {cidr:?}: expected ADDRESS/LENGTH, e.g. 172.28.4.0/24")]
    Cidr {
        /// As given.
        cidr: String,
    },
}

/// The address [`pick_addr`] chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    /// The first eligible address in interface order.
    pub chosen: Iface,
    /// The other eligible addresses, in order (the caller warns about them).
    pub others: Vec<Iface>,
}

impl Picked {
    /// The warning to show when several addresses were eligible.
    pub fn warning(&self, selector: &Selector) -> Option<String> {
        if self.others.is_empty() {
            return None;
        }
        Some(format!(
            "several addresses match {selector}: using {}; also matching: {}",
            self.chosen,
            list(&self.others)
        ))
    }
}

/// No address was eligible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct NoMatch {
    /// The selector that matched nothing.
    pub selector: Selector,
    /// Every address seen, in interface order.
    pub seen: Vec<Iface>,
    /// Addresses that matched but are loopback or link-local, which the selector did not ask for.
    pub excluded: Vec<Iface>,
}

impl NoMatch {
    fn message(&self) -> String {
        let seen = if self.seen.is_empty() {
            "none".to_owned()
        } else {
            list(&self.seen)
        };
        let mut msg = format!(
            "no address of this host matches {}; addresses seen: {seen}",
            self.selector
        );
        if !self.excluded.is_empty() {
            msg.push_str(&format!(
                "; matching but not picked (loopback and link-local addresses need a prefix or \
                 CIDR inside their range): {}",
                list(&self.excluded)
            ));
        }
        msg
    }
}

fn list(ifaces: &[Iface]) -> String {
    ifaces
        .iter()
        .map(Iface::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Choose the address to register: the first of `interfaces` (kept in their order) that
/// `selector` makes eligible, with the other eligible ones; or, when none is, every address seen.
pub fn pick_addr(interfaces: &[Iface], selector: &Selector) -> Result<Picked, NoMatch> {
    let mut eligible = Vec::new();
    let mut excluded = Vec::new();
    for iface in interfaces {
        if selector.eligible(iface.addr) {
            eligible.push(iface.clone());
        } else if selector.matches(iface.addr) {
            excluded.push(iface.clone());
        }
    }
    let mut eligible = eligible.into_iter();
    match eligible.next() {
        Some(chosen) => Ok(Picked {
            chosen,
            others: eligible.collect(),
        }),
        None => Err(NoMatch {
            selector: selector.clone(),
            seen: interfaces.to_vec(),
            excluded,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    fn iface(name: &str, addr: &str) -> Iface {
        Iface {
            name: name.to_owned(),
            addr: addr.parse().unwrap(),
        }
    }

    /// A container on two compose networks, as `getifaddrs` lists it (IPv4 first).
    fn container() -> Vec<Iface> {
        vec![
            iface("lo", "127.0.0.1"),
            iface("eth0", "172.28.4.7"),
            iface("eth1", "172.28.40.9"),
            iface("eth2", "169.254.3.4"),
            iface("lo", "::1"),
            iface("eth0", "fd00:28:4::7"),
            iface("eth0", "fe80::42:acff:fe1c:407"),
        ]
    }

    fn pick(selector: &str) -> Result<Picked, NoMatch> {
        let sel = if selector.contains('/') {
            Selector::cidr(selector).unwrap()
        } else {
            Selector::prefix(selector).unwrap()
        };
        pick_addr(&container(), &sel)
    }

    fn chosen(selector: &str) -> String {
        pick(selector).unwrap().chosen.addr.to_string()
    }

    #[test]
    fn prefix_without_a_dot_is_a_whole_octet_prefix() {
        assert_eq!(chosen("172.28.4"), "172.28.4.7");
        assert_eq!(chosen("172.28.40"), "172.28.40.9");
        assert!(
            pick("172.28.4").unwrap().others.is_empty(),
            "172.28.40.9 is not a 172.28.4 address"
        );
        assert!(
            pick("172.2").is_err(),
            "172.2 is the octet 2, not the text 172.2x"
        );
        assert_eq!(chosen("172.28.4.7"), "172.28.4.7");
        assert!(pick("172.28.4.70").is_err());
    }

    #[test]
    fn prefix_ending_with_a_dot_is_a_text_prefix() {
        let p = pick("172.28.").unwrap();
        assert_eq!(p.chosen, iface("eth0", "172.28.4.7"));
        assert_eq!(p.others, vec![iface("eth1", "172.28.40.9")]);
        let sel = Selector::prefix("172.28.").unwrap();
        assert_eq!(
            p.warning(&sel).unwrap(),
            "several addresses match --prefix 172.28.: using 172.28.4.7 (eth0); also matching: \
             172.28.40.9 (eth1)"
        );
    }

    #[test]
    fn cidr_selects_inside_the_network() {
        assert_eq!(chosen("172.28.40.0/24"), "172.28.40.9");
        assert_eq!(
            chosen("172.28.40.200/24"),
            "172.28.40.9",
            "host bits are ignored"
        );
        let p = pick("172.28.0.0/16").unwrap();
        assert_eq!(p.chosen.addr.to_string(), "172.28.4.7");
        assert_eq!(p.others.len(), 1);
        assert_eq!(chosen("fd00:28::/32"), "fd00:28:4::7");
    }

    #[test]
    fn loopback_and_link_local_only_when_asked() {
        // lo comes first in interface order, yet a wide selector never picks it.
        assert_eq!(chosen("0.0.0.0/0"), "172.28.4.7");
        assert_eq!(chosen("::/0"), "fd00:28:4::7");
        assert_eq!(chosen("127"), "127.0.0.1");
        assert_eq!(chosen("127.0.0.0/8"), "127.0.0.1");
        assert_eq!(chosen("127.0.0.1/32"), "127.0.0.1");
        assert_eq!(chosen("::1"), "::1");
        assert_eq!(chosen("::1/128"), "::1");
        assert_eq!(chosen("169.254"), "169.254.3.4");
        assert_eq!(chosen("169.254.0.0/16"), "169.254.3.4");
        assert_eq!(chosen("fe80"), "fe80::42:acff:fe1c:407");
        assert_eq!(chosen("fe80::"), "fe80::42:acff:fe1c:407");
        assert_eq!(chosen("fe80::/10"), "fe80::42:acff:fe1c:407");
        // Ranges wider than the special one do not ask for it.
        assert!(pick("169.0.0.0/8").is_err());
        assert!(pick("169.").is_err());
        assert!(pick("fe00::/8").is_err());
        assert!(pick("64.0.0.0/2").is_err());
    }

    #[test]
    fn no_match_lists_every_address_seen() {
        let err = pick("10.9").unwrap_err();
        assert_eq!(err.seen, container());
        assert_eq!(
            err.to_string(),
            "no address of this host matches --prefix 10.9; addresses seen: 127.0.0.1 (lo), \
             172.28.4.7 (eth0), 172.28.40.9 (eth1), 169.254.3.4 (eth2), ::1 (lo), \
             fd00:28:4::7 (eth0), fe80::42:acff:fe1c:407 (eth0)"
        );
        let err = pick("127.0.0.0/7").unwrap_err();
        assert_eq!(err.excluded, vec![iface("lo", "127.0.0.1")]);
        assert!(
            err.to_string().contains("matching but not picked")
                && err.to_string().contains("127.0.0.1 (lo)"),
            "{err}"
        );
        let none = pick_addr(&[], &Selector::prefix("10").unwrap()).unwrap_err();
        assert!(none.to_string().ends_with("addresses seen: none"), "{none}");
    }

    #[test]
    fn ipv6_prefixes_are_by_whole_groups() {
        assert_eq!(chosen("fd00"), "fd00:28:4::7");
        assert_eq!(chosen("FD00:28"), "fd00:28:4::7", "case does not matter");
        assert!(pick("fd00:2").is_err(), "2 is the group 0002, not 28");
        assert!(pick("fd0").is_err());
    }

    #[test]
    fn bad_prefixes_and_cidrs_are_refused() {
        for bad in [
            "",
            "172.28.4.0/24",
            "172.28.4.7.",
            "1.2.3.4.5",
            "172..4",
            "172.256",
            "172.028",
            "eth0",
            "10.0.0.1 ",
            "fd00:12345",
            "fd00:::1",
            "1::2::3",
            "12345",
            "10.0:1",
            "ab.1",
        ] {
            assert!(Selector::prefix(bad).is_err(), "prefix {bad:?} accepted");
        }
        // `256` and `2001` are IPv6 groups (not octets), so they select IPv6 addresses.
        for good in [
            "256",
            "2001",
            "10",
            "10.",
            "172.28.4",
            "172.28.4.",
            "172.28.4.7",
            "0",
            "fd00",
            "fd00:",
            "::",
            "::1",
            "2001:db8::",
        ] {
            assert!(Selector::prefix(good).is_ok(), "prefix {good:?} refused");
        }
        for bad in ["172.28.4", "172.28.4.0/33", "x/8", ""] {
            assert!(Selector::cidr(bad).is_err(), "cidr {bad:?} accepted");
        }
        let err = Selector::prefix("172.28.4.0/24").unwrap_err().to_string();
        assert!(err.contains("use --cidr"), "{err}");
    }

    // ---- properties ------------------------------------------------------------------------

    fn any_v4() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            // Few octet values, so prefixes and networks drawn from the same pool often match,
            // and 4 vs 40 vs 41 style near-misses are common.
            [
                prop::sample::select(vec![10u8, 127, 169, 172]),
                prop::sample::select(vec![0u8, 4, 28, 40, 254]),
                prop::sample::select(vec![0u8, 1, 4, 40, 41]),
                prop::sample::select(vec![1u8, 2, 7, 70]),
            ]
            .prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
            any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        ]
    }

    fn any_v6() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            [
                prop::sample::select(vec![0u16, 0xfd00, 0xfe80, 0xfebf, 0xfec0, 0x2001]),
                prop::sample::select(vec![0u16, 0x28, 0x280]),
                prop::sample::select(vec![0u16, 4]),
                prop::sample::select(vec![0u16, 1, 7]),
            ]
            .prop_map(|g| IpAddr::V6(Ipv6Addr::new(g[0], g[1], g[2], 0, 0, 0, 0, g[3]))),
            any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
        ]
    }

    fn any_addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            3 => any_v4(),
            1 => any_v6(),
            1 => Just(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            1 => Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ]
    }

    fn any_ifaces() -> impl Strategy<Value = Vec<Iface>> {
        prop::collection::vec(
            (
                prop::sample::select(vec!["lo", "eth0", "eth1", "veth9"]),
                any_addr(),
            ),
            0..8,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(name, addr)| Iface {
                    name: name.to_owned(),
                    addr,
                })
                .collect()
        })
    }

    /// A prefix cut from an address's text: 1 to all octets (groups), maybe with the separator.
    fn prefix_of(addr: IpAddr, cut: usize, sep: bool) -> String {
        let text = addr.to_string();
        let s = if addr.is_ipv4() { '.' } else { ':' };
        let parts: Vec<&str> = text.split(s).collect();
        let n = 1 + cut % parts.len();
        let mut p = parts[..n].join(&s.to_string());
        if sep && n < parts.len() {
            p.push(s);
        }
        p
    }

    fn any_selector() -> impl Strategy<Value = Selector> {
        prop_oneof![
            (any_addr(), any::<usize>(), any::<bool>())
                .prop_filter_map("valid prefix", |(a, cut, sep)| {
                    Selector::prefix(&prefix_of(a, cut, sep)).ok()
                }),
            (any_addr(), any::<u8>()).prop_map(|(a, len)| {
                let max = if a.is_ipv4() { 32 } else { 128 };
                Selector::Cidr(IpNet::new(a, len % (max + 1)).unwrap().trunc())
            }),
            prop::sample::select(vec![
                "127",
                "169.254",
                "fe80",
                "::1",
                "127.0.0.0/8",
                "fe80::/10",
                "0.0.0.0/0",
                "::/0",
                "169."
            ])
            .prop_map(|s| if s.contains('/') {
                Selector::cidr(s).unwrap()
            } else {
                Selector::prefix(s).unwrap()
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn picked_address_matches_and_is_the_first_eligible(ifaces in any_ifaces(), sel in any_selector()) {
            let eligible: Vec<Iface> = ifaces.iter().filter(|i| sel.eligible(i.addr)).cloned().collect();
            match pick_addr(&ifaces, &sel) {
                Ok(p) => {
                    prop_assert!(sel.matches(p.chosen.addr));
                    prop_assert!(p.others.iter().all(|o| sel.matches(o.addr)));
                    // The first match in interface order, the others after it in order.
                    let mut all = vec![p.chosen.clone()];
                    all.extend(p.others.iter().cloned());
                    prop_assert_eq!(all, eligible);
                }
                Err(e) => {
                    prop_assert!(eligible.is_empty(), "NoMatch although {:?} are eligible", eligible);
                    prop_assert_eq!(e.seen, ifaces.clone());
                    let matching: Vec<Iface> = ifaces.iter().filter(|i| sel.matches(i.addr)).cloned().collect();
                    prop_assert_eq!(e.excluded, matching);
                }
            }
        }

        #[test]
        fn loopback_and_link_local_never_picked_unless_asked(ifaces in any_ifaces(), sel in any_selector()) {
            if let Ok(p) = pick_addr(&ifaces, &sel) {
                for picked in std::iter::once(&p.chosen).chain(&p.others) {
                    if let Some(range) = Special::of(picked.addr) {
                        prop_assert!(sel.asks_for(range), "{} picked by {}", picked, sel);
                    }
                }
            }
        }

        #[test]
        fn asking_for_a_range_selects_only_inside_it(addr in any_addr(), sel in any_selector()) {
            for range in [Special::Loopback, Special::LinkLocal] {
                if sel.asks_for(range) && sel.matches(addr) {
                    // `::1` as a prefix also matches `::1:x` text; no interface carries those.
                    let v6_loopback_text = matches!(&sel, Selector::Prefix(p) if p.as_str() == "::1");
                    prop_assert!(v6_loopback_text || Special::of(addr) == Some(range), "{} matches {} which asks for {}", addr, sel, range);
                }
            }
        }

        #[test]
        fn v4_prefix_is_the_network_of_its_whole_octets(addr in any_v4(), other in any_v4(), cut in any::<usize>(), sep in any::<bool>()) {
            // The prefix means "the first k octets are these", i.e. the /8k network.
            let text = prefix_of(addr, cut, sep);
            let sel = Selector::prefix(&text).unwrap();
            let octets = text.trim_end_matches('.').split('.').count();
            let net = IpNet::new(addr, u8::try_from(8 * octets).unwrap()).unwrap().trunc();
            prop_assert_eq!(sel.matches(other), net.contains(&other), "prefix {} vs {}", text, other);
            prop_assert!(sel.matches(addr));
        }

        #[test]
        fn no_match_iff_no_address_is_eligible(ifaces in any_ifaces(), sel in any_selector()) {
            let any_eligible = ifaces.iter().any(|i| sel.eligible(i.addr));
            prop_assert_eq!(pick_addr(&ifaces, &sel).is_err(), !any_eligible);
        }
    }
}
