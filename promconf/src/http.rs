//! How Prometheus-shaped configurations authenticate outgoing HTTP requests: `authorization`, `basic_auth`
//! and `bearer_token` / `bearer_token_file`, as scrape jobs (pharos-scrape) and webhook receivers'
//! `http_config` (pharos-alert) write them. Secrets given as files are read when a request is made, so a
//! rotated secret is used from the next request on.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `authorization:` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<String>,
}

/// `basic_auth:` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    #[serde(default)]
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
}

/// A secret given inline or as a file (its content without the trailing newline). Its Debug form never
/// shows an inline secret.
#[derive(Clone, PartialEq)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("<secret>"),
            Secret::File(p) => write!(f, "<secret in {}>", p.display()),
        }
    }
}

impl Secret {
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read the secret file {}: {e}", p.display())),
        }
    }
}

/// How requests authenticate, once checked.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientAuth {
    /// `Authorization: <scheme> <credentials>` (`Bearer` unless `authorization.type` says otherwise).
    Header {
        scheme: String,
        credentials: Secret,
    },
    Basic {
        username: String,
        password: Secret,
    },
}

impl ClientAuth {
    /// The `Authorization` header's value now (reading secret files).
    pub fn header(&self) -> Result<String, String> {
        use base64::Engine;
        match self {
            ClientAuth::Header { scheme, credentials } => Ok(format!("{scheme} {}", credentials.read()?)),
            ClientAuth::Basic { username, password } => {
                let raw = format!("{username}:{}", password.read()?);
                Ok(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw)))
            }
        }
    }

    /// Every secret file this reads (to resolve relative paths, say).
    pub fn files_mut(&mut self) -> Option<&mut PathBuf> {
        match self {
            ClientAuth::Header { credentials: Secret::File(p), .. }
            | ClientAuth::Basic { password: Secret::File(p), .. } => Some(p),
            _ => None,
        }
    }
}

/// A refused combination: the key it is about (None: the section as a whole) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    pub key: Option<&'static str>,
    pub message: String,
}

fn err(key: Option<&'static str>, message: impl Into<String>) -> AuthError {
    AuthError { key, message: message.into() }
}

/// Checks Prometheus's rules: at most one of the three ways, each secret given once, `authorization.type`
/// not Basic.
pub fn client_auth(
    authorization: Option<Authorization>,
    basic: Option<BasicAuth>,
    bearer_token: Option<String>,
    bearer_token_file: Option<String>,
) -> Result<Option<ClientAuth>, AuthError> {
    let bearer = bearer_token.is_some() || bearer_token_file.is_some();
    if [authorization.is_some(), basic.is_some(), bearer].iter().filter(|g| **g).count() > 1 {
        return Err(err(None, "at most one of basic_auth, authorization and bearer_token(_file) may be configured"));
    }
    let secret = |inline: Option<String>, file: Option<String>, key: &'static str, what: &str| match (inline, file) {
        (Some(_), Some(_)) => Err(err(Some(key), format!("{what} and {what}_file are mutually exclusive"))),
        (Some(s), None) => Ok(Some(Secret::Inline(s))),
        (None, Some(f)) => Ok(Some(Secret::File(PathBuf::from(f)))),
        (None, None) => Ok(None),
    };
    if let Some(a) = authorization {
        let scheme = a.kind.filter(|k| !k.is_empty()).unwrap_or_else(|| "Bearer".into());
        if scheme.eq_ignore_ascii_case("basic") {
            return Err(err(Some("authorization"), "authorization type cannot be Basic: use basic_auth"));
        }
        let Some(credentials) = secret(a.credentials, a.credentials_file, "authorization", "credentials")? else {
            return Err(err(Some("authorization"), "authorization needs credentials or credentials_file"));
        };
        return Ok(Some(ClientAuth::Header { scheme, credentials }));
    }
    if let Some(b) = basic {
        let password =
            secret(b.password, b.password_file, "basic_auth", "password")?.unwrap_or(Secret::Inline(String::new()));
        return Ok(Some(ClientAuth::Basic { username: b.username, password }));
    }
    Ok(secret(bearer_token, bearer_token_file, "bearer_token", "bearer_token")?
        .map(|credentials| ClientAuth::Header { scheme: "Bearer".into(), credentials }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_way_gives_its_header_and_combinations_are_refused() {
        let bearer = |c: &str| Authorization { credentials: Some(c.into()), ..Default::default() };
        let a = client_auth(Some(bearer("t0k")), None, None, None).unwrap().unwrap();
        assert_eq!(a.header().unwrap(), "Bearer t0k");
        let custom = Authorization { kind: Some("Token".into()), ..bearer("x") };
        assert_eq!(client_auth(Some(custom), None, None, None).unwrap().unwrap().header().unwrap(), "Token x");
        let basic = BasicAuth { username: "u".into(), password: Some("p".into()), password_file: None };
        let b = client_auth(None, Some(basic.clone()), None, None).unwrap().unwrap();
        assert_eq!(b.header().unwrap(), "Basic dTpw");
        assert_eq!(client_auth(None, None, Some("b".into()), None).unwrap().unwrap().header().unwrap(), "Bearer b");
        assert!(client_auth(Some(bearer("x")), Some(basic), None, None).unwrap_err().key.is_none());
        let both = Authorization { credentials_file: Some("/f".into()), ..bearer("x") };
        assert!(client_auth(Some(both), None, None, None).unwrap_err().message.contains("mutually exclusive"));
        let basic_type = Authorization { kind: Some("basic".into()), ..bearer("x") };
        assert!(client_auth(Some(basic_type), None, None, None).is_err());
        assert!(client_auth(Some(Authorization::default()), None, None, None).is_err());
        assert_eq!(client_auth(None, None, None, None).unwrap(), None);
        assert_eq!(format!("{a:?}").contains("t0k"), false, "Debug hides the secret");
    }

    #[test]
    fn secret_files_are_read_at_each_use() {
        let dir = std::env::temp_dir().join(format!("promconf-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("token");
        std::fs::write(&f, "one\n").unwrap();
        let a = client_auth(None, None, None, Some(f.display().to_string())).unwrap().unwrap();
        assert_eq!(a.header().unwrap(), "Bearer one");
        std::fs::write(&f, "two").unwrap();
        assert_eq!(a.header().unwrap(), "Bearer two");
        std::fs::remove_file(&f).unwrap();
        assert!(a.header().unwrap_err().contains("cannot read the secret file"));
    }
}
