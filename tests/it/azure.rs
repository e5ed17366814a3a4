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
pub fn azurite() -> Emulator {
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
    use crate::upload::{copied_and_skipped, digest, files, later, set_time, up};
    let mut a = azurite();
    a.cmd("container upl");
    let (_t, src) = crate::upload::tree_up_rerun_and_down(&mut a, "az://upl/in/");
    assert_eq!(
        a.cmd("blocks upl in/large"),
        "0",
        "committed, none left over"
    );
    // Touched, not changed: a blob sent whole is compared by its
    // Content-MD5 and skipped; one sent in blocks has no MD5 of the whole
    // and goes again.
    for p in ["d4/f11", "large"] {
        set_time(&src, p, later() + std::time::Duration::from_secs(5));
    }
    let o = up(&a, &src, "az://upl/in/", &[]);
    assert_eq!(copied_and_skipped(&o), (1, 156), "{}", stderr(&o));
    assert_eq!(a.cmd("tree upl in/"), digest(files(&src, "in/")));
}

#[test]
fn a_blob_in_blocks_killed_halfway_resumes_with_the_blocks_it_sent() {
    let mut a = azurite();
    a.cmd("container blk");
    let (url, held) = ("az://blk/big.bin", "blocks blk big.bin");
    crate::upload::a_large_upload_killed_halfway_resumes(&mut a, url, held, "comp=block&");
    assert_eq!(a.cmd(held), "0", "committed, none left over");
}
