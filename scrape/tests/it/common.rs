//! Test fixtures: a real HTTP server on loopback (axum) whose replies tests set per path and which records the
//! requests it gets, a real DNS server on loopback (UDP, answers encoded by hickory-proto), and helpers to
//! wait for conditions with deadlines.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

/// What the server answers on a path.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    pub gzip: bool,
    pub delay: Duration,
}

impl Reply {
    /// `200 OK` with the Prometheus text format.
    pub fn text(body: &str) -> Reply {
        Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8".into(),
            body: body.as_bytes().to_vec(),
            gzip: false,
            delay: Duration::ZERO,
        }
    }

    /// `200 OK` with OpenMetrics text.
    pub fn openmetrics(body: &str) -> Reply {
        Reply { content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8".into(), ..Reply::text(body) }
    }

    /// `200 OK` with JSON.
    pub fn json(body: &str) -> Reply {
        Reply { content_type: "application/json".into(), ..Reply::text(body) }
    }

    pub fn status(status: u16) -> Reply {
        Reply { status, ..Reply::text("oops\n") }
    }

    pub fn gzipped(self) -> Reply {
        Reply { gzip: true, ..self }
    }

    pub fn delayed(self, delay: Duration) -> Reply {
        Reply { delay, ..self }
    }
}

/// A request the server got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub headers: HeaderMap,
    pub query: Option<String>,
}

#[derive(Default)]
struct ServerState {
    replies: HashMap<String, Reply>,
    hits: HashMap<String, Vec<Hit>>,
}

/// An HTTP server on 127.0.0.1; stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<ServerState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(state): State<Arc<Mutex<ServerState>>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let reply = {
        let mut st = state.lock().unwrap();
        st.hits
            .entry(path.clone())
            .or_default()
            .push(Hit { headers: req.headers().clone(), query: req.uri().query().map(String::from) });
        st.replies.get(&path).cloned()
    };
    let Some(reply) = reply else {
        return Response::builder().status(StatusCode::NOT_FOUND).body(Body::from("no such path\n")).unwrap();
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut b = Response::builder().status(reply.status).header("content-type", reply.content_type);
    let body = if reply.gzip {
        b = b.header("content-encoding", "gzip");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&reply.body).unwrap();
        enc.finish().unwrap()
    } else {
        reply.body
    };
    b.body(Body::from(body)).unwrap()
}

impl TestServer {
    pub async fn start() -> TestServer {
        let state = Arc::new(Mutex::new(ServerState::default()));
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestServer { addr, state, task }
    }

    pub fn set(&self, path: &str, reply: Reply) {
        self.state.lock().unwrap().replies.insert(path.to_string(), reply);
    }

    pub fn hits(&self, path: &str) -> Vec<Hit> {
        self.state.lock().unwrap().hits.get(path).cloned().unwrap_or_default()
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Polls `check` every 20ms until it returns Some, failing the test after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub mod dns {
    //! A DNS server on 127.0.0.1 (UDP) answering from a table the test edits.

    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
    use hickory_proto::rr::rdata::{A, AAAA, SRV};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    #[derive(Default)]
    struct Zone {
        records: HashMap<(String, RecordType), Vec<RData>>,
        failing: Vec<String>,
        queries: usize,
    }

    pub struct DnsServer {
        pub addr: SocketAddr,
        zone: Arc<Mutex<Zone>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for DnsServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    fn key(name: &str) -> String {
        name.trim_end_matches('.').to_ascii_lowercase()
    }

    impl DnsServer {
        pub async fn start() -> DnsServer {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = socket.local_addr().unwrap();
            let zone = Arc::new(Mutex::new(Zone::default()));
            let z = zone.clone();
            let task = tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let Ok((n, peer)) = socket.recv_from(&mut buf).await else { return };
                    let Ok(req) = Message::from_vec(&buf[..n]) else { continue };
                    let resp = answer(&z, &req);
                    if let Ok(bytes) = resp.to_vec() {
                        let _ = socket.send_to(&bytes, peer).await;
                    }
                }
            });
            DnsServer { addr, zone, task }
        }

        pub fn set_a(&self, name: &str, ips: &[&str]) {
            let rdata = ips.iter().map(|ip| RData::A(A(ip.parse().unwrap()))).collect();
            self.zone.lock().unwrap().records.insert((key(name), RecordType::A), rdata);
        }

        pub fn set_aaaa(&self, name: &str, ips: &[&str]) {
            let rdata = ips.iter().map(|ip| RData::AAAA(AAAA(ip.parse().unwrap()))).collect();
            self.zone.lock().unwrap().records.insert((key(name), RecordType::AAAA), rdata);
        }

        pub fn set_srv(&self, name: &str, records: &[(&str, u16)]) {
            let rdata = records
                .iter()
                .map(|(target, port)| RData::SRV(SRV::new(10, 5, *port, Name::from_ascii(target).unwrap())))
                .collect();
            self.zone.lock().unwrap().records.insert((key(name), RecordType::SRV), rdata);
        }

        pub fn remove(&self, name: &str) {
            self.zone.lock().unwrap().records.retain(|(n, _), _| *n != key(name));
        }

        /// Makes the server answer SERVFAIL for `name` (or stop doing so).
        pub fn set_failing(&self, name: &str, failing: bool) {
            let mut z = self.zone.lock().unwrap();
            z.failing.retain(|n| *n != key(name));
            if failing {
                z.failing.push(key(name));
            }
        }

        pub fn queries(&self) -> usize {
            self.zone.lock().unwrap().queries
        }
    }

    fn answer(zone: &Mutex<Zone>, req: &Message) -> Message {
        let mut resp = Message::new();
        resp.set_id(req.id())
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(req.recursion_desired())
            .set_recursion_available(true)
            .set_authoritative(true);
        let Some(q) = req.queries().first() else {
            resp.set_response_code(ResponseCode::FormErr);
            return resp;
        };
        resp.add_query(q.clone());
        let name = key(&q.name().to_ascii());
        let mut z = zone.lock().unwrap();
        z.queries += 1;
        if z.failing.contains(&name) {
            resp.set_response_code(ResponseCode::ServFail);
            return resp;
        }
        match z.records.get(&(name.clone(), q.query_type())) {
            Some(rdata) => {
                for r in rdata {
                    resp.add_answer(Record::from_rdata(q.name().clone(), 0, r.clone()));
                }
            }
            None if z.records.keys().any(|(n, _)| *n == name) => {} // NOERROR, no data
            None => {
                resp.set_response_code(ResponseCode::NXDomain);
            }
        }
        resp
    }
}
