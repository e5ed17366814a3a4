//! AWS credentials that come from a role and expire, found where the AWS
//! SDKs look after the environment and the profile:
//!
//! * **web identity** (EKS pods, GitHub Actions): `AWS_WEB_IDENTITY_TOKEN_FILE`
//!   and `AWS_ROLE_ARN` (or the profile's `web_identity_token_file` and
//!   `role_arn`), exchanged at STS (`AssumeRoleWithWebIdentity`, an
//!   unsigned form POST) at `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, else
//!   `https://sts.REGION.amazonaws.com`. The token file is read again at
//!   each renewal (Kubernetes rotates it).
//! * **container** (ECS tasks): `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`
//!   (under `http://169.254.170.2`) or `AWS_CONTAINER_CREDENTIALS_FULL_URI`,
//!   with `AWS_CONTAINER_AUTHORIZATION_TOKEN` or `…_TOKEN_FILE` as its
//!   `Authorization`.
//! * **instance** (EC2): the instance metadata service, IMDSv2 (a session
//!   token first; IMDSv1 if the service refuses one), at
//!   `AWS_EC2_METADATA_SERVICE_ENDPOINT` or `http://169.254.169.254`;
//!   `AWS_EC2_METADATA_DISABLED=true` turns it off. Tried last, with a
//!   one-second timeout, as the AWS CLI does.
//!
//! Credentials are fetched when the store is set up (so a missing role is
//! one line at the start, not a failure per object) and renewed before
//! they expire ([`super::renew`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::renew::{Renewing, blocking, call};
use super::s3::Env;
use super::sigv4::Creds;
use crate::fetch::http1::Method;
use crate::fetch::net::Net;

/// Where EC2's instance metadata service answers.
pub const IMDS: &str = "http://169.254.169.254";
/// Where ECS's container credentials answer a relative URI.
pub const ECS: &str = "http://169.254.170.2";

/// Where a role's credentials come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    WebIdentity {
        token_file: PathBuf,
        role_arn: String,
        session: String,
        /// STS's base URL, no trailing `/`.
        sts: String,
    },
    Container {
        url: String,
        /// The `Authorization` value, or the file that holds it.
        token: Option<String>,
        token_file: Option<PathBuf>,
    },
    Instance {
        /// The metadata service's base URL, no trailing `/`.
        endpoint: String,
    },
}

/// A role's credentials, fetched and renewed as they expire.
#[derive(Debug)]
pub struct Role {
    pub source: Source,
    cached: Renewing<Creds>,
}

impl Source {
    /// The source the environment names, in the SDKs' order (web identity,
    /// container, instance); `profile` is the profile's `key = value`
    /// lines of the config file. `None` when the instance metadata service
    /// is turned off and nothing else is set.
    pub fn from_env(env: &Env<'_>, profile: &[(String, String)], region: &str) -> Option<Source> {
        let get = |k: &str| (env.var)(k).filter(|v| !v.is_empty());
        let conf = |k: &str| profile.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
        let token_file =
            get("AWS_WEB_IDENTITY_TOKEN_FILE").or_else(|| conf("web_identity_token_file"));
        let role_arn = get("AWS_ROLE_ARN").or_else(|| conf("role_arn"));
        if let (Some(token_file), Some(role_arn)) = (token_file, role_arn) {
            let session = get("AWS_ROLE_SESSION_NAME")
                .or_else(|| conf("role_session_name"))
                .unwrap_or_else(|| format!("bulkget-{}", super::now()));
            let sts = get("AWS_ENDPOINT_URL_STS")
                .or_else(|| get("AWS_ENDPOINT_URL"))
                .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
            return Some(Source::WebIdentity {
                token_file: token_file.into(),
                role_arn,
                session,
                sts: sts.trim_end_matches('/').to_string(),
            });
        }
        let url = get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            .or_else(|| get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").map(|r| format!("{ECS}{r}")));
        if let Some(url) = url {
            return Some(Source::Container {
                url,
                token: get("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
                token_file: get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from),
            });
        }
        if get("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return None;
        }
        let endpoint = get("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| IMDS.into());
        Some(Source::Instance {
            endpoint: endpoint.trim_end_matches('/').to_string(),
        })
    }

    /// What it is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Source::WebIdentity { role_arn, sts, .. } => {
                format!("the web identity role {role_arn} (STS at {sts})")
            }
            Source::Container { url, .. } => format!("the container credentials at {url}"),
            Source::Instance { endpoint } => {
                format!("the instance role (metadata service at {endpoint})")
            }
        }
    }

    /// How long to wait for its answers: the metadata services are on the
    /// host or nowhere.
    fn timeout(&self) -> Duration {
        match self {
            Source::WebIdentity { .. } => Duration::from_secs(10),
            Source::Container { .. } | Source::Instance { .. } => Duration::from_secs(1),
        }
    }
}

impl Role {
    pub fn new(source: Source) -> Role {
        Role {
            source,
            cached: Renewing::new(),
        }
    }

    /// Credentials valid at `now` (seconds since the epoch) for a while
    /// yet ([`Renewing::get`]).
    pub fn creds(&self, now: u64) -> Result<std::sync::Arc<Creds>, String> {
        let what = || self.source.describe();
        self.cached.get(now, what, || {
            let no_proxy = !matches!(self.source, Source::WebIdentity { .. });
            blocking(self.source.timeout(), no_proxy, async |net| {
                fetch(net, &self.source).await
            })
        })
    }
}

/// The credentials of `source` and when they expire.
async fn fetch(net: &Net, source: &Source) -> Result<(Creds, u64), String> {
    match source {
        Source::WebIdentity {
            token_file,
            role_arn,
            session,
            sts,
        } => {
            let token = std::fs::read_to_string(token_file)
                .map_err(|e| format!("the web identity token {}: {e}", token_file.display()))?;
            // A form POST, as the SDKs send it (and as emulators that
            // tell services apart by the body expect).
            let mut form = String::from("Action=AssumeRoleWithWebIdentity&Version=2011-06-15");
            for (k, v) in [
                ("RoleArn", role_arn.as_str()),
                ("RoleSessionName", session),
                ("WebIdentityToken", token.trim()),
            ] {
                form.push('&');
                form.push_str(k);
                form.push('=');
                super::sigv4::encode(&mut form, v, false);
            }
            let h = [("Content-Type", "application/x-www-form-urlencoded")];
            let url = format!("{sts}/");
            let (status, body) = call(net, Method::Post, &url, &h, form.into()).await?;
            sts_answer(status, &body).map_err(|why| format!("STS at {sts}: {why}"))
        }
        Source::Container {
            url,
            token,
            token_file,
        } => {
            let auth = match (token_file, token) {
                (Some(f), _) => Some(
                    std::fs::read_to_string(f)
                        .map_err(|e| format!("the container token {}: {e}", f.display()))?
                        .trim()
                        .to_string(),
                ),
                (None, t) => t.clone(),
            };
            let h: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
            let (status, body) = call(net, Method::Get, url, &h, Default::default()).await?;
            if status != 200 {
                return Err(format!("{url}: HTTP {status}"));
            }
            json_creds(&body).map_err(|why| format!("{url}: {why}"))
        }
        Source::Instance { endpoint } => {
            // IMDSv2: a session token first; a service that refuses one
            // (IMDSv1 only) is asked without.
            let ttl = [("X-aws-ec2-metadata-token-ttl-seconds", "21600")];
            let put = format!("{endpoint}/latest/api/token");
            let (status, body) = call(net, Method::Put, &put, &ttl, Default::default()).await?;
            let token = match status {
                200 => Some(String::from_utf8_lossy(&body).trim().to_string()),
                403..=405 => None,
                s => return Err(format!("{put}: HTTP {s}")),
            };
            let h: Vec<(&str, &str)> = (token.iter())
                .map(|t| ("X-aws-ec2-metadata-token", t.as_str()))
                .collect();
            let base = format!("{endpoint}/latest/meta-data/iam/security-credentials/");
            let (status, body) = call(net, Method::Get, &base, &h, Default::default()).await?;
            let names = String::from_utf8_lossy(&body);
            let name = names.lines().next().unwrap_or("").trim();
            if status != 200 || name.is_empty() {
                return Err(format!("{base}: HTTP {status}: the instance has no role"));
            }
            let url = format!("{base}{name}");
            let (status, body) = call(net, Method::Get, &url, &h, Default::default()).await?;
            if status != 200 {
                return Err(format!("{url}: HTTP {status}"));
            }
            json_creds(&body).map_err(|why| format!("{url}: {why}"))
        }
    }
}

/// The JSON the container and instance endpoints answer.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonCreds {
    access_key_id: String,
    secret_access_key: String,
    token: Option<String>,
    expiration: String,
}

fn json_creds(body: &[u8]) -> Result<(Creds, u64), String> {
    let j: JsonCreds =
        serde_json::from_slice(body).map_err(|e| format!("not the credentials JSON: {e}"))?;
    let expires = super::s3::iso_secs(&j.expiration)
        .ok_or_else(|| format!("an Expiration bulkget cannot read: {:?}", j.expiration))?;
    Ok((
        Creds {
            key_id: j.access_key_id,
            secret: j.secret_access_key,
            token: j.token,
        },
        expires,
    ))
}

/// STS's answer to AssumeRoleWithWebIdentity.
fn sts_answer(status: u16, body: &[u8]) -> Result<(Creds, u64), String> {
    let leaves = super::put::leaves(body).unwrap_or_default();
    let leaf = |name: &str| {
        leaves
            .iter()
            .find(|(k, _)| k.ends_with(name))
            .map(|(_, v)| v.trim().to_string())
    };
    if status != 200 {
        let code = leaf("Error/Code").unwrap_or_default();
        let msg = leaf("Error/Message").unwrap_or_default();
        return Err(format!("HTTP {status} {code}: {msg}"));
    }
    let (Some(key_id), Some(secret), Some(exp)) = (
        leaf("Credentials/AccessKeyId"),
        leaf("Credentials/SecretAccessKey"),
        leaf("Credentials/Expiration"),
    ) else {
        return Err("no credentials in the answer".into());
    };
    let expires = super::s3::iso_secs(&exp)
        .ok_or_else(|| format!("an Expiration bulkget cannot read: {exp:?}"))?;
    Ok((
        Creds {
            key_id,
            secret,
            token: leaf("Credentials/SessionToken"),
        },
        expires,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::renew::{RENEW_BEFORE, RETRY_AFTER};
    use super::*;

    fn source(pairs: &[(&str, &str)], profile: &[(String, String)]) -> Option<Source> {
        let f = super::super::s3::vars_of(pairs);
        let env = Env {
            var: &f,
            home: None,
        };
        Source::from_env(&env, profile, "eu-west-1")
    }

    #[test]
    fn sources_in_the_sdks_order() {
        let web = [
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_ROLE_SESSION_NAME", "s"),
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/creds"),
        ];
        assert_eq!(
            source(&web, &[]),
            Some(Source::WebIdentity {
                token_file: "/t".into(),
                role_arn: "arn:aws:iam::1:role/r".into(),
                session: "s".into(),
                sts: "https://sts.eu-west-1.amazonaws.com".into(),
            })
        );
        let profile = vec![
            ("role_arn".to_string(), "arn:p".to_string()),
            ("web_identity_token_file".to_string(), "/p".to_string()),
        ];
        let s = source(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:9/")], &profile).unwrap();
        assert!(
            matches!(&s, Source::WebIdentity { role_arn, sts, .. } if role_arn == "arn:p" && sts == "http://127.0.0.1:9"),
            "{s:?}"
        );
        assert_eq!(
            source(&web[3..], &[]),
            Some(Source::Container {
                url: "http://169.254.170.2/v2/creds".into(),
                token: None,
                token_file: None,
            })
        );
        assert_eq!(
            source(&[], &[]),
            Some(Source::Instance {
                endpoint: IMDS.into()
            })
        );
        assert_eq!(source(&[("AWS_EC2_METADATA_DISABLED", "TRUE")], &[]), None);
    }

    #[test]
    fn answers() {
        let sts = b"<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>\
            <Credentials><AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>s</SecretAccessKey>\
            <SessionToken>t</SessionToken><Expiration>2026-11-23T16:00:00Z</Expiration>\
            </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        let (c, exp) = sts_answer(200, sts).unwrap();
        assert_eq!(
            (c.key_id.as_str(), c.token.as_deref()),
            ("ASIA1", Some("t"))
        );
        assert_eq!(exp, 1_795_449_600);
        let err = b"<ErrorResponse><Error><Code>InvalidIdentityToken</Code>\
            <Message>expired</Message></Error></ErrorResponse>";
        assert_eq!(
            sts_answer(400, err).unwrap_err(),
            "HTTP 400 InvalidIdentityToken: expired"
        );
        let j = br#"{"Code":"Success","AccessKeyId":"A","SecretAccessKey":"S","Token":"T","Expiration":"2026-11-23T16:00:00Z"}"#;
        assert_eq!(json_creds(j).unwrap().1, 1_795_449_600);
        assert!(
            json_creds(b"{}")
                .unwrap_err()
                .contains("not the credentials JSON")
        );
    }

    #[test]
    fn renewed_before_they_expire_and_kept_when_renewal_fails() {
        // A source that cannot answer: a port nothing listens on.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let r = Role::new(Source::Instance { endpoint });
        assert!(r.creds(1000).unwrap_err().contains("/latest/api/token"));
        let old = Creds {
            key_id: "old".into(),
            secret: "s".into(),
            token: None,
        };
        r.cached.set(Some((old, 10_000)), 0);
        // Well before expiry: cached, no fetch.
        assert_eq!(r.creds(10_000 - RENEW_BEFORE - 1).unwrap().key_id, "old");
        // Inside the margin: a renewal is tried, fails, the old ones serve
        // and the next try waits.
        assert_eq!(r.creds(10_000 - RENEW_BEFORE).unwrap().key_id, "old");
        assert_eq!(r.cached.retry_at(), 10_000 - RENEW_BEFORE + RETRY_AFTER);
    }
}
