//! Object stores: `az://` against Azurite (Azure's own emulator, from npm,
//! started by `fixtures/azurite.py` on port 0 behind a relay that can slow
//! its answers), filled by the Azure SDK for Python.

use std::path::{Path, PathBuf};

use crate::common::*;
use crate::store::{Emulator, mirror_kill_rerun_and_paths};

/// azurite-blob: `BULKGET_TEST_AZURITE`, else where `.ci/run` installs it.
fn azurite_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BULKGET_TEST_AZURITE") {
        return p.into();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/azurite/node_modules/.bin/azurite-blob")
}

/// Azurite behind the fixture's relay, and the development account's
/// connection string pointed at the relay.
fn azurite() -> Emulator {
    let bin = azurite_bin();
    assert!(
        bin.exists(),
        "{}: Azurite is not installed (.ci/run installs it)",
        bin.display()
    );
    let mut a = Emulator::start("azurite.py", &[bin.as_os_str()], "azure-storage-blob");
    let cs = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;\
         AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;\
         BlobEndpoint=http://127.0.0.1:{}/devstoreaccount1;",
        a.port
    );
    a.env = vec![
        ("AZURE_STORAGE_CONNECTION_STRING", Some(cs)),
        ("AZURE_STORAGE_ACCOUNT", None),
        ("AZURE_STORAGE_KEY", None),
        ("AZURE_STORAGE_SAS_TOKEN", None),
    ];
    a
}

#[test]
fn mirror_an_azure_container_with_odd_names_a_kill_and_bad_credentials() {
    let mut a = azurite();
    a.cmd("container cnt");
    let odd = [
        ("data/a b+c.txt", 3),
        ("data/ü/x", 5),
        ("data/empty", 0),
        ("data/big", 3 << 20),
    ];
    let hostile = ["data/a//b", "data/dir/"];
    let t = mirror_kill_rerun_and_paths(&mut a, "az", "cnt", &odd, &hostile);

    // A wrong key: one line naming the answer, nothing landed.
    let bad = t.path().join("bad");
    let r = a
        .bulkget(&["mirror", "az://cnt/data", bad.to_str().unwrap(), "-q"])
        .env(
            "AZURE_STORAGE_CONNECTION_STRING",
            format!(
                "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=AAAA;\
                 BlobEndpoint=http://127.0.0.1:{}/devstoreaccount1;",
                a.port
            ),
        )
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    assert!(
        stderr(&r).contains("403") && stderr(&r).contains("AuthorizationFailure"),
        "{}",
        stderr(&r)
    );
    // No credentials at all: where bulkget looked.
    let r = a
        .bulkget(&["ls", "az://cnt"])
        .env_remove("AZURE_STORAGE_CONNECTION_STRING")
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    assert!(
        stderr(&r).contains("AZURE_STORAGE_ACCOUNT"),
        "{}",
        stderr(&r)
    );
}

#[test]
fn cp_r_uploads_a_tree_to_azure_reruns_skip_and_it_comes_back_down() {
    use crate::upload::{copied_and_skipped, digest, files, tree};
    let mut a = azurite();
    a.cmd("container upl");
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    tree(&src);
    let s = src.to_str().unwrap();
    let up = |a: &Emulator, extra: &[&str]| {
        let mut args = vec!["cp", "-r", s, "az://upl/in/", "--part-size", "5M"];
        args.extend_from_slice(extra);
        a.bulkget(&args).output().unwrap()
    };
    let o = up(&a, &[]);
    // The link to a directory is a failure, named; everything else went,
    // the 12 MiB file in blocks.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("a link to a directory"),
        "{}",
        stderr(&o)
    );
    assert_eq!(a.cmd("tree upl in/"), digest(files(&src, "in/")));
    assert_eq!(copied_and_skipped(&o), (157, 0));
    assert_eq!(
        a.cmd("blocks upl in/large"),
        "0",
        "committed, none left over"
    );

    // A rerun sends nothing.
    let o = up(&a, &[]);
    assert_eq!(copied_and_skipped(&o), (0, 157), "{}", stderr(&o));

    // Changed since (same size, newer): sent again, alone. Touched, not
    // changed: a blob sent whole is compared by its Content-MD5 and
    // skipped; one sent in blocks has no MD5 of the whole and goes again.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    let f = src.join("d3/f10");
    let mut b = std::fs::read(&f).unwrap();
    b[0] ^= 1;
    std::fs::write(&f, &b).unwrap();
    for p in ["d3/f10", "d4/f11", "large"] {
        let f = std::fs::File::options().write(true).open(src.join(p));
        f.unwrap().set_modified(later).unwrap();
    }
    let o = up(&a, &[]);
    assert_eq!(copied_and_skipped(&o), (2, 155), "{}", stderr(&o));
    assert_eq!(a.cmd("tree upl in/"), digest(files(&src, "in/")));

    // And back down: the same bytes under the same names.
    let back = t.path().join("back");
    let o = a
        .bulkget(&["cp", "-r", "az://upl/in/", back.to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut got = files(&back, "in/");
    got.retain(|(k, _)| !k.starts_with("in/.bulkget/"));
    assert_eq!(digest(got), digest(files(&src, "in/")));
}

#[test]
fn a_blob_in_blocks_killed_halfway_resumes_with_the_blocks_it_sent() {
    use crate::upload::{digest, noise};
    let mut a = azurite();
    a.cmd("container blk");
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("big.bin");
    let data = noise(60 << 20, 5);
    std::fs::write(&f, &data).unwrap();
    let args = [
        "cp",
        f.to_str().unwrap(),
        "az://blk/big.bin",
        "--part-size",
        "5M",
        "-q",
    ];
    a.cmd("count comp=block&");
    // Answers come slowly: blocks land, the run is killed before it can
    // commit them.
    a.cmd("delay 0.3");
    let mut child = a
        .bulkget(&args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut held = 0;
    wait_for("three blocks in the store", || {
        held = a.cmd("blocks blk big.bin").parse::<u64>().unwrap_or(0);
        held >= 3
    });
    child.kill().unwrap();
    child.wait().unwrap();
    a.cmd("delay 0");
    // Nothing visible: uncommitted blocks are not a blob.
    assert_eq!(a.cmd("tree blk -"), digest(vec![]));
    let held: u64 = a.cmd("blocks blk big.bin").parse().unwrap();
    let before: u64 = a.cmd("count comp=block&").parse().unwrap();
    let o = a.bulkget(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let again = a.cmd("count comp=block&").parse::<u64>().unwrap() - before;
    assert!(
        again <= 12 - held,
        "the rerun sent {again} blocks; {held} of 12 were there"
    );
    assert_eq!(a.cmd("tree blk -"), digest(vec![("big.bin".into(), data)]));
}
