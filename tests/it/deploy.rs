//! The deployment in front of several processes: nginx (Debian's) keeps one follower's callbacks
//! on one upstream and spreads followers and push requests across all of them, and
//! `examples/deploy/nginx.conf` is a config nginx accepts and balances the same way. The
//! upstreams are trivial HTTP servers answering with their name. Without nginx these tests say
//! they were skipped (`HUIXIN_REQUIRE_NGINX` makes that a failure).

use crate::common;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use common::nginx;

/// A trivial upstream: answers every request 200 with its name, over HTTP/1.1 keep-alive, and
/// keeps the request heads it saw with how many requests each connection had carried.
struct Upstream {
    addr: String,
    seen: Arc<Mutex<Vec<(String, usize)>>>,
}

impl Upstream {
    fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let log = log.clone();
                std::thread::spawn(move || serve(stream, name, &log));
            }
        });
        Self { addr, seen }
    }

    /// The request heads seen (lower-cased), each with its place on its connection (1, 2, …).
    fn seen(&self) -> Vec<(String, usize)> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, name: &str, log: &Mutex<Vec<(String, usize)>>) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    for nth in 1.. {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => head.push_str(&line.to_ascii_lowercase()),
            }
        }
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        log.lock().unwrap().push((head, nth));
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{name}",
            name.len()
        );
        if out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Posts a (made-up) callback for `openid` as WeChat does: the openid in the query string.
fn callback(port: u16, openid: &str, n: usize) -> String {
    let path = format!(
        "/wechat?signature=0&timestamp=1700000000&nonce={n}&openid={openid}&encrypt_type=aes"
    );
    let (status, body) = nginx::request(port, "POST", &path, &[], b"<xml></xml>").expect("POST");
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// 40 followers, each posting 3 times: every follower's posts reach one upstream, and the
/// followers are spread over all of `names`.
fn assert_callbacks_hashed(port: u16, names: &[&str]) {
    let mut served: HashMap<String, BTreeSet<String>> = HashMap::new();
    for user in 0..40 {
        let openid = format!("oFollower{user:03}x9Kq");
        for n in 0..3 {
            let name = callback(port, &openid, user * 3 + n);
            served.entry(openid.clone()).or_default().insert(name);
        }
    }
    for (openid, names) in &served {
        assert_eq!(names.len(), 1, "{openid} reached {names:?}");
    }
    let used: BTreeSet<&str> = served.values().flatten().map(String::as_str).collect();
    let all: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(used, all, "followers are spread over every upstream");
}

#[test]
fn the_callback_keeps_a_follower_on_one_upstream_and_spreads_followers() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let Some(lb) = nginx::balancer(
        "the_callback_keeps_a_follower_on_one_upstream_and_spreads_followers",
        &[a.addr.clone(), b.addr.clone()],
    ) else {
        return;
    };
    assert!(lb.url().starts_with("http://127.0.0.1:"));
    assert_callbacks_hashed(lb.port(), &["a", "b"]);

    // What the upstreams saw: HTTP/1.1 on kept-alive connections, and who the client was.
    let seen: Vec<(String, usize)> = a.seen().into_iter().chain(b.seen()).collect();
    assert_eq!(seen.len(), 120);
    for (head, _) in &seen {
        assert!(head.starts_with("post /wechat?"), "{head}");
        assert!(head.lines().next().unwrap().ends_with("http/1.1"), "{head}");
        assert!(head.contains("\r\nx-real-ip: 127.0.0.1\r\n"), "{head}");
        assert!(
            head.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"),
            "{head}"
        );
        assert!(!head.contains("connection: close"), "{head}");
    }
    let reused = seen.iter().map(|(_, nth)| *nth).max().unwrap_or(0);
    assert!(
        reused > 1,
        "connections to the upstreams are kept alive: {reused}"
    );
}

#[test]
fn push_apis_go_round_robin_with_bodies_up_to_2m() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let Some(lb) = nginx::balancer(
        "push_apis_go_round_robin_with_bodies_up_to_2m",
        &[a.addr.clone(), b.addr.clone()],
    ) else {
        return;
    };
    let port = lb.port();
    // Each API's shape, twice in a row: round-robin puts consecutive requests on both.
    for path in [
        "/api/v1/push",
        "/m/q7LzYx2",
        "/KeyOfBark1234567890abcd/Title/Body",
        "/SCTKEY123.send?title=hi",
        "/message/push?pushkey=PDU1&text=hi",
        "/healthz",
    ] {
        let names: BTreeSet<String> = (0..2)
            .map(|_| {
                let (status, name) = nginx::request(port, "POST", path, &[], b"x").expect(path);
                assert_eq!(status, 200, "{path}");
                name
            })
            .collect();
        assert_eq!(names.len(), 2, "{path} went to {names:?} only");
    }

    let big = vec![b'x'; 1536 * 1024];
    let (status, _) = nginx::request(port, "POST", "/api/v1/push", &[], &big).expect("1.5 MiB");
    assert_eq!(status, 200, "1.5 MiB passes");
    let too_big = vec![b'x'; 3 * 1024 * 1024];
    let (status, _) = nginx::request(port, "POST", "/api/v1/push", &[], &too_big).expect("3 MiB");
    assert_eq!(status, 413, "3 MiB is refused by nginx");
}

/// `examples/deploy/nginx.conf` with its three upstream servers at `upstreams`, listening on
/// `{PORT}`, its access log in the prefix.
fn example_conf(upstreams: &[String; 3]) -> String {
    let conf = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploy/nginx.conf"),
    )
    .expect("examples/deploy/nginx.conf");
    let mut out = conf.clone();
    for (port, to) in ["8001", "8002", "8003"].iter().zip(upstreams) {
        let from = format!("server 127.0.0.1:{port};");
        assert_eq!(conf.matches(&from).count(), 2, "both upstreams list {from}");
        out = out.replace(&from, &format!("server {to};"));
    }
    for (from, to) in [
        ("listen 80;", "listen 127.0.0.1:{PORT};"),
        ("/var/log/nginx/", "logs/"),
    ] {
        assert!(out.contains(from), "the example has {from:?}");
        out = out.replace(from, to);
    }
    out
}

#[test]
fn the_example_nginx_conf_passes_nginx_t_and_balances() {
    let test = "the_example_nginx_conf_passes_nginx_t_and_balances";
    let Some(bin) = nginx::binary(test) else {
        return;
    };
    let ups = [
        Upstream::start("p1"),
        Upstream::start("p2"),
        Upstream::start("p3"),
    ];
    let conf = example_conf(&[
        ups[0].addr.clone(),
        ups[1].addr.clone(),
        ups[2].addr.clone(),
    ]);

    let checked = nginx::check(
        &bin,
        &conf.replace("{PORT}", &nginx::free_port().to_string()),
    );
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "nginx -t: {said}");
    assert!(said.contains("test is successful"), "nginx -t: {said}");

    // And it does what it says: followers stick and spread, the rest goes round-robin.
    let lb = nginx::start(test, &conf).expect("nginx is there");
    assert_callbacks_hashed(lb.port(), &["p1", "p2", "p3"]);
    for path in ["/api/v1/push", "/m/q7LzYx2", "/healthz", "/SCTKEY123.send"] {
        let names: BTreeSet<String> = (0..3)
            .map(|_| nginx::get(lb.port(), path).expect(path).1)
            .collect();
        assert_eq!(names.len(), 3, "{path} went to {names:?} only");
    }
    let log = std::fs::read_to_string(lb.dir().join("logs/huixin.access.log")).unwrap_or_default();
    assert!(log.contains("upstream=127.0.0.1:"), "access log: {log}");
}
