//! Where a callback may go: the one rule checked when a job is submitted and again
//! before every delivery attempt.
//!
//! Deny by default: with no `[callbacks] allowed_hosts` no callback is sent. A URL's
//! host must match an entry (a host name or an IP literal, each with an optional
//! port). Then every address it is, or resolves to, must be global; a loopback,
//! link-local, private, unspecified or otherwise non-global address is admitted only
//! when the entry is that very address (`"127.0.0.1:9000"`), or, for a private
//! address behind a host name entry, with `allow_private_addresses = true`. The
//! caller chooses the URL, so without this a job could make the server call its own
//! admin ports or a cloud metadata endpoint (169.254.169.254).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;

use crate::config::CallbackSettings;

/// What kind of address an IP is, as far as callbacks care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// Reachable on the internet: allowed behind any matching entry.
    Global,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7.
    Private,
    /// 127/8, ::1.
    Loopback,
    /// 169.254/16, fe80::/10 (cloud metadata endpoints live here).
    LinkLocal,
    /// 0.0.0.0, ::.
    Unspecified,
    /// Any other special-purpose range (shared, documentation, multicast, reserved...).
    NonGlobal,
}

impl fmt::Display for AddressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressKind::Global => "global",
            AddressKind::Private => "private",
            AddressKind::Loopback => "loopback",
            AddressKind::LinkLocal => "link-local",
            AddressKind::Unspecified => "unspecified",
            AddressKind::NonGlobal => "non-global",
        })
    }
}

/// The kind of `ip` (an IPv4 address mapped into IPv6, or behind the NAT64 prefix,
/// counts as that IPv4 address).
pub fn kind(ip: IpAddr) -> AddressKind {
    match ip {
        IpAddr::V4(v4) => kind_v4(v4),
        IpAddr::V6(v6) => kind_v6(v6),
    }
}

fn kind_v4(ip: Ipv4Addr) -> AddressKind {
    let [a, b, c, _] = ip.octets();
    let this_network = a == 0;
    let shared = a == 100 && (64..128).contains(&b); // carrier-grade NAT
    let protocol = a == 192 && b == 0 && c == 0; // IETF protocol assignments
    let benchmarking = a == 198 && (b == 18 || b == 19);
    let reserved = a >= 240; // and the broadcast address
    if ip.is_unspecified() {
        AddressKind::Unspecified
    } else if ip.is_loopback() {
        AddressKind::Loopback
    } else if ip.is_link_local() {
        AddressKind::LinkLocal
    } else if ip.is_private() {
        AddressKind::Private
    } else if this_network
        || shared
        || protocol
        || benchmarking
        || reserved
        || ip.is_documentation()
        || ip.is_multicast()
    {
        AddressKind::NonGlobal
    } else {
        AddressKind::Global
    }
}

fn kind_v6(ip: Ipv6Addr) -> AddressKind {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return kind_v4(v4);
    }
    let s = ip.segments();
    let o = ip.octets();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return kind_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    let outside_global_unicast = s[0] & 0xe000 != 0x2000; // 2000::/3
    let protocol = s[0] == 0x2001 && s[1] < 0x200; // IETF assignments, Teredo
    let documentation = s[0] == 0x2001 && s[1] == 0xdb8;
    let six_to_four = s[0] == 0x2002; // reaches an IPv4 address through a relay
    if ip.is_unspecified() {
        AddressKind::Unspecified
    } else if ip.is_loopback() {
        AddressKind::Loopback
    } else if s[0] & 0xffc0 == 0xfe80 {
        AddressKind::LinkLocal
    } else if s[0] & 0xfe00 == 0xfc00 {
        AddressKind::Private
    } else if outside_global_unicast || protocol || documentation || six_to_four {
        AddressKind::NonGlobal
    } else {
        AddressKind::Global
    }
}

/// The address rule: why a callback may not go to `ip`, if it may not. `listed`: the
/// allowed_hosts entry that admitted the URL is this very address.
pub fn refuse_address(ip: IpAddr, listed: bool, allow_private: bool) -> Option<AddressKind> {
    match kind(ip) {
        _ if listed => None,
        AddressKind::Global => None,
        AddressKind::Private if allow_private => None,
        k => Some(k),
    }
}

/// An `allowed_hosts` entry's host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EntryHost {
    Name(String),
    Ip(IpAddr),
}

/// One `allowed_hosts` entry: a host name or an IP literal, with an optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    host: EntryHost,
    port: Option<u16>,
}

/// Parses an `allowed_hosts` entry: `host`, `host:port`, an IP address,
/// `127.0.0.1:9000`, `[::1]:9000`.
fn parse_entry(s: &str) -> Result<Entry, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Entry {
            host: EntryHost::Ip(ip),
            port: None,
        });
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(Entry {
            host: EntryHost::Ip(a.ip()),
            port: Some(a.port()),
        });
    }
    if let Some(v6) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let ip = v6
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("{s:?} is not an IPv6 address"))?;
        return Ok(Entry {
            host: EntryHost::Ip(ip.into()),
            port: None,
        });
    }
    let (name, port) = match s.rsplit_once(':') {
        Some((h, p)) => (
            h,
            Some(
                p.parse::<u16>()
                    .map_err(|_| format!("{s:?}: the port must be a number 0..=65535"))?,
            ),
        ),
        None => (s, None),
    };
    // Parsed as a URL's host would be, so both compare the same way (case, IDNA,
    // the shorthand IPv4 forms).
    let bad = || format!("{s:?} is not a host, host:port or IP address");
    let url = Url::parse(&format!("http://{name}/")).map_err(|_| bad())?;
    let plain = url.username().is_empty()
        && url.password().is_none()
        && url.port().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && !name.is_empty()
        && !name.contains(['/', '?', '#', '@']);
    match url.host_str().map(url_host) {
        Some(host) if plain => Ok(Entry { host, port }),
        _ => Err(bad()),
    }
}

/// A parsed URL's host (`[::1]` is how a URL writes an IPv6 address).
fn url_host(h: &str) -> EntryHost {
    let bare = h.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map_or_else(|_| EntryHost::Name(h.to_owned()), EntryHost::Ip)
}

/// Whether a URL's `host` (as `Url::host_str` gives it) and `port` match one of
/// `entries` (host names or IP literals, each with an optional port).
pub fn listed(entries: &[String], host: &str, port: u16) -> bool {
    let wanted = url_host(host);
    entries
        .iter()
        .filter_map(|e| parse_entry(e).ok())
        .any(|e| e.host == wanted && e.port.is_none_or(|p| p == port))
}

/// Checks every `allowed_hosts` entry at start, so a typo is not found by a caller.
pub fn check_allowed_hosts(entries: &[String]) -> Result<(), String> {
    check_host_entries("callbacks.allowed_hosts", entries)
}

/// Checks a list of host entries (`host`, `host:port`, an IP address); `key` names
/// the list in the error.
pub fn check_host_entries(key: &str, entries: &[String]) -> Result<(), String> {
    entries
        .iter()
        .try_for_each(|e| parse_entry(e).map(drop))
        .map_err(|e| format!("{key}: {e}"))
}

/// Where an admitted callback goes: the URL's host name (none for an IP literal)
/// and the addresses checked for it, which the request must use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The host name to pin to `addrs`; `None` when the URL names an address.
    pub domain: Option<String>,
    /// The checked addresses (with the URL's port).
    pub addrs: Vec<SocketAddr>,
}

/// Why a callback URL is not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// A message for the caller, naming the setting or address at fault.
    pub why: String,
    /// The host could not be resolved now: worth another delivery attempt.
    pub transient: bool,
}

impl Refused {
    fn new(why: impl Into<String>) -> Self {
        Self {
            why: why.into(),
            transient: false,
        }
    }
}

/// Admits `url` as a callback under `settings` (allow-list, then the address rule on
/// what it resolves to now), or says why not.
pub async fn admit(settings: &CallbackSettings, url: &str) -> Result<Destination, Refused> {
    if settings.secret.is_none() {
        return Err(Refused::new(
            "this server has no callback secret configured ([callbacks] secret_file), \
             so it cannot sign callbacks",
        ));
    }
    if settings.allowed_hosts.is_empty() {
        return Err(Refused::new(
            "this server sends callbacks to no host: its [callbacks] allowed_hosts is \
             empty (callbacks are denied by default; list each receiver, e.g. \
             \"crm.example\" or \"127.0.0.1:9000\")",
        ));
    }
    provsync_core::job::spec::check_callback_url(url).map_err(Refused::new)?;
    let parsed = Url::parse(url).map_err(|e| Refused::new(format!("not a URL: {e}")))?;
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return Err(Refused::new("the URL has no host or port"));
    };
    let wanted = url_host(host);
    let listed = listed(&settings.allowed_hosts, host, port);
    let shown = match &wanted {
        EntryHost::Name(d) => format!("{d}:{port}"),
        EntryHost::Ip(ip) => SocketAddr::new(*ip, port).to_string(),
    };
    if !listed {
        let what = match wanted {
            EntryHost::Ip(ip) if kind(ip) != AddressKind::Global => {
                format!(
                    " ({} address, allowed only when listed as itself)",
                    kind(ip)
                )
            }
            _ => String::new(),
        };
        return Err(Refused::new(format!(
            "host {shown:?}{what} is not in [callbacks] allowed_hosts"
        )));
    }
    let domain = match wanted {
        // Listed as itself: the entry is the operator's explicit choice.
        EntryHost::Ip(ip) => {
            return Ok(Destination {
                domain: None,
                addrs: vec![SocketAddr::new(ip, port)],
            })
        }
        EntryHost::Name(d) => d,
    };
    let addrs = resolve(&domain, port, settings.timeout).await?;
    for a in &addrs {
        if let Some(k) = refuse_address(a.ip(), false, settings.allow_private_addresses) {
            let how = if k == AddressKind::Private {
                "allowed only with [callbacks] allow_private_addresses = true".to_owned()
            } else {
                format!(
                    "allowed only when [callbacks] allowed_hosts lists the address itself \
                     (e.g. \"{}\")",
                    a
                )
            };
            return Err(Refused::new(format!(
                "host {domain:?} resolves to {}, a {k} address: {how}",
                a.ip()
            )));
        }
    }
    Ok(Destination {
        domain: Some(domain),
        addrs,
    })
}

/// The addresses `host` resolves to now.
async fn resolve(
    host: &str,
    port: u16,
    timeout: std::time::Duration,
) -> Result<Vec<SocketAddr>, Refused> {
    let unresolved = |e: String| Refused {
        why: format!("cannot resolve host {host:?}: {e}"),
        transient: true,
    };
    let found = tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| unresolved(format!("no answer within {} s", timeout.as_secs())))?
        .map_err(|e| unresolved(e.to_string()))?;
    let mut addrs: Vec<SocketAddr> = found.collect();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(unresolved("no address".into()));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings(hosts: &[&str], allow_private: bool) -> CallbackSettings {
        CallbackSettings {
            secret: Some(vec![0; 16]),
            max_attempts: 3,
            timeout: Duration::from_secs(5),
            allowed_hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            allow_private_addresses: allow_private,
        }
    }

    #[test]
    fn the_address_rule_admits_global_addresses_and_listed_or_allowed_others() {
        use AddressKind::*;
        // address, kind, allowed behind a host name entry, ... with allow_private
        let table: &[(&str, AddressKind, bool, bool)] = &[
            ("93.184.215.14", Global, true, true),
            ("8.8.8.8", Global, true, true),
            ("2606:4700::1111", Global, true, true),
            ("127.0.0.1", Loopback, false, false),
            ("127.8.9.10", Loopback, false, false),
            ("::1", Loopback, false, false),
            ("169.254.169.254", LinkLocal, false, false),
            ("fe80::1", LinkLocal, false, false),
            ("10.1.2.3", Private, false, true),
            ("172.16.0.1", Private, false, true),
            ("172.31.255.255", Private, false, true),
            ("172.32.0.1", Global, true, true),
            ("192.168.1.1", Private, false, true),
            ("fd12:3456::1", Private, false, true),
            ("0.0.0.0", Unspecified, false, false),
            ("::", Unspecified, false, false),
            ("0.1.2.3", NonGlobal, false, false),
            ("100.64.0.1", NonGlobal, false, false),
            ("192.0.2.1", NonGlobal, false, false),
            ("198.18.0.1", NonGlobal, false, false),
            ("224.0.0.1", NonGlobal, false, false),
            ("255.255.255.255", NonGlobal, false, false),
            ("ff02::1", NonGlobal, false, false),
            ("2001:db8::1", NonGlobal, false, false),
            ("2002:a00:1::1", NonGlobal, false, false),
            ("::ffff:127.0.0.1", Loopback, false, false),
            ("::ffff:169.254.169.254", LinkLocal, false, false),
            ("::ffff:10.0.0.1", Private, false, true),
            ("64:ff9b::a9fe:a9fe", LinkLocal, false, false),
            ("64:ff9b::808:808", Global, true, true),
        ];
        for &(ip, k, by_name, by_name_private) in table {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(kind(ip), k, "{ip}");
            assert_eq!(refuse_address(ip, false, false).is_none(), by_name, "{ip}");
            assert_eq!(
                refuse_address(ip, false, true).is_none(),
                by_name_private,
                "{ip} with allow_private_addresses"
            );
            assert_eq!(
                refuse_address(ip, true, false),
                None,
                "{ip} listed as itself"
            );
        }
    }

    #[test]
    fn allowed_hosts_entries_parse_or_are_refused_at_start() {
        let e = |s: &str| parse_entry(s).unwrap();
        assert_eq!(e("CRM.example").host, EntryHost::Name("crm.example".into()));
        assert_eq!(e("crm.example:8443").port, Some(8443));
        assert_eq!(
            e("127.0.0.1:9000").host,
            EntryHost::Ip([127, 0, 0, 1].into())
        );
        assert_eq!(e("127.0.0.1:9000").port, Some(9000));
        assert_eq!(
            e("[::1]:9000").host,
            EntryHost::Ip(Ipv6Addr::LOCALHOST.into())
        );
        assert_eq!(e("[::1]").port, None);
        assert_eq!(e("::1").port, None);
        for bad in [
            "",
            "crm.example:x",
            "user@crm.example",
            "crm.example/x",
            "a b",
        ] {
            assert!(parse_entry(bad).is_err(), "{bad:?}");
        }
        assert!(
            check_allowed_hosts(&["ok.example".into(), "bad:port".into()])
                .unwrap_err()
                .contains("allowed_hosts")
        );
    }

    #[tokio::test]
    async fn callback_hosts_are_checked_against_the_allow_list() {
        let c = settings(&["crm.example", "127.0.0.1:9000"], false);
        let ok = admit(&c, "http://127.0.0.1:9000/cb").await.unwrap();
        assert_eq!(ok.domain, None);
        assert_eq!(ok.addrs, ["127.0.0.1:9000".parse().unwrap()]);
        let why = |r: Result<Destination, Refused>| r.unwrap_err().why;
        let e = why(admit(&c, "http://127.0.0.1:9001/cb").await);
        assert!(
            e.contains("127.0.0.1:9001") && e.contains("loopback") && e.contains("allowed_hosts"),
            "{e}"
        );
        let e = why(admit(&c, "http://169.254.169.254/latest").await);
        assert!(
            e.contains("link-local") && e.contains("allowed_hosts"),
            "{e}"
        );
        let e = why(admit(&c, "https://elsewhere.example/x").await);
        assert!(
            e.contains("elsewhere.example") && e.contains("allowed_hosts"),
            "{e}"
        );
        // The shorthand and mapped forms of a listed address are that address.
        assert!(admit(&c, "http://127.1:9000/cb").await.is_ok());
        assert!(admit(&c, "http://[::ffff:169.254.169.254]/").await.is_err());
    }

    #[tokio::test]
    async fn callbacks_are_denied_by_default_naming_the_setting() {
        let e = admit(&settings(&[], false), "https://crm.example/x")
            .await
            .unwrap_err();
        assert!(e.why.contains("allowed_hosts") && !e.transient, "{e:?}");
        let unsigned = CallbackSettings::default();
        let e = admit(&unsigned, "https://crm.example/x").await.unwrap_err();
        assert!(e.why.contains("secret"), "{e:?}");
    }

    #[tokio::test]
    async fn a_host_name_resolving_to_loopback_is_refused_even_with_allow_private() {
        for allow_private in [false, true] {
            let c = settings(&["localhost"], allow_private);
            let e = admit(&c, "http://localhost:9000/cb").await.unwrap_err();
            assert!(
                e.why.contains("\"localhost\" resolves to")
                    && e.why.contains("loopback")
                    && e.why.contains(":9000"),
                "{e:?}"
            );
        }
    }
}
