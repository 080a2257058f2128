//! SSRF guard: which destination addresses an outbound webhook may reach.
//!
//! Two checks cover every way a URL reaches an address. [`check_url`] refuses non-HTTP schemes
//! and literal forbidden IPs (reqwest never calls a resolver for those); [`SsrfResolver`] is the
//! DNS resolver of the delivery client, so the addresses reqwest connects to are exactly the ones
//! it checked, leaving no window for DNS rebinding between a check and the connect.
//! Both are switched off by the operator's `outbound.allow_private_networks`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// The config key that lifts the guard, named in every refusal so operators know what to change.
const ALLOW_KEY: &str = "outbound.allow_private_networks";

/// Why an outbound URL or the addresses of its host are refused.
#[derive(Debug, thiserror::Error)]
pub enum SsrfError {
    /// The scheme is not `http` or `https`.
    #[error("url scheme must be http or https, not {scheme:?}")]
    UnsupportedScheme {
        /// The refused scheme.
        scheme: String,
    },
    /// The URL has no host to connect to.
    #[error("url has no host")]
    MissingHost,
    /// The URL names a forbidden IP address literally.
    #[error(
        "url points to {} {reason} address ({ip}); set {ALLOW_KEY} = true to allow it",
        article(reason)
    )]
    ForbiddenAddress {
        /// The literal address.
        ip: IpAddr,
        /// Which kind of address it is, from [`forbidden_reason`].
        reason: &'static str,
    },
    /// Every address the host resolved to is forbidden.
    #[error(
        "host {host} resolves only to forbidden addresses ({}); set {ALLOW_KEY} = true to allow it",
        describe(refused)
    )]
    OnlyForbiddenAddresses {
        /// The host name as given in the URL.
        host: String,
        /// Each refused address with its reason.
        refused: Vec<(IpAddr, &'static str)>,
    },
    /// The host could not be resolved at all.
    #[error("could not resolve host {host}: {source}")]
    Resolve {
        /// The host name as given in the URL.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The host resolved to no address.
    #[error("host {host} resolves to no address")]
    NoAddress {
        /// The host name as given in the URL.
        host: String,
    },
}

fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

fn describe(refused: &[(IpAddr, &'static str)]) -> String {
    refused
        .iter()
        .map(|(ip, reason)| format!("{ip}: {reason}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why `ip` must not be the destination of an outbound webhook, or `None` if it may be.
///
/// Refuses everything that is not globally routable unicast: private, loopback, link-local
/// (including the 169.254.169.254 cloud metadata address), multicast, unspecified, broadcast,
/// CGNAT shared space, documentation, benchmarking and reserved ranges. IPv6 addresses that carry
/// an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by that IPv4 address, so
/// `::ffff:127.0.0.1` is loopback.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_broadcast() => "broadcast",
        (0, _, _) => "this-network (0.0.0.0/8)",
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => "private",
        (100, 64..=127, _) => "shared (CGNAT 100.64.0.0/10)",
        (127, _, _) => "loopback",
        (169, 254, 169) if ip.octets()[3] == 254 => "link-local (cloud metadata)",
        (169, 254, _) => "link-local",
        (192, 0, 0) => "reserved (IETF protocol assignments)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "reserved (6to4 relay anycast)",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (deprecated compatible) mean the IPv4 address.
    if let Some(v4) = ip.to_ipv4() {
        return forbidden_v4(v4);
    }
    // 64:ff9b::/96, the NAT64 well-known prefix, reaches the embedded IPv4 address.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return forbidden_v4(embedded_v4(s[6], s[7]));
    }
    // 2002::/16, 6to4, tunnels to the IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        return forbidden_v4(embedded_v4(s[1], s[2]));
    }
    Some(match s[0] {
        0xfc00..=0xfdff => "private (unique local)",
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "private (site-local)",
        0xff00..=0xffff => "multicast",
        0x2001 if s[1] < 0x0200 => "reserved (IETF protocol assignments)",
        0x2001 if s[1] == 0x0db8 => "documentation",
        0x3fff if s[1] < 0x1000 => "documentation",
        0x5f00 => "reserved (SRv6)",
        // Everything outside 2000::/3, the global unicast space, is unassigned or special.
        0x2000..=0x3fff => return None,
        _ => "reserved",
    })
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(high) << 16) | u32::from(low))
}

/// Refuses a URL that is not `http(s)`, has no host, or names a forbidden IP literally.
///
/// Used when an endpoint is created or updated (so the admin API answers with this message) and
/// again before each send, because reqwest does not resolve, and so never checks, IP literals.
/// With `allow_private` only the scheme and host checks remain.
pub fn check_url(url: &Url, allow_private: bool) -> Result<(), SsrfError> {
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(SsrfError::UnsupportedScheme {
                scheme: other.to_owned(),
            });
        }
    }
    let ip = match url.host().ok_or(SsrfError::MissingHost)? {
        Host::Domain(_) => return Ok(()),
        Host::Ipv4(v4) => IpAddr::V4(v4),
        Host::Ipv6(v6) => IpAddr::V6(v6),
    };
    match forbidden_reason(ip) {
        Some(reason) if !allow_private => Err(SsrfError::ForbiddenAddress { ip, reason }),
        _ => Ok(()),
    }
}

/// Keeps the allowed addresses of `host`, or explains why none is left.
///
/// Pure half of [`SsrfResolver`], separate so the filtering is testable without DNS.
pub fn filter_addresses(
    host: &str,
    addrs: impl IntoIterator<Item = SocketAddr>,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, SsrfError> {
    let mut allowed = Vec::new();
    let mut refused = Vec::new();
    for addr in addrs {
        match forbidden_reason(addr.ip()) {
            Some(reason) if !allow_private => refused.push((addr.ip(), reason)),
            _ => allowed.push(addr),
        }
    }
    if !allowed.is_empty() {
        return Ok(allowed);
    }
    if refused.is_empty() {
        return Err(SsrfError::NoAddress {
            host: host.to_owned(),
        });
    }
    refused.dedup();
    Err(SsrfError::OnlyForbiddenAddresses {
        host: host.to_owned(),
        refused,
    })
}

/// reqwest DNS resolver that resolves a host once and hands reqwest only allowed addresses.
///
/// Because reqwest connects to the addresses this returns and never resolves again, the checked
/// address is the connected one. Forbidden addresses are dropped; if none remain the connect
/// fails with an [`SsrfError`] naming the host, which the client reports as blocked-by-ssrf.
#[derive(Debug, Clone, Copy, Default)]
pub struct SsrfResolver {
    allow_private: bool,
}

impl SsrfResolver {
    /// A resolver that refuses forbidden addresses unless `allow_private` is set.
    pub fn new(allow_private: bool) -> Self {
        Self { allow_private }
    }

    /// Resolves `host` (port 0: reqwest substitutes the URL's port) and filters the result.
    pub async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, SsrfError> {
        let resolved =
            tokio::net::lookup_host((host, 0))
                .await
                .map_err(|source| SsrfError::Resolve {
                    host: host.to_owned(),
                    source,
                })?;
        filter_addresses(host, resolved, self.allow_private)
    }
}

impl Resolve for SsrfResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = *self;
        Box::pin(async move {
            let addrs = resolver.lookup(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(ip: &str) -> Option<&'static str> {
        forbidden_reason(ip.parse().unwrap())
    }

    #[test]
    fn every_forbidden_range_is_refused_with_its_reason() {
        // Ranges from the IANA IPv4/IPv6 Special-Purpose Address Registries (RFC 6890 and later).
        let table = [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "this-network (0.0.0.0/8)"),
            ("10.0.0.5", "private"),
            ("10.255.255.255", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.254", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared (CGNAT 100.64.0.0/10)"),
            ("100.100.100.200", "shared (CGNAT 100.64.0.0/10)"),
            ("100.127.255.255", "shared (CGNAT 100.64.0.0/10)"),
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("169.254.169.254", "link-local (cloud metadata)"),
            ("169.254.0.1", "link-local"),
            ("192.0.0.8", "reserved (IETF protocol assignments)"),
            ("192.0.2.10", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.200", "documentation"),
            ("192.88.99.1", "reserved (6to4 relay anycast)"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved (240.0.0.0/4)"),
            ("255.255.255.255", "broadcast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.1.2.3", "private"),
            ("::ffff:169.254.169.254", "link-local (cloud metadata)"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local (cloud metadata)"),
            ("2002:7f00:1::", "loopback"),
            ("2002:c0a8:101::1", "private"),
            ("fc00::1", "private (unique local)"),
            ("fd00:ec2::254", "private (unique local)"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "private (site-local)"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("2001::1", "reserved (IETF protocol assignments)"),
            ("2001:2::1", "reserved (IETF protocol assignments)"),
            ("5f00::1", "reserved (SRv6)"),
            ("100::1", "reserved"),
            ("64:ff9b:1::1", "reserved"),
            ("4000::1", "reserved"),
        ];
        for (ip, expected) in table {
            assert_eq!(reason(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "140.82.112.3",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.255.255",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001::1",
        ] {
            assert_eq!(reason(ip), None, "{ip}");
        }
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn literal_forbidden_ips_are_refused_with_an_actionable_message() {
        let err = check_url(&url("http://10.0.0.5:8080/hook"), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "url points to a private address (10.0.0.5); \
             set outbound.allow_private_networks = true to allow it"
        );
        let err = check_url(&url("http://0.0.0.0/"), false).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("url points to an unspecified address (0.0.0.0)")
        );
        for blocked in [
            "http://169.254.169.254/latest/meta-data/",
            "https://[::ffff:127.0.0.1]/",
            "http://[::1]:9000/",
            // WHATWG parsing turns these spellings of 127.0.0.1 into the IPv4 literal.
            "http://2130706433/",
            "http://0x7f.1/",
            "http://127.1/",
        ] {
            assert!(
                matches!(
                    check_url(&url(blocked), false),
                    Err(SsrfError::ForbiddenAddress { .. })
                ),
                "{blocked}"
            );
            check_url(&url(blocked), true).unwrap();
        }
        check_url(&url("https://8.8.8.8/hook"), false).unwrap();
        check_url(&url("https://hooks.example.com/x"), false).unwrap();
    }

    #[test]
    fn only_http_and_https_schemes_are_accepted() {
        for bad in ["ftp://example.com/", "file:///etc/passwd", "gopher://x/"] {
            assert!(
                matches!(
                    check_url(&url(bad), true),
                    Err(SsrfError::UnsupportedScheme { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            check_url(&url("unix:/run/x.sock"), true),
            Err(SsrfError::UnsupportedScheme { .. })
        ));
    }

    #[test]
    fn filtering_keeps_allowed_addresses_and_explains_refusals() {
        let public: SocketAddr = "93.184.216.34:0".parse().unwrap();
        let private: SocketAddr = "10.0.0.1:0".parse().unwrap();
        assert_eq!(
            filter_addresses("mixed.test", [private, public], false).unwrap(),
            vec![public]
        );
        let err = filter_addresses("internal.test", [private], false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "host internal.test resolves only to forbidden addresses (10.0.0.1: private); \
             set outbound.allow_private_networks = true to allow it"
        );
        assert_eq!(
            filter_addresses("internal.test", [private], true).unwrap(),
            vec![private]
        );
        assert!(matches!(
            filter_addresses("empty.test", [], false),
            Err(SsrfError::NoAddress { .. })
        ));
    }

    #[tokio::test]
    async fn localhost_is_refused_by_the_resolver_unless_allowed() {
        let err = SsrfResolver::new(false)
            .lookup("localhost")
            .await
            .unwrap_err();
        match &err {
            SsrfError::OnlyForbiddenAddresses { host, refused } => {
                assert_eq!(host, "localhost");
                assert!(refused.iter().all(|(ip, _)| ip.is_loopback()));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("localhost"));
        let addrs = SsrfResolver::new(true).lookup("localhost").await.unwrap();
        assert!(addrs.iter().any(|a| a.ip() == IpAddr::from([127, 0, 0, 1])));
    }

    #[tokio::test]
    async fn the_reqwest_resolver_interface_filters_too() {
        let name: Name = "localhost".parse().unwrap();
        let err = SsrfResolver::new(false).resolve(name).await.err().unwrap();
        assert!(err.downcast_ref::<SsrfError>().is_some());
        let name: Name = "localhost".parse().unwrap();
        let addrs: Vec<_> = SsrfResolver::new(true)
            .resolve(name)
            .await
            .unwrap()
            .collect();
        assert!(!addrs.is_empty());
    }
}
