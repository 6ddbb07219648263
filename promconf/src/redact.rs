//! Configurations shown to someone who may read them but not their secrets (`pharosctl routing show` and
//! `scrape show` with a read token): every value under a key that names a secret is replaced.

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
}
