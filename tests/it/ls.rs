//! `ls`: a local tree, a list-API server, and (in `store`) S3 prefixes.

use std::os::unix::fs::symlink;

use bulkget::server::faults::Faults;

use crate::common::{bulkget, dir_server, stderr, synthetic};

fn lines(o: &std::process::Output) -> Vec<String> {
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn ls_a_local_tree_one_level_and_recursively() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("tree");
    std::fs::create_dir_all(r.join("b/c")).unwrap();
    std::fs::create_dir_all(r.join("empty")).unwrap();
    std::fs::write(r.join("a.txt"), b"12345").unwrap();
    std::fs::write(r.join("b/x y"), b"1").unwrap();
    std::fs::write(r.join("b/c/z"), b"").unwrap();
    // A link back up the tree is listed, never followed.
    symlink(&r, r.join("b/loop")).unwrap();
    let root = r.to_str().unwrap();
    let o = bulkget(&["ls", root]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        lines(&o),
        [
            format!("{root}/a.txt"),
            format!("{root}/b/"),
            format!("{root}/empty/")
        ]
    );
    let o = bulkget(&["ls", "-r", root]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        lines(&o),
        [
            format!("{root}/a.txt"),
            format!("{root}/b/loop"),
            format!("{root}/b/x y"),
            format!("{root}/b/c/z"),
            format!("{root}/empty/"),
        ]
    );
    let o = bulkget(&["ls", "-r", "--json", root]);
    let v: serde_json::Value = serde_json::from_str(&lines(&o)[0]).unwrap();
    assert_eq!(v["path"], format!("{root}/a.txt"));
    assert_eq!(v["size"], 5);
    assert!(v["mtime"].as_str().unwrap().ends_with('Z'));
    // A missing path is one line and exit 2.
    let o = bulkget(&["ls", &format!("{root}/nope")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot list"), "{}", stderr(&o));
}

#[test]
fn ls_a_list_api_server_gives_urls_that_exists_takes() {
    let s = synthetic(2500, 10, 1000, Faults::default());
    let base = format!("http://{}", s.addr);
    let o = bulkget(&["ls", &base]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let l = lines(&o);
    assert_eq!(l.len(), 2500);
    assert_eq!(l[0], format!("{base}/get/f000000000"));
    assert_eq!(l[2499], format!("{base}/get/f000002499"));
    // Odd names come out encoded, and each line is a path exists takes.
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("d")).unwrap();
    std::fs::write(t.path().join("d/a b%"), b"x").unwrap();
    let s = dir_server(t.path(), 10);
    let base = format!("http://{}", s.addr);
    let o = bulkget(&["ls", &base]);
    assert_eq!(lines(&o), [format!("{base}/get/d/a%20b%25")]);
    let list = t.path().join("l.txt");
    std::fs::write(&list, &o.stdout).unwrap();
    let e = bulkget(&["exists", "-i", list.to_str().unwrap()]);
    assert_eq!(e.status.code(), Some(0), "{}", stderr(&e));
    assert_eq!(lines(&e), [format!("{base}/get/d/a%20b%25\ttrue")]);
}

#[test]
fn ls_writes_a_name_that_is_not_utf8_as_its_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("tree");
    std::fs::create_dir_all(&r).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    std::fs::write(r.join(odd), b"latin-1").unwrap();
    let root = r.to_str().unwrap();
    let o = bulkget(&["ls", "-r", root]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let want = [root.as_bytes(), b"/caf\xe9.txt\n"].concat();
    assert_eq!(o.stdout, want);
    // JSON strings are UTF-8: there the bad byte shows as U+FFFD.
    let o = bulkget(&["ls", "--json", root]);
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("caf\u{fffd}.txt"), "{out}");
}

/// Stdout and stderr on one terminal (a pty, through `script`): the live
/// count must never be glued into the listing's lines.
#[test]
fn ls_on_a_terminal_keeps_its_lines_whole() {
    // Slow pages, so that the listing lasts past the count's first drawing.
    let faults = Faults {
        latency: std::time::Duration::from_millis(60),
        ..Faults::default()
    };
    let s = synthetic(8192, 10, 512, faults);
    let base = format!("http://{}", s.addr);
    let cmd = format!("{} ls {base}", crate::common::BIN);
    let o = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (util-linux) runs a command on a pty");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let got: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let want = format!("{base}/get/f");
    let paths = got.iter().filter(|l| l.starts_with(&want)).count();
    assert_eq!(paths, 8192, "{:?}", &got[..got.len().min(5)]);
    for l in &got {
        assert!(
            l.starts_with(&want) && l.len() == want.len() + 9,
            "a line that is not one path: {l:?}"
        );
    }
}
