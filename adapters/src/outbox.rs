//! The outbox worker: delivers notifications written by commits, at least once.
//!
//! Rows come from the same transaction as the events that asked for them, so a message is never
//! lost and never sent for a command that did not commit. The worker claims due rows with a
//! lease (like timers), renders the body from `workflows/templates/<template>.hbs` in handlebars
//! **strict mode** (a missing variable is an error, never a blank), sends it on its channel and
//! marks it delivered. A failure is retried with exponential backoff; after `max_tries` the row
//! is dead-lettered (`state = 'dead'`, with its last error) for operators to see. A rendering
//! error is not transient and is dead-lettered at once.
//!
//! Delivery is at least once: a node that dies after sending and before marking sends again
//! after the lease. Receivers deduplicate on the `X-Shenpi-Delivery` header (the row id, stable
//! across retries).
//!
//! Channels: `webhook` (JSON POST signed with `X-Shenpi-Signature: sha256=<hex HMAC-SHA256 of
//! the body>`), `dingtalk` and `wecom` (the group-robot webhooks, markdown messages; a DingTalk
//! robot with 加签 security gets `timestamp` and `sign` on its URL), `email` (SMTP via lettre,
//! configured by a connection URL), `log` (tracing).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use handlebars::Handlebars;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

use crate::machine::Clock;
use crate::store::{Millis, OutboxMessage, OutboxStore};

/// Message templates, rendered in strict mode.
pub struct Templates {
    hb: Handlebars<'static>,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read templates in {0}: {1}")]
    Read(String, std::io::Error),
    #[error("template {0}: {1}")]
    Parse(String, String),
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

impl Templates {
    pub fn new() -> Templates {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        // Plain text and markdown, not HTML: no escaping of 《》 and quotes.
        hb.register_escape_fn(handlebars::no_escape);
        Templates { hb }
    }

    /// Every `*.hbs` file of a directory, named by its stem.
    pub fn from_dir(dir: &Path) -> Result<Templates, TemplateError> {
        let mut t = Templates::new();
        let rd = std::fs::read_dir(dir)
            .map_err(|e| TemplateError::Read(dir.display().to_string(), e))?;
        for entry in rd.filter_map(|e| e.ok()) {
            let p = entry.path();
            if p.extension().is_some_and(|x| x == "hbs")
                && let Some(stem) = p.file_stem().map(|s| s.to_string_lossy().into_owned())
            {
                let src = std::fs::read_to_string(&p)
                    .map_err(|e| TemplateError::Read(p.display().to_string(), e))?;
                t.add(&stem, &src)?;
            }
        }
        Ok(t)
    }

    pub fn add(&mut self, name: &str, src: &str) -> Result<(), TemplateError> {
        self.hb
            .register_template_string(name, src)
            .map_err(|e| TemplateError::Parse(name.to_string(), e.to_string()))
    }

    /// Renders; a missing template or variable is an error.
    pub fn render(&self, name: &str, data: &serde_json::Value) -> Result<String, String> {
        if !self.hb.has_template(name) {
            return Err(format!("no template `{name}`"));
        }
        self.hb
            .render(name, data)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("template `{name}`: {e}"))
    }
}

/// Addresses of a party on each channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addresses {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dingtalk: Option<String>,
    /// The 加签 secret (`SEC…`) of the `dingtalk` robot of this entry; without it the robot is
    /// signed with [`OutboxOptions::dingtalk_secret`], if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dingtalk_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wecom: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Who is reached where: by party (`user:NAME`, `role:ID`, `dept:ID`), with defaults (e.g. one
/// group robot per office). A recipient that is itself a URL or an address is used as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    #[serde(default)]
    pub parties: HashMap<String, Addresses>,
    #[serde(default)]
    pub default: Addresses,
}

impl Directory {
    fn address(&self, channel: &str, recipient: &str) -> Option<String> {
        if recipient.starts_with("http://") || recipient.starts_with("https://") {
            return Some(recipient.to_string());
        }
        if channel == "email" && recipient.contains('@') {
            return Some(recipient.to_string());
        }
        let pick = |a: &Addresses| match channel {
            "webhook" => a.webhook.clone(),
            "dingtalk" => a.dingtalk.clone(),
            "wecom" => a.wecom.clone(),
            "email" => a.email.clone(),
            _ => None,
        };
        self.parties
            .get(recipient)
            .and_then(pick)
            .or_else(|| pick(&self.default))
    }

    /// A DingTalk robot's URL with the secret of the same entry: a secret belongs to one robot,
    /// so a party's own robot never takes the default robot's secret.
    fn dingtalk(&self, recipient: &str) -> Option<(String, Option<String>)> {
        if recipient.starts_with("http://") || recipient.starts_with("https://") {
            return Some((recipient.to_string(), None));
        }
        let entry = |a: &Addresses| {
            a.dingtalk
                .clone()
                .map(|url| (url, a.dingtalk_secret.clone()))
        };
        self.parties
            .get(recipient)
            .and_then(entry)
            .or_else(|| entry(&self.default))
    }
}

/// The URL of a DingTalk robot with 加签 (sign) security: `url` with
/// `timestamp=<ms>&sign=<base64 of HMAC-SHA256 under secret of "<ms>\n<secret>", URL-encoded>`
/// appended. DingTalk refuses a timestamp more than an hour from its own clock, so `timestamp_ms`
/// is the real time of sending.
pub fn dingtalk_signed_url(url: &str, secret: &str, timestamp_ms: i64) -> Result<String, String> {
    let mut u = reqwest::Url::parse(url).map_err(|e| format!("DingTalk URL `{url}`: {e}"))?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|e| format!("DingTalk secret: {e}"))?;
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    let sign = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    u.query_pairs_mut()
        .append_pair("timestamp", &timestamp_ms.to_string())
        .append_pair("sign", &sign);
    Ok(u.into())
}

/// Where e-mail goes out.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// A lettre connection URL: `smtps://user:pass@host` (implicit TLS, port 465),
    /// `smtp://user:pass@host?tls=required` (STARTTLS, port 587), or `smtp://host:25` (plain:
    /// only for a relay on the same machine or network). A path sets the EHLO name
    /// (`smtp://relay:25/shenpi.example.gov.cn`).
    pub url: String,
    /// The sender, e.g. `审批系统 <shenpi@example.gov.cn>`.
    pub from: String,
}

#[derive(Debug, Clone)]
pub struct OutboxOptions {
    pub node: String,
    pub poll: Duration,
    pub lease_ms: i64,
    pub batch: i64,
    /// Attempts before a message is dead-lettered.
    pub max_tries: i64,
    /// First retry delay; doubles each try up to `backoff_max_ms`.
    pub backoff_base_ms: i64,
    pub backoff_max_ms: i64,
    /// HMAC key of the webhook signature.
    pub webhook_secret: Vec<u8>,
    /// 加签 secret of DingTalk robots whose directory entry has none (`None`: unsigned).
    pub dingtalk_secret: Option<String>,
    pub http_timeout: Duration,
    pub smtp: Option<SmtpConfig>,
    /// The address people reach the server at (`serve --public-url`): a message's `url` that
    /// is a path on the server (`/instances/…`) is sent as an absolute link under it.
    pub public_url: Option<String>,
    /// A message on a channel its recipient has no address for is written to the log instead
    /// of being dead-lettered (the demo, which has no directory of robots and mailboxes).
    pub unaddressed_to_log: bool,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        OutboxOptions {
            node: format!("node-{}", std::process::id()),
            poll: Duration::from_millis(200),
            lease_ms: 60_000,
            batch: 100,
            max_tries: 8,
            backoff_base_ms: 1_000,
            backoff_max_ms: 3_600_000,
            webhook_secret: Vec::new(),
            dingtalk_secret: None,
            http_timeout: Duration::from_secs(10),
            smtp: None,
            public_url: None,
            unaddressed_to_log: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct OutboxStats {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dead: AtomicU64,
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`: the `X-Shenpi-Signature` value.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC takes keys of any length; this branch cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The delay before retry number `tries` (1-based).
pub fn backoff(opts: &OutboxOptions, tries: i64) -> i64 {
    let exp = (tries - 1).clamp(0, 30) as u32;
    opts.backoff_base_ms
        .saturating_mul(1i64 << exp)
        .min(opts.backoff_max_ms)
}

/// The SMTP transport, built once from [`SmtpConfig`] so that a bad URL stops the start.
struct Mailer {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl Mailer {
    fn new(smtp: &SmtpConfig, timeout: Duration) -> Result<Mailer, String> {
        let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(&smtp.url)
            // The URL may hold a password: name the problem, not the URL.
            .map_err(|e| format!("SMTP URL: {e}"))?
            .timeout(Some(timeout))
            .build();
        let from = smtp
            .from
            .parse()
            .map_err(|e| format!("SMTP sender `{}`: {e}", smtp.from))?;
        Ok(Mailer { transport, from })
    }
}

struct Sender {
    http: reqwest::Client,
    mailer: Option<Mailer>,
    templates: Arc<Templates>,
    directory: Arc<Directory>,
    opts: OutboxOptions,
}

/// Why one attempt failed.
enum Failure {
    /// Worth retrying (network, 5xx, robot error).
    Transient(String),
    /// Will never work (template error, no address).
    Permanent(String),
}

impl Sender {
    async fn deliver(&self, m: &OutboxMessage) -> Result<(), Failure> {
        let mut absolute;
        let mut row = &m.row;
        if let Some(base) = &self.opts.public_url
            && let Some(url) = row.payload.get("url").and_then(|u| u.as_str())
            && url.starts_with('/')
        {
            absolute = m.row.clone();
            let link = absolute_url(base, url);
            if let Some(o) = absolute.payload.as_object_mut() {
                o.insert("url".into(), link.into());
            }
            row = &absolute;
        }
        let text = if row.channel == "webhook" && row.template.is_empty() {
            String::new()
        } else {
            self.templates
                .render(&row.template, &row.payload)
                .map_err(Failure::Permanent)?
        };
        let title = text.lines().next().unwrap_or("shenpi").to_string();
        let channel = if self.opts.unaddressed_to_log && !self.addressed(row) {
            "log"
        } else {
            row.channel.as_str()
        };
        match channel {
            "log" => {
                tracing::info!(target: "shenpi::outbox", to = %row.recipient, "{text}");
                Ok(())
            }
            "webhook" => {
                let url = self.address(m)?;
                let body = serde_json::to_vec(&serde_json::json!({
                    "id": row.id, "instance": row.instance, "template": row.template,
                    "recipient": row.recipient, "text": text, "data": row.payload,
                }))
                .map_err(|e| Failure::Permanent(e.to_string()))?;
                let sig = signature(&self.opts.webhook_secret, &body);
                self.post(&url, body, Some(sig), &row.id, false).await
            }
            "dingtalk" => {
                let (url, secret) = self
                    .directory
                    .dingtalk(&row.recipient)
                    .ok_or_else(|| self.no_address(m))?;
                let url = match secret.as_ref().or(self.opts.dingtalk_secret.as_ref()) {
                    // The real time, not the workflow clock: DingTalk compares it with its own.
                    Some(s) => dingtalk_signed_url(&url, s, crate::machine::now_millis())
                        .map_err(Failure::Permanent)?,
                    None => url,
                };
                let body = serde_json::json!({
                    "msgtype": "markdown",
                    "markdown": { "title": title, "text": text },
                });
                self.post(&url, body.to_string().into_bytes(), None, &row.id, true)
                    .await
            }
            "wecom" => {
                let url = self.address(m)?;
                let body = serde_json::json!({
                    "msgtype": "markdown",
                    "markdown": { "content": text },
                });
                self.post(&url, body.to_string().into_bytes(), None, &row.id, true)
                    .await
            }
            "email" => self.email(m, &title, &text).await,
            other => Err(Failure::Permanent(format!("unknown channel `{other}`"))),
        }
    }

    /// Whether the message's channel can reach its recipient at all (an address in the
    /// directory, an SMTP server for e-mail).
    fn addressed(&self, row: &crate::store::OutboxRow) -> bool {
        match row.channel.as_str() {
            "log" => true,
            "dingtalk" => self.directory.dingtalk(&row.recipient).is_some(),
            "email" => {
                self.mailer.is_some() && self.directory.address("email", &row.recipient).is_some()
            }
            ch => self.directory.address(ch, &row.recipient).is_some(),
        }
    }

    fn address(&self, m: &OutboxMessage) -> Result<String, Failure> {
        self.directory
            .address(&m.row.channel, &m.row.recipient)
            .ok_or_else(|| self.no_address(m))
    }

    fn no_address(&self, m: &OutboxMessage) -> Failure {
        Failure::Permanent(format!(
            "no {} address for `{}` in the directory",
            m.row.channel, m.row.recipient
        ))
    }

    async fn post(
        &self,
        url: &str,
        body: Vec<u8>,
        signature: Option<String>,
        id: &str,
        robot: bool,
    ) -> Result<(), Failure> {
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/json; charset=utf-8")
            .header("x-shenpi-delivery", id)
            .body(body);
        if let Some(s) = signature {
            req = req.header("x-shenpi-signature", s);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Transient(format!("{e}")))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(Failure::Transient(format!(
                "HTTP {status}: {}",
                short(&text)
            )));
        }
        if robot {
            // The robots answer 200 with {"errcode": N, "errmsg": ...}; non-zero is a failure.
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if let Some(code) = v.get("errcode").and_then(|c| c.as_i64())
                && code != 0
            {
                return Err(Failure::Transient(format!(
                    "robot errcode {code}: {}",
                    short(&text)
                )));
            }
        }
        Ok(())
    }

    async fn email(&self, m: &OutboxMessage, title: &str, text: &str) -> Result<(), Failure> {
        use lettre::{AsyncTransport, Message};
        let Some(mailer) = &self.mailer else {
            return Err(Failure::Permanent("no SMTP server configured".into()));
        };
        let to = self.address(m)?;
        let msg = Message::builder()
            .from(mailer.from.clone())
            .to(to
                .parse()
                .map_err(|e| Failure::Permanent(format!("to `{to}`: {e}")))?)
            .subject(title)
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(text.to_string())
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        mailer
            .transport
            .send(msg)
            .await
            .map(|_| ())
            .map_err(|e| Failure::Transient(e.to_string()))
    }
}

/// `path` (a path on the server, `/instances/…`) under `base` (`https://host/prefix/`).
pub fn absolute_url(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Starts the worker; abort the handle to stop it (claims in flight expire with their lease).
pub fn spawn_outbox_worker<S: OutboxStore + Clone + Send + Sync + 'static>(
    store: S,
    templates: Arc<Templates>,
    directory: Arc<Directory>,
    clock: Arc<dyn Clock>,
    opts: OutboxOptions,
    wake: Option<Arc<tokio::sync::Notify>>,
) -> Result<(tokio::task::JoinHandle<()>, Arc<OutboxStats>), String> {
    // reqwest is built without a bundled crypto provider; use ring, as lettre does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(opts.http_timeout)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let mailer = match &opts.smtp {
        Some(smtp) => Some(Mailer::new(smtp, opts.http_timeout)?),
        None => None,
    };
    let sender = Arc::new(Sender {
        http,
        mailer,
        templates,
        directory,
        opts,
    });
    let stats = Arc::new(OutboxStats::default());
    let st = stats.clone();
    let handle = tokio::spawn(async move {
        let o = &sender.opts;
        loop {
            let now = clock.now();
            let claimed = match store.claim_outbox(&o.node, now, o.lease_ms, o.batch).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("outbox claim failed: {e}");
                    Vec::new()
                }
            };
            let full = claimed.len() as i64 >= o.batch;
            let mut set = tokio::task::JoinSet::new();
            for m in claimed {
                let (sender, store, clock, st) =
                    (sender.clone(), store.clone(), clock.clone(), st.clone());
                set.spawn(async move {
                    let result = sender.deliver(&m).await;
                    let now: Millis = clock.now();
                    let tries = m.tries + 1;
                    let r = match result {
                        Ok(()) => {
                            st.delivered.fetch_add(1, Ordering::Relaxed);
                            store.mark_delivered(&m.row.id, now).await
                        }
                        Err(Failure::Permanent(e)) => {
                            st.dead.fetch_add(1, Ordering::Relaxed);
                            store.mark_failed(&m.row.id, &e, now, true).await
                        }
                        Err(Failure::Transient(e)) => {
                            let dead = tries >= sender.opts.max_tries;
                            if dead {
                                st.dead.fetch_add(1, Ordering::Relaxed);
                            } else {
                                st.retried.fetch_add(1, Ordering::Relaxed);
                            }
                            let next = now + backoff(&sender.opts, tries);
                            store.mark_failed(&m.row.id, &e, next, dead).await
                        }
                    };
                    if let Err(e) = r {
                        tracing::warn!("outbox bookkeeping failed for {}: {e}", m.row.id);
                    }
                });
            }
            while set.join_next().await.is_some() {}
            if full {
                continue;
            }
            match &wake {
                Some(w) => {
                    tokio::select! {
                        _ = tokio::time::sleep(o.poll) => {}
                        _ = w.notified() => {}
                    }
                }
                None => tokio::time::sleep(o.poll).await,
            }
        }
    });
    Ok((handle, stats))
}
