//! Authentication and roles on real processes: three nodes with `[auth] enabled`, tokens made with
//! pharosctl, every HTTP route and gRPC method called with every role, the node-to-node service refused to
//! anyone without the cluster secret, a node joining with it, and real clients presenting tokens the way
//! they do (the `influx` CLI's -username/-password, Prometheus's remote_write `authorization` and
//! `basic_auth`).

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cluster_tests::receivers::PrometheusServer;
use cluster_tests::{free_port, recent_ms, wait_for, Cluster};
use pharos_node::auth::Access;
use serde_json::Value as Json;

const AUTH: &str = "[auth]\nenabled = true\nadmin_token = \"root-secret\"\n";

/// Makes a token with pharosctl and returns its secret (the last line of the output).
fn create_token(c: &Cluster, name: &str, role: &str, extra: &[&str]) -> Result<String> {
    let mut args = vec!["token", "create", "--name", name, "--role", role];
    args.extend_from_slice(extra);
    let out = c.pharosctl(1, &args)?;
    let secret = out.lines().last().context("pharosctl printed nothing")?.trim().to_string();
    assert!(secret.starts_with("pharos_") && secret.len() > 60, "the secret alone on the last line: {out}");
    Ok(secret)
}

/// Calls a gRPC method with an empty message; the status code it ends with.
async fn grpc_code(addr: &str, path: &'static str, token: Option<&str>, peer: Option<&str>) -> Result<tonic::Code> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect().await?;
    let mut g = tonic::client::Grpc::new(ch);
    g.ready().await?;
    let mut req = tonic::Request::new(());
    if let Some(t) = token {
        req.metadata_mut().insert("authorization", format!("Bearer {t}").parse()?);
    }
    if let Some(p) = peer {
        req.metadata_mut().insert("x-pharos-cluster-secret", p.parse()?);
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    Ok(match g.unary(req, path, codec).await {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    })
}

fn allows(role: &str, access: Access) -> bool {
    match access {
        Access::Public => true,
        Access::Peer => false,
        Access::Read => matches!(role, "read" | "admin"),
        Access::Write => matches!(role, "write" | "admin"),
        Access::Admin | Access::Change => role == "admin",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_every_route_and_method_needs_its_role_and_peers_need_the_cluster_secret() -> Result<()> {
    let mut c = Cluster::start(3, AUTH).await?;
    // Without a token even a status is refused, with what to do.
    let err = c.pharosctl(1, &["status"]).unwrap_err().to_string();
    assert!(err.contains("needs a token") && err.contains("--token"), "{err}");
    c.token = Some("root-secret".into());
    let reader = create_token(&c, "grafana", "read", &[])?;
    let writer = create_token(&c, "telegraf", "write", &[])?;
    let ops = create_token(&c, "ops", "admin", &[])?;
    let err = c.pharosctl(1, &["token", "create", "--name", "grafana", "--role", "read"]).unwrap_err().to_string();
    assert!(err.contains("exists"), "{err}");
    let listed = c.pharosctl(1, &["token", "list"])?;
    for (name, role) in [("grafana", "read"), ("telegraf", "write"), ("ops", "admin")] {
        assert!(listed.lines().any(|l| l.starts_with(name) && l.contains(role)), "{listed}");
    }
    for secret in [&reader, &writer, &ops] {
        assert!(!listed.contains(&secret[7..]), "token list shows no secret: {listed}");
    }
    let tokens = [("read", reader.as_str()), ("write", writer.as_str()), ("admin", ops.as_str())];

    // Every HTTP route, with every role and without a token.
    let n1 = c.nodes[0].http.clone();
    for route in pharos_node::http::route_table() {
        for &method in route.methods {
            let m = reqwest::Method::from_bytes(method.as_bytes())?;
            let url = format!("http://{n1}{}", route.path);
            let code = c.http.request(m.clone(), &url).send().await?.status().as_u16();
            if route.access == Access::Public {
                assert!(code != 401 && code != 403, "{method} {} is public: {code}", route.path);
            } else {
                assert_eq!(code, 401, "{method} {} without a token", route.path);
            }
            for (role, secret) in tokens {
                // An admin's call runs (a compaction of every group takes a while on a loaded machine).
                let call = c.http.request(m.clone(), &url).bearer_auth(secret).timeout(Duration::from_secs(180));
                let code = call.send().await?.status().as_u16();
                if allows(role, route.access) {
                    assert!(code != 401 && code != 403, "{method} {} with role {role}: {code}", route.path);
                } else {
                    assert_eq!(code, 403, "{method} {} with role {role}", route.path);
                }
            }
        }
    }

    // Every gRPC method, likewise; the node-to-node service refuses every token, admin's too.
    let g1 = c.nodes[0].grpc.clone();
    for &(path, access) in pharos_node::auth::grpc::METHODS {
        let code = grpc_code(&g1, path, None, None).await?;
        let expect_missing = if access == Access::Public { None } else { Some(tonic::Code::Unauthenticated) };
        if let Some(e) = expect_missing {
            assert_eq!(code, e, "{path} without a token");
        }
        for (role, secret) in tokens {
            let code = grpc_code(&g1, path, Some(secret), None).await?;
            if access == Access::Peer {
                assert_eq!(code, tonic::Code::Unauthenticated, "{path} with role {role}");
            } else if allows(role, access) {
                assert!(
                    !matches!(code, tonic::Code::Unauthenticated | tonic::Code::PermissionDenied),
                    "{path} with role {role}: {code:?}"
                );
            } else {
                assert_eq!(code, tonic::Code::PermissionDenied, "{path} with role {role}");
            }
        }
        if access == Access::Peer {
            let code = grpc_code(&g1, path, None, Some("not-the-secret")).await?;
            assert_eq!(code, tonic::Code::Unauthenticated, "{path} with a wrong cluster secret");
        }
    }

    // The nodes themselves talk with the cluster secret: a write through node 2 is forwarded to the shards'
    // leaders and read back through node 3.
    let t0 = recent_ms();
    let body: String = (0..50).map(|i| format!("authtest,host=h{i} v={i} {}\n", t0 + i)).collect();
    let r = c.http.post(c.nodes[1].url("/write?precision=ms")).bearer_auth(&writer).body(body).send().await?;
    assert_eq!(r.status(), 204, "{}", r.text().await?);
    let url = c.nodes[2].url("/api/v1/export?measurement=authtest");
    let text = c.http.get(&url).bearer_auth(&reader).send().await?.text().await?;
    assert_eq!(text.lines().count(), 50, "{text}");
    // InfluxDB 1.x credentials: HTTP Basic with the token as password, and the u/p parameters.
    let q = [("q", "SELECT count(v) FROM authtest"), ("db", "pharos")];
    let r = c.http.get(c.nodes[2].url("/query")).query(&q).basic_auth("grafana", Some(&reader)).send().await?;
    assert_eq!(r.status(), 200);
    let r = c.http.get(c.nodes[2].url("/query")).query(&q).query(&[("u", "grafana"), ("p", &reader)]).send().await?;
    assert_eq!(r.status(), 200);
    let r = c.http.get(c.nodes[2].url("/query")).query(&q).basic_auth("grafana", Some("wrong")).send().await?;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));

    // Revoked: refused from the next call on, on every node.
    c.pharosctl(1, &["token", "revoke", "telegraf"])?;
    for n in &c.nodes {
        let w = n.url("/write?precision=ms");
        wait_for(Duration::from_secs(10), "the revocation to reach every node", || async {
            let r = c.http.post(&w).bearer_auth(&writer).body(format!("authtest v=1 {t0}")).send().await?;
            Ok((r.status() == 401).then_some(()))
        })
        .await?;
    }
    // gRPC too, on every node.
    for n in &c.nodes {
        let code = grpc_code(&n.grpc, "/pharos.v1.Write/Write", Some(&writer), None).await?;
        assert_eq!(code, tonic::Code::Unauthenticated, "a revoked token over gRPC on node {}", n.id);
    }
    // Expired.
    let brief = create_token(&c, "brief", "read", &["--expires", "2s"])?;
    let ping = c.nodes[0].url("/api/alerts");
    assert_eq!(c.http.get(&ping).bearer_auth(&brief).send().await?.status(), 200);
    let status = "/pharos.v1.Admin/Status";
    assert_eq!(grpc_code(&g1, status, Some(&brief), None).await?, tonic::Code::Ok);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = c.http.get(&ping).bearer_auth(&brief).send().await?;
    assert_eq!(r.status(), 401);
    assert!(r.text().await?.contains("expired"));
    assert_eq!(grpc_code(&g1, status, Some(&brief), None).await?, tonic::Code::Unauthenticated, "expired, gRPC");

    // Refusals are counted (and the counters need a token to read).
    let metrics = c.http.get(c.nodes[0].url("/metrics")).bearer_auth(&reader).send().await?.text().await?;
    for (interface, reason) in [
        ("http", "missing"),
        ("http", "forbidden"),
        ("grpc", "missing"),
        ("internal", "peer"),
        ("http", "expired"),
        ("grpc", "expired"),
        ("grpc", "invalid"),
    ] {
        let counted = metrics.lines().any(|l| {
            l.starts_with("pharos_auth_refusals_total")
                && l.contains(&format!("interface=\"{interface}\""))
                && l.contains(&format!("reason=\"{reason}\""))
        });
        assert!(counted, "{interface}/{reason} refusals counted:\n{metrics}");
    }

    // The audit trail: admin changes as log lines and as a series (who, what, from).
    let audit = wait_for(Duration::from_secs(10), "the audit series", || async {
        let q = [("q", "SELECT count(count) FROM pharos_audit GROUP BY who, what, \"from\""), ("db", "pharos")];
        let r: Json = c.http.get(c.nodes[0].url("/query")).query(&q).bearer_auth(&reader).send().await?.json().await?;
        let text = r.to_string();
        Ok((text.contains("CreateToken") && text.contains("RevokeToken")).then_some(text))
    })
    .await?;
    assert!(audit.contains("\"who\":\"admin_token\""), "{audit}");
    assert!(audit.contains("\"from\":\"127.0.0.1\""), "the caller's address: {audit}");
    assert!(c.nodes[0].log().contains("admin change"), "the audit log line");

    // Readers see the routing configuration with its secrets replaced; admins see it whole.
    let dir = tempfile::TempDir::new()?;
    let routing = dir.path().join("routing.yml");
    std::fs::write(
        &routing,
        "route: {receiver: r}\nreceivers:\n  - name: r\n    webhook_configs:\n      - url: http://127.0.0.1:9/hook\n        http_config: {authorization: {credentials: hook-s3cret}}\n",
    )?;
    c.pharosctl(1, &["routing", "apply", routing.to_str().unwrap()])?;
    let whole = c.pharosctl(1, &["routing", "show"])?;
    assert!(whole.contains("hook-s3cret"), "{whole}");
    let redacted = c.pharosctl(1, &["--token", &reader, "routing", "show"])?;
    assert!(!redacted.contains("hook-s3cret") && redacted.contains("<secret>"), "{redacted}");
    assert!(redacted.contains("http://127.0.0.1:9/hook"), "{redacted}");
    // And the scrape configuration likewise.
    let scrape = dir.path().join("scrape.yml");
    std::fs::write(
        &scrape,
        "scrape_configs:\n  - job_name: secured\n    static_configs: [{targets: ['127.0.0.1:9']}]\n    basic_auth: {username: scraper, password: scrape-s3cret}\n",
    )?;
    c.pharosctl(1, &["scrape", "apply", scrape.to_str().unwrap()])?;
    assert!(c.pharosctl(1, &["scrape", "show"])?.contains("scrape-s3cret"));
    let redacted = c.pharosctl(1, &["--token", &reader, "scrape", "show"])?;
    assert!(!redacted.contains("scrape-s3cret") && redacted.contains("<secret>"), "{redacted}");
    assert!(redacted.contains("username: scraper"), "{redacted}");

    // A node joins: it presents the cluster secret (derived from the shared admin token) to register.
    let id = c.join(1, None, AUTH).await?;
    let st = c.status(id).await?;
    assert_eq!(st.nodes.len(), 4);
    Ok(())
}

/// What a caller holding a credential still may not do: a peer's forwarded write obeys the request limits a
/// direct one does, an export is bounded by the query limits, a reader may see but not cancel a rebalance,
/// and refused calls are logged at a bounded rate, never with what the caller presented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t15_limits_hold_behind_every_credential_and_refusals_are_logged_without_secrets() -> Result<()> {
    let config = format!(
        "{AUTH}cluster_secret = \"peer-s3cret\"\n[limits]\nmax_points_per_request = 100\n[query]\nmax_series = 20\n"
    );
    let mut c = Cluster::start(1, &config).await?;
    c.token = Some("root-secret".into());
    let reader = create_token(&c, "grafana", "read", &[])?;
    let g1 = c.nodes[0].grpc.clone();

    // The node-to-node service, called with the cluster secret: a far-future point and an oversized batch
    // are refused as InvalidArgument, and nothing of either is written.
    let now = recent_ms();
    let point = |i: i64, ts: i64| pharos_storage::model::Point {
        measurement: "fwd".into(),
        tags: vec![("host".into(), format!("h{i}").into())],
        fields: vec![("v".into(), i as f64)],
        timestamp: ts,
    };
    let mut internal = pharos_proto::internal::internal_client::InternalClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{g1}"))?.connect().await?,
    );
    let forward = |points: Vec<pharos_storage::model::Point>| {
        let mut packed = Vec::new();
        pharos_storage::packed::encode(&points, &mut packed);
        let mut req =
            tonic::Request::new(pharos_proto::internal::ForwardWriteRequest { shard: 0, points: vec![], packed });
        req.metadata_mut().insert("x-pharos-cluster-secret", "peer-s3cret".parse().unwrap());
        req
    };
    let far = now + 400 * 86_400_000;
    let err = internal.forward_write(forward(vec![point(1, now), point(2, far)])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("point 1") && err.message().contains("future"), "{}", err.message());
    let err = internal.forward_write(forward((0..101).map(|i| point(i, now)).collect())).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("more than 100 points"), "{}", err.message());
    let ok = internal.forward_write(forward(vec![point(7, now)])).await?.into_inner();
    assert!(ok.error.is_none() && ok.samples == 1, "a batch within the limits is written: {ok:?}");
    let export = c.nodes[0].url("/api/v1/export?measurement=fwd");
    let text = c.http.get(&export).bearer_auth(&reader).send().await?.text().await?;
    assert!(text.contains("host=h7 "), "{text}");
    assert_eq!(text.lines().count(), 1, "nothing of the refused batches: {text}");

    // An export over more series than [query] max_series is refused with the limit named.
    let body: String = (0..30).map(|i| format!("wide,host=h{i} v={i} {}\n", now + i)).collect();
    let r = c.http.post(c.nodes[0].url("/write?precision=ms")).bearer_auth("root-secret").body(body).send().await?;
    assert_eq!(r.status(), 204, "{}", r.text().await?);
    let r = c.http.get(c.nodes[0].url("/api/v1/export?measurement=wide")).bearer_auth(&reader).send().await?;
    let status = r.status().as_u16();
    let text = r.text().await?;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("max_series"), "{text}");

    // A reader may read a rebalance's status, not cancel it.
    let status_of = |cancel: bool, token: &str| {
        let mut req = tonic::Request::new(pharos_proto::v1::RebalanceStatusRequest { cancel });
        req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        req
    };
    let mut admin = pharos_proto::v1::admin_client::AdminClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{g1}"))?.connect().await?,
    );
    admin.rebalance_status(status_of(false, &reader)).await?;
    let err = admin.rebalance_status(status_of(true, &reader)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");

    // Forty calls with a wrong token: every one refused and counted, a line or two logged, and no line
    // holds what the caller presented.
    let wrong = "pharos_0123456789abcdef-not-a-token";
    let before = c.nodes[0].log().lines().filter(|l| l.contains("refused a call")).count();
    for _ in 0..40 {
        let r = c.http.get(c.nodes[0].url("/api/alerts")).bearer_auth(wrong).send().await?;
        assert_eq!(r.status(), 401);
    }
    let r = c.http.get(c.nodes[0].url("/api/alerts")).basic_auth("u", Some(wrong)).send().await?;
    assert_eq!(r.status(), 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = c.nodes[0].log();
    let after = log.lines().filter(|l| l.contains("refused a call")).count();
    assert!(after - before <= 2, "refusals are logged at most once per reason every 10 s: {}", after - before);
    assert!(!log.contains("0123456789abcdef") && !log.contains("peer-s3cret") && !log.contains("root-secret"));
    let metrics = c.http.get(c.nodes[0].url("/metrics")).bearer_auth(&reader).send().await?.text().await?;
    let invalid: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("pharos_auth_refusals_total") && l.contains("interface=\"http\""))
        .filter(|l| l.contains("reason=\"invalid\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(invalid >= 41.0, "every refusal counted: {invalid}\n{metrics}");
    Ok(())
}

/// Real clients present tokens their own way: the `influx` CLI (-username/-password) and Prometheus's
/// remote_write (`authorization` and `basic_auth`); a wrong credential writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_real_clients_present_tokens() -> Result<()> {
    let mut c = Cluster::start(1, AUTH).await?;
    c.token = Some("root-secret".into());
    let reader = create_token(&c, "influx-cli", "read", &[])?;
    let writer = create_token(&c, "prometheus", "write", &[])?;
    let (host, port) = c.nodes[0].http.rsplit_once(':').expect("host:port");
    let t0 = recent_ms();
    let r = c
        .http
        .post(c.nodes[0].url("/write?precision=ms"))
        .bearer_auth(&writer)
        .body(format!("m v=7 {t0}"))
        .send()
        .await?;
    assert_eq!(r.status(), 204);
    let influx = |user: &str, password: &str| {
        Command::new("influx")
            .args(["-host", host, "-port", port, "-database", "pharos", "-format", "csv"])
            .args(["-username", user, "-password", password, "-execute", "SELECT v FROM m"])
            .output()
            .context("running influx (apt install influxdb-client; scripts/setup.sh does)")
    };
    let row = |text: &str| text.lines().any(|l| l.starts_with("m,") && (l.ends_with(",7") || l.ends_with(",7.0")));
    let out = influx("someone", &reader)?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && row(&text), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let out = influx("someone", "wrong")?;
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!row(&all) && all.contains("not valid"), "{all}");

    // Prometheus scrapes itself and remote-writes three ways: a bearer token, basic auth, a wrong token.
    let dir = tempfile::TempDir::new()?;
    let pport = free_port();
    std::fs::write(dir.path().join("password"), &writer)?;
    let url = c.nodes[0].url("/api/v1/write");
    let queue = |via: &str, auth: String| {
        format!(
            "  - url: {url}\n{auth}    queue_config:\n      batch_send_deadline: 500ms\n    write_relabel_configs:\n      - target_label: via\n        replacement: {via}\n"
        )
    };
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{pport}']\nremote_write:\n{}{}{}",
        queue("bearer", format!("    authorization:\n      credentials: {writer}\n")),
        queue(
            "basic",
            format!("    basic_auth:\n      username: prometheus\n      password_file: {}\n", dir.path().join("password").display())
        ),
        queue("wrong", "    authorization:\n      credentials: pharos_wrong\n".to_string()),
    );
    let prom = PrometheusServer::start(&config, pport)?;
    let result = async {
        let count = |via: &'static str| {
            let c = &c;
            let reader = reader.clone();
            async move {
                let q = format!("SELECT count(value) FROM up WHERE via = '{via}'");
                let r: Json = c
                    .http
                    .get(c.nodes[0].url("/query"))
                    .query(&[("q", q.as_str())])
                    .bearer_auth(&reader)
                    .send()
                    .await?
                    .json()
                    .await?;
                Ok::<_, anyhow::Error>(r["results"][0]["series"][0]["values"][0][1].as_i64().unwrap_or(0))
            }
        };
        wait_for(Duration::from_secs(60), "samples sent with a bearer token and with basic auth", || async {
            Ok((count("bearer").await? >= 3 && count("basic").await? >= 3).then_some(()))
        })
        .await?;
        if count("wrong").await? != 0 {
            bail!("samples sent with a wrong token were written");
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        eprintln!("prometheus log:\n{}", prom.log());
    }
    result
}

/// Makes (or renews, under the same CA) the test certificate with the script the docs give operators.
fn make_certs(dir: &std::path::Path, cn: &str) -> Result<()> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-certs.sh");
    let out = Command::new(script).arg(dir).arg(cn).output()?;
    if !out.status.success() {
        bail!("make-certs.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The subject of the certificate a TLS listener presents now.
fn served_subject(addr: &str, ca: &std::path::Path) -> Result<String> {
    let script = format!(
        "openssl s_client -connect {addr} -CAfile {} </dev/null 2>/dev/null | openssl x509 -noout -subject",
        ca.display()
    );
    Ok(String::from_utf8(Command::new("sh").arg("-c").arg(script).output()?.stdout)?)
}

/// TLS on both listeners of every node and between the nodes (verified against the cluster's CA), checked
/// with curl, pharosctl and openssl; a renewed certificate is served without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_tls_on_every_listener_and_between_nodes_and_certificates_reload() -> Result<()> {
    let certs = tempfile::TempDir::new()?;
    make_certs(certs.path(), "first")?;
    let ca = certs.path().join("ca.crt");
    let config = format!(
        "{AUTH}[tls]\ncert_file = \"{d}/node.crt\"\nkey_file = \"{d}/node.key\"\nca_file = \"{d}/ca.crt\"\nreload_interval = \"1s\"\n",
        d = certs.path().display()
    );
    let mut c = Cluster::start_with(3, &config, Some(&ca)).await?;
    c.token = Some("root-secret".into());
    // Raft and forwarding run over TLS: a write through node 2 is read back through node 3.
    let write_and_read = |c: &Cluster, value: i64| {
        let body = format!("tlstest,host=a v={value} {}\n", recent_ms());
        let (w, r) = (c.nodes[1].url("/write?precision=ms"), c.nodes[2].url("/api/v1/export?measurement=tlstest"));
        let http = c.http.clone();
        async move {
            let resp = http.post(&w).bearer_auth("root-secret").body(body).send().await?;
            assert_eq!(resp.status(), 204, "{}", resp.text().await?);
            let text = http.get(&r).bearer_auth("root-secret").send().await?.text().await?;
            assert!(text.contains(&format!("v={value}")), "{text}");
            Ok::<_, anyhow::Error>(())
        }
    };
    write_and_read(&c, 1).await?;

    let url = c.nodes[0].url("/query?q=SHOW%20MEASUREMENTS");
    assert!(url.starts_with("https://"));
    let curl = |extra: &[&str], url: &str| {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "-H", "Authorization: Bearer root-secret"])
            .args(extra)
            .arg(url)
            .output()
            .context("running curl (apt install curl; scripts/setup.sh does)")
    };
    let out = curl(&["--fail", "--cacert", ca.to_str().unwrap()], &url)?;
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("tlstest"), "{out:?}");
    let out = curl(&[], &url)?;
    assert_eq!(out.status.code(), Some(60), "an unknown CA is refused: {out:?}");
    let out = curl(&[], &format!("http://{}/ping", c.nodes[0].http))?;
    assert!(!out.status.success(), "plain HTTP to the TLS port gets no answer: {out:?}");

    // The internal service wants a node's certificate besides the cluster secret: the right secret over TLS
    // without a client certificate is refused.
    let secret = pharos_node::auth::node_secret(&pharos_node::config::AuthConfig {
        admin_token: Some("root-secret".into()),
        ..Default::default()
    })
    .unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(&ca)?));
    let ch = tonic::transport::Endpoint::from_shared(format!("https://{}", c.nodes[0].grpc))?
        .tls_config(tls)?
        .connect()
        .await?;
    let mut g = tonic::client::Grpc::new(ch);
    g.ready().await?;
    let mut req = tonic::Request::new(());
    req.metadata_mut().insert("x-pharos-cluster-secret", secret.parse()?);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/pharos.internal.v1.Internal/ForwardMeta");
    let refused = g.unary(req, path, tonic_prost::ProstCodec::<(), ()>::default()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");

    // pharosctl over TLS with the CA; without it, it cannot connect.
    let st = c.pharosctl(1, &["status"])?;
    assert!(st.contains("node"), "{st}");
    let ctl = cluster_tests::pharos_bin().with_file_name("pharosctl");
    let out = Command::new(&ctl).args(["--addr", &c.nodes[0].grpc, "--token", "root-secret", "status"]).output()?;
    assert!(!out.status.success(), "pharosctl without --tls-ca: {out:?}");

    // Scraping a secured target: node 1's own /metrics over HTTPS (verified with the CA) with HTTP Basic
    // credentials read from a file; a wrong password leaves the target down with the reason.
    let scraper = create_token(&c, "scraper", "read", &[])?;
    std::fs::write(certs.path().join("scrape-token"), format!("{scraper}\n"))?;
    let target = &c.nodes[0].http;
    let job = |name: &str, auth: &str| {
        format!(
            "  - job_name: {name}\n    scrape_interval: 1s\n    scheme: https\n    {auth}\n    tls_config: {{ca_file: {}}}\n    static_configs: [{{targets: ['{target}']}}]\n",
            ca.display()
        )
    };
    let scrape = format!(
        "scrape_configs:\n{}{}",
        job(
            "secured",
            &format!("basic_auth: {{username: prometheus, password_file: {}/scrape-token}}", certs.path().display())
        ),
        job("wrong", "basic_auth: {username: prometheus, password: pharos_wrong}"),
    );
    let file = certs.path().join("scrape.yml");
    std::fs::write(&file, scrape)?;
    c.pharosctl(1, &["scrape", "apply", file.to_str().unwrap()])?;
    let last_up = |job: &'static str| {
        let (c, url) = (&c, c.nodes[0].url("/query"));
        async move {
            let q = format!("SELECT last(value) FROM up WHERE job = '{job}'");
            let r: Json =
                c.http.get(&url).query(&[("q", q.as_str())]).bearer_auth("root-secret").send().await?.json().await?;
            Ok::<_, anyhow::Error>(r["results"][0]["series"][0]["values"][0][1].as_f64())
        }
    };
    wait_for(Duration::from_secs(30), "both secured-target jobs scraped", || async {
        Ok((last_up("secured").await? == Some(1.0) && last_up("wrong").await? == Some(0.0)).then_some(()))
    })
    .await?;
    let targets = c.pharosctl(1, &["targets"])?;
    assert!(targets.contains("401"), "the wrong password's target says why it is down: {targets}");

    // Renewed under the same CA: served from the next handshakes on, no restart; nodes still talk.
    assert!(served_subject(&c.nodes[0].http, &ca)?.contains("first"));
    make_certs(certs.path(), "renewed")?;
    for n in &c.nodes {
        for addr in [&n.http, &n.grpc] {
            wait_for(Duration::from_secs(15), "the renewed certificate", || async {
                Ok(served_subject(addr, &ca)?.contains("renewed").then_some(()))
            })
            .await?;
        }
    }
    write_and_read(&c, 2).await?;
    assert!(c.nodes[0].log().contains("TLS certificate reloaded"));
    Ok(())
}
