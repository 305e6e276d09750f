//! nginx in front of test servers: [`balancer`] starts Debian's nginx (from `PATH` or
//! `/usr/sbin/nginx`) on a free loopback port with everything it writes in a temp dir, the way
//! `examples/deploy/nginx.conf` balances huixin, and stops it on drop. Without nginx the tests
//! that need it print that they were skipped, and pass; with `HUIXIN_REQUIRE_NGINX` set (CI sets
//! it) they fail instead.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Set (to anything) when a missing nginx must fail the tests.
pub const REQUIRE: &str = "HUIXIN_REQUIRE_NGINX";

/// Asked until nginx answers; [`balancer`] answers it itself (204), not through an upstream.
const PROBE: &str = "/.nginx-up";

/// A running nginx, killed (with nothing left behind) when this drops.
pub struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temp dir holding its config, logs and temp files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // One process (`master_process off`): killing it leaves no worker behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nginx binary, or `None` (having said the test is skipped) when there is none. Panics
/// when there is none and [`REQUIRE`] is set.
pub fn binary(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("nginx"))
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|p| p.is_file());
    match found {
        Some(path) => Some(path),
        None if std::env::var_os(REQUIRE).is_some() => {
            panic!("{test}: {REQUIRE} is set but there is no nginx in PATH or /usr/sbin")
        }
        None => {
            eprintln!(
                "SKIPPED {test}: no nginx in PATH or /usr/sbin (install Debian's nginx package; \
                 {REQUIRE} makes this a failure)"
            );
            None
        }
    }
}

/// nginx balancing huixin's HTTP surface across `upstreams` (`"127.0.0.1:PORT"` each): the
/// callback (`/wechat`) by `hash $arg_openid consistent`, everything else (the push APIs, the
/// detail pages, `/healthz`) round-robin; HTTP/1.1 with keepalive to the upstreams,
/// `X-Forwarded-For` and `X-Real-IP` passed, bodies up to 2 MiB. Returns once nginx answers;
/// `None` when there is no nginx (see [`binary`]).
pub fn balancer(test: &str, upstreams: &[String]) -> Option<Nginx> {
    assert!(!upstreams.is_empty(), "{test}: a balancer needs upstreams");
    let servers: String = upstreams
        .iter()
        .map(|u| format!("        server {u};\n"))
        .collect();
    let http = format!(
        r#"
    client_max_body_size 2m;

    upstream huixin {{
        hash $arg_openid consistent;
{servers}        keepalive 16;
        keepalive_timeout 5s;
    }}

    upstream huixin_api {{
{servers}        keepalive 16;
        keepalive_timeout 5s;
    }}

    server {{
        listen 127.0.0.1:{{PORT}};

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;

        location = /wechat {{
            proxy_pass http://huixin;
        }}

        location / {{
            proxy_pass http://huixin_api;
        }}

        location = {PROBE} {{
            return 204;
        }}
    }}
"#
    );
    start(test, &http)
}

/// Starts nginx with `http` (the inside of `http {}`; `{PORT}` is replaced by the port it is
/// to listen on) in a fresh prefix, and returns once it answers `GET /.nginx-up` on that port
/// (with any status). `None` when there is no nginx. nginx dies with the thread that started
/// it (so it never outlives a killed test): call this from the test's own thread.
pub fn start(test: &str, http: &str) -> Option<Nginx> {
    let bin = binary(test)?;
    let mut last_error = String::new();
    // A free port is only free until someone else takes it: a few tries.
    for _ in 0..5 {
        let dir = prefix();
        let port = free_port();
        let conf = main_conf(dir.path(), &http.replace("{PORT}", &port.to_string()));
        let conf_path = dir.path().join("conf/nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let mut cmd = Command::new(&bin);
        cmd.arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("logs/error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe and touches only the child being spawned. Should
        // the test die without dropping the handle, the kernel kills nginx with its thread.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("nginx status") {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut stderr);
                }
                let log =
                    std::fs::read_to_string(dir.path().join("logs/error.log")).unwrap_or_default();
                last_error = format!("nginx exited ({status}): {stderr}{log}");
                break;
            }
            if get(port, PROBE).is_ok() {
                return Some(Nginx { child, port, dir });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{test}: nginx did not answer on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !last_error.contains("Address already in use") {
            break;
        }
    }
    panic!("{test}: nginx did not start: {last_error}");
}

/// `nginx -t` on `http` (the inside of `http {}`) in a fresh prefix: its output.
pub fn check(bin: &Path, http: &str) -> Output {
    let dir = prefix();
    let conf_path = dir.path().join("conf/nginx.conf");
    std::fs::write(&conf_path, main_conf(dir.path(), http)).expect("write nginx.conf");
    Command::new(bin)
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.path().join("logs/error.log"))
        .output()
        .expect("run nginx -t")
}

/// A fresh prefix: `conf/`, `logs/`, `temp/`.
fn prefix() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for sub in ["conf", "logs", "temp"] {
        std::fs::create_dir(dir.path().join(sub)).expect("prefix dir");
    }
    dir
}

/// The whole config around `http`: one foreground process (so dropping the child stops all
/// of it, as root and as anyone else: no worker switches to `nobody` and loses access to the
/// temp dir), and every file it writes inside `dir` (Debian's defaults under /var are not
/// writable by non-root users, and `nginx -t` tries them).
fn main_conf(dir: &Path, http: &str) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process off;
pid {d}/logs/nginx.pid;
error_log {d}/logs/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log {d}/logs/access.log;
    client_body_temp_path {d}/temp/client_body;
    proxy_temp_path {d}/temp/proxy;
    fastcgi_temp_path {d}/temp/fastcgi;
    uwsgi_temp_path {d}/temp/uwsgi;
    scgi_temp_path {d}/temp/scgi;
{http}
}}
"#
    )
}

pub use super::free_port;

/// `GET path` on `127.0.0.1:port`: the status and the body.
pub fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    request(port, "GET", path, &[], b"")
}

/// One HTTP/1.0 request on its own connection: the status and the body.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    // nginx may answer (413) before it has read a large body: a failed write still has an
    // answer to read.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
    Ok((status, body.to_owned()))
}
