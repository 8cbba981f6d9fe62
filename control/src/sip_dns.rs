//! Where SIP for a host goes (RFC 3263 §4): the ordered addresses a request for
//! `host[:port]` over a given transport is sent to, one after another when an address does
//! not answer (§4.3).
//!
//! An IP address, or a name with an explicit port, is used with its A/AAAA records only
//! (§4.2). A bare name is looked up as NAPTR (the transport's service: `SIP+D2U` for UDP,
//! `SIP+D2T` for TCP, `SIPS+D2T` for TLS, by order and preference), then SRV
//! (`_sip._udp`, `_sip._tcp` or `_sips._tcp.<name>` when NAPTR gave nothing; RFC 2782
//! order), and each SRV target as A/AAAA; with neither NAPTR nor SRV, the name's own A/AAAA
//! on port 5060 (5061 for TLS). The transport is the trunk's: it is configured, not chosen
//! from NAPTR.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use outdial_dataplane::sip::Transport;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The longest a whole resolution (every NAPTR, SRV and address query) may take.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many addresses are tried for one request.
pub const MAX_TARGETS: usize = 8;

/// What RFC 3263 looks up for one transport: the NAPTR service, the SRV prefix and the
/// port when neither the URI nor SRV gives one.
fn service(transport: Transport) -> (&'static str, &'static str, u16) {
    match transport {
        Transport::Udp => ("SIP+D2U", "_sip._udp", 5060),
        Transport::Tcp => ("SIP+D2T", "_sip._tcp", 5060),
        Transport::Tls => ("SIPS+D2T", "_sips._tcp", 5061),
    }
}

/// Why a host could not be located. Each message names the host and what to check.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    /// A query failed (server failure, refused, network error).
    #[error(
        "DNS {record} lookup of {name} failed: {detail}; check that the DNS servers \
         (sip.dns_servers, else /etc/resolv.conf) answer for it"
    )]
    Lookup {
        /// The name queried.
        name: String,
        /// NAPTR, SRV or A/AAAA.
        record: &'static str,
        /// The resolver's error.
        detail: String,
    },
    /// The name exists in no usable form.
    #[error(
        "DNS has no address for {name} (no NAPTR, SRV, A or AAAA record): fix the name or \
         publish its records"
    )]
    NoAddress {
        /// The host looked up.
        name: String,
    },
    /// SRV records exist, but none of their targets has an address.
    #[error(
        "the SRV records {srv} name only targets without an address ({targets}): fix their \
         A/AAAA records"
    )]
    SrvTargetsUnresolved {
        /// The SRV name.
        srv: String,
        /// The targets tried.
        targets: String,
    },
    /// The only SRV target is `.`: the domain says it offers no SIP over UDP.
    #[error("{srv} says the service is not offered (SRV target \".\"): ask the carrier for a host")]
    NotOffered {
        /// The SRV name.
        srv: String,
    },
    /// The whole resolution took longer than [`DNS_TIMEOUT`].
    #[error(
        "DNS lookup of {name} timed out after {timeout:?}: check that the DNS servers \
         (sip.dns_servers, else /etc/resolv.conf) are reachable"
    )]
    Timeout {
        /// The host looked up.
        name: String,
        /// The limit.
        timeout: Duration,
    },
    /// The resolver could not be set up.
    #[error("cannot set up the DNS resolver: {0}; set sip.dns_servers or fix /etc/resolv.conf")]
    Setup(String),
}

/// A resolver for SIP hosts; cheap to share (one cache for every call).
pub struct SipDns {
    resolver: TokioResolver,
    /// The limit on one whole resolution.
    timeout: Duration,
}

impl std::fmt::Debug for SipDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SipDns")
    }
}

impl SipDns {
    /// A resolver asking `servers` (UDP, then TCP for truncated answers), or the system's
    /// (`/etc/resolv.conf`) when the list is empty; an unreadable system configuration is
    /// logged, and only names then fail.
    pub fn new(servers: &[SocketAddr]) -> Result<Self, DnsError> {
        Self::with_timeout(servers, DNS_TIMEOUT)
    }

    /// Like [`SipDns::new`], each resolution limited to `timeout`.
    pub fn with_timeout(servers: &[SocketAddr], timeout: Duration) -> Result<Self, DnsError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if servers.is_empty() {
            match TokioResolver::builder(provider) {
                Ok(builder) => builder,
                Err(e) => {
                    // Addresses still work; names fail per call, naming the setting.
                    tracing::warn!(
                        error = %e,
                        "cannot read the system's DNS configuration: SIP host names will not \
                         resolve; set sip.dns_servers or fix /etc/resolv.conf"
                    );
                    TokioResolver::builder_with_config(
                        ResolverConfig::from_name_servers(Vec::new()),
                        TokioRuntimeProvider::default(),
                    )
                }
            }
        } else {
            let name_servers = servers
                .iter()
                .map(|server| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = server.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = server.port();
                    NameServerConfig::new(server.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(name_servers),
                provider,
            )
        };
        let options = builder.options_mut();
        options.timeout = Duration::from_secs(2);
        options.attempts = 2;
        let resolver = builder
            .build()
            .map_err(|e| DnsError::Setup(e.to_string()))?;
        Ok(Self { resolver, timeout })
    }

    /// The addresses to send a request for `host` (an IP address or a name) to, best first,
    /// at most [`MAX_TARGETS`]; never empty.
    pub async fn locate(&self, host: &str, port: Option<u16>) -> Result<Vec<SocketAddr>, DnsError> {
        self.locate_for(host, port, Transport::Udp).await
    }

    /// [`SipDns::locate`] for SIP over `transport`.
    pub async fn locate_for(
        &self,
        host: &str,
        port: Option<u16>,
        transport: Transport,
    ) -> Result<Vec<SocketAddr>, DnsError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(
                ip,
                port.unwrap_or_else(|| service(transport).2),
            )]);
        }
        match tokio::time::timeout(self.timeout, self.locate_name(host, port, transport)).await {
            Ok(result) => result,
            Err(_) => Err(DnsError::Timeout {
                name: host.to_owned(),
                timeout: self.timeout,
            }),
        }
    }

    async fn locate_name(
        &self,
        name: &str,
        port: Option<u16>,
        transport: Transport,
    ) -> Result<Vec<SocketAddr>, DnsError> {
        if let Some(port) = port {
            return self.addresses(name, port).await;
        }
        let (naptr_service, srv_prefix, default_port) = service(transport);
        let mut srv_names = self.naptr(name, naptr_service).await?;
        if srv_names.is_empty() {
            srv_names.push(format!("{srv_prefix}.{name}"));
        }
        let mut rng = SmallRng::seed_from_u64(getrandom::u64().unwrap_or_default());
        for srv_name in srv_names {
            let records = self.srv(&srv_name).await?;
            if records.is_empty() {
                continue;
            }
            if records.iter().all(|r| r.target == ".") {
                return Err(DnsError::NotOffered { srv: srv_name });
            }
            let ordered = order_srv(records, |total| rng.random_range(0..=total));
            let mut targets = Vec::new();
            let mut unresolved = Vec::new();
            for record in ordered.iter().filter(|r| r.target != ".") {
                match self.addresses(&record.target, record.port).await {
                    Ok(addrs) => targets.extend(addrs),
                    Err(e) => {
                        tracing::debug!(srv = %srv_name, target = %record.target, error = %e, "SRV target skipped");
                        unresolved.push(record.target.clone());
                    }
                }
                if targets.len() >= MAX_TARGETS {
                    break;
                }
            }
            if targets.is_empty() {
                return Err(DnsError::SrvTargetsUnresolved {
                    srv: srv_name,
                    targets: unresolved.join(", "),
                });
            }
            dedup_keep_order(&mut targets);
            targets.truncate(MAX_TARGETS);
            return Ok(targets);
        }
        self.addresses(name, default_port).await
    }

    /// NAPTR for `name`: the replacement names of its records for `naptr_service`, in order.
    async fn naptr(&self, name: &str, naptr_service: &str) -> Result<Vec<String>, DnsError> {
        let records = match self.resolver.lookup(name, RecordType::NAPTR).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::NAPTR(naptr) => Some(Naptr {
                        order: naptr.order,
                        preference: naptr.preference,
                        flags: String::from_utf8_lossy(&naptr.flags).into_owned(),
                        services: String::from_utf8_lossy(&naptr.services).into_owned(),
                        replacement: naptr.replacement.to_string(),
                    }),
                    _ => None,
                })
                .collect(),
            Err(e) if e.is_no_records_found() => Vec::new(),
            Err(e) => return Err(lookup_error(name, "NAPTR", &e)),
        };
        Ok(sip_services(records, naptr_service))
    }

    /// SRV records of `srv_name` (none when it has none).
    async fn srv(&self, srv_name: &str) -> Result<Vec<Srv>, DnsError> {
        match self.resolver.lookup(srv_name, RecordType::SRV).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::SRV(srv) => Some(Srv {
                        priority: srv.priority,
                        weight: srv.weight,
                        port: srv.port,
                        target: srv.target.to_string(),
                    }),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(lookup_error(srv_name, "SRV", &e)),
        }
    }

    /// A/AAAA of `name`, each with `port`.
    async fn addresses(&self, name: &str, port: u16) -> Result<Vec<SocketAddr>, DnsError> {
        match self.resolver.lookup_ip(name).await {
            Ok(lookup) => {
                let mut addrs: Vec<SocketAddr> =
                    lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect();
                dedup_keep_order(&mut addrs);
                addrs.truncate(MAX_TARGETS);
                if addrs.is_empty() {
                    Err(no_address(name))
                } else {
                    Ok(addrs)
                }
            }
            Err(e) if e.is_no_records_found() => Err(no_address(name)),
            Err(e) => Err(lookup_error(name, "A/AAAA", &e)),
        }
    }
}

fn no_address(name: &str) -> DnsError {
    DnsError::NoAddress {
        name: name.trim_end_matches('.').to_owned(),
    }
}

fn lookup_error(name: &str, record: &'static str, error: &NetError) -> DnsError {
    DnsError::Lookup {
        name: name.trim_end_matches('.').to_owned(),
        record,
        detail: error.to_string(),
    }
}

fn dedup_keep_order(addrs: &mut Vec<SocketAddr>) {
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|addr| seen.insert(*addr));
}

/// One NAPTR record, as far as SIP location reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Naptr {
    order: u16,
    preference: u16,
    flags: String,
    services: String,
    replacement: String,
}

/// The SRV names of the records for `naptr_service` (e.g. `SIP+D2U`) with flag `S` (RFC
/// 3263 §4.1), by order then preference; other transports, other flags and empty
/// replacements are left out.
fn sip_services(mut records: Vec<Naptr>, naptr_service: &str) -> Vec<String> {
    records.sort_by_key(|r| (r.order, r.preference));
    let mut names: Vec<String> = Vec::new();
    for record in records {
        let usable = record.services.eq_ignore_ascii_case(naptr_service)
            && record.flags.eq_ignore_ascii_case("s")
            && !record.replacement.is_empty()
            && record.replacement != ".";
        if usable && !names.contains(&record.replacement) {
            names.push(record.replacement);
        }
    }
    names
}

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Srv {
    priority: u16,
    weight: u16,
    port: u16,
    target: String,
}

/// RFC 2782 order: ascending priority; within a priority, a weighted draw without
/// replacement. `draw(total)` returns a number in `0..=total` (random in use, fixed in
/// tests). Weight-0 records go first in each round, so they are picked only on a draw of 0
/// (or when every weight left is 0, in their given order).
fn order_srv(mut records: Vec<Srv>, mut draw: impl FnMut(u32) -> u32) -> Vec<Srv> {
    records.sort_by_key(|r| r.priority);
    let mut ordered = Vec::with_capacity(records.len());
    for group in records.chunk_by(|a, b| a.priority == b.priority) {
        let mut left = group.to_vec();
        left.sort_by_key(|r| r.weight != 0);
        while !left.is_empty() {
            let total: u32 = left.iter().map(|r| u32::from(r.weight)).sum();
            let pick = draw(total).min(total);
            let mut running = 0;
            let index = left
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            ordered.push(left.remove(index));
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5060,
            target: target.to_owned(),
        }
    }

    fn targets(records: &[Srv]) -> Vec<&str> {
        records.iter().map(|r| r.target.as_str()).collect()
    }

    #[test]
    fn srv_priorities_go_lowest_first_whatever_the_weights() {
        let records = vec![
            srv(20, 100, "c"),
            srv(10, 0, "a"),
            srv(30, 5, "d"),
            srv(10, 0, "b"),
        ];
        let ordered = order_srv(records, |_| 0);
        assert_eq!(targets(&ordered), ["a", "b", "c", "d"]);
    }

    #[test]
    fn within_a_priority_the_draw_picks_by_running_weight() {
        let records = vec![
            srv(10, 60, "heavy"),
            srv(10, 30, "mid"),
            srv(10, 10, "light"),
        ];
        // Total 100: running sums 60, 90, 100. A draw of 75 lands on `mid`; then of the 70
        // left (heavy 60, light 10), 65 lands on `light`.
        let mut draws = vec![75, 65, 0].into_iter();
        let mut totals = Vec::new();
        let ordered = order_srv(records.clone(), |total| {
            totals.push(total);
            draws.next().unwrap_or(0)
        });
        assert_eq!(targets(&ordered), ["mid", "light", "heavy"]);
        assert_eq!(totals, [100, 70, 60]);
        // The lowest draw takes the first record, the highest the last.
        assert_eq!(targets(&order_srv(records.clone(), |_| 1))[0], "heavy");
        assert_eq!(targets(&order_srv(records, |total| total))[0], "light");
    }

    #[test]
    fn weight_zero_records_win_only_a_zero_draw() {
        let records = vec![srv(10, 50, "weighted"), srv(10, 0, "zero")];
        assert_eq!(
            targets(&order_srv(records.clone(), |_| 0)),
            ["zero", "weighted"]
        );
        assert_eq!(targets(&order_srv(records, |_| 1)), ["weighted", "zero"]);
        // All weights zero: the given order, whatever is drawn.
        let zeros = vec![srv(5, 0, "x"), srv(5, 0, "y"), srv(5, 0, "z")];
        assert_eq!(targets(&order_srv(zeros, |_| 7)), ["x", "y", "z"]);
    }

    #[test]
    fn a_draw_above_the_total_is_clamped() {
        let records = vec![srv(1, 1, "a"), srv(1, 1, "b")];
        assert_eq!(targets(&order_srv(records, |_| u32::MAX)), ["b", "a"]);
    }

    #[test]
    fn weighted_order_follows_the_weights_over_many_draws() {
        let records = vec![srv(1, 90, "heavy"), srv(1, 10, "light")];
        let mut rng = SmallRng::seed_from_u64(7);
        let heavy_first = (0..2000)
            .filter(|_| {
                order_srv(records.clone(), |t| rng.random_range(0..=t))[0].target == "heavy"
            })
            .count();
        // Expected 90/101 of 2000 (~1782); a wide band still fails an unweighted order.
        assert!((1650..=1900).contains(&heavy_first), "{heavy_first}");
    }

    fn naptr(order: u16, preference: u16, flags: &str, services: &str, to: &str) -> Naptr {
        Naptr {
            order,
            preference,
            flags: flags.to_owned(),
            services: services.to_owned(),
            replacement: to.to_owned(),
        }
    }

    #[test]
    fn naptr_keeps_sip_over_udp_by_order_then_preference() {
        let records = vec![
            naptr(20, 10, "s", "SIP+D2U", "_sip._udp.backup.example."),
            naptr(10, 50, "S", "sip+d2u", "_sip._udp.second.example."),
            naptr(10, 10, "s", "SIPS+D2T", "_sips._tcp.example."),
            naptr(10, 20, "s", "SIP+D2T", "_sip._tcp.example."),
            naptr(10, 30, "s", "SIP+D2U", "_sip._udp.first.example."),
            naptr(5, 1, "u", "SIP+D2U", "!^.*$!sip:x@y!"),
            naptr(5, 2, "s", "SIP+D2U", "."),
            naptr(30, 1, "s", "SIP+D2U", "_sip._udp.first.example."),
        ];
        assert_eq!(
            sip_services(records, "SIP+D2U"),
            [
                "_sip._udp.first.example.",
                "_sip._udp.second.example.",
                "_sip._udp.backup.example."
            ]
        );
        let tcp = || vec![naptr(1, 1, "s", "SIP+D2T", "_sip._tcp.x.")];
        assert!(sip_services(tcp(), "SIP+D2U").is_empty());
        assert_eq!(sip_services(tcp(), "SIP+D2T"), ["_sip._tcp.x."]);
        assert!(sip_services(tcp(), "SIPS+D2T").is_empty());
    }

    #[tokio::test]
    async fn addresses_and_explicit_ports_skip_dns() {
        // No server listens on port 9; nothing here may reach it.
        let dns = SipDns::new(&["127.0.0.1:9".parse().unwrap()]).unwrap();
        assert_eq!(
            dns.locate("192.0.2.30", None).await,
            Ok(vec!["192.0.2.30:5060".parse().unwrap()])
        );
        assert_eq!(
            dns.locate("192.0.2.30", Some(5080)).await,
            Ok(vec!["192.0.2.30:5080".parse().unwrap()])
        );
        assert_eq!(
            dns.locate("[2001:db8::1]", Some(5070)).await,
            Ok(vec!["[2001:db8::1]:5070".parse().unwrap()])
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_gives_a_message_naming_the_host_and_the_setting() {
        // Port 9 on loopback: nothing listens, so every query fails (ICMP) or times out.
        let dns = SipDns::with_timeout(
            &["127.0.0.1:9".parse().unwrap()],
            Duration::from_millis(300),
        )
        .unwrap();
        // (Not a reserved name such as `.invalid`, which the resolver answers itself.)
        let error = dns.locate("sip.carrier.net", Some(5060)).await.unwrap_err();
        assert!(
            matches!(error, DnsError::Lookup { .. } | DnsError::Timeout { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("sip.carrier.net"), "{message}");
        assert!(message.contains("sip.dns_servers"), "{message}");
    }
}
