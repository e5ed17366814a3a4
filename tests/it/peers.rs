//! Real peers for the transport tests: a certificate authority made on the
//! fly (rcgen), nginx listening on sockets the test bound (passed on through
//! nginx's `NGINX` inherited-sockets variable, so there is no port to guess
//! and nothing to wait for: connections queue until nginx accepts), and
//! tinyproxy (started on a port the test picked; ready when it says so).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// The path of a program from Debian's packages, also where PATH lacks the
/// sbin directories.
fn program(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed (.ci/run installs it)"))
}

/// A CA and the certificates it signs, written as PEM files under `dir`.
pub struct Pki {
    pub dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            issuer: Issuer::new(p, key),
        }
    }

    /// The CA's certificate file.
    pub fn ca_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    /// A server certificate for `names`, valid from the start of year
    /// `from` to the start of year `to`; returns (cert file, key file).
    pub fn leaf(&self, file: &str, names: &[&str], from: i32, to: i32) -> (PathBuf, PathBuf) {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.not_before = rcgen::date_time_ymd(from, 1, 1);
        p.not_after = rcgen::date_time_ymd(to, 1, 1);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

/// An nginx on sockets the test bound.
pub struct Nginx {
    child: Child,
    pub dir: PathBuf,
    pub addrs: Vec<SocketAddr>,
}

impl Nginx {
    /// Starts nginx with `servers` (the `server { }` blocks; `{P0}`, `{P1}`,
    /// … stand for the ports of `ports` fresh listeners, `{DIR}` for `dir`).
    pub fn start(dir: &Path, ports: usize, servers: &str) -> Nginx {
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let listeners: Vec<TcpListener> = (0..ports)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let mut servers = servers.replace("{DIR}", &dir.display().to_string());
        for (i, a) in addrs.iter().enumerate() {
            servers = servers.replace(&format!("{{P{i}}}"), &a.port().to_string());
        }
        let d = dir.display();
        // The worker reads the test's private temp dirs: as root, stay root.
        // SAFETY: geteuid has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;\n"
        } else {
            ""
        };
        let conf = format!(
            "{user}daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  log_format proto '$server_port $server_protocol $request_uri $status $http_range tls$ssl_session_reused c$connection $msec';\n  access_log {d}/access.log proto;\n\
             client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;\n\
             uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n  default_type application/octet-stream;\n\
             keepalive_requests 100000;\n{servers}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let fds: Vec<i32> = listeners.iter().map(|l| l.as_raw_fd()).collect();
        let inherit: String = fds.iter().map(|f| format!("{f};")).collect();
        let mut cmd = Command::new(program("nginx"));
        cmd.arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .env("NGINX", inherit)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only fcntl on descriptors we own, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for fd in &fds {
                    let flags = libc::fcntl(*fd, libc::F_GETFD);
                    libc::fcntl(*fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .expect("nginx starts (apt-get install nginx-light)");
        drop(listeners); // nginx holds its own copies
        Nginx {
            child,
            dir: dir.to_path_buf(),
            addrs,
        }
    }

    /// `PORT PROTOCOL URI STATUS RANGE tlsREUSED cCONNECTION SECONDS` lines
    /// of requests served so far (`tlsr`: the TLS session was resumed;
    /// SECONDS since the epoch, to the ms).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master takes its worker down with it.
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// tinyproxy, with its log lines collected.
pub struct Tinyproxy {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Tinyproxy {
    pub fn start(dir: &Path) -> Tinyproxy {
        std::fs::create_dir_all(dir).unwrap();
        // tinyproxy binds by itself: take a free port and hand it over.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!("Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 64\nLogLevel Info\n"),
        )
        .unwrap();
        let mut child = Command::new(program("tinyproxy"))
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy starts (apt-get install tinyproxy)");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let log = Arc::new(Mutex::new(String::new()));
        let mut line = String::new();
        loop {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("tinyproxy exited: {}", log.lock().unwrap());
            }
            log.lock().unwrap().push_str(&line);
            if line.contains("Accepting connections") {
                break;
            }
        }
        let l = log.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while out.read_line(&mut line).unwrap_or(0) > 0 {
                l.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        Tinyproxy {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// Fixtures shared by the transport tests (`net`, `tls`).

/// Runs bulkget with exactly the proxy variables given.
pub fn run(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = crate::common::command(args);
    c.stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run bulkget")
}

pub fn content(i: usize, size: usize) -> Vec<u8> {
    (0..size).map(|j| (i * 31 + j * 7 % 251) as u8).collect()
}

/// `www/d/f{i}` for i < n (and the same under `www/get/` with a `/list`
/// page for mirror), plus `www/d/big` of `big` bytes.
pub fn www(dir: &Path, n: usize, big: usize) -> PathBuf {
    let www = dir.join("www");
    std::fs::create_dir_all(www.join("d")).unwrap();
    std::fs::create_dir_all(www.join("get")).unwrap();
    let mut names = Vec::new();
    for i in 0..n {
        std::fs::write(www.join(format!("d/f{i}")), content(i, 100 + i)).unwrap();
        std::fs::write(www.join(format!("get/f{i}")), content(i, 100 + i)).unwrap();
        names.push(format!("f{i}"));
    }
    std::fs::write(
        www.join("list"),
        serde_json::json!({ "FileNames": names }).to_string(),
    )
    .unwrap();
    std::fs::write(www.join("d/big"), content(7, big)).unwrap();
    www
}

pub fn tls_server(port: &str, cert: &(PathBuf, PathBuf), h2: bool, extra: &str) -> String {
    format!(
        "server {{ listen 127.0.0.1:{{{port}}} ssl{}; ssl_certificate {}; ssl_certificate_key {}; root {{DIR}}/www; location = /list {{ default_type application/json; }} {extra} }}\n",
        if h2 { " http2" } else { "" },
        cert.0.display(),
        cert.1.display()
    )
}

pub fn assert_landed(out: &Path, name: &str, i: usize, size: usize) {
    let got = std::fs::read(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(got == content(i, size), "{name}: wrong content");
}

/// Writes `list` to DIR/urls.txt and runs `bulkget get -i it -o DIR/out
/// ARGS` (no proxy); the output and DIR/out.
pub fn get_list(dir: &Path, list: &str, args: &[&str]) -> (Output, PathBuf) {
    let lf = dir.join("urls.txt");
    std::fs::write(&lf, list).unwrap();
    let out = dir.join("out");
    let mut a = vec![
        "get",
        "-i",
        lf.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    a.extend_from_slice(args);
    (run(&a, &[]), out)
}
