//! `cp -r` between local paths: the tree, links, empty directories, odd
//! names, reruns that skip, a kill -9 halfway, and DST inside SRC.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Stdio;

use crate::common::{bulkget, command, stderr, wait_for};

/// Every path under `root` (relative, sorted; directories end in `/`) with
/// the bytes of each file and the target of each link.
fn snapshot(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                let t = std::fs::read_link(e.path()).unwrap();
                out.push((format!("{rel} ->"), t.display().to_string().into_bytes()));
            } else if ft.is_dir() {
                out.push((format!("{rel}/"), Vec::new()));
                stack.push(e.path());
            } else {
                out.push((rel, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn tree(root: &Path, files: usize) {
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir_all(root.join("empty/also empty")).unwrap();
    for i in 0..files {
        let d = root.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i}")), format!("file {i} ").repeat(i % 50)).unwrap();
    }
    std::fs::write(root.join("a/b/c/deep"), b"deep").unwrap();
    std::fs::write(root.join("a/sp ace\u{e9}\n"), b"odd name").unwrap();
    std::fs::write(root.join("big"), vec![7u8; 3 << 20]).unwrap();
    symlink("../big", root.join("a/link")).unwrap();
    symlink(root, root.join("a/loop")).unwrap();
}

#[test]
fn cp_r_copies_the_tree_and_a_rerun_skips_it() {
    let t = tempfile::tempdir().unwrap();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    tree(&src, 200);
    let (s, d) = (src.to_str().unwrap(), dst.to_str().unwrap());
    let o = bulkget(&["cp", "-r", s, d]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(snapshot(&dst), snapshot(&src));
    // Modification times come along, so a rerun copies nothing.
    let m = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    assert_eq!(m(&dst.join("big")), m(&src.join("big")));
    let o = bulkget(&["cp", "-r", s, d]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Copied 0 files (0 bytes)") && stderr(&o).contains("205 already there"),
        "{}",
        stderr(&o)
    );
    // A changed file is copied again; --overwrite copies everything.
    std::fs::write(src.join("d3/f3"), b"changed").unwrap();
    let o = bulkget(&["cp", "-r", s, d]);
    assert!(stderr(&o).contains("Copied 1 files"), "{}", stderr(&o));
    assert_eq!(std::fs::read(dst.join("d3/f3")).unwrap(), b"changed");
    let o = bulkget(&["cp", "-r", "--overwrite", s, d]);
    assert!(stderr(&o).contains("Copied 205 files"), "{}", stderr(&o));
    assert_eq!(snapshot(&dst), snapshot(&src));
    // One file, into a directory; a tree without -r is refused.
    let o = bulkget(&["cp", &format!("{s}/big"), t.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(t.path().join("big")).unwrap().len(), 3 << 20);
    let o = bulkget(&["cp", s, d]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("give -r"), "{}", stderr(&o));
}

#[test]
fn cp_r_refuses_dst_inside_src() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    tree(&src, 3);
    for d in [src.join("inside"), src.join("a/b/new/deeper"), src.clone()] {
        let o = bulkget(&["cp", "-r", src.to_str().unwrap(), d.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", d.display());
        assert!(stderr(&o).contains("inside"), "{}", stderr(&o));
    }
    assert!(!src.join("inside").exists() && !src.join("a/b/new").exists());
}

#[test]
fn cp_r_killed_halfway_then_rerun_completes_the_copy() {
    let t = tempfile::tempdir().unwrap();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    tree(&src, 20_000);
    let (s, d) = (src.to_str().unwrap(), dst.to_str().unwrap());
    let mut child = command(&["cp", "-r", "-q", "--workers", "2", s, d])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once some files landed (d0 fills first).
    wait_for("some files to be copied", || {
        std::fs::read_dir(dst.join("d0")).is_ok_and(|r| r.count() > 50)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let o = bulkget(&["cp", "-r", s, d]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let skipped: u64 = stderr(&o)
        .split("; ")
        .find_map(|p| p.strip_suffix(" already there and skipped"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        skipped > 50,
        "the rerun recopied what had landed: {}",
        stderr(&o)
    );
    // Every byte, and no temp file left under any name.
    assert_eq!(snapshot(&dst), snapshot(&src));
}

#[test]
fn a_full_disk_stops_cp_with_one_line_and_a_rerun_completes() {
    // A 512 KiB tmpfs in a private mount namespace (as for mirror's test)
    // holds about a hundred of these 2 KiB files.
    let t = tempfile::tempdir().unwrap();
    let (src, mnt) = (t.path().join("src"), t.path().join("mnt"));
    for i in 0..400 {
        let d = src.join(format!("d{}", i % 4));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i}")), vec![b'a' + (i % 26) as u8; 2048]).unwrap();
    }
    std::fs::create_dir_all(&mnt).unwrap();
    let copy = t.path().join("copy");
    let script = r#"
        set -u
        mount -t tmpfs -o size=512k tmpfs "$1" || exit 99
        "$2" cp -r -q "$3" "$1/out" 2>"$1/../first.err"; echo "first=$?"
        find "$1/out" -name '*.bulkget-part' | wc -l | sed 's/^/temps=/'
        mount -o remount,size=64m "$1" || exit 98
        "$2" cp -r -q "$3" "$1/out" 2>"$1/../second.err"; echo "second=$?"
        cp -a "$1/out" "$4"
    "#;
    let o = std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", script, "sh"])
        .args([
            mnt.to_str().unwrap(),
            crate::common::BIN,
            src.to_str().unwrap(),
            copy.to_str().unwrap(),
        ])
        .output()
        .expect("unshare (util-linux) is installed");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("first=2") && out.contains("temps=0") && out.contains("second=0"),
        "{out}{}",
        stderr(&o)
    );
    // One line says why, naming the file; not one failure per file.
    let first = std::fs::read_to_string(t.path().join("first.err")).unwrap();
    assert!(
        first.contains("Stopped early: disk full: cannot")
            && first.contains("No space left on device")
            && first.contains("0 failed"),
        "{first}"
    );
    assert_eq!(snapshot(&copy), snapshot(&src));
}

#[test]
fn cp_from_a_server_runs_mirror_for_a_tree_and_get_for_one_url() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("served");
    for i in 0..120 {
        let d = src.join(format!("d{}", i % 3));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f {i}")), format!("served {i}")).unwrap();
    }
    let server = crate::common::dir_server(&src, 50);
    let dst = t.path().join("dst");
    let d = dst.to_str().unwrap();
    let o = bulkget(&["cp", "-r", "-q", &server.url(), d]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut got = snapshot(&dst);
    got.retain(|(p, _)| !p.starts_with(".bulkget"));
    assert_eq!(got, snapshot(&src));
    // One URL into a directory keeps its name; into a file path it is refused.
    let one = t.path().join("one/");
    let url = format!("{}/get/d1/f%201", server.url());
    let o = bulkget(&["cp", "-q", &url, &format!("{}/", one.display())]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(one.join("f 1")).unwrap(), b"served 1");
    let o = bulkget(&["cp", &url, t.path().join("nowhere.txt").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("give a directory"), "{}", stderr(&o));
}
