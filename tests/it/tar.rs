//! `mirror --sink tar`: shards that real GNU tar reads back byte for byte,
//! and a killed run whose rerun completes.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bulkget::server::faults::Faults;

use crate::common::*;

/// Extracts every shard in `dest` with GNU tar into `out`.
pub fn extract_all(dest: &Path, out: &Path) -> usize {
    std::fs::create_dir_all(out).unwrap();
    let mut shards = 0;
    for e in std::fs::read_dir(dest).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(".tar") {
            shards += 1;
            let o = Command::new("tar")
                .arg("-xf")
                .arg(e.path())
                .arg("-C")
                .arg(out)
                .output()
                .expect("tar is installed");
            assert!(
                o.status.success(),
                "tar -xf {}: {}",
                e.path().display(),
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    shards
}

#[test]
fn gnu_tar_reads_the_shards_back_exactly() {
    let src = tempfile::tempdir().unwrap();
    let long = format!("deep/{}/{}", "d".repeat(120), "f".repeat(200));
    let names = [
        "plain",
        "a b/c#d?e%f.txt",
        "ünï/cödé ✓",
        long.as_str(),
        "empty",
    ];
    for (i, n) in names.iter().enumerate() {
        let p = src.path().join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            if *n == "empty" {
                String::new()
            } else {
                format!("{i}:{n}\n").repeat(300)
            },
        )
        .unwrap();
    }
    let s = dir_server(src.path(), 2);
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("dest");
    // tiny shards, so several roll over
    let o = bulkget(&[
        "mirror",
        &s.url(),
        dest.to_str().unwrap(),
        "-q",
        "--sink",
        "tar",
        "--shard-size",
        "4k",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = t.path().join("out");
    assert!(extract_all(&dest, &out) > 1, "shards did not roll over");
    for n in names {
        assert_eq!(
            std::fs::read(out.join(n)).unwrap(),
            std::fs::read(src.path().join(n)).unwrap(),
            "{n}"
        );
    }
    // a finished tar mirror is a snapshot: a rerun fetches nothing and says why
    let before = s.counts.gets.load(Ordering::Relaxed);
    let o = bulkget(&["mirror", &s.url(), dest.to_str().unwrap(), "--sink", "tar"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("not re-synced"), "{}", stderr(&o));
    assert_eq!(s.counts.gets.load(Ordering::Relaxed), before);
}

#[test]
fn kill_9_then_rerun_gives_every_file_in_the_shards() {
    let n = 8_000u64;
    let s = synthetic(
        n,
        100,
        500,
        Faults {
            latency: Duration::from_micros(300),
            ..Faults::default()
        },
    );
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("dest");
    let args = [
        "mirror",
        &s.url(),
        dest.to_str().unwrap(),
        "-q",
        "-c",
        "4",
        "--pipeline",
        "16",
        "--sink",
        "tar",
    ];
    let mut child = spawn_bulkget(&args);
    wait_for_a_finished_page(&dest);
    child.kill().unwrap();
    child.wait().unwrap();
    let first = s.counts.gets.load(Ordering::Relaxed);
    let journal = journal_of(&dest).expect("a saved journal");
    let pages_done = journal["pages_done"].as_u64().unwrap();
    let o = bulkget(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = t.path().join("out");
    extract_all(&dest, &out);
    assert_synthetic_tree(&out, n, 100);
    // the rerun fetches only what lies past the journal's cursor (500 a page);
    // up to 4 x 16 requests of the killed run may still be counted late
    let second = s.counts.gets.load(Ordering::Relaxed) - first;
    let past_cursor = n - pages_done * 500;
    assert!(
        (past_cursor..=past_cursor + 64).contains(&second),
        "{second} GETs in the rerun; first run {first}, pages done {pages_done}"
    );
}
