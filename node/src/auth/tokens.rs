//! API tokens: what the meta group stores of them (name, role, the SHA-256 of the secret, never the secret),
//! and the pure changes `pharosctl token create|revoke` make to that document.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Role;

/// The meta document holding every token.
pub const TOKENS_DOC: &str = "tokens";

/// Secrets start with this, so a leaked one is recognisable (secret scanners, logs).
pub const SECRET_PREFIX: &str = "pharos_";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the secret. Secrets are 256 random bits, so a plain hash cannot be reversed by guessing.
    pub sha256: String,
    pub created_ms: i64,
    /// After this the token is refused (None: never).
    pub expires_ms: Option<i64>,
}

impl TokenRecord {
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_ms.is_some_and(|e| now_ms >= e)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenDoc {
    pub tokens: Vec<TokenRecord>,
}

impl TokenDoc {
    /// The document as stored; an empty or unreadable one holds no token (fails closed).
    pub fn parse(bytes: &[u8]) -> TokenDoc {
        if bytes.is_empty() {
            return TokenDoc::default();
        }
        serde_json::from_slice(bytes).unwrap_or_else(|e| {
            tracing::error!(error = %e, "the stored token list cannot be read; no token is accepted");
            TokenDoc::default()
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("tokens serialize")
    }

    /// Adds a token, refusing a name already in use or not of `[A-Za-z0-9_.-]{1,64}`.
    pub fn create(&mut self, record: TokenRecord) -> Result<(), String> {
        check_name(&record.name)?;
        if self.tokens.iter().any(|t| t.name == record.name) {
            return Err(format!("a token named {:?} exists: revoke it first or pick another name", record.name));
        }
        self.tokens.push(record);
        Ok(())
    }

    pub fn revoke(&mut self, name: &str) -> Result<TokenRecord, String> {
        let i = self
            .tokens
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| format!("no token named {name:?} (pharosctl token list shows them)"))?;
        Ok(self.tokens.remove(i))
    }
}

pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!("token name {name:?}: use 1 to 64 letters, digits, '_', '.' or '-'"))
    }
}

pub fn sha256_hex(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new secret: the prefix and 256 bits from the operating system's generator, in hex.
pub fn new_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("the system's random generator failed: {e}"))?;
    Ok(format!("{SECRET_PREFIX}{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, secret: &str, expires_ms: Option<i64>) -> TokenRecord {
        TokenRecord { name: name.into(), role: Role::Read, sha256: sha256_hex(secret), created_ms: 1, expires_ms }
    }

    #[test]
    fn secrets_are_fresh_and_only_their_hash_is_stored() {
        let (a, b) = (new_secret().unwrap(), new_secret().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX) && a.len() == SECRET_PREFIX.len() + 64);
        let mut doc = TokenDoc::default();
        doc.create(rec("grafana", &a, None)).unwrap();
        let stored = String::from_utf8(doc.to_bytes()).unwrap();
        assert!(!stored.contains(&a[SECRET_PREFIX.len()..]), "the secret itself must not be stored");
        assert!(stored.contains(&sha256_hex(&a)));
        assert_eq!(TokenDoc::parse(&doc.to_bytes()), doc);
    }

    #[test]
    fn names_are_unique_and_checked_and_revoke_names_what_is_missing() {
        let mut doc = TokenDoc::default();
        doc.create(rec("ci-writer", "s1", None)).unwrap();
        assert!(doc.create(rec("ci-writer", "s2", None)).unwrap_err().contains("exists"));
        assert!(doc.create(rec("bad name", "s3", None)).is_err());
        assert!(doc.create(rec("", "s3", None)).is_err());
        assert!(doc.revoke("nobody").unwrap_err().contains("no token named"));
        assert_eq!(doc.revoke("ci-writer").unwrap().name, "ci-writer");
        assert!(doc.tokens.is_empty());
    }

    #[test]
    fn expiry_is_inclusive_of_its_instant() {
        let r = rec("t", "s", Some(1000));
        assert!(!r.expired(999));
        assert!(r.expired(1000));
        assert!(!rec("t", "s", None).expired(i64::MAX));
    }

    #[test]
    fn an_unreadable_document_holds_no_token() {
        assert!(TokenDoc::parse(b"{not json").tokens.is_empty());
    }
}
