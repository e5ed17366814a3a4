//! AWS credentials from roles, as moto's server gives them: its instance
//! metadata service (IMDSv2) and STS (`AssumeRoleWithWebIdentity`). The
//! fixture records the access key and session token each object GET was
//! presigned with, so the tests see which credentials were used.

use crate::common::*;
use crate::store::Emulator;

/// moto with no keys anywhere: what bulkget finds is a role's.
fn keyless(t: &std::path::Path) -> Emulator {
    let mut m = Emulator::moto();
    let base = format!("http://127.0.0.1:{}", m.port);
    let nowhere = t.join("nowhere").to_str().unwrap().to_string();
    m.env = vec![
        ("AWS_ACCESS_KEY_ID", None),
        ("AWS_SECRET_ACCESS_KEY", None),
        ("AWS_SESSION_TOKEN", None),
        ("AWS_PROFILE", None),
        ("AWS_SHARED_CREDENTIALS_FILE", Some(nowhere.clone())),
        ("AWS_CONFIG_FILE", Some(nowhere)),
        ("AWS_ENDPOINT_URL", Some(base)),
        ("AWS_ENDPOINT_URL_S3", None),
        ("AWS_ENDPOINT_URL_STS", None),
        ("AWS_CA_BUNDLE", None),
    ];
    m.cmd("bucket roles");
    m.cmd("fill roles k 30 100");
    m
}

fn set(m: &mut Emulator, k: &'static str, v: Option<String>) {
    m.env.retain(|(a, _)| *a != k);
    m.env.push((k, v));
}

#[test]
fn s3_credentials_from_the_instance_role() {
    let t = tempfile::tempdir().unwrap();
    let mut m = keyless(t.path());
    let base = format!("http://127.0.0.1:{}", m.port);
    set(&mut m, "AWS_EC2_METADATA_DISABLED", Some("false".into()));
    set(&mut m, "AWS_EC2_METADATA_SERVICE_ENDPOINT", Some(base));
    let out = t.path().join("out");
    let o = m
        .bulkget(&["mirror", "s3://roles", out.to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    crate::store::assert_filled(&out, "", "k", 30, 100);
    // moto's instance role: key test-key, session token test-session-token.
    assert_eq!(m.cmd("lastauth"), "test-key test-session-token");

    // A metadata service that is not there: one line, nothing fetched.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    set(
        &mut m,
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        Some(dead.clone()),
    );
    let out2 = t.path().join("out2");
    let o = m
        .bulkget(&["mirror", "s3://roles", out2.to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("no AWS credentials for s3://roles")
            && e.contains("AWS_ACCESS_KEY_ID")
            && e.contains(&format!("metadata service at {dead}")),
        "{e}"
    );
    assert!(!out2.join("k00000").exists());
}

#[test]
fn s3_credentials_from_a_web_identity_token() {
    let t = tempfile::tempdir().unwrap();
    let mut m = keyless(t.path());
    let token = t.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n").unwrap();
    set(
        &mut m,
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        Some(token.to_str().unwrap().into()),
    );
    set(
        &mut m,
        "AWS_ROLE_ARN",
        Some("arn:aws:iam::123456789012:role/bulkget-test".into()),
    );
    let out = t.path().join("out");
    let o = m
        .bulkget(&[
            "get",
            "s3://roles/k00007",
            "-o",
            out.to_str().unwrap(),
            "-q",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    crate::store::assert_body(&out, "k00007", "k00007", 100);
    // STS's temporary credentials: a key of its own and a session token.
    let auth = m.cmd("lastauth");
    let (key, session) = auth.split_once(' ').unwrap();
    assert!(key.starts_with("ASIA"), "{auth}");
    assert!(session.len() > 8, "{auth}");

    // The token file gone: one line naming it.
    std::fs::remove_file(&token).unwrap();
    let o = m
        .bulkget(&[
            "mirror",
            "s3://roles",
            t.path().join("o2").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.trim().lines().count() == 1
            && e.contains("web identity role arn:aws:iam::123456789012:role/bulkget-test")
            && e.contains(token.to_str().unwrap()),
        "{e}"
    );
}
