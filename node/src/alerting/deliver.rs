//! Sending one notification request: HTTP for webhooks, PagerDuty, SMS gateways and Alertmanagers (over
//! TLS where the URL says https), SMTP for email (STARTTLS when `require_tls`, the default).
//!
//! Every request carries the notification's stable key: the `X-Pharos-Notification-Key` header on HTTP,
//! and in email a `Message-ID` derived from it, so a receiver (or a mail client) can drop a repeat sent
//! after a leader failover.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use pharos_alert::payload::{EmailMessage, SmsRequest};
use pharos_alert::Delivery;
use xxhash_rust::xxh3::xxh3_64;

use crate::config::AlertingConfig;

pub const KEY_HEADER: &str = "X-Pharos-Notification-Key";

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: a connection failure, a timeout, a 5xx, 408 or 429.
    #[error("{0}")]
    Retry(String),
    /// Retrying the same request cannot help: a 4xx, a malformed address.
    #[error("{0}")]
    Permanent(String),
}

pub struct Sender {
    http: reqwest::Client,
    timeout: Duration,
}

impl Sender {
    pub fn new(cfg: &AlertingConfig) -> Sender {
        let http = reqwest::Client::builder()
            .timeout(cfg.notify_timeout)
            .user_agent(concat!("Pharos/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client with default TLS settings builds");
        Sender { http, timeout: cfg.notify_timeout }
    }

    pub async fn send(&self, d: &Delivery, key: &str) -> Result<(), SendError> {
        match d {
            Delivery::PagerDuty { url, body } => {
                self.check(self.http.post(url).header(KEY_HEADER, key).json(body).send().await, url).await
            }
            Delivery::Webhook { url, body, auth } | Delivery::Alertmanager { url, body, auth } => {
                let mut req = self.http.post(url).header(KEY_HEADER, key).json(body);
                if let Some(a) = auth {
                    // A secret file that cannot be read now may be readable at the next try.
                    req = req.header(reqwest::header::AUTHORIZATION, a.header().map_err(SendError::Retry)?);
                }
                self.check(req.send().await, url).await
            }
            Delivery::Sms(s) => self.sms(s, key).await,
            Delivery::Email(m) => self.email(m, key).await,
        }
    }

    async fn sms(&self, s: &SmsRequest, key: &str) -> Result<(), SendError> {
        let req = self
            .http
            .post(&s.url)
            .header(KEY_HEADER, key)
            .basic_auth(&s.account_sid, Some(&s.auth_token))
            .form(&s.form);
        self.check(req.send().await, &s.url).await
    }

    async fn check(&self, res: reqwest::Result<reqwest::Response>, url: &str) -> Result<(), SendError> {
        // With its causes ("error sending request ...: client error (Connect): tcp connect error: Connection
        // refused"): reqwest's own message alone does not say what went wrong.
        // Shown to readers and logged: the URL without the credentials it may carry.
        let url = pharos_promconf::redact::redact_url(url);
        let resp = res.map_err(|e| SendError::Retry(format!("{url}: {:#}", anyhow::Error::new(e.without_url()))))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        let why = format!("{url} answered {status}: {body}");
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(SendError::Retry(why))
        } else {
            Err(SendError::Permanent(why))
        }
    }

    async fn email(&self, m: &EmailMessage, key: &str) -> Result<(), SendError> {
        let (host, port) = split_host_port(&m.smarthost)
            .ok_or_else(|| SendError::Permanent(format!("smarthost {:?} is not host:port", m.smarthost)))?;
        let mut builder = Message::builder()
            .from(m.from.parse().map_err(|e| SendError::Permanent(format!("from {:?}: {e}", m.from)))?)
            .subject(m.subject.clone())
            .message_id(Some(format!("<{:016x}.{}@pharos>", xxh3_64(key.as_bytes()), key.len())))
            .header(ContentType::TEXT_PLAIN);
        for to in m.to.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            builder = builder.to(to.parse().map_err(|e| SendError::Permanent(format!("to {to:?}: {e}")))?);
        }
        let msg = builder.body(m.body.clone()).map_err(|e| SendError::Permanent(format!("building the email: {e}")))?;
        // Port 465 speaks TLS from the first byte (as Alertmanager decides); otherwise STARTTLS, required
        // unless `require_tls: false` (then no TLS: a trusted local relay).
        let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port);
        if port == 465 {
            transport = transport.tls(Tls::Wrapper(tls_parameters(host, &m.tls)?));
        } else if m.require_tls {
            transport = transport.tls(Tls::Required(tls_parameters(host, &m.tls)?));
        }
        let mut transport = transport.timeout(Some(self.timeout));
        if let Some(user) = &m.auth_username {
            transport =
                transport.credentials(Credentials::new(user.clone(), m.auth_password.clone().unwrap_or_default()));
        }
        let transport = transport.build();
        match transport.send(msg).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => {
                Err(SendError::Permanent(format!("SMTP {}: {:#}", m.smarthost, anyhow::Error::new(e))))
            }
            Err(e) => Err(SendError::Retry(format!("SMTP {}: {:#}", m.smarthost, anyhow::Error::new(e)))),
        }
    }
}

/// TLS towards a mail server: its certificate checked against the Mozilla roots and `tls_config.ca_file`,
/// for the smarthost's name or `tls_config.server_name`.
fn tls_parameters(host: &str, tls: &pharos_alert::config::EmailTlsConfig) -> Result<TlsParameters, SendError> {
    let name = tls.server_name.clone().unwrap_or_else(|| host.to_string());
    let mut b = TlsParameters::builder(name).dangerous_accept_invalid_certs(tls.insecure_skip_verify);
    if let Some(ca) = &tls.ca_file {
        // Unreadable now, perhaps readable at the next try.
        let pem = std::fs::read(ca).map_err(|e| SendError::Retry(format!("tls_config.ca_file {ca}: {e}")))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| SendError::Permanent(format!("tls_config.ca_file {ca}: not a PEM certificate: {e}")))?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| SendError::Permanent(format!("TLS settings for {host}: {e}")))
}

fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (h, p) = s.rsplit_once(':')?;
    let h = h.trim_start_matches('[').trim_end_matches(']');
    Some((h, p.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smarthost_forms() {
        assert_eq!(split_host_port("smtp.example.com:587"), Some(("smtp.example.com", 587)));
        assert_eq!(split_host_port("[::1]:25"), Some(("::1", 25)));
        assert_eq!(split_host_port("smtp.example.com"), None);
        assert_eq!(split_host_port("h:port"), None);
    }
}
