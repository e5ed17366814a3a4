//! Helpers: start servers, speak raw HTTP, run the `bulkget` binary.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bulkget::server::dirstore::DirStore;
use bulkget::server::faults::Faults;
use bulkget::server::store::SyntheticStore;
use bulkget::server::{ServeConfig, Server};

pub const BIN: &str = env!("CARGO_BIN_EXE_bulkget");

pub fn synthetic(n: u64, size: u64, page_size: usize, faults: Faults) -> Server {
    Server::start(
        "127.0.0.1:0",
        Arc::new(SyntheticStore::new(n, size)),
        ServeConfig {
            tls: None,
            page_size,
            faults,
            threads: 2,
        },
    )
    .expect("server starts")
}

pub fn dir_server(dir: &Path, page_size: usize) -> Server {
    Server::start(
        "127.0.0.1:0",
        Arc::new(DirStore::new(dir).expect("dir store")),
        ServeConfig {
            tls: None,
            page_size,
            faults: Faults::default(),
            threads: 2,
        },
    )
    .expect("server starts")
}

/// An answer read off the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// One raw HTTP/1.1 request with `Connection: close`; the answer as sent.
pub fn raw(addr: SocketAddr, method: &str, path: &str, extra: &str) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read");
    parse_one(&all, method == "HEAD").0
}

/// Splits a byte stream into answers (bodies framed by Content-Length).
pub fn parse_answers(mut all: &[u8]) -> Vec<Answer> {
    let mut out = Vec::new();
    while !all.is_empty() {
        let (a, used) = parse_one(all, false);
        out.push(a);
        all = &all[used..];
    }
    out
}

/// The first answer in `all` and the bytes it took (no body for HEAD).
fn parse_one(all: &[u8], no_body: bool) -> (Answer, usize) {
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head end")
        + 4;
    let head = std::str::from_utf8(&all[..end]).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len = match headers.get("content-length") {
        _ if no_body => 0,
        Some(v) => v.parse().unwrap(),
        None => all.len() - end,
    };
    (
        Answer {
            status,
            headers,
            body: all[end..end + len].to_vec(),
        },
        end + len,
    )
}

pub fn get(addr: SocketAddr, path: &str) -> Answer {
    raw(addr, "GET", path, "")
}

/// All names a server lists, walking every page.
pub fn list_all(addr: SocketAddr) -> Vec<String> {
    let mut names = Vec::new();
    let mut path = "/list".to_string();
    loop {
        let a = get(addr, &path);
        assert_eq!(
            a.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&a.body)
        );
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        for n in v["FileNames"].as_array().unwrap() {
            names.push(n.as_str().unwrap().to_string());
        }
        match v.get("NextMarker") {
            Some(m) => path = format!("/list?next-marker={}", m.as_str().unwrap()),
            None => return names,
        }
    }
}

pub fn url_path(name: &str) -> String {
    let mut v = Vec::new();
    bulkget::names::push_url_path(&mut v, name);
    String::from_utf8(v).unwrap()
}

/// The command, with no proxy from the environment of whoever runs the tests.
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args);
    for v in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        c.env_remove(v);
    }
    // Never the instance metadata service of whatever machine runs the
    // tests (169.254.169.254): the tests of roles point it at moto.
    c.env("AWS_EC2_METADATA_DISABLED", "true");
    // Nor Google's (which bulkget asks only on a Compute Engine machine),
    // nor the credentials of whoever runs the tests.
    c.env("NO_GCE_CHECK", "true");
    c.env("CLOUDSDK_CONFIG", "/nonexistent/bulkget-tests");
    c.env_remove("GOOGLE_APPLICATION_CREDENTIALS");
    for v in [
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        c.env_remove(v);
    }
    c
}

pub fn bulkget(args: &[&str]) -> Output {
    command(args)
        .stdin(Stdio::null())
        .output()
        .expect("run bulkget")
}

pub fn spawn_bulkget(args: &[&str]) -> Child {
    command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bulkget")
}

/// A JSON file (`--stats-json`, the journal).
pub fn read_json(path: &Path) -> serde_json::Value {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&b).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Checks that `dest` holds files 0..n of the synthetic set, every byte.
pub fn assert_synthetic_tree(dest: &Path, n: u64, size: u64) {
    let w = bulkget::synthetic::name_width(n);
    for i in 0..n {
        let name = bulkget::synthetic::name(i, w);
        let got = std::fs::read(dest.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            got == bulkget::synthetic::content(name.as_bytes(), size),
            "{name}: wrong bytes"
        );
    }
    let entries = std::fs::read_dir(dest)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != ".bulkget")
        .count();
    assert_eq!(entries as u64, n, "extra files in {}", dest.display());
}

/// The journal of a mirror into `dest`, once one has been saved.
pub fn journal_of(dest: &Path) -> Option<serde_json::Value> {
    std::fs::read(dest.join(".bulkget/journal.json"))
        .ok()
        .and_then(|j| serde_json::from_slice(&j).ok())
}

/// Waits until the journal of `dest` records at least one finished page.
pub fn wait_for_a_finished_page(dest: &Path) {
    wait_for("the journal to record a finished page", || {
        journal_of(dest).is_some_and(|j| j["pages_done"].as_u64() > Some(0))
    });
}

/// A temporary directory on tmpfs when the machine has one, else in the
/// temp dir: for tests whose outcome must not hang on this disk, where
/// creating files next to fresh deletes is 5–15× slower and a `syncfs`
/// waits for whatever the rest of the suite wrote (a kill meant to land
/// mid-run came after a first run that had finished, its journal's save
/// held up by the sync).
pub fn scratch() -> tempfile::TempDir {
    match Path::new("/dev/shm") {
        shm if shm.is_dir() => tempfile::tempdir_in(shm).unwrap(),
        _ => tempfile::tempdir().unwrap(),
    }
}

/// Waits (bounded) for a condition that another process brings about.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    // A guard against hanging, not a timing: a loaded CI machine is slow.
    for _ in 0..6000 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

/// A scripted HTTP/1.1 server for answers no real server would give
/// (hostile names, broken pages, lying Content-Range). Keep-alive and
/// pipelining work; an answer that says `Connection: close` closes, and
/// so does one with the made-up header `X-Then-Close:`, silently.
pub struct Scripted {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

type RawAnswer = dyn Fn(&str, Option<&str>) -> Vec<u8> + Send + Sync;

impl Scripted {
    /// `answer(path)` gives status and body; framed with Content-Length.
    pub fn start(answer: impl Fn(&str) -> (u16, Vec<u8>) + Send + Sync + 'static) -> Scripted {
        Scripted::raw(move |path, _| {
            let (status, body) = answer(path);
            let mut r = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(&body);
            r
        })
    }

    /// `answer(path, range header)` gives the whole answer, head and body, as sent.
    pub fn raw(answer: impl Fn(&str, Option<&str>) -> Vec<u8> + Send + Sync + 'static) -> Scripted {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let answer: Arc<RawAnswer> = Arc::new(answer);
        std::thread::spawn(move || {
            for s in l.incoming() {
                if st.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(s) = s else { continue };
                let answer = answer.clone();
                std::thread::spawn(move || serve_conn(s, &*answer));
            }
        });
        Scripted { addr, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_conn(s: TcpStream, answer: &RawAnswer) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or("/").to_string();
        let mut range = None;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            if let Some((_, v)) = h
                .split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("range"))
            {
                range = Some(v.trim().to_string());
            }
        }
        let out = answer(&path, range.as_deref());
        if w.write_all(&out).is_err() {
            return;
        }
        let head_end = out
            .windows(4)
            .position(|x| x == b"\r\n\r\n")
            .unwrap_or(out.len());
        if String::from_utf8_lossy(&out[..head_end])
            .to_ascii_lowercase()
            .contains("connection: close")
            // A kept connection the server closes after this answer
            // without saying so (as when its keep-alive runs out).
            || out.starts_with(b"HTTP/1.1 5") && out.windows(13).any(|x| x == b"X-Then-Close:")
        {
            return;
        }
    }
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// Sends signal `sig` (2 = SIGINT, 15 = SIGTERM) to a child we started.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of our own child, which we have not reaped.
    unsafe { kill(child.id() as i32, sig) };
}

/// The lines of DEST's failure ledger.
pub fn failures(dest: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dest.join(".bulkget/failures.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
