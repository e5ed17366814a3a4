//! Google's OAuth credentials for `gs://`, found where Google's clients
//! look (Application Default Credentials), first found wins:
//!
//! * `GOOGLE_APPLICATION_CREDENTIALS`: a JSON key file, a service
//!   account's (`"type": "service_account"`: a JWT signed with its RSA key,
//!   RS256, exchanged at its `token_uri`) or a user's (`"authorized_user"`,
//!   as `gcloud auth application-default login` writes: its refresh token
//!   exchanged at Google's token endpoint);
//! * the same file where gcloud keeps it:
//!   `$CLOUDSDK_CONFIG/application_default_credentials.json`, else
//!   `~/.config/gcloud/application_default_credentials.json`;
//! * the metadata server of a Google Compute Engine machine (GKE's
//!   workload identity too): `GCE_METADATA_HOST` (`HOST[:PORT]`), else
//!   `169.254.169.254` when the machine says it is Google's
//!   (`/sys/class/dmi/id/product_name`, as Google's Python client checks).
//!   `NO_GCE_CHECK=true` turns it off.
//!
//! The access token goes in each URL as the `access_token` query
//! parameter, which the JSON API takes from any request as it takes the
//! `Authorization` header: every request stays a plain URL, as presigned
//! S3 and Azure SAS ones are, and the hot loop needs no header per
//! request. Tokens last an hour and are renewed a quarter of an hour
//! before they expire ([`super::renew`]). The scope asked for is
//! `devstorage.read_only`, or `devstorage.read_write` for `cp` to `gs://`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;

use super::renew::{Renewing, blocking, call};
use super::s3::Env;
use crate::fetch::http1::Method;
use crate::fetch::net::Net;

/// Google's token endpoint (an `authorized_user` file names none).
pub const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// What a token is good for: reading ...
pub const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_only";
/// ... or writing too (`cp` to `gs://`).
pub const SCOPE_WRITE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
/// The metadata server on a Compute Engine machine.
pub const METADATA: &str = "169.254.169.254";

/// Where the tokens come from.
#[derive(Clone, Debug)]
pub enum Source {
    ServiceAccount {
        file: PathBuf,
        email: String,
        /// The private key, PKCS#8 DER.
        key: Vec<u8>,
        token_uri: String,
    },
    User {
        file: PathBuf,
        client_id: String,
        client_secret: String,
        refresh_token: String,
        token_uri: String,
    },
    Metadata {
        /// `http://HOST[:PORT]`.
        base: String,
    },
}

/// A key file as Google writes them (fields of both kinds).
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: Option<String>,
    private_key: Option<String>,
    token_uri: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
}

/// The DER bytes of a PEM block (`-----BEGIN PRIVATE KEY-----`).
fn pem_der(pem: &str) -> Option<Vec<u8>> {
    let b64: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

impl Source {
    /// The source the environment names; `Ok(None)` when there is none.
    pub fn from_env(env: &Env<'_>) -> Result<Option<Source>, String> {
        let get = |k: &str| (env.var)(k).filter(|v| !v.is_empty());
        if let Some(f) = get("GOOGLE_APPLICATION_CREDENTIALS") {
            return Source::from_file(Path::new(&f)).map(Some);
        }
        let well_known = get("CLOUDSDK_CONFIG")
            .map(PathBuf::from)
            .or_else(|| env.home.as_ref().map(|h| h.join(".config/gcloud")))
            .map(|d| d.join("application_default_credentials.json"));
        if let Some(f) = well_known.filter(|f| f.exists()) {
            return Source::from_file(&f).map(Some);
        }
        if get("NO_GCE_CHECK").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        if let Some(h) = get("GCE_METADATA_HOST") {
            return Ok(Some(Source::Metadata {
                base: format!("http://{h}"),
            }));
        }
        let product = std::fs::read_to_string("/sys/class/dmi/id/product_name").unwrap_or_default();
        Ok(product.contains("Google").then(|| Source::Metadata {
            base: format!("http://{METADATA}"),
        }))
    }

    /// The key file `file`.
    pub fn from_file(file: &Path) -> Result<Source, String> {
        let shown = file.display();
        let text = std::fs::read(file).map_err(|e| format!("the credentials file {shown}: {e}"))?;
        let k: KeyFile = serde_json::from_slice(&text)
            .map_err(|e| format!("the credentials file {shown} is not Google's JSON: {e}"))?;
        let missing = |what: &str| format!("the credentials file {shown} has no {what}");
        match k.kind.as_str() {
            "service_account" => {
                let pem = k.private_key.ok_or_else(|| missing("private_key"))?;
                let key = pem_der(&pem).ok_or_else(|| missing("readable private_key"))?;
                ring::signature::RsaKeyPair::from_pkcs8(&key)
                    .map_err(|e| format!("the credentials file {shown}: its private_key: {e}"))?;
                Ok(Source::ServiceAccount {
                    file: file.to_path_buf(),
                    email: k.client_email.ok_or_else(|| missing("client_email"))?,
                    key,
                    token_uri: k.token_uri.unwrap_or_else(|| TOKEN_URI.into()),
                })
            }
            "authorized_user" => Ok(Source::User {
                file: file.to_path_buf(),
                client_id: k.client_id.ok_or_else(|| missing("client_id"))?,
                client_secret: k.client_secret.ok_or_else(|| missing("client_secret"))?,
                refresh_token: k.refresh_token.ok_or_else(|| missing("refresh_token"))?,
                token_uri: k.token_uri.unwrap_or_else(|| TOKEN_URI.into()),
            }),
            other => Err(format!(
                "the credentials file {shown} is of type {other:?}; bulkget reads \
                 \"service_account\" and \"authorized_user\""
            )),
        }
    }

    /// What it is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Source::ServiceAccount { file, email, .. } => {
                format!("the service account {email} ({})", file.display())
            }
            Source::User { file, .. } => format!("the user credentials in {}", file.display()),
            Source::Metadata { base } => format!("the metadata server at {base}"),
        }
    }
}

/// Access tokens from a [`Source`], renewed as they expire.
#[derive(Debug)]
pub struct Token {
    pub source: Source,
    scope: &'static str,
    cached: Renewing<String>,
}

impl Token {
    pub fn new(source: Source, scope: &'static str) -> Token {
        Token {
            source,
            scope,
            cached: Renewing::new(),
        }
    }

    /// An access token valid at `now` for a while yet.
    pub fn get(&self, now: u64) -> Result<std::sync::Arc<String>, String> {
        self.cached.get(
            now,
            || self.source.describe(),
            || {
                let metadata = matches!(self.source, Source::Metadata { .. });
                let timeout = Duration::from_secs(if metadata { 2 } else { 10 });
                blocking(timeout, metadata, async |net| {
                    fetch(net, &self.source, self.scope, now).await
                })
            },
        )
    }
}

/// A JWT asserting the service account `email` to `aud`, signed with its
/// key (RS256): what Google's token endpoint takes for a token.
fn assertion(email: &str, key: &[u8], scope: &str, aud: &str, now: u64) -> Result<String, String> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = serde_json::json!({
        "iss": email, "scope": scope, "aud": aud, "iat": now, "exp": now + 3600,
    });
    let msg = format!(
        "{}.{}",
        b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    );
    let pair = ring::signature::RsaKeyPair::from_pkcs8(key).map_err(|e| e.to_string())?;
    let mut sig = vec![0; pair.public().modulus_len()];
    let rng = ring::rand::SystemRandom::new();
    (pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &rng,
        msg.as_bytes(),
        &mut sig,
    ))
    .map_err(|_| "signing the token request failed".to_string())?;
    Ok(format!("{msg}.{}", b64.encode(sig)))
}

/// A token endpoint's answer (the metadata server's too).
#[derive(Deserialize)]
struct Answer {
    access_token: Option<String>,
    expires_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
}

fn answer(status: u16, body: &[u8], now: u64) -> Result<(String, u64), String> {
    let a: Answer = serde_json::from_slice(body).map_err(|_| {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        format!("HTTP {status}: {}", text.trim())
    })?;
    match (status, a.access_token) {
        (200, Some(t)) => Ok((t, now + a.expires_in.unwrap_or(3600))),
        _ => Err(format!(
            "HTTP {status} {}: {}",
            a.error.unwrap_or_default(),
            a.error_description.unwrap_or_default()
        )),
    }
}

/// A token from `source` and when it expires.
async fn fetch(net: &Net, source: &Source, scope: &str, now: u64) -> Result<(String, u64), String> {
    let form = |pairs: &[(&str, &str)]| {
        let mut f = String::new();
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                f.push('&');
            }
            f.push_str(k);
            f.push('=');
            super::sigv4::encode(&mut f, v, false);
        }
        f
    };
    let ct = [("Content-Type", "application/x-www-form-urlencoded")];
    let (url, r) = match source {
        Source::ServiceAccount {
            email,
            key,
            token_uri,
            ..
        } => {
            let jwt = assertion(email, key, scope, token_uri, now)?;
            let grant = "urn:ietf:params:oauth:grant-type:jwt-bearer";
            let body = form(&[("grant_type", grant), ("assertion", &jwt)]);
            (
                token_uri,
                call(net, Method::Post, token_uri, &ct, body.into()).await,
            )
        }
        Source::User {
            client_id,
            client_secret,
            refresh_token,
            token_uri,
            ..
        } => {
            let body = form(&[
                ("grant_type", "refresh_token"),
                ("client_id", client_id),
                ("client_secret", client_secret),
                ("refresh_token", refresh_token),
            ]);
            (
                token_uri,
                call(net, Method::Post, token_uri, &ct, body.into()).await,
            )
        }
        Source::Metadata { base } => {
            let url = format!("{base}/computeMetadata/v1/instance/service-accounts/default/token");
            let h = [("Metadata-Flavor", "Google")];
            let r = call(net, Method::Get, &url, &h, Default::default()).await;
            return r.and_then(|(status, body)| {
                answer(status, &body, now).map_err(|e| format!("{url}: {e}"))
            });
        }
    };
    let (status, body) = r?;
    answer(status, &body, now).map_err(|e| format!("{url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_and_answers() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("user.json");
        std::fs::write(
            &f,
            r#"{"type":"authorized_user","client_id":"c","client_secret":"s","refresh_token":"r"}"#,
        )
        .unwrap();
        let s = Source::from_file(&f).unwrap();
        assert!(matches!(&s, Source::User { token_uri, .. } if token_uri == TOKEN_URI));
        std::fs::write(&f, r#"{"type":"external_account"}"#).unwrap();
        assert!(
            Source::from_file(&f)
                .unwrap_err()
                .contains("external_account")
        );
        std::fs::write(&f, r#"{"type":"service_account","client_email":"e","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#).unwrap();
        let e = Source::from_file(&f).unwrap_err();
        assert!(e.contains("private_key") && e.contains("user.json"), "{e}");
        assert_eq!(
            answer(200, br#"{"access_token":"ya29.x","expires_in":3599}"#, 10).unwrap(),
            ("ya29.x".to_string(), 3609)
        );
        let e = answer(
            400,
            br#"{"error":"invalid_grant","error_description":"bad"}"#,
            0,
        );
        assert_eq!(e.unwrap_err(), "HTTP 400 invalid_grant: bad");
        assert!(
            answer(502, b"<html>", 0)
                .unwrap_err()
                .starts_with("HTTP 502")
        );
    }

    #[test]
    fn metadata_only_where_asked_or_on_google() {
        let vars = super::super::s3::vars_of;
        let f = vars(&[("GCE_METADATA_HOST", "127.0.0.1:9")]);
        let env = Env {
            var: &f,
            home: None,
        };
        let s = Source::from_env(&env).unwrap().unwrap();
        assert_eq!(s.describe(), "the metadata server at http://127.0.0.1:9");
        let f = vars(&[
            ("GCE_METADATA_HOST", "127.0.0.1:9"),
            ("NO_GCE_CHECK", "True"),
        ]);
        let env = Env {
            var: &f,
            home: None,
        };
        assert!(Source::from_env(&env).unwrap().is_none());
    }
}
