//! `cp` to and from S3 against moto's server: a tree with odd names up,
//! read back with boto3 (the store's own SDK), reruns that skip, changed
//! files, `--checksum`, the way back down, and a multipart upload killed
//! halfway and resumed with the parts already sent.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use sha2::{Digest, Sha256};

use crate::common::{stderr, wait_for};
use crate::store::Emulator;

/// What the fixture's `tree` answers for these (key, bytes): the count and
/// the sha256 of the sorted lines "KEY<TAB>sha256(bytes)".
pub fn digest(mut objects: Vec<(String, Vec<u8>)>) -> String {
    let mut lines: Vec<String> = objects
        .drain(..)
        .map(|(k, b)| {
            let h: String = Sha256::digest(&b)
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect();
            format!("{k}\t{h}\n")
        })
        .collect();
    lines.sort();
    let all: String = lines.concat();
    let h: String = Sha256::digest(all.as_bytes())
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    format!("{} {h}", lines.len())
}

/// Every file under `root` (links to files followed, links to directories
/// not) as (`prefix` + relative path, bytes).
pub fn files(root: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let link = p.symlink_metadata().unwrap().file_type().is_symlink();
            if p.is_dir() {
                if !link {
                    stack.push(p);
                }
            } else if p.is_file() {
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap();
                out.push((format!("{prefix}{rel}"), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// A small deterministic byte pattern (not compressible to nothing).
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn tree(root: &Path) {
    for i in 0..150 {
        let d = root.join(format!("d{}", i % 7));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join(format!("f{i}")),
            format!("object {i} ").repeat(i % 9),
        )
        .unwrap();
    }
    // "a!" sorts before "a/…" as keys do, though "a" < "a!" as names.
    std::fs::create_dir_all(root.join("a/x")).unwrap();
    std::fs::write(root.join("a!"), b"bang").unwrap();
    std::fs::write(root.join("a/x/deep"), b"deep").unwrap();
    std::fs::write(root.join("a.b"), b"dot").unwrap();
    std::fs::write(root.join("sp ace+%\u{e9}.txt"), b"odd name").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("large"), noise(12 << 20, 7)).unwrap();
    std::fs::create_dir_all(root.join("nothing/inside")).unwrap();
    symlink("a!", root.join("to-file")).unwrap();
    symlink("d0", root.join("to-dir")).unwrap();
}

pub fn copied_and_skipped(o: &std::process::Output) -> (u64, u64) {
    let e = stderr(o);
    let line = e.lines().last().unwrap_or_default();
    let num = |after: &str| -> u64 {
        let i = line
            .find(after)
            .unwrap_or_else(|| panic!("{after:?} in {e}"));
        line[i + after.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let skipped = line
        .split("; ")
        .find(|p| p.ends_with("already there and skipped"))
        .and_then(|p| p.split_whitespace().next())
        .unwrap_or_else(|| panic!("{e}"))
        .parse()
        .unwrap();
    (num("Copied "), skipped)
}

/// What every store's upload does alike: a tree up to `url`
/// (`s3://upl/in/`; the store's fixture reads it back with `tree upl
/// in/`): the link to a directory a named failure, every byte there; a
/// rerun sends nothing; a file changed since (same size, newer) goes again,
/// alone; and back down, the same bytes under the same names. The tree and
/// the temporary directory, for a store's own steps after.
pub fn tree_up_rerun_and_down(e: &mut Emulator, url: &str) -> (tempfile::TempDir, PathBuf) {
    let (bucket, prefix) = url.split_once("://").unwrap().1.split_once('/').unwrap();
    let tree_cmd = format!("tree {bucket} {prefix}");
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    tree(&src);
    let o = up(e, &src, url, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e_ = stderr(&o);
    assert!(
        e_.contains("to-dir") && e_.contains("a link to a directory"),
        "{e_}"
    );
    assert_eq!(e.cmd(&tree_cmd), digest(files(&src, prefix)));
    assert_eq!(copied_and_skipped(&o), (150 + 7, 0));

    let o = up(e, &src, url, &[]);
    assert_eq!(copied_and_skipped(&o), (0, 157), "{}", stderr(&o));

    let f = src.join("d3/f10");
    let mut b = std::fs::read(&f).unwrap();
    b[0] ^= 1;
    std::fs::write(&f, &b).unwrap();
    set_time(&src, "d3/f10", later());
    let o = up(e, &src, url, &[]);
    assert_eq!(copied_and_skipped(&o), (1, 156), "{}", stderr(&o));
    assert_eq!(e.cmd(&tree_cmd), digest(files(&src, prefix)));

    let back = t.path().join("back");
    let o = e
        .bulkget(&["cp", "-r", url, back.to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut got = files(&back, prefix);
    got.retain(|(k, _)| !k.starts_with(&format!("{prefix}.bulkget/")));
    assert_eq!(digest(got), digest(files(&src, prefix)));
    (t, src)
}

/// `cp -r SRC URL --part-size 5M`, with `extra`.
pub fn up(e: &Emulator, src: &Path, url: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["cp", "-r", src.to_str().unwrap(), url, "--part-size", "5M"];
    args.extend_from_slice(extra);
    e.bulkget(&args).output().unwrap()
}

/// A few seconds from now: newer than anything just uploaded.
pub fn later() -> std::time::SystemTime {
    std::time::SystemTime::now() + std::time::Duration::from_secs(5)
}

pub fn set_time(src: &Path, p: &str, t: std::time::SystemTime) {
    let f = std::fs::File::options().write(true).open(src.join(p));
    f.unwrap().set_modified(t).unwrap();
}

#[test]
fn cp_r_uploads_a_tree_reruns_skip_and_it_comes_back_down() {
    let mut moto = Emulator::moto();
    moto.cmd("bucket upl");
    let (_t, src) = tree_up_rerun_and_down(&mut moto, "s3://upl/in/");
    let url = "s3://upl/in/";
    assert_eq!(moto.cmd("uploads upl"), "0");

    // Touched, not changed: read and compared by MD5 (single-part and
    // multipart ETags), not sent.
    for p in ["d4/f11", "large"] {
        set_time(&src, p, later() + std::time::Duration::from_secs(5));
    }
    let o = up(&moto, &src, url, &[]);
    assert_eq!(copied_and_skipped(&o), (0, 157), "{}", stderr(&o));

    // Changed, same size, but dated before the upload: the time says it
    // is there; --checksum trusts no time and sends it.
    let f = src.join("d5/f12");
    let mut b = std::fs::read(&f).unwrap();
    b[0] ^= 1;
    std::fs::write(&f, &b).unwrap();
    set_time(&src, "d5/f12", std::time::UNIX_EPOCH);
    let o = up(&moto, &src, url, &[]);
    assert_eq!(copied_and_skipped(&o), (0, 157), "{}", stderr(&o));
    let o = up(&moto, &src, url, &["--checksum"]);
    assert_eq!(copied_and_skipped(&o), (1, 156), "{}", stderr(&o));
    assert_eq!(moto.cmd("tree upl in/"), digest(files(&src, "in/")));
}

/// A 60 MiB file in 12 parts to `url` (`az://blk/big.bin`), killed once
/// `held_cmd` (the fixture's count of parts or blocks in the store) says
/// three landed, then run again: nothing was visible meanwhile, the rerun
/// sends at most the parts that were not there (requests whose bytes hold
/// `pattern`, counted by the fixture's relay), and the object is whole.
pub fn a_large_upload_killed_halfway_resumes(
    e: &mut Emulator,
    url: &str,
    held_cmd: &str,
    pattern: &str,
) {
    let (bucket, key) = url.split_once("://").unwrap().1.split_once('/').unwrap();
    let tree_cmd = format!("tree {bucket} {key}");
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("big.bin");
    let data = noise(60 << 20, 5);
    std::fs::write(&f, &data).unwrap();
    let args = ["cp", f.to_str().unwrap(), url, "--part-size", "5M", "-q"];
    e.cmd(&format!("count {pattern}"));
    // Answers come slowly: parts land, the run is killed before it can
    // put them together.
    e.cmd("delay 0.3");
    let mut child = e.bulkget(&args).stderr(Stdio::null()).spawn().unwrap();
    wait_for("three parts in the store", || {
        e.cmd(held_cmd).parse::<u64>().unwrap_or(0) >= 3
    });
    child.kill().unwrap();
    child.wait().unwrap();
    e.cmd("delay 0");
    let held: u64 = e.cmd(held_cmd).parse().unwrap();
    assert_eq!(e.cmd(&tree_cmd), digest(vec![]), "nothing visible");
    let before: u64 = e.cmd(&format!("count {pattern}")).parse().unwrap();
    let o = e.bulkget(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let again = e.cmd(&format!("count {pattern}")).parse::<u64>().unwrap() - before;
    assert!(
        again <= 12 - held,
        "the rerun sent {again} parts; {held} of 12 were there"
    );
    assert_eq!(e.cmd(&tree_cmd), digest(vec![(key.into(), data)]));
}

#[test]
fn one_file_to_a_key_or_into_a_prefix() {
    let mut moto = Emulator::moto();
    moto.cmd("bucket one");
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("report.csv");
    std::fs::write(&f, b"a,b\n1,2\n").unwrap();
    let p = f.to_str().unwrap();
    for dst in ["s3://one/exact/name.csv", "s3://one/into/"] {
        let o = moto.bulkget(&["cp", p, dst, "-q"]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let body = std::fs::read(&f).unwrap();
    let want = digest(vec![
        ("exact/name.csv".into(), body.clone()),
        ("into/report.csv".into(), body),
    ]);
    assert_eq!(moto.cmd("tree one -"), want);
    // A directory without -r is refused, in one line.
    let o = moto
        .bulkget(&["cp", t.path().to_str().unwrap(), "s3://one/x/"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("give -r"), "{}", stderr(&o));
}

#[test]
fn a_multipart_upload_killed_halfway_resumes_with_the_parts_it_sent() {
    let mut moto = Emulator::moto();
    moto.cmd("bucket mpu");
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("big.bin");
    let data = noise(40 << 20, 3);
    std::fs::write(&f, &data).unwrap();
    let p = f.to_str().unwrap();
    let args = ["cp", p, "s3://mpu/big.bin", "--part-size", "5M", "-q"];
    // Two uploads of the key left by earlier runs: the newest is taken up,
    // the older aborted once the object is whole.
    moto.cmd(r#"startupload mpu "big.bin""#);
    moto.cmd(r#"startupload mpu "big.bin""#);
    // Parts land one at a time, a quarter second apart.
    moto.cmd("putdelay 0.25");
    let mut child = moto.bulkget(&args).stderr(Stdio::null()).spawn().unwrap();
    let mut sent = 0;
    wait_for("three parts in the store", || {
        sent = moto
            .cmd(r#"parts mpu "big.bin""#)
            .parse::<u64>()
            .unwrap_or(0);
        sent >= 3
    });
    child.kill().unwrap();
    child.wait().unwrap();
    moto.cmd("putdelay 0");
    // Nothing visible yet; the old upload and the killed one in progress.
    assert_eq!(moto.cmd("tree mpu -"), digest(vec![]));
    assert_eq!(moto.cmd("uploads mpu"), "2");
    let sent: u64 = moto.cmd(r#"parts mpu "big.bin""#).parse().unwrap();
    let before: u64 = moto.cmd("partputs").parse().unwrap();
    let o = moto.bulkget(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let again = moto.cmd("partputs").parse::<u64>().unwrap() - before;
    assert!(
        again <= 8 - sent,
        "the rerun sent {again} parts; {sent} of 8 were there"
    );
    assert_eq!(
        moto.cmd("tree mpu -"),
        digest(vec![("big.bin".into(), data)])
    );
    assert_eq!(moto.cmd("uploads mpu"), "0");
}

#[test]
fn cp_r_between_buckets_copies_inside_the_store_and_reruns_skip() {
    let mut moto = Emulator::moto();
    moto.cmd("bucket srcb");
    moto.cmd("bucket dstb");
    let keys = [
        "p/a",
        "p/a!",
        "p/a/b c+%\u{e9}",
        "p/x//y",
        "p/z/deep/er",
        "p-not-under/q",
    ];
    for (i, k) in keys.iter().enumerate() {
        moto.cmd(&format!("put srcb {} {}", 10 + i, serde_json::json!(k)));
    }
    let body = |k: &str, n: usize| -> Vec<u8> { k.bytes().cycle().take(n).collect() };
    let want = |keys: &[(&str, usize)]| {
        digest(
            keys.iter()
                .map(|(k, n)| (format!("q/{}", &k[2..]), body(k, *n)))
                .collect(),
        )
    };
    let under: Vec<(&str, usize)> = keys[..5]
        .iter()
        .enumerate()
        .map(|(i, k)| (*k, 10 + i))
        .collect();
    let cp = |moto: &Emulator| {
        moto.bulkget(&["cp", "-r", "s3://srcb/p", "s3://dstb/q/"])
            .output()
            .unwrap()
    };
    let o = cp(&moto);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(copied_and_skipped(&o), (5, 0));
    assert_eq!(moto.cmd("tree dstb -"), want(&under));
    let o = cp(&moto);
    assert_eq!(copied_and_skipped(&o), (0, 5), "{}", stderr(&o));
    // A source object rewritten (other size): copied again, alone.
    moto.cmd(&format!("put srcb 40 {}", serde_json::json!("p/a!")));
    let o = cp(&moto);
    assert_eq!(copied_and_skipped(&o), (1, 4), "{}", stderr(&o));
    let mut now = under.clone();
    now[1].1 = 40;
    assert_eq!(moto.cmd("tree dstb -"), want(&now));
    // One object, to an exact key.
    let o = moto
        .bulkget(&["cp", "s3://srcb/p/z/deep/er", "s3://dstb/one/copy", "-q"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        moto.cmd("tree dstb one/"),
        digest(vec![("one/copy".into(), body("p/z/deep/er", 14))])
    );
}

#[test]
fn puts_answered_503_slowdown_are_retried_and_every_object_lands() {
    let mut moto = Emulator::moto();
    moto.cmd("bucket slow");
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    for i in 0..300 {
        let d = src.join(format!("d{}", i % 3));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i}")), noise(100 + i, i as u64)).unwrap();
    }
    std::fs::write(src.join("large"), noise(11 << 20, 9)).unwrap();
    moto.cmd("putfault 0.1");
    let o = moto
        .bulkget(&[
            "cp",
            "-r",
            src.to_str().unwrap(),
            "s3://slow/s/",
            "--part-size",
            "5M",
            "-q",
        ])
        .output()
        .unwrap();
    let faults: u64 = moto.cmd("putfault 0").parse().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(faults >= 10, "only {faults} PUTs were answered 503");
    assert_eq!(copied_and_skipped(&o), (301, 0));
    assert_eq!(moto.cmd("tree slow s/"), digest(files(&src, "s/")));
}

/// `c` with `e`'s environment too (a copy between two emulators).
fn and_env(mut c: std::process::Command, e: &Emulator) -> std::process::Command {
    for (k, v) in &e.env {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

#[test]
fn cp_r_between_stores_streams_every_object_through_and_reruns_skip() {
    let mut moto = Emulator::moto();
    let mut g = crate::gcs::fake_gcs();
    let mut a = crate::azure::azurite();
    moto.cmd("bucket src");
    moto.cmd("fill src k 200 100");
    // Over the part size: ranged GETs, and parts at the other end.
    moto.put("src", "big", 12 << 20);
    g.cmd("bucket mid");
    a.cmd("container dst");
    let mut want: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| format!("k{i:05}"))
        .map(|k| (format!("in/{k}"), crate::store::body(&k, 100)))
        .collect();
    want.push(("in/big".into(), crate::store::body("big", 12 << 20)));
    let cp = |from: &Emulator, to: &Emulator, src: &str, dst: &str| {
        let args = ["cp", "-r", src, dst, "--part-size", "5M"];
        and_env(from.bulkget(&args), to).output().unwrap()
    };

    // S3 to GCS: the large object composed from parts.
    let o = cp(&moto, &g, "s3://src/", "gs://mid/in/");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(copied_and_skipped(&o), (201, 0));
    assert_eq!(g.cmd("tree mid in/"), digest(want.clone()));
    assert_eq!(g.cmd("objects mid .bulkget-parts/"), "0");
    let o = cp(&moto, &g, "s3://src/", "gs://mid/in/");
    assert_eq!(copied_and_skipped(&o), (0, 201), "{}", stderr(&o));

    // GCS to Azure: the large one in blocks.
    let o = cp(&g, &a, "gs://mid/in/", "az://dst/in/");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(copied_and_skipped(&o), (201, 0));
    assert_eq!(a.cmd("tree dst in/"), digest(want.clone()));

    // One object that is not there: one line.
    let args = ["cp", "gs://mid/in/nothing", "az://dst/x"];
    let o = and_env(g.bulkget(&args), &a).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("gs://mid/in/nothing: no such object"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn cp_from_a_list_api_server_and_a_url_into_a_store() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("srv");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..40 {
        std::fs::write(src.join(format!("f{i:02}")), noise(100 + i, i as u64)).unwrap();
    }
    std::fs::write(src.join("sub/deep"), b"deep").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    // Over the part size: its first part asked for, the rest in parts.
    std::fs::write(src.join("big"), noise(12 << 20, 11)).unwrap();
    let server = crate::common::dir_server(&src, 16);
    let mut g = crate::gcs::fake_gcs();
    g.cmd("bucket web");
    let cp = |g: &Emulator, args: &[&str]| {
        let mut a = vec!["cp"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--part-size", "5M"]);
        g.bulkget(&a).output().unwrap()
    };
    let url = server.url();
    let o = cp(&g, &["-r", &url, "gs://web/in/"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(copied_and_skipped(&o), (43, 0));
    assert_eq!(g.cmd("tree web in/"), digest(files(&src, "in/")));
    // A rerun: every name is there.
    let o = cp(&g, &["-r", &url, "gs://web/in/"]);
    assert_eq!(copied_and_skipped(&o), (0, 43), "{}", stderr(&o));
    // One URL, into a prefix under its name.
    let o = cp(&g, &[&format!("{url}/get/big"), "gs://web/one/"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let big = std::fs::read(src.join("big")).unwrap();
    assert_eq!(
        g.cmd("tree web one/"),
        digest(vec![("one/big".into(), big)])
    );
    // A name the URL percent-encodes is the key decoded, as `get` names it.
    std::fs::write(src.join("a b"), b"spaced").unwrap();
    let o = cp(&g, &[&format!("{url}/get/a%20b"), "gs://web/one/"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        g.cmd("tree web one/a"),
        digest(vec![("one/a b".into(), b"spaced".to_vec())])
    );
    // A URL that is not there: the file fails alone, named.
    let o = cp(&g, &[&format!("{url}/get/nothing"), "gs://web/one/"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/get/nothing") && stderr(&o).contains("404"),
        "{}",
        stderr(&o)
    );
}
