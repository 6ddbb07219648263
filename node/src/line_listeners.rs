//! Line protocol over plain TCP and UDP (Telegraf's socket_writer, `nc`, statsd-style senders), off by
//! default (`line_tcp_addr`, `line_udp_addr`). Same parser and limits as `POST /write`; timestamps in
//! nanoseconds, a missing one means now.
//!
//! There is no answer channel: a bad line is logged (with its reason) and counted in
//! `pharos_write_requests_total{protocol="tcp"|"udp",code="invalid_argument"}`, and the lines around it are
//! still written. TCP lines are written in batches of up to `write.max_batch_points` lines or every 100 ms;
//! a batch that cannot be written (no shard leader within the write timeout) is retried, so a slow cluster
//! slows the sender down (TCP back-pressure) instead of losing data. UDP datagrams are written as they
//! come; UDP may drop them before they reach Pharos, which is why it is for best-effort metrics only.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pharos_storage::line_protocol::{parse_into, Limits};
use pharos_storage::{Point, Precision};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::ingest::{Batch, Source};
use crate::node::Node;

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// Parses a batch of lines, skipping (and reporting) bad ones. Returns the points and the number of bad lines.
pub fn parse_lenient(body: &[u8], limits: &Limits, origin: &str) -> (Vec<Point>, u64) {
    let mut points = Vec::new();
    let mut rest = body;
    let mut bad = 0;
    let mut line_base = 0;
    while !rest.is_empty() {
        match parse_into(rest, Precision::Nanoseconds, now_ns(), limits, &mut points) {
            Ok(()) => break,
            Err(e) => {
                bad += 1;
                warn!(from = origin, line = line_base + e.line, error = %e, "line protocol: bad line skipped");
                // Skip past the bad line and go on with the next.
                let mut skipped = 0;
                let mut pos = 0;
                while skipped < e.line && pos < rest.len() {
                    match rest[pos..].iter().position(|b| *b == b'\n') {
                        Some(i) => pos += i + 1,
                        None => pos = rest.len(),
                    }
                    skipped += 1;
                }
                line_base += e.line;
                rest = &rest[pos..];
            }
        }
    }
    (points, bad)
}

async fn write_with_retry(node: &Arc<Node>, points: Vec<Point>, source: Source) {
    let mut backoff = Duration::from_millis(100);
    let protocol = source.label();
    loop {
        let batch =
            Batch { source, precision: Some(Precision::Nanoseconds), points: points.clone(), then_invalid: false };
        match node.ingest.ingest(batch).await {
            Ok(w) => {
                if let Some(why) = w.refusal {
                    warn!(protocol, "line protocol: {why}");
                }
                return;
            }
            Err(e) => {
                if e.http_status().is_client_error() {
                    warn!(protocol, error = %e, "line protocol: batch refused");
                    return;
                }
                warn!(protocol, error = %e, "line protocol: batch not written yet, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Serves line protocol over TCP until shutdown.
pub async fn serve_tcp(node: Arc<Node>, listener: TcpListener, mut stop: broadcast::Receiver<()>) {
    info!(addr = ?listener.local_addr().ok(), "line protocol over TCP");
    loop {
        let (sock, peer) = tokio::select! {
            _ = stop.recv() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "line protocol TCP: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let node = node.clone();
        let mut stop = stop.resubscribe();
        tokio::spawn(async move {
            let origin = peer.to_string();
            let limits = node.config.limits.line();
            let max_lines = node.config.write.max_batch_points.max(1);
            let max_line = limits.max_line_bytes;
            let mut reader = BufReader::new(sock);
            let mut batch: Vec<u8> = Vec::new();
            let mut lines = 0usize;
            let mut line = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                let flush = tokio::select! {
                    _ = stop.recv() => {
                        // Shutting down: write what was received, then close.
                        flush_batch(&node, &mut batch, &mut lines, &limits, &origin).await;
                        return;
                    }
                    _ = tick.tick() => lines > 0,
                    r = reader.read_until(b'\n', &mut line) => match r {
                        Ok(0) | Err(_) => {
                            // Connection closed: write what is left, then end.
                            if !line.is_empty() {
                                batch.extend_from_slice(&line);
                                batch.push(b'\n');
                                lines += 1;
                            }
                            flush_batch(&node, &mut batch, &mut lines, &limits, &origin).await;
                            return;
                        }
                        Ok(_) => {
                            if line.len() > max_line + 1 {
                                warn!(from = %origin, "line protocol TCP: line longer than limits.max_line_bytes skipped");
                                node.metrics.write_requests.with_label_values(&["tcp", "invalid_argument"]).inc();
                            } else {
                                batch.extend_from_slice(&line);
                                lines += 1;
                            }
                            line.clear();
                            lines >= max_lines
                        }
                    },
                };
                if flush {
                    flush_batch(&node, &mut batch, &mut lines, &limits, &origin).await;
                }
            }
        });
    }
}

async fn flush_batch(node: &Arc<Node>, batch: &mut Vec<u8>, lines: &mut usize, limits: &Limits, origin: &str) {
    if batch.is_empty() {
        return;
    }
    let (points, bad) = parse_lenient(batch, limits, origin);
    if bad > 0 {
        node.metrics.write_requests.with_label_values(&["tcp", "invalid_argument"]).inc_by(bad);
    }
    batch.clear();
    *lines = 0;
    if !points.is_empty() {
        write_with_retry(node, points, Source::Tcp).await;
    }
}

/// Serves line protocol over UDP (one or more lines per datagram) until shutdown.
pub async fn serve_udp(node: Arc<Node>, sock: UdpSocket, mut stop: broadcast::Receiver<()>) {
    info!(addr = ?sock.local_addr().ok(), "line protocol over UDP");
    let limits = node.config.limits.line();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, peer) = tokio::select! {
            _ = stop.recv() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "line protocol UDP: receive failed");
                    continue;
                }
            },
        };
        let (points, bad) = parse_lenient(&buf[..n], &limits, &peer.to_string());
        if bad > 0 {
            node.metrics.write_requests.with_label_values(&["udp", "invalid_argument"]).inc_by(bad);
        }
        if !points.is_empty() {
            let node = node.clone();
            tokio::spawn(async move { write_with_retry(&node, points, Source::Udp).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_skipped_and_the_rest_kept() {
        let body = b"cpu,host=a usage=1 1000000000\ncpu,host=b usage=oops 1000000000\n\ncpu,host=c usage=3 1000000000\nbroken\ncpu,host=d usage=4 1000000000";
        let (points, bad) = parse_lenient(body, &Limits::default(), "test");
        assert_eq!(bad, 2);
        let hosts: Vec<&str> = points.iter().map(|p| p.tags[0].1.as_str()).collect();
        assert_eq!(hosts, vec!["a", "c", "d"]);
        assert!(points.iter().all(|p| p.timestamp == 1000));
    }
}
