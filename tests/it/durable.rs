//! A power cut, simulated: DEST is an ext4 file system in a loop-mounted
//! image file (mounted `commit=1`, so metadata reaches the image within a
//! second while file data may wait for writeback). While `mirror` runs it
//! is stopped (SIGSTOP), the image file is copied — what the block device
//! holds at that instant, without the kernel's dirty pages: what a power
//! cut leaves — and it goes on (SIGCONT). Each copy is then checked with
//! fsck, mounted, and the same command is run on it: every file must end
//! exact, with nothing extra.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;

use bulkget::server::faults::Faults;

use crate::common::*;

fn sh(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A mounted image; unmounted on drop.
struct Mount {
    dir: std::path::PathBuf,
}

impl Mount {
    fn new(image: &Path, dir: &Path) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "ext4", "-o", "loop,commit=1"])
            .arg(image)
            .arg(dir)
            .output()
            .expect("mount(8)");
        assert!(
            o.status.success(),
            "this test needs to loop-mount an ext4 image (root and loop devices); it cannot, so it fails rather than pass untested: {}",
            stderr(&o)
        );
        Mount { dir: dir.into() }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn a_power_cut_mid_mirror_loses_nothing() {
    let n = 30_000;
    // ~2 ms a request, answered in turn on each of 8 connections: a run of
    // several seconds, past the commit interval.
    let faults = Faults {
        latency: std::time::Duration::from_millis(2),
        ..Faults::default()
    };
    let s = synthetic(n, 100, 1000, faults);
    let t = tempfile::tempdir().unwrap();
    let image = t.path().join("disk.img");
    sh(Command::new("truncate").args(["-s", "160M"]).arg(&image));
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "1024", "-N", "50000"])
        .arg(&image));
    let mnt = Mount::new(&image, &t.path().join("mnt"));
    let dest = mnt.dir.join("out");
    let d = dest.to_str().unwrap().to_string();
    let args = |d: &str| -> Vec<String> {
        ["mirror", &s.url(), d, "-q", "-c", "8", "--pipeline", "4"]
            .map(String::from)
            .to_vec()
    };
    let a = args(&d);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let child = spawn_bulkget(&a);
    let mut cuts = Vec::new();
    for (k, frac) in [0.25, 0.5, 0.75].into_iter().enumerate() {
        wait_for("the mirror to get on", || {
            s.counts.gets.load(Ordering::Relaxed) >= (n as f64 * frac) as u64
        });
        signal(&child, libc::SIGSTOP);
        let copy = t.path().join(format!("cut{k}.img"));
        sh(Command::new("cp")
            .arg("--sparse=always")
            .arg(&image)
            .arg(&copy));
        signal(&child, libc::SIGCONT);
        cuts.push(copy);
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_synthetic_tree(&dest, n, 100);
    drop(mnt);
    for (k, copy) in cuts.iter().enumerate() {
        // What a boot after the cut does: replay the journal, check.
        let _ = Command::new("fsck.ext4").arg("-fy").arg(copy).output();
        let m = Mount::new(copy, &t.path().join(format!("m{k}")));
        let dest = m.dir.join("out");
        let d = dest.to_str().unwrap().to_string();
        let a = args(&d);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = bulkget(&a);
        assert_eq!(o.status.code(), Some(0), "cut {k}: {}", stderr(&o));
        assert_synthetic_tree(&dest, n, 100);
    }
}

/// `cp -r` reports what it copied only once it is on stable storage: the
/// image copied the moment `cp` exits (a power cut then) holds every file
/// whole, each byte right. (With `--durability none` every one of the
/// 3 000 files was empty or missing in the copy.)
#[test]
fn what_cp_reports_copied_survives_a_power_cut() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let n = 3_000;
    for i in 0..n {
        let dir = src.join(format!("d{}", i % 30));
        std::fs::create_dir_all(&dir).unwrap();
        let body: Vec<u8> = (0..(500 + i % 3000)).map(|k| (k * 7 + i) as u8).collect();
        std::fs::write(dir.join(format!("f{i}")), body).unwrap();
    }
    let image = t.path().join("disk.img");
    sh(Command::new("truncate").args(["-s", "64M"]).arg(&image));
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "1024", "-N", "8000"])
        .arg(&image));
    let mnt = Mount::new(&image, &t.path().join("mnt"));
    let dest = mnt.dir.join("out");
    let o = bulkget(&[
        "cp",
        "-r",
        src.to_str().unwrap(),
        dest.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let copy = t.path().join("cut.img");
    sh(Command::new("cp")
        .arg("--sparse=always")
        .arg(&image)
        .arg(&copy));
    drop(mnt);
    let _ = Command::new("fsck.ext4").arg("-fy").arg(&copy).output();
    let m = Mount::new(&copy, &t.path().join("m"));
    let mut torn = Vec::new();
    for i in 0..n {
        let rel = format!("d{}/f{i}", i % 30);
        let want = std::fs::read(src.join(&rel)).unwrap();
        if std::fs::read(m.dir.join("out").join(&rel)).ok() != Some(want) {
            torn.push(rel);
        }
    }
    assert!(
        torn.is_empty(),
        "{} of {n} files copied and reported are not whole after the cut, e.g. {:?}",
        torn.len(),
        &torn[..torn.len().min(5)]
    );
}
