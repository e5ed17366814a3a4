//! Object stores: `az://` against Azurite (Azure's own emulator, from npm,
//! started by `fixtures/azurite.py` on port 0 behind a relay that can slow
//! its answers), filled by the Azure SDK for Python.

use std::path::{Path, PathBuf};

use crate::common::*;
use crate::store::{Emulator, assert_body, assert_filled, kill_after_a_finished_page};

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
    a.cmd("fill cnt data/f 2000 100");
    let odd = [
        ("data/a b+c.txt", 3),
        ("data/ü/x", 5),
        ("data/empty", 0),
        ("data/big", 3 << 20),
    ];
    for (k, n) in odd {
        a.put("cnt", k, n);
    }
    let hostile = ["data/a//b", "data/dir/"];
    for k in hostile {
        a.put("cnt", k, 1);
    }
    a.put("cnt", "other/z", 1);

    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let o = out.to_str().unwrap();
    // A first run, killed once the journal records a finished listing page
    // (1 000 names), held back by the relay so it is still running then.
    a.cmd("delay 0.02");
    let slow = [
        "mirror",
        "az://cnt/data",
        o,
        "-q",
        "--max-per-host",
        "2",
        "--pipeline",
        "1",
    ];
    kill_after_a_finished_page(a.bulkget(&slow), &out);
    // The container grows meanwhile, past the journal's cursor.
    a.cmd("delay 0");
    a.cmd("fill cnt data/g 300 100");
    let sj = t.path().join("stats.json");
    let r = a
        .bulkget(&[
            "mirror",
            "az://cnt/data",
            o,
            "-q",
            "--checksum",
            "--stats-json",
        ])
        .arg(&sj)
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert_filled(&out, "data/", "data/f", 2000, 100);
    assert_filled(&out, "data/", "data/g", 300, 100);
    for (k, n) in odd {
        assert_body(&out, &k[5..], k, n);
    }
    assert!(!out.join("z").exists() && !t.path().join("other").exists());
    // Only the names no file can have failed, each alone and named.
    let f = failures(&out);
    let mut failed: Vec<&str> = f.iter().map(|r| r["url"].as_str().unwrap()).collect();
    failed.sort();
    let want: Vec<String> = hostile.iter().map(|k| format!("az://cnt/{k}")).collect();
    assert_eq!(failed, want, "{f:?}");
    // The rerun listed from the journal's marker, not from the first name.
    let st = read_json(&sj);
    let listed = st["listed"].as_u64().unwrap();
    assert!(
        listed <= 2306 - 1000,
        "the rerun listed {listed} names: {st}"
    );
    assert_eq!(journal_of(&out).unwrap()["complete"], true);
    let names = std::fs::read_dir(&out).unwrap().count();
    assert_eq!(names, 2000 + 300 + 4 + 1, "f, g, the odd ones, .bulkget");

    // ls, stat and get over az:// paths.
    let r = a.bulkget(&["ls", "az://cnt/data/ü"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        "az://cnt/data/ü/x\n",
        "{}",
        stderr(&r)
    );
    let r = a
        .bulkget(&["stat", "az://cnt/data/f00001", "az://cnt/data/nope"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(s.starts_with("az://cnt/data/f00001\t100\t"), "{s}");
    assert!(s.contains("az://cnt/data/nope\tabsent"), "{s}");
    let got = t.path().join("got");
    let list = t.path().join("urls.txt");
    std::fs::write(&list, "az://cnt/data/a//b ab\naz://cnt/data/f00007\n").unwrap();
    let r = a
        .bulkget(&["get", "-q", "-i", list.to_str().unwrap(), "-o"])
        .arg(&got)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", stderr(&r));
    assert_body(&got, "ab", "data/a//b", 1);
    assert_body(&got, "f00007", "data/f00007", 100);

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
