//! S3 (and S3-compatible stores): configuration by the AWS CLI's
//! conventions, and presigned object and listing URLs. ListObjectsV2 pages
//! are read in [`super::s3page`].
//!
//! Configuration, first found wins:
//! * endpoint: `--endpoint-url`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`;
//!   with one, requests are path-style (`ENDPOINT/BUCKET/KEY`), as
//!   emulators and most S3-compatible stores want; without, AWS itself,
//!   virtual-hosted (`BUCKET.s3.REGION.amazonaws.com`) where the bucket
//!   name allows.
//! * credentials: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+
//!   `AWS_SESSION_TOKEN`), then the profile `AWS_PROFILE` (or `default`)
//!   in `AWS_SHARED_CREDENTIALS_FILE` (or `~/.aws/credentials`);
//!   then a role: web identity, container, instance ([`super::role`]);
//!   `--no-sign-request` for public buckets.
//! * region: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region` in
//!   `AWS_CONFIG_FILE` (or `~/.aws/config`), else `us-east-1`.
//!
//! Listing asks for `encoding-type=url`, so that any key (control
//! characters included, which XML cannot carry) comes back intact.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use super::s3page::{Object, Page, parse_page};
pub(crate) use super::s3page::{etag_md5, iso_secs};
use super::sigv4::{self, Creds, Request};
use crate::fetch::http1::Method;

/// Presigned URLs are valid this long (SigV4's most: 7 days).
const EXPIRES: u64 = 7 * 24 * 3600;

/// Where and how to reach one bucket.
#[derive(Clone, Debug)]
pub struct S3 {
    pub auth: Auth,
    /// Where the credentials were looked for (for the error when a role's
    /// cannot be had).
    looked: String,
    pub region: String,
    /// `http` or `https`.
    scheme: String,
    /// `Host` of every request.
    host: String,
    /// `/BUCKET` (path-style) or empty (virtual-hosted).
    bucket_path: String,
}

/// How requests are signed.
#[derive(Clone, Debug)]
pub enum Auth {
    /// Not at all (`--no-sign-request`).
    Unsigned,
    /// With keys from the environment or a profile.
    Keys(Creds),
    /// With a role's credentials, renewed as they expire ([`super::role`]).
    Role(Arc<super::role::Role>),
}

/// What to read the configuration from (the process, or a test's values).
pub struct Env<'a> {
    pub var: &'a dyn Fn(&str) -> Option<String>,
    pub home: Option<PathBuf>,
}

/// An environment of these `(name, value)` pairs (for tests of the
/// stores' configuration).
#[cfg(test)]
pub fn vars_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let v: Vec<(String, String)> = pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    move |k: &str| v.iter().find(|(a, _)| a == k).map(|(_, b)| b.clone())
}

impl Env<'_> {
    fn get(&self, k: &str) -> Option<String> {
        (self.var)(k).filter(|v| !v.is_empty())
    }
    fn file(&self, var: &str, rel: &str) -> Option<PathBuf> {
        self.get(var)
            .map(PathBuf::from)
            .or_else(|| self.home.as_ref().map(|h| h.join(rel)))
    }
}

/// The `key = value` lines of `[section]` in an INI file like the AWS
/// CLI's (missing file or section: none).
fn ini_section(path: &Path, section: &str) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') || l.starts_with(';') || l.is_empty() {
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            continue;
        }
        if inside && let Some((k, v)) = l.split_once('=') {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

fn lookup(kv: &[(String, String)], k: &str) -> Option<String> {
    kv.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone())
}

impl S3 {
    pub fn new(
        env: &Env<'_>,
        bucket: &str,
        endpoint: Option<&str>,
        no_sign: bool,
    ) -> Result<S3, String> {
        let profile = env.get("AWS_PROFILE").unwrap_or_else(|| "default".into());
        let cred_file = env.file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
        let conf_file = env.file("AWS_CONFIG_FILE", ".aws/config");
        let conf = conf_file.as_deref().map_or_else(Vec::new, |f| {
            let s = if profile == "default" {
                "default".to_string()
            } else {
                format!("profile {profile}")
            };
            ini_section(f, &s)
        });
        let region = env
            .get("AWS_REGION")
            .or_else(|| env.get("AWS_DEFAULT_REGION"))
            .or_else(|| lookup(&conf, "region"))
            .unwrap_or_else(|| "us-east-1".into());
        let cred_kv = cred_file
            .as_deref()
            .map_or_else(Vec::new, |f| ini_section(f, &profile));
        let keys = |id: Option<String>, secret: Option<String>, token: Option<String>| {
            Some(Creds {
                key_id: id?,
                secret: secret?,
                token,
            })
        };
        let f =
            (cred_file.as_ref()).map_or("~/.aws/credentials".into(), |f| f.display().to_string());
        let looked = format!(
            "looked at AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, then profile {profile:?} in {f}, \
             then web identity, container and instance roles"
        );
        let auth = if no_sign {
            Auth::Unsigned
        } else if let Some(c) = keys(
            env.get("AWS_ACCESS_KEY_ID"),
            env.get("AWS_SECRET_ACCESS_KEY"),
            env.get("AWS_SESSION_TOKEN"),
        ) {
            Auth::Keys(c)
        } else if let Some(c) = keys(
            lookup(&cred_kv, "aws_access_key_id"),
            lookup(&cred_kv, "aws_secret_access_key"),
            lookup(&cred_kv, "aws_session_token"),
        ) {
            Auth::Keys(c)
        } else if let Some(src) = super::role::Source::from_env(env, &conf, &region) {
            Auth::Role(Arc::new(super::role::Role::new(src)))
        } else {
            return Err(format!(
                "no AWS credentials for s3://{bucket}: {looked} (the instance role is off: \
                 AWS_EC2_METADATA_DISABLED); --no-sign-request for a public bucket"
            ));
        };
        let endpoint = endpoint
            .map(str::to_string)
            .or_else(|| env.get("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env.get("AWS_ENDPOINT_URL"));
        let (scheme, host, bucket_path) = match endpoint {
            Some(e) => {
                let u = crate::fetch::url::Url::parse(e.trim_end_matches('/'))
                    .map_err(|why| format!("endpoint {e:?}: {why}"))?;
                let scheme = if u.origin_key().tls { "https" } else { "http" };
                let base = u.path.trim_end_matches('/');
                (
                    scheme.to_string(),
                    u.authority.to_string(),
                    format!("{base}/{bucket}"),
                )
            }
            None if !bucket.contains('.') => (
                "https".into(),
                format!("{bucket}.s3.{region}.amazonaws.com"),
                String::new(),
            ),
            None => (
                "https".into(),
                format!("s3.{region}.amazonaws.com"),
                format!("/{bucket}"),
            ),
        };
        Ok(S3 {
            auth,
            looked,
            region,
            scheme,
            host,
            bucket_path,
        })
    }

    /// Fetches a role's credentials now, so that a missing role is one
    /// error before the run, naming where bulkget looked.
    pub fn ready(&self, bucket: &str) -> Result<(), String> {
        match &self.auth {
            Auth::Role(r) => r.creds(super::now()).map(|_| ()).map_err(|why| {
                let (looked, from) = (&self.looked, r.source.describe());
                format!("no AWS credentials for s3://{bucket}: {looked}; {from}: {why}")
            }),
            _ => Ok(()),
        }
    }

    fn url(&self, method: Method, path: &str, query: &[(&str, &str)], unix: u64) -> String {
        self.url_signing(method, path, query, &[], unix)
    }

    fn url_signing(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        unix: u64,
    ) -> String {
        let role;
        let creds = match &self.auth {
            Auth::Unsigned => None,
            Auth::Keys(c) => Some(c),
            // Checked when the store was set up ([`S3::ready`]); a renewal
            // that fails keeps the old credentials.
            Auth::Role(r) => {
                role = r.creds(unix).ok();
                role.as_deref()
            }
        };
        let pq = match creds {
            Some(c) => {
                let r = Request {
                    method: method.as_str(),
                    host: &self.host,
                    path,
                    query,
                    headers,
                };
                sigv4::presign(&r, c, &self.region, unix, EXPIRES)
            }
            None if query.is_empty() => path.to_string(),
            None => {
                let mut q = String::new();
                for (i, (k, v)) in query.iter().enumerate() {
                    q.push(if i == 0 { '?' } else { '&' });
                    sigv4::encode(&mut q, k, false);
                    q.push('=');
                    sigv4::encode(&mut q, v, false);
                }
                format!("{path}{q}")
            }
        };
        format!("{}://{}{pq}", self.scheme, self.host)
    }

    /// The header lines that sign a `GET` of `path` (encoded, as
    /// [`S3::object_url`] makes it, without its query) at `unix`; `None`
    /// when requests go unsigned.
    pub fn sign_get(&self, path: &str, unix: u64) -> Option<String> {
        let role;
        let creds = match &self.auth {
            Auth::Unsigned => return None,
            Auth::Keys(c) => c,
            Auth::Role(r) => {
                role = r.creds(unix).ok()?;
                &*role
            }
        };
        let r = Request {
            method: "GET",
            host: &self.host,
            path,
            query: &[],
            headers: &[],
        };
        Some(sigv4::sign_headers(
            &r,
            creds,
            &self.region,
            unix,
            "UNSIGNED-PAYLOAD",
        ))
    }

    /// Whether requests are signed at all.
    pub fn signs(&self) -> bool {
        !matches!(self.auth, Auth::Unsigned)
    }

    /// A URL for `method` (GET, HEAD) of the object `key` (any key S3
    /// allows, byte for byte).
    pub fn object_url(&self, method: Method, key: &str, unix: u64) -> String {
        let mut path = format!("{}/", self.bucket_path);
        sigv4::encode(&mut path, key, true);
        self.url(method, &path, &[], unix)
    }

    /// As [`S3::object_url`], with query parameters (`uploadId`,
    /// `partNumber`, `uploads`: the multipart calls).
    pub fn object_url_with(
        &self,
        method: Method,
        key: &str,
        query: &[(&str, &str)],
        unix: u64,
    ) -> String {
        let mut path = format!("{}/", self.bucket_path);
        sigv4::encode(&mut path, key, true);
        self.url(method, &path, query, unix)
    }

    /// A presigned `PUT` of `key` that copies `source` (`/BUCKET/KEY`,
    /// encoded: the `x-amz-copy-source` header, signed, which the request
    /// must carry as given).
    pub fn copy_url(&self, key: &str, source: &str, unix: u64) -> String {
        let mut path = format!("{}/", self.bucket_path);
        sigv4::encode(&mut path, key, true);
        let h = [("x-amz-copy-source", source)];
        self.url_signing(Method::Put, &path, &[], &h, unix)
    }

    /// A URL for `method` of the bucket itself, with `query`
    /// (ListMultipartUploads).
    pub fn bucket_url(&self, method: Method, query: &[(&str, &str)], unix: u64) -> String {
        let path = if self.bucket_path.is_empty() {
            "/".to_string()
        } else {
            self.bucket_path.clone()
        };
        self.url(method, &path, query, unix)
    }

    /// A URL for one ListObjectsV2 page of keys under `prefix`, after
    /// `start_after` or from `token`.
    pub fn list_url(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
        unix: u64,
    ) -> String {
        self.list_url_with(prefix, start_after, token, false, unix)
    }

    /// As [`S3::list_url`]; with `delimiter`, keys past the next `/` are
    /// rolled up into `CommonPrefixes` (one level, as `ls` shows it).
    pub fn list_url_with(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
        delimiter: bool,
        unix: u64,
    ) -> String {
        let mut q = vec![
            ("list-type", "2"),
            ("encoding-type", "url"),
            ("max-keys", "1000"),
        ];
        if delimiter {
            q.push(("delimiter", "/"));
        }
        if !prefix.is_empty() {
            q.push(("prefix", prefix));
        }
        if let Some(t) = token {
            q.push(("continuation-token", t));
        } else if let Some(s) = start_after {
            q.push(("start-after", s));
        }
        self.bucket_url(Method::Get, &q, unix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_by_the_aws_cli_conventions() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join(".aws")).unwrap();
        std::fs::write(
            t.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n[p]\naws_access_key_id=P\naws_secret_access_key=PS\n",
        )
        .unwrap();
        std::fs::write(
            t.path().join(".aws/config"),
            "[profile p]\nregion = eu-west-3\n",
        )
        .unwrap();
        let vars = vars_of;
        let home = Some(t.path().to_path_buf());
        let s3 = |f: &dyn Fn(&str) -> Option<String>| {
            let env = Env {
                var: f,
                home: home.clone(),
            };
            S3::new(&env, "bkt", None, false).unwrap()
        };
        let s = s3(&vars(&[("AWS_PROFILE", "p")]));
        assert!(matches!(&s.auth, Auth::Keys(c) if c.key_id == "P"));
        assert_eq!(s.region, "eu-west-3");
        assert!(
            s.object_url(Method::Get, "k", 0)
                .starts_with("https://bkt.s3.eu-west-3.amazonaws.com/k?")
        );
        let s = s3(&vars(&[
            ("AWS_ACCESS_KEY_ID", "E"),
            ("AWS_SECRET_ACCESS_KEY", "ES"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
        ]));
        assert!(matches!(&s.auth, Auth::Keys(c) if c.key_id == "E"));
        assert_eq!(s.region, "us-east-1");
        assert!(
            s.object_url(Method::Get, "a//b", 0)
                .starts_with("http://127.0.0.1:9000/bkt/a//b?X-Amz-")
        );
        // Nothing set: the instance role is the last resort...
        let f = vars(&[]);
        let none = Env {
            var: &f,
            home: Some(t.path().join("nowhere")),
        };
        let s = S3::new(&none, "bkt", None, false).unwrap();
        assert!(
            matches!(&s.auth, Auth::Role(r) if r.source.describe().contains(super::super::role::IMDS)),
            "{:?}",
            s.auth
        );
        // ... unless it is turned off.
        let f = vars(&[("AWS_EC2_METADATA_DISABLED", "true")]);
        let off = Env {
            var: &f,
            home: Some(t.path().join("nowhere")),
        };
        let e = S3::new(&off, "bkt", None, false).unwrap_err();
        assert!(
            e.contains("AWS_ACCESS_KEY_ID")
                && e.contains("nowhere")
                && e.contains("AWS_EC2_METADATA_DISABLED"),
            "{e}"
        );
        let s = S3::new(&none, "bkt", Some("http://h:1"), true).unwrap();
        assert_eq!(s.object_url(Method::Get, "x y", 0), "http://h:1/bkt/x%20y");
    }
}
