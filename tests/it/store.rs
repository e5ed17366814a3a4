//! Object stores: `mirror s3://…` against moto's S3 server (a real
//! emulator, started by `fixtures/moto_s3.py` on port 0).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::common::*;
use crate::peers::{Nginx, Pki, tls_server};

/// The Python that has moto: `BULKGET_TEST_PYTHON`, else the venv that
/// `.ci/run` makes in `target/moto-venv`, else `python3`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("BULKGET_TEST_PYTHON") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/moto-venv/bin/python");
    if venv.exists() {
        return venv;
    }
    "python3".into()
}

/// An emulator started by a fixture script (`tests/it/fixtures/*.py`): it
/// prints the port to use, then answers one command a line ("ok ...").
pub struct Emulator {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub port: u16,
    /// What `bulkget()` sets (`Some`) or removes (`None`) in the
    /// environment to reach it.
    pub env: Vec<(&'static str, Option<String>)>,
}

impl Emulator {
    /// Runs `fixtures/SCRIPT` with `args` under [`python()`]; `needs` says
    /// what is missing when it does not start.
    pub fn start(script: &str, args: &[&std::ffi::OsStr], needs: &str) -> Emulator {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/it/fixtures")
            .join(script);
        let mut child = Command::new(python())
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start python ({needs} is needed: .ci/run installs it): {e}")
            });
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!("the emulator did not start (is {needs} installed?): {line:?}")
        });
        Emulator {
            child,
            stdin,
            stdout,
            port,
            env: Vec::new(),
        }
    }

    /// moto's S3 server.
    pub fn moto() -> Emulator {
        let mut m = Emulator::start("moto_s3.py", &[], "moto[server]");
        m.env = vec![
            ("AWS_ACCESS_KEY_ID", Some("test".into())),
            ("AWS_SECRET_ACCESS_KEY", Some("test".into())),
            (
                "AWS_ENDPOINT_URL",
                Some(format!("http://127.0.0.1:{}", m.port)),
            ),
            ("AWS_PROFILE", None),
            ("AWS_ENDPOINT_URL_S3", None),
            ("AWS_CA_BUNDLE", None),
        ];
        m
    }

    /// Sends one command; the answer after "ok".
    pub fn cmd(&mut self, c: &str) -> String {
        writeln!(self.stdin, "{c}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.strip_prefix("ok")
            .unwrap_or_else(|| panic!("{c}: {line}"))
            .trim()
            .to_string()
    }

    /// Puts one object of `size` bytes (the body rule's) under `key`.
    pub fn put(&mut self, bucket: &str, key: &str, size: usize) {
        self.cmd(&format!("put {bucket} {size} {}", serde_json::json!(key)));
    }

    /// bulkget with the environment that reaches this emulator.
    pub fn bulkget(&self, args: &[&str]) -> Command {
        let mut c = command(args);
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.stdin(Stdio::null());
        c
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fixture's body rule: the key's bytes repeated, cut to the size.
pub fn body(key: &str, size: usize) -> Vec<u8> {
    key.bytes().cycle().take(size).collect()
}

pub fn assert_body(out: &Path, name: &str, key: &str, size: usize) {
    let got = std::fs::read(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(got.len(), size, "{name}");
    assert!(got == body(key, size), "{name}: wrong bytes");
}

/// Runs `c` (a slow mirror) until its journal records a finished listing
/// page, then kills it (SIGKILL).
pub fn kill_after_a_finished_page(mut c: Command, out: &Path) {
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_a_finished_page(out);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The `n` objects a fixture's `fill … PREFIX N SIZE` made, landed in `out`
/// under their keys less `strip`.
pub fn assert_filled(out: &Path, strip: &str, prefix: &str, n: usize, size: usize) {
    for i in 0..n {
        let key = format!("{prefix}{i:05}");
        assert_body(out, &key[strip.len()..], &key, size);
    }
}

#[test]
fn mirror_an_s3_prefix_with_odd_keys_slowdowns_and_a_kill() {
    let mut m = Emulator::moto();
    m.cmd("bucket bkt");
    m.cmd("fill bkt data/f 2000 100");
    let odd = [("data/a b+c.txt", 3), ("data/ü/x", 5), ("data/empty", 0)];
    for (k, n) in odd {
        m.put("bkt", k, n);
    }
    let hostile = ["data/a//b", "data/./x", "data/dir/", "data/.."];
    for k in hostile {
        m.put("bkt", k, 1);
    }
    m.put("bkt", "other/z", 1);
    let big = 20 << 20;
    m.put("bkt", "data/big", big);

    // On tmpfs: the journal's once-a-second save follows a syncfs, which on
    // this disk could wait for the whole suite's writes until the slow
    // first run had finished (CI saw it in sessions 16 and 17).
    let t = scratch();
    let out = t.path().join("out");
    let o = out.to_str().unwrap();
    // A first run, killed once the journal records a finished listing page
    // (1 000 keys); held to about 100 files/s so that it is still running
    // then, whatever else the machine does.
    m.cmd("delay 0.02");
    let slow = [
        "mirror",
        "s3://bkt/data",
        o,
        "-q",
        "--max-per-host",
        "2",
        "--pipeline",
        "1",
    ];
    kill_after_a_finished_page(m.bulkget(&slow), &out);
    // Meanwhile the bucket grows past the journal's cursor: 500 keys that
    // the rerun must fetch whatever the first run got to. From now on the
    // store answers some GETs 503 SlowDown.
    m.cmd("delay 0");
    m.cmd("fill bkt data/g 500 100");
    m.cmd("fault 0.05");
    // The rerun completes the job; only the hostile keys fail, each alone.
    let sj = t.path().join("stats.json");
    let r = m
        .bulkget(&["mirror", "s3://bkt/data", o, "-q", "--stats-json"])
        .arg(&sj)
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert_filled(&out, "data/", "data/f", 2000, 100);
    assert_filled(&out, "data/", "data/g", 500, 100);
    for (k, n) in odd {
        assert_body(&out, &k[5..], k, n);
    }
    assert_body(&out, "big", "data/big", big);
    assert!(!out.join("z").exists() && !t.path().join("other").exists());
    let f = failures(&out);
    let mut failed: Vec<&str> = f.iter().map(|r| r["url"].as_str().unwrap()).collect();
    failed.sort();
    let mut want: Vec<String> = hostile.iter().map(|k| format!("s3://bkt/{k}")).collect();
    want.sort();
    assert_eq!(failed, want, "{f:?}");
    assert!(f.iter().all(|r| {
        r["error"]
            .as_str()
            .unwrap()
            .contains("cannot be a file name")
    }));
    // It listed from the journal's cursor, not from the first key, and its
    // ledger still holds the first run's refusals (all on the first page).
    let st = read_json(&sj);
    let listed = st["listed"].as_u64().unwrap();
    assert!(
        listed <= 2508 - 1000,
        "the rerun listed {listed} keys: {st}"
    );
    assert_eq!(journal_of(&out).unwrap()["complete"], true);
    // Nothing half-written is left under a final name or beside one.
    let names = std::fs::read_dir(&out).unwrap().count();
    assert_eq!(
        names,
        2000 + 500 + 3 + 1 + 1,
        "2000 f + 500 g + a b+c.txt, ü, empty + big + .bulkget"
    );
    let slowdowns: u64 = m.cmd("fault 0").parse().unwrap();
    assert!(slowdowns > 0, "the store answered some GETs 503 SlowDown");
    // Object GETs went signed in an Authorization header, and botocore,
    // signing each again, agrees with every one (odd keys included).
    let sigs = m.cmd("signatures");
    let (checked, bad) = sigs.split_once(' ').unwrap();
    let (checked, bad): (u64, u64) = (checked.parse().unwrap(), bad.parse().unwrap());
    assert!(
        checked >= 2500 && bad == 0,
        "signatures checked, bad: {sigs}"
    );

    // get takes s3:// URLs in a list: a key no file could be named after is
    // fetched by its raw key under the NAME given; a missing one fails alone,
    // shown by its s3:// URL (never the signed one).
    let list = t.path().join("urls.txt");
    std::fs::write(
        &list,
        "s3://bkt/data/f00007\ns3://bkt/data/a//b ab\ns3://bkt/data/ü/x\ns3://bkt/nope\n",
    )
    .unwrap();
    let got = t.path().join("got");
    let r = m
        .bulkget(&["get", "-q", "-i", list.to_str().unwrap(), "-o"])
        .arg(&got)
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert_body(&got, "f00007", "data/f00007", 100);
    assert_body(&got, "ab", "data/a//b", 1);
    assert_body(&got, "x", "data/ü/x", 5);
    let f = failures(&got);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["url"], "s3://bkt/nope");
    assert!(f[0]["error"].as_str().unwrap().contains("404"), "{f:?}");
    assert!(!stderr(&r).contains("X-Amz-Signature"), "{}", stderr(&r));
}

#[test]
fn missing_credentials_are_one_line_that_says_where_bulkget_looked() {
    let t = tempfile::tempdir().unwrap();
    let o = command(&[
        "mirror",
        "s3://bkt/x",
        t.path().join("out").to_str().unwrap(),
    ])
    .env_clear()
    .env("HOME", t.path())
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("AWS_ACCESS_KEY_ID")
            && e.contains(".aws/credentials")
            && e.contains("AWS_EC2_METADATA_DISABLED"),
        "{e}"
    );
    let o = command(&["mirror", "gs://b/x", t.path().join("out").to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("no Google credentials for gs://b")
            && e.contains("GOOGLE_APPLICATION_CREDENTIALS"),
        "{e}"
    );
}

#[test]
fn an_https_store_behind_a_private_ca_over_http2() {
    let mut m = Emulator::moto();
    m.cmd("bucket bkt");
    m.cmd("fill bkt data/f 300 100");
    // nginx terminates TLS (HTTP/2 by ALPN) and passes requests to moto.
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::new(&t.path().join("pki"), "ca");
    let cert = pki.leaf("srv", &["localhost", "127.0.0.1"], 2020, 2090);
    let proxy = format!(
        "location / {{ proxy_pass http://127.0.0.1:{}; proxy_set_header Host $http_host; }}",
        m.port
    );
    std::fs::create_dir_all(t.path().join("www")).unwrap();
    let ng = Nginx::start(t.path(), 1, &tls_server("P0", &cert, true, &proxy));
    let endpoint = format!("https://127.0.0.1:{}", ng.addrs[0].port());
    let out = t.path().join("out");
    let o = m
        .bulkget(&["mirror", "s3://bkt/data", out.to_str().unwrap(), "-q"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_CA_BUNDLE", pki.ca_file("ca"))
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&o),
        ng.error_log()
    );
    assert_filled(&out, "data/", "data/f", 300, 100);
    let log = ng.access_log();
    assert!(log.contains("HTTP/2.0 /bkt/data/f00299"), "{log}");
    // Without the bundle the certificate is unknown: one line naming the
    // host and why, at once, and nothing lands.
    let out2 = t.path().join("out2");
    let o = m
        .bulkget(&["mirror", "s3://bkt/data", out2.to_str().unwrap(), "-q"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("127.0.0.1") && e.to_lowercase().contains("certificate"),
        "{e}"
    );
    assert!(!e.contains("X-Amz-Signature"), "{e}");

    // --checksum: an object served with a flipped byte fails against its
    // ETag (MD5) and is not landed; the others land.
    m.cmd("corrupt /bkt/data/f00007");
    let out3 = t.path().join("out3");
    let o = m
        .bulkget(&[
            "mirror",
            "s3://bkt/data",
            out3.to_str().unwrap(),
            "-q",
            "--checksum",
        ])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_CA_BUNDLE", pki.ca_file("ca"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!out3.join("f00007").exists());
    assert_body(&out3, "f00008", "data/f00008", 100);
    let f = failures(&out3);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["url"], "s3://bkt/data/f00007");
    assert!(f[0]["error"].as_str().unwrap().contains("md5"), "{f:?}");
}

#[test]
fn exists_and_stat_of_s3_keys_by_head() {
    let mut m = Emulator::moto();
    m.cmd("bucket bkt");
    m.put("bkt", "a b/c", 10);
    m.put("bkt", "x//y", 3);
    let paths = [
        "s3://bkt/a b/c",
        "s3://bkt/nope",
        "s3://bkt/x//y",
        "s3://nobucket/k",
    ];
    let o = m.bulkget(&["exists"]).args(paths).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "s3://bkt/a b/c\ttrue\ns3://bkt/nope\tfalse\ns3://bkt/x//y\ttrue\ns3://nobucket/k\tfalse\n"
    );
    let o = m
        .bulkget(&["stat", "--json"])
        .args(&paths[..1])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["path"], "s3://bkt/a b/c");
    assert_eq!(v["size"], 10);
    // The ETag of a single-part upload is the MD5 of the body.
    let md5 = md5_hex(&body("a b/c", 10));
    assert_eq!(v["etag"], md5);
    assert!(v["mtime"].as_str().unwrap().ends_with('Z'), "{v}");
}

fn md5_hex(b: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn ls_an_s3_prefix_one_level_and_recursively() {
    let mut m = Emulator::moto();
    m.cmd("bucket bkt");
    for k in ["p/a", "p/b b", "p/d/x", "p/d/y", "p/e//f", "q/z"] {
        m.put("bkt", k, 4);
    }
    let o = m.bulkget(&["ls", "s3://bkt/p"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "s3://bkt/p/d/\ns3://bkt/p/e/\ns3://bkt/p/a\ns3://bkt/p/b b\n"
    );
    let o = m
        .bulkget(&["ls", "-r", "--json", "s3://bkt/p/"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = o
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let paths: Vec<&str> = rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "s3://bkt/p/a",
            "s3://bkt/p/b b",
            "s3://bkt/p/d/x",
            "s3://bkt/p/d/y",
            "s3://bkt/p/e//f"
        ]
    );
    assert!(rows.iter().all(|r| r["size"] == 4));
    assert_eq!(rows[0]["etag"], md5_hex(&body("p/a", 4)));
}

/// The run every store's mirror test makes (`az://`, `gs://`), in bucket
/// `b` of `e` reached as `SCHEME://b`: 2 000 objects `data/f…`, the `odd`
/// ones (each lands byte for byte), the `hostile` keys (each fails alone,
/// named) and `other/z` (outside the prefix). A first mirror is slowed by
/// the fixture's relay and killed after a finished listing page; the
/// bucket grows by 300 past the journal's cursor; the rerun completes,
/// listing at most what is left. Then `ls`, `stat` and `get` over the
/// store's paths. Returns the directory holding `out/`.
pub fn mirror_kill_rerun_and_paths(
    e: &mut Emulator,
    scheme: &str,
    b: &str,
    odd: &[(&str, usize)],
    hostile: &[&str],
) -> tempfile::TempDir {
    e.cmd(&format!("fill {b} data/f 2000 100"));
    for &(k, n) in odd {
        e.put(b, k, n);
    }
    for k in hostile {
        e.put(b, k, 1);
    }
    e.put(b, "other/z", 1);
    let root = format!("{scheme}://{b}");
    let data = format!("{root}/data");

    // On tmpfs: the journal's once-a-second save follows a syncfs, which on
    // this disk could wait for the whole suite's writes until the slow
    // first run had finished (CI saw it in sessions 16 and 17).
    let t = scratch();
    let out = t.path().join("out");
    let o = out.to_str().unwrap();
    // A first run, killed once the journal records a finished listing page
    // (1 000 names), held back by the relay so it is still running then:
    // one connection, one request at a time, in listing order, so the
    // first page is done ~13 s before the last. (With two connections on
    // two cores, a CI run once saw the first page still open near the end,
    // and the kill came after a finished job.)
    e.cmd("delay 0.01");
    let slow = [
        "mirror",
        &data,
        o,
        "-q",
        "--threads",
        "1",
        "--max-per-host",
        "1",
        "--pipeline",
        "1",
    ];
    kill_after_a_finished_page(e.bulkget(&slow), &out);
    let j = journal_of(&out).expect("the killed run's journal");
    assert_ne!(
        j["complete"], true,
        "the first run finished before the kill: {j}"
    );
    // The bucket grows meanwhile, past the journal's cursor.
    e.cmd("delay 0");
    e.cmd(&format!("fill {b} data/g 300 100"));
    let sj = t.path().join("stats.json");
    let r = e
        .bulkget(&["mirror", &data, o, "-q", "--checksum", "--stats-json"])
        .arg(&sj)
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert_filled(&out, "data/", "data/f", 2000, 100);
    assert_filled(&out, "data/", "data/g", 300, 100);
    for &(k, n) in odd {
        assert_body(&out, &k[5..], k, n);
    }
    assert!(!out.join("z").exists() && !t.path().join("other").exists());
    assert!(
        !t.path().join("up").exists(),
        "nothing outside the destination"
    );
    // Only the names no file can have failed, each alone and named.
    let f = failures(&out);
    let mut failed: Vec<&str> = f.iter().map(|r| r["url"].as_str().unwrap()).collect();
    failed.sort();
    let mut want: Vec<String> = hostile.iter().map(|k| format!("{root}/{k}")).collect();
    want.sort();
    assert_eq!(failed, want, "{f:?}");
    // The rerun listed from the journal's cursor, not from the first name.
    let st = read_json(&sj);
    let listed = st["listed"].as_u64().unwrap();
    let all = 2300 + odd.len() + hostile.len();
    assert!(
        listed as usize <= all - 1000,
        "the rerun listed {listed} names: {st}"
    );
    assert_eq!(journal_of(&out).unwrap()["complete"], true);
    let names = std::fs::read_dir(&out).unwrap().count();
    assert_eq!(names, 2300 + odd.len() + 1, "f, g, the odd ones, .bulkget");

    // ls, stat and get over the store's paths.
    let r = e.bulkget(&["ls", &format!("{data}/ü")]).output().unwrap();
    let want = format!("{data}/ü/x\n");
    assert_eq!(String::from_utf8_lossy(&r.stdout), want, "{}", stderr(&r));
    let r = e
        .bulkget(&["stat", &format!("{data}/f00001"), &format!("{data}/nope")])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(s.starts_with(&format!("{data}/f00001\t100\t")), "{s}");
    assert!(s.contains(&format!("{data}/nope\tabsent")), "{s}");
    let got = t.path().join("got");
    let list = t.path().join("urls.txt");
    std::fs::write(&list, format!("{data}/a//b ab\n{data}/f00007\n")).unwrap();
    let r = e
        .bulkget(&["get", "-q", "-i", list.to_str().unwrap(), "-o"])
        .arg(&got)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", stderr(&r));
    assert_body(&got, "ab", "data/a//b", 1);
    assert_body(&got, "f00007", "data/f00007", 100);
    t
}
