//! Configurations shown to someone who may read them but not their secrets (`pharosctl routing show` and
//! `scrape show` with a read token): every value under a key that names a secret is replaced, and so are the
//! credentials a URL carries (a user's password, secret-named query parameters).

use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

/// Keys whose values are secrets in Prometheus's and Alertmanager's configurations.
pub const SECRET_KEYS: &[&str] = &[
    "password",
    "credentials",
    "bearer_token",
    "auth_token",
    "auth_password",
    "auth_secret",
    "smtp_auth_password",
    "smtp_auth_secret",
    "routing_key",
    "service_key",
    "api_key",
    "secret",
    "token",
];

pub const REDACTED: &str = "<secret>";

/// Query parameters of a URL whose values are secrets (API keys and tokens passed in the URL).
const SECRET_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "secret",
    "password",
    "pass",
    "p",
    "auth",
    "sig",
    "signature",
];

/// A URL with the credentials it carries replaced: the password of its user information
/// (`https://user:pass@host/`) and the values of query parameters named like secrets (`?token=...`). Text
/// that is not a URL is returned as it is.
pub fn redact_url(s: &str) -> String {
    let Some(scheme_end) = s.find("://") else { return s.to_string() };
    if !s[..scheme_end].chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) || scheme_end == 0 {
        return s.to_string();
    }
    let rest_at = scheme_end + 3;
    let authority_end = s[rest_at..].find(['/', '?', '#']).map_or(s.len(), |i| rest_at + i);
    let mut out = s[..rest_at].to_string();
    let authority = &s[rest_at..authority_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            match userinfo.split_once(':') {
                Some((user, _)) => out.push_str(&format!("{user}:{REDACTED}")),
                None => out.push_str(userinfo),
            }
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    let tail = &s[authority_end..];
    let (before_fragment, fragment) = tail.split_once('#').map_or((tail, None), |(a, b)| (a, Some(b)));
    match before_fragment.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) => {
                        format!("{k}={REDACTED}")
                    }
                    _ => kv.to_string(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(before_fragment),
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

fn walk(y: &mut Yaml) {
    match y {
        Yaml::Hash(h) => {
            for (k, v) in h.iter_mut() {
                let secret = k.as_str().is_some_and(|k| SECRET_KEYS.contains(&k));
                if secret && !matches!(v, Yaml::Null) {
                    *v = Yaml::String(REDACTED.into());
                } else {
                    walk(v);
                }
            }
        }
        Yaml::Array(a) => a.iter_mut().for_each(walk),
        Yaml::String(v) if v.contains("://") => *v = redact_url(v),
        _ => {}
    }
}

/// The YAML text with every secret replaced by [`REDACTED`] (comments and layout are not kept). Text that
/// does not parse is not shown at all.
pub fn redact_yaml(text: &str) -> String {
    let Ok(mut docs) = YamlLoader::load_from_str(text) else {
        return format!("# not shown: the stored text does not parse as YAML ({REDACTED})\n");
    };
    let mut out = String::new();
    for doc in &mut docs {
        walk(doc);
        let mut s = String::new();
        if YamlEmitter::new(&mut s).dump(doc).is_err() {
            return format!("# not shown ({REDACTED})\n");
        }
        out.push_str(&s);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_anywhere_are_replaced_and_the_rest_kept() {
        let text = "route: {receiver: r}
receivers:
  - name: r
    webhook_configs:
      - url: https://h/x
        http_config: {authorization: {credentials: s3cret-1}, basic_auth: {username: u, password: s3cret-2}}
    pagerduty_configs: [{routing_key: s3cret-3}]
    sms_configs: [{account_sid: AC1, auth_token: s3cret-4}]
scrape_configs:
  - job_name: j
    bearer_token: s3cret-5
    basic_auth: {username: u, password_file: /etc/p}
";
        let out = redact_yaml(text);
        for n in 1..=5 {
            assert!(!out.contains(&format!("s3cret-{n}")), "{out}");
        }
        for kept in ["https://h/x", "username: u", "AC1", "/etc/p", "job_name: j", "receiver: r"] {
            assert!(out.contains(kept), "{kept} in {out}");
        }
        assert!(out.matches(REDACTED).count() >= 5, "{out}");
        assert!(redact_yaml("a: [unclosed").contains("not shown"));
    }

    #[test]
    fn credentials_inside_urls_are_replaced_and_the_rest_kept() {
        for (url, want) in [
            ("https://alice:s3cret@hooks.example/x?a=1", "https://alice:<secret>@hooks.example/x?a=1"),
            ("http://h:9/hook?token=s3cret&team=db#frag", "http://h:9/hook?token=<secret>&team=db#frag"),
            ("https://h/x?API_KEY=s3cret", "https://h/x?API_KEY=<secret>"),
            ("https://bob@h/x", "https://bob@h/x"),
            ("https://h/a@b?q=1", "https://h/a@b?q=1"),
            ("not a url", "not a url"),
            ("://nothing", "://nothing"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
        let out =
            redact_yaml("receivers:\n  - name: r\n    webhook_configs:\n      - url: http://u:s3cret@h/x?token=t0k\n");
        assert!(!out.contains("s3cret") && !out.contains("t0k") && out.contains("http://u:<secret>@h/x"), "{out}");
    }
}
