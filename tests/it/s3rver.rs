//! A second S3 peer: s3rver (npm), which forgives different mistakes than
//! moto. It ignores `encoding-type=url` (keys come back as stored), answers
//! `Range: bytes=0-0` with the whole object, and does not implement
//! ListMultipartUploads (501). Each of these once failed bulkget.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use bulkget::server::dirstore::DirStore;
use bulkget::server::faults::Faults;
use bulkget::server::{ServeConfig, Server};

use crate::common::*;

/// s3rver: `BULKGET_TEST_S3RVER`, else where `.ci/run` installs it.
fn s3rver_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BULKGET_TEST_S3RVER") {
        return p.into();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/s3rver/node_modules/.bin/s3rver")
}

struct S3rver {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl S3rver {
    /// On port 0 with bucket `bkt`; the port is read from its first line.
    fn start() -> S3rver {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(s3rver_bin())
            .args([
                "-d",
                dir.path().to_str().unwrap(),
                "-a",
                "127.0.0.1",
                "-p",
                "0",
            ])
            .args(["--configure-bucket", "bkt"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start s3rver (.ci/run installs it from npm): {e}"));
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut port = None;
        let mut line = String::new();
        while port.is_none() {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "s3rver did not start"
            );
            port = line
                .trim()
                .strip_prefix("S3rver listening on 127.0.0.1:")
                .and_then(|p| p.parse().ok());
        }
        // Its request log goes on: keep reading it so it never blocks.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        S3rver {
            child,
            port: port.unwrap(),
            _dir: dir,
        }
    }

    fn url(&self, key: &str) -> String {
        format!("http://127.0.0.1:{}/bkt/{key}", self.port)
    }

    /// Puts `body` under `key` (s3rver takes unsigned requests), by curl.
    fn put(&self, key: &str, body: &Path) {
        let o = Command::new("curl")
            .args(["-sSf", "-X", "PUT", "--data-binary"])
            .arg(format!("@{}", body.display()))
            .arg(self.url(&key.replace('+', "%2B").replace(' ', "%20")))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }

    /// The object's bytes, by curl.
    fn read(&self, key: &str) -> Vec<u8> {
        let o = Command::new("curl")
            .args(["-sSf", &self.url(key)])
            .output()
            .unwrap();
        assert!(o.status.success(), "{key}: {}", stderr(&o));
        o.stdout
    }

    /// bulkget, run in `cwd`, reaching this store.
    fn bulkget(&self, cwd: &Path, args: &[&str]) -> std::process::Output {
        let mut c = command(args);
        c.current_dir(cwd)
            .env("AWS_ACCESS_KEY_ID", "S3RVER")
            .env("AWS_SECRET_ACCESS_KEY", "S3RVER")
            .env(
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            )
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL_S3")
            .stdin(Stdio::null());
        c.output().unwrap()
    }
}

impl Drop for S3rver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bytes that differ along the file (a misplaced chunk shows).
fn pattern(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Keys with `+` and `%` come back as named; an object over --split-size
/// lands in a relative DEST; `ls -r` shows the keys as stored.
#[test]
fn s3rver_mirror_into_a_relative_dest_keeps_plus_signs() {
    let s = S3rver::start();
    let t = tempfile::tempdir().unwrap();
    // Past mirror's split size (8 MiB): fetched in ranged chunks.
    let big = pattern(9 << 20);
    std::fs::write(t.path().join("big"), &big).unwrap();
    std::fs::write(t.path().join("small"), b"a plus b").unwrap();
    s.put("d/a+b", &t.path().join("small"));
    s.put("d/x y", &t.path().join("small"));
    s.put("d/big", &t.path().join("big"));
    let o = s.bulkget(t.path(), &["mirror", "s3://bkt/d", "rel", "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rel = t.path().join("rel");
    assert_eq!(std::fs::read(rel.join("a+b")).unwrap(), b"a plus b");
    assert_eq!(std::fs::read(rel.join("x y")).unwrap(), b"a plus b");
    assert!(
        std::fs::read(rel.join("big")).unwrap() == big,
        "big: wrong bytes"
    );
    assert!(!rel.join("a b").exists());
    // get of one large key into a relative -o, in chunks
    let o = s.bulkget(
        t.path(),
        &[
            "get",
            "s3://bkt/d/big",
            "-o",
            "rel2",
            "-q",
            "--split-size",
            "1M",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(std::fs::read(t.path().join("rel2/big")).unwrap() == big);
    let o = s.bulkget(t.path(), &["ls", "-r", "s3://bkt/d/"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut l: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    l.sort();
    assert_eq!(l, ["s3://bkt/d/a+b", "s3://bkt/d/big", "s3://bkt/d/x y"]);
}

/// A large download killed halfway is resumed against s3rver, whose
/// answer to the resume's `Range: bytes=0-0` is the whole object (a 206
/// naming all of it): taken as one stream, not failed.
#[test]
fn s3rver_resume_where_the_store_answers_a_range_with_everything() {
    let s = S3rver::start();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let big = pattern(4 << 20);
    std::fs::write(src.join("big"), &big).unwrap();
    s.put("big", &src.join("big"));
    // The first, slow run comes from bulkget's own server (1 MiB/s per
    // connection) and is killed once its sidecar says what it holds.
    let slow = Server::start(
        "127.0.0.1:0",
        Arc::new(DirStore::new(&src).unwrap()),
        ServeConfig {
            tls: None,
            page_size: 10,
            faults: Faults {
                rate_limit: 1 << 20,
                ..Faults::default()
            },
            threads: 2,
        },
    )
    .unwrap();
    let url = format!("http://{}/get/big", slow.addr);
    let mut child = command(&[
        "get",
        &url,
        "-o",
        "out",
        "-q",
        "--split-size",
        "1M",
        "--split",
        "2",
    ])
    .current_dir(t.path())
    .stdin(Stdio::null())
    .spawn()
    .unwrap();
    let side = t.path().join("out/.bulkget/parts");
    wait_for("the sidecar of a large download", || {
        std::fs::read_dir(&side).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".json"))
        })
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !t.path().join("out/big").exists(),
        "finished before the kill"
    );
    let o = s.bulkget(
        t.path(),
        &["get", "s3://bkt/big", "-o", "out", "--split-size", "1M"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        std::fs::read(t.path().join("out/big")).unwrap() == big,
        "wrong bytes"
    );
}

/// An upload over --part-size to a store that does not list unfinished
/// uploads (501 NotImplemented): one fresh multipart upload, not a
/// "connection closed" after eight retries.
#[test]
fn s3rver_multipart_upload_where_listing_uploads_is_not_implemented() {
    let s = S3rver::start();
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("up");
    std::fs::create_dir_all(&up).unwrap();
    let big = pattern(12 << 20);
    std::fs::write(up.join("big"), &big).unwrap();
    std::fs::write(up.join("a+b"), b"plus").unwrap();
    let o = s.bulkget(
        t.path(),
        &["cp", "-r", "up", "s3://bkt/u/", "-q", "--part-size", "5M"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(s.read("u/big") == big, "wrong bytes");
    assert_eq!(s.read("u/a%2Bb"), b"plus");
    // The rerun finds both there (a+b by its own name, not "a b").
    let o = s.bulkget(
        t.path(),
        &[
            "cp",
            "-r",
            "up",
            "s3://bkt/u/",
            "--stats-json",
            "st.json",
            "-q",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let st = read_json(&t.path().join("st.json"));
    assert_eq!(st["skipped"], 2, "{st}");
}
