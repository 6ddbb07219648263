//! The examples of README.md and docs/*.md, run as a newcomer pastes them: every `sh` block in order, against
//! one fresh node, with `pharosctl` on PATH, files named by a YAML block's first line (`# rules.yml`) written
//! beside them, and the node's ports put in place of the documented defaults (8086 HTTP, 8087 gRPC).
//!
//! A block preceded by `<!-- readme-test: skip (why) -->` is not run (starting servers, release builds).
//! A block passes when it exits 0 and its output shows no failure: no HTTP 4xx/5xx status line, no JSON
//! `"error"`, no `no data` or `hint:` from pharosctl, and an InfluxDB `/query` answer holds series.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cluster_tests::{pharos_bin, Cluster};

struct Block {
    lang: String,
    text: String,
    /// Where it is: `README.md:40`.
    at: String,
    skip: bool,
}

fn blocks(file: &Path) -> Result<Vec<Block>> {
    let md = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
    let mut out = Vec::new();
    let mut skip_next = false;
    let mut open: Option<Block> = None;
    for (i, line) in md.lines().enumerate() {
        match open.as_mut() {
            Some(_) if line.trim_start().starts_with("```") => out.push(open.take().expect("open block")),
            Some(b) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            None if line.trim_start().starts_with("```") => {
                let lang = line.trim_start().trim_start_matches('`').trim().to_string();
                open = Some(Block { lang, text: String::new(), at: format!("{name}:{}", i + 1), skip: skip_next });
                skip_next = false;
            }
            None if line.trim_start().starts_with("<!-- readme-test: skip") => skip_next = true,
            None => {}
        }
    }
    Ok(out)
}

/// The file a YAML block stands for: its first line is `# name.yml`.
fn file_name(b: &Block) -> Option<String> {
    let first = b.text.lines().next()?.trim();
    let name = first.strip_prefix('#')?.trim();
    (name.ends_with(".yml") || name.ends_with(".yaml")).then(|| name.to_string())
}

/// What in a block's output means it failed although it exited 0.
fn failure_in(text: &str, output: &str) -> Option<String> {
    for line in output.lines() {
        let l = line.trim();
        if l.starts_with("HTTP/1.1 4") || l.starts_with("HTTP/1.1 5") {
            return Some(format!("an HTTP error status: {l}"));
        }
        if l == "no data" || l.ends_with(": no data") || l.starts_with("hint:") {
            return Some(format!("a query found nothing: {l}"));
        }
    }
    if output.contains("\"error\"") {
        return Some("a JSON error in the output".into());
    }
    if text.contains("/query") && !output.contains("\"series\"") {
        return Some("a /query answer without series".into());
    }
    if output.trim().is_empty() {
        return Some("no output at all".into());
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_every_readme_and_docs_example_works_when_pasted() -> Result<()> {
    let c = Cluster::start(1, "").await?;
    let node = &c.nodes[0];
    let http_port = node.http.rsplit(':').next().expect("port").to_string();
    let grpc_port = node.grpc.rsplit(':').next().expect("port").to_string();
    // Only where a port is written (`:8086`, `-port 8086`), never inside data.
    let put_ports = |s: &str| {
        s.replace(":8086", &format!(":{http_port}"))
            .replace("-port 8086", &format!("-port {http_port}"))
            .replace(":8087", &format!(":{grpc_port}"))
    };

    let bin_dir = pharos_bin().parent().expect("bin dir").to_path_buf();
    assert!(bin_dir.join("pharosctl").exists(), "pharosctl is built next to pharos");
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let work = tempfile::TempDir::new()?;

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);

    let (mut ran, mut skipped, mut written) = (0, 0, 0);
    for file in &files {
        for b in blocks(file)? {
            if b.lang == "yaml" {
                if let Some(name) = file_name(&b) {
                    std::fs::write(work.path().join(&name), put_ports(&b.text))?;
                    written += 1;
                }
                continue;
            }
            if b.lang != "sh" {
                continue;
            }
            if b.skip {
                skipped += 1;
                continue;
            }
            let script = put_ports(&b.text);
            let mut child = tokio::process::Command::new("bash");
            child
                .arg("-c")
                .arg(format!("set -eo pipefail\n{script}"))
                .current_dir(work.path())
                .env("PATH", &path)
                .env("PHAROS_ADDR", &node.grpc)
                .env_remove("PHAROS_TOKEN")
                .kill_on_drop(true);
            let out = tokio::time::timeout(Duration::from_secs(60), child.output())
                .await
                .with_context(|| format!("{}: still running after 60 s", b.at))??;
            let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            println!("---- {} ----\n{script}---- output ----\n{output}", b.at);
            if !out.status.success() {
                bail!("{} failed ({}):\n{script}\n{output}", b.at, out.status);
            }
            if let Some(why) = failure_in(&script, &output) {
                bail!("{}: {why}:\n{script}\n{output}", b.at);
            }
            ran += 1;
        }
    }
    println!("ran {ran} blocks, skipped {skipped}, wrote {written} files");
    // The README's write, export, scrape, query and alert examples at least, and its three YAML files.
    assert!(ran >= 6 && written >= 3, "ran {ran} blocks and wrote {written} files: did the README's shape change?");
    // What the examples did is there: the hour of host c, the rules and the silence.
    let st = Command::new(bin_dir.join("pharosctl"))
        .args(["--addr", &node.grpc, "query", "SELECT count(usage_user) FROM cpu WHERE host = 'c'"])
        .output()?;
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.contains("60"), "the hour of host c was written once per minute: {text}");
    Ok(())
}

#[test]
fn a_failed_example_is_recognized() {
    // The checks that keep the test above honest: each failure shape is caught.
    assert!(failure_in("curl", "HTTP/1.1 400 Bad Request\n").is_some());
    assert!(failure_in("pharosctl query x", "no data\n").is_some());
    assert!(failure_in("pharosctl query x", "hint: measurement \"cpu\" does not exist\n").is_some());
    assert!(failure_in("curl /query", "{\"results\":[{\"statement_id\":0}]}").is_some());
    assert!(failure_in("curl", "{\"error\":\"line 1: ...\"}").is_some());
    assert!(failure_in("curl", "").is_some());
    assert!(failure_in("curl /query", "HTTP/1.1 200 OK\n{\"results\":[{\"series\":[]}]}").is_none());
}
