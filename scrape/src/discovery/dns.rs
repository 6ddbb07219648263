//! dns_sd: targets from DNS A, AAAA or SRV records, as Prometheus's DNS service discovery.
//!
//! Every `refresh_interval` each name is looked up (no caching between refreshes, no hosts file):
//!
//! * A / AAAA: one group per name, targets `ip:port` (`[ip]:port` for IPv6) with the configured port, sorted;
//!   label `__meta_dns_name`.
//! * SRV: one group per record, target `host:port` from the record (the host without its trailing dot);
//!   labels `__meta_dns_name`, `__meta_dns_srv_record_target`, `__meta_dns_srv_record_port`.
//!
//! A name that does not exist or has no such records has no targets; any other failure (timeout, server
//! failure) is logged and keeps the name's last good groups. The nameserver is the system's
//! (`/etc/resolv.conf`) unless [`DiscoveryOptions::dns_nameserver`](super::DiscoveryOptions) names one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, TokioResolver};
use tracing::{debug, warn};

use super::{Publisher, TargetGroup};
use crate::config::{DnsRecordType, DnsSdConfig};
use crate::labels;

pub const META_DNS_NAME: &str = "__meta_dns_name";
pub const META_SRV_TARGET: &str = "__meta_dns_srv_record_target";
pub const META_SRV_PORT: &str = "__meta_dns_srv_record_port";

pub(crate) async fn run(cfg: DnsSdConfig, nameserver: Option<SocketAddr>, out: Publisher) {
    let mut resolver = None;
    let mut last: BTreeMap<usize, Vec<TargetGroup>> = BTreeMap::new();
    loop {
        if resolver.is_none() {
            match build_resolver(nameserver) {
                Ok(r) => resolver = Some(r),
                Err(e) => {
                    warn!(error = %e, "dns_sd: cannot set up a resolver");
                    out.publish_empty_if_first();
                }
            }
        }
        if let Some(r) = &resolver {
            for (i, name) in cfg.names.iter().enumerate() {
                match lookup(r, name, &cfg).await {
                    Ok(groups) => {
                        debug!(name = %name, groups = groups.len(), "dns_sd: refreshed");
                        last.insert(i, groups);
                    }
                    Err(e) if is_no_data(&e) => {
                        debug!(name = %name, error = %e, "dns_sd: no records");
                        last.insert(i, no_targets(name, cfg.record_type));
                    }
                    Err(e) => warn!(name = %name, error = %e, "dns_sd: lookup failed; keeping the last good targets"),
                }
            }
            out.publish(last.values().flatten().cloned().collect());
        }
        tokio::time::sleep(cfg.refresh_interval).await;
    }
}

/// Whether the server answered that the name does not exist (NXDOMAIN) or has no such records (NOERROR with
/// no answers), as opposed to failing (SERVFAIL, REFUSED, timeouts...), which hickory also reports as "no
/// records found".
fn is_no_data(e: &ResolveError) -> bool {
    use hickory_resolver::proto::op::ResponseCode;
    use hickory_resolver::proto::ProtoErrorKind;
    match e.proto().map(|p| p.kind()) {
        Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => {
            matches!(*response_code, ResponseCode::NXDomain | ResponseCode::NoError)
        }
        _ => false,
    }
}

fn build_resolver(nameserver: Option<SocketAddr>) -> Result<TokioResolver, ResolveError> {
    let mut builder = match nameserver {
        Some(addr) => {
            let servers = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], servers),
                TokioConnectionProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio()?,
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    // Each refresh asks the server, as Prometheus does; no hosts file.
    opts.cache_size = 0;
    opts.positive_max_ttl = Some(Duration::ZERO);
    opts.negative_max_ttl = Some(Duration::ZERO);
    opts.use_hosts_file = ResolveHosts::Never;
    opts.timeout = Duration::from_secs(5);
    opts.attempts = 2;
    Ok(builder.build())
}

async fn lookup(r: &TokioResolver, name: &str, cfg: &DnsSdConfig) -> Result<Vec<TargetGroup>, ResolveError> {
    let port = cfg.port.unwrap_or(0);
    let mut targets: Vec<SocketAddr> = match cfg.record_type {
        DnsRecordType::A => r.ipv4_lookup(name).await?.iter().map(|a| SocketAddr::new(a.0.into(), port)).collect(),
        DnsRecordType::Aaaa => r.ipv6_lookup(name).await?.iter().map(|a| SocketAddr::new(a.0.into(), port)).collect(),
        DnsRecordType::Srv => {
            let mut records: Vec<(String, u16)> = r
                .srv_lookup(name)
                .await?
                .iter()
                .map(|srv| (srv.target().to_utf8().trim_end_matches('.').to_string(), srv.port()))
                .collect();
            records.sort();
            records.dedup();
            return Ok(records
                .into_iter()
                .enumerate()
                .map(|(i, (host, port))| TargetGroup {
                    source: format!("{name}:{i}"),
                    targets: vec![join_host_port(&host, port)],
                    labels: labels::from_pairs([
                        (META_DNS_NAME, name.to_string()),
                        (META_SRV_TARGET, host),
                        (META_SRV_PORT, port.to_string()),
                    ]),
                })
                .collect());
        }
    };
    targets.sort();
    targets.dedup();
    Ok(vec![TargetGroup {
        source: name.to_string(),
        targets: targets.into_iter().map(|a| a.to_string()).collect(),
        labels: labels::from_pairs([(META_DNS_NAME, name)]),
    }])
}

/// The groups of a name without records: A and AAAA keep a group with no targets (as Prometheus sends),
/// SRV has no groups (they are per record).
fn no_targets(name: &str, record_type: DnsRecordType) -> Vec<TargetGroup> {
    match record_type {
        DnsRecordType::Srv => vec![],
        DnsRecordType::A | DnsRecordType::Aaaa => vec![TargetGroup {
            source: name.to_string(),
            targets: vec![],
            labels: labels::from_pairs([(META_DNS_NAME, name)]),
        }],
    }
}

/// `host:port`, bracketing IPv6 literals as Go's `net.JoinHostPort` does.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
