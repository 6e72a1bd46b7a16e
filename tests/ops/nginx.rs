//! The nginx site of deploy/nginx, rendered by `deploy/nginx/render.sh` exactly as an operator renders it (with
//! a certificate made here), checked by `nginx -t`, and run as a private nginx (own prefix, pid, logs and temp
//! paths, free loopback ports) in front of two dukasync instances on one database. Requests go through it with
//! curl over TLS and HTTP/2.
//!
//! The conflicts admin API is open to phones (the server decides by role) unless `NGINX_ADMIN_API_ALLOW` limits it.
//!
//! The long-poll test also runs a variant whose proxy timeout is shorter than the server's wait, and shows it
//! fails: the check would catch a site whose timeouts do not match the feed's.

use crate::common::*;
use dukasync::wire::ChangesPage;
use serde_json::{json, Value};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use uuid::Uuid;

const HOST: &str = "dukasync.test";
/// The servers' settings, which the rendered site must match.
const MAX_WAIT: &str = "3";
const REQUEST_TIMEOUT: &str = "1";
const MAX_BODY: usize = 4096;

fn nginx_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
        .expect("nginx is installed (deploy/services.sh start installs it)")
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Two instances of the server on one fresh database with the demo data.
async fn two_instances() -> (TestApp, TestApp) {
    let body = MAX_BODY.to_string();
    let settings = [
        ("DUKASYNC_MAX_WAIT_SECS", MAX_WAIT),
        ("DUKASYNC_REQUEST_TIMEOUT_SECS", REQUEST_TIMEOUT),
        ("DUKASYNC_MAX_BODY_BYTES", body.as_str()),
    ];
    let first = TestApp::start_with(&settings).await;
    let second = TestApp::on_database(&first.database_url, &settings).await;
    (first, second)
}

/// A private nginx serving the rendered site; stopped (SIGQUIT, then waited for) on drop.
struct Nginx {
    dir: PathBuf,
    https: u16,
    http: u16,
    child: Child,
}

impl Nginx {
    /// Renders the site for `upstreams` with `extra` render settings, lets `edit` change the rendered text (for
    /// the broken variants), checks it with `nginx -t`, and starts nginx.
    fn start(upstreams: &[&TestApp], extra: &[(&str, &str)], edit: impl Fn(String) -> String) -> Nginx {
        // A port found free can be taken by another test's listener before nginx binds it; nginx then exits,
        // and another pair of ports is tried.
        for _ in 0..5 {
            if let Some(nginx) = Self::try_start(upstreams, extra, &edit) {
                return nginx;
            }
        }
        panic!("nginx could not bind its ports in 5 attempts");
    }

    fn try_start(upstreams: &[&TestApp], extra: &[(&str, &str)], edit: &impl Fn(String) -> String) -> Option<Nginx> {
        let dir = std::env::temp_dir().join(format!("dukasync-nginx-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let (https, http) = (free_port(), free_port());
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let (ok, out) = run(Command::new("openssl").args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={HOST}"),
            "-addext",
            &format!("subjectAltName=DNS:{HOST}"),
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]));
        assert!(ok, "openssl: {out}");

        let upstreams: Vec<String> = upstreams.iter().map(|a| a.addr.to_string()).collect();
        let mut render = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx/render.sh"));
        render
            .env("DUKASYNC_ENV_FILE", dir.join("no-env-file"))
            .env("NGINX_SERVER_NAME", HOST)
            .env("NGINX_TLS_CERT", &cert)
            .env("NGINX_TLS_KEY", &key)
            .env("NGINX_HTTPS_LISTEN", format!("127.0.0.1:{https}"))
            .env("NGINX_HTTP_LISTEN", format!("127.0.0.1:{http}"))
            .env("NGINX_LOG_DIR", &dir)
            .env("DUKASYNC_UPSTREAMS", upstreams.join(" "))
            .env("DUKASYNC_MAX_WAIT_SECS", MAX_WAIT)
            .env("DUKASYNC_REQUEST_TIMEOUT_SECS", REQUEST_TIMEOUT)
            .env("DUKASYNC_MAX_BODY_BYTES", MAX_BODY.to_string());
        for (k, v) in extra {
            render.env(k, v);
        }
        let out = render.output().unwrap();
        assert!(
            out.status.success(),
            "render.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let site = edit(String::from_utf8(out.stdout).unwrap());
        std::fs::write(dir.join("site.conf"), site).unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
                 fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
                 include {d}/site.conf;\n}}\n"
            ),
        )
        .unwrap();

        let nginx = |extra: &[&str]| {
            let mut cmd = Command::new(nginx_binary());
            cmd.args([
                "-p",
                dir.to_str().unwrap(),
                "-c",
                dir.join("nginx.conf").to_str().unwrap(),
            ])
            .args(["-e", dir.join("error.log").to_str().unwrap()])
            .args(extra);
            cmd
        };
        let (ok, out) = run(&mut nginx(&["-t"]));
        assert!(
            ok && out.contains("syntax is ok") && out.contains("test is successful"),
            "nginx -t: {out}"
        );
        let mut child = nginx(&[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        // Ready when nginx's master has started its workers, which it does only once every listening socket is
        // bound, and both ports answer. A port found free can be taken by another test's listener before nginx
        // binds it: nginx then logs the failed bind (and exits after retrying), while a connect could reach the
        // other listener, so answering ports alone prove nothing; that attempt is abandoned.
        let answers = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        loop {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            if log.contains("bind() to") || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&dir);
                return None;
            }
            if log.contains("start worker processes") && answers(https) && answers(http) {
                break;
            }
            assert!(Instant::now() < deadline, "nginx did not start; see {d}/error.log");
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(Nginx {
            dir,
            https,
            http,
            child,
        })
    }

    /// curl through nginx over HTTPS with HTTP/2; `args` are added to curl's.
    async fn curl(&self, path: &str, args: &[&str]) -> Reply {
        let id = Uuid::new_v4().simple().to_string();
        let (headers, body) = (self.dir.join(format!("{id}.h")), self.dir.join(format!("{id}.b")));
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--http2", "--cacert"])
            .arg(self.dir.join("cert.pem"))
            .args(["--resolve", &format!("{HOST}:{}:127.0.0.1", self.https)])
            .arg("-D")
            .arg(&headers)
            .arg("-o")
            .arg(&body)
            .args(["-w", "%{http_code} %{http_version}"])
            .args(args)
            .arg(format!("https://{HOST}:{}{path}", self.https))
            .output()
            .await
            .expect("curl is installed");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "curl {path}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (status, version) = stdout.split_once(' ').unwrap();
        Reply {
            status: status.parse().unwrap(),
            http_version: version.to_string(),
            headers: std::fs::read_to_string(&headers).unwrap().to_lowercase(),
            body: std::fs::read(&body).unwrap_or_default(),
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Reply {
    status: u16,
    http_version: String,
    /// The response headers, lowercased.
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(str::trim)
    }
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

#[tokio::test]
async fn the_site_serves_tls_with_http2_compression_and_request_ids_and_redirects_http() {
    let (a, b) = two_instances().await;
    let nginx = Nginx::start(&[&a, &b], &[], |s| s);
    let token = a.token(OWNER, "owner-phone").await;

    let health = nginx.curl("/healthz", &[]).await;
    assert_eq!((health.status, health.http_version.as_str()), (200, "2"));
    assert!(health.header("strict-transport-security").is_some());

    // A page of changes is compressed when the client accepts it (curl offers gzip, br and zstd; the server
    // prefers br); curl --compressed decodes it.
    let page = nginx
        .curl(
            "/v1/scopes/retail/changes?since=0",
            &["-H", &bearer(&token), "--compressed"],
        )
        .await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-encoding"), Some("br"));
    let decoded: ChangesPage = serde_json::from_slice(&page.body).unwrap();
    assert!(!decoded.changes.is_empty());

    // The client's request id is kept; without one, nginx's id reaches the server and comes back.
    let mine = nginx.curl("/healthz", &["-H", "X-Request-Id: phone-42"]).await;
    assert_eq!(mine.header("x-request-id"), Some("phone-42"));
    let given = nginx.curl("/healthz", &[]).await;
    let id = given.header("x-request-id").expect("a request id");
    assert!(id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");

    // Plain HTTP only redirects to HTTPS.
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"])
        .args(["-H", &format!("Host: {HOST}")])
        .arg(format!("http://127.0.0.1:{}/v1/scopes", nginx.http))
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("301 https://{HOST}/v1/scopes")
    );
}

/// Waiting long-polls summed over the instances behind nginx, read from each one's /metrics.
#[tokio::test]
async fn pages_the_server_compressed_pass_through_nginx_as_they_are() {
    let (a, b) = two_instances().await;
    let nginx = Nginx::start(&[&a, &b], &[], |s| s);
    let token = a.token(OWNER, "owner-phone").await;
    let path = "/v1/scopes/retail/changes?since=0";
    let direct = |coding: Option<&'static str>| {
        let mut req = a.http.get(a.url(path)).bearer_auth(&token);
        if let Some(coding) = coding {
            req = req.header("accept-encoding", coding);
        }
        async move {
            let resp = req.send().await.unwrap();
            let encoding = resp
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap().to_string());
            (encoding, resp.bytes().await.unwrap().to_vec())
        }
    };
    let (none, plain) = direct(None).await;
    assert_eq!(none, None);
    assert!(plain.len() >= 1024, "a page the server compresses");
    for coding in ["gzip", "br", "zstd"] {
        // Without --compressed curl leaves the body as it came: the bytes on the wire.
        let through = nginx
            .curl(
                path,
                &["-H", &bearer(&token), "-H", &format!("Accept-Encoding: {coding}")],
            )
            .await;
        assert_eq!(through.status, 200);
        assert_eq!(through.header("content-encoding"), Some(coding), "{}", through.headers);
        assert!(
            through.header("vary").is_some_and(|v| v.contains("accept-encoding")),
            "headers are lowercased"
        );
        // Both instances compress the same page to the same bytes: what nginx forwarded is the server's
        // encoding, not nginx's own gzip (level 5) of it.
        let (server_coding, server_bytes) = direct(Some(coding)).await;
        assert_eq!(server_coding.as_deref(), Some(coding));
        assert!(
            through.body == server_bytes,
            "{coding}: nginx changed the server's bytes"
        );
        assert!(dukasync::feed::coded::decode(coded(coding), &through.body).unwrap() == plain);
    }
}

fn coded(token: &str) -> dukasync::domain::Coding {
    use dukasync::domain::Coding;
    match token {
        "gzip" => Coding::Gzip,
        "br" => Coding::Br,
        _ => Coding::Zstd,
    }
}

async fn waiters(apps: &[&TestApp]) -> f64 {
    let mut total = 0.0;
    for app in apps {
        let text = app.get("/metrics", None).await.text().await.unwrap();
        total += text
            .lines()
            .find_map(|l| l.strip_prefix("dukasync_longpoll_waiters "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    total
}

#[tokio::test]
async fn a_long_poll_through_nginx_wakes_on_a_push_and_a_full_wait_is_answered_by_the_server() {
    let (a, b) = two_instances().await;
    let nginx = Nginx::start(&[&a, &b], &[], |s| s);
    let token = a.token(OWNER, "owner-phone").await;
    let head = nginx
        .curl("/v1/scopes/water/changes?since=0&limit=1", &["-H", &bearer(&token)])
        .await
        .json()["head"]
        .as_i64()
        .unwrap();
    let path = format!("/v1/scopes/water/changes?since={head}&wait={MAX_WAIT}");

    // Woken: a long-poll through nginx (on whichever instance) answers with a change pushed through nginx (to
    // whichever instance). A page carrying the change can only come from the wake-up: at the end of its wait a
    // pull answers with what it read before waiting, which was nothing.
    let poll = {
        let (nginx, path, auth) = (&nginx, path.clone(), bearer(&token));
        async move { nginx.curl(&path, &["-H", &auth]).await }
    };
    let push = async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while waiters(&[&a, &b]).await != 1.0 {
            assert!(Instant::now() < deadline, "the long-poll never reached a server");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let body = json!({"client_id": Uuid::new_v4(), "ops": [{"seq": 1, "id": Uuid::new_v4(), "type": "put",
            "collection": "customers", "key": "c-nginx", "data": {"id": "c-nginx", "name": "Kamau"}}]});
        let reply = nginx
            .curl(
                "/v1/scopes/water/ops",
                &[
                    "-H",
                    &bearer(&token),
                    "-H",
                    "Content-Type: application/json",
                    "--data",
                    &body.to_string(),
                ],
            )
            .await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    };
    let (polled, ()) = tokio::join!(poll, push);
    assert_eq!(polled.status, 200);
    let page: ChangesPage = serde_json::from_slice(&polled.body).unwrap();
    assert_eq!(page.changes.len(), 1, "woken by the push: {page:?}");
    assert_eq!(page.changes[0].key, "c-nginx");

    // Not woken: the pull waits its whole wait and the server answers, empty, before nginx gives up.
    let started = Instant::now();
    let quiet = nginx
        .curl(
            &format!("/v1/scopes/water/changes?since={}&wait=60", page.cursor),
            &["-H", &bearer(&token)],
        )
        .await;
    assert_eq!(quiet.status, 200, "{}", String::from_utf8_lossy(&quiet.body));
    assert!(quiet.json()["changes"].as_array().unwrap().is_empty());
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the wait was clamped to {MAX_WAIT} s, not cut"
    );

    // The same check against a site whose proxy timeout is shorter than the wait: nginx cuts the long-poll.
    let short = Nginx::start(&[&a, &b], &[], |site| {
        let line = format!("proxy_read_timeout {}s;", 3 + 1 + 5);
        assert!(
            site.contains(&line),
            "the rendered timeout is the servers' bound plus 5 s"
        );
        site.replace(&line, "proxy_read_timeout 1s;")
    });
    let cut = short
        .curl(
            &format!("/v1/scopes/water/changes?since={}&wait=60", page.cursor),
            &["-H", &bearer(&token)],
        )
        .await;
    assert_ne!(cut.status, 200, "a too-short proxy timeout must break the long-poll");
    assert_eq!(
        (cut.status, cut.json()["error"]["code"].as_str()),
        (408, Some("timeout"))
    );
}

#[tokio::test]
async fn bodies_over_the_servers_limit_are_refused_by_nginx_in_the_protocols_shape() {
    let (a, b) = two_instances().await;
    let nginx = Nginx::start(&[&a, &b], &[], |s| s);
    let token = a.token(OWNER, "owner-phone").await;
    let post = |size: usize| {
        let file = nginx.dir.join(format!("body-{size}"));
        std::fs::write(&file, vec![b' '; size]).unwrap();
        let (nginx, auth) = (&nginx, bearer(&token));
        async move {
            let data = format!("@{}", file.display());
            nginx
                .curl(
                    "/v1/scopes/water/ops",
                    &[
                        "-H",
                        &auth,
                        "-H",
                        "Content-Type: application/json",
                        "--data-binary",
                        &data,
                    ],
                )
                .await
        }
    };
    // Exactly the limit passes nginx and reaches the server (which finds no JSON in it).
    let at_limit = post(MAX_BODY).await;
    assert_eq!(
        (at_limit.status, at_limit.json()["error"]["code"].as_str()),
        (400, Some("malformed_body"))
    );
    // One byte more is nginx's 413, in the protocol's shape with the same limit as the server's.
    let over = post(MAX_BODY + 1).await;
    assert_eq!(over.status, 413);
    assert_eq!(over.header("content-type"), Some("application/json"));
    let body = over.json();
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert_eq!(body["error"]["details"]["limit_bytes"], MAX_BODY);
}

#[tokio::test]
async fn operator_routes_answer_only_the_allowlist_and_the_admin_api_leaves_roles_to_the_server() {
    let (a, b) = two_instances().await;
    // Only 127.0.0.1 is allowed; curl from 127.0.0.2 (also this machine's loopback) stands for the internet.
    let nginx = Nginx::start(&[&a, &b], &[("NGINX_ADMIN_ALLOW", "127.0.0.1/32")], |s| s);
    let token = a.token(OWNER, "owner-phone").await;
    let cashier = a.token(SHOP_CASHIER, "shop-till").await;
    for path in ["/metrics", "/readyz"] {
        let inside = nginx.curl(path, &["-H", &bearer(&token)]).await;
        assert_ne!(inside.status, 403, "{path} from the allowlist");
        let outside = nginx
            .curl(path, &["-H", &bearer(&token), "--interface", "127.0.0.2"])
            .await;
        assert_eq!(
            (outside.status, outside.json()["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{path} from outside the allowlist"
        );
    }
    assert_eq!(nginx.curl("/metrics", &[]).await.status, 200);
    // The conflicts admin API from outside the allowlist (an owner's phone): the server's roles decide.
    let owner = nginx
        .curl(
            "/v1/admin/conflicts",
            &["-H", &bearer(&token), "--interface", "127.0.0.2"],
        )
        .await;
    assert_eq!(owner.status, 200, "an owner's token from anywhere");
    assert!(owner.json()["conflicts"].is_array());
    let till = nginx
        .curl(
            "/v1/admin/conflicts",
            &["-H", &bearer(&cashier), "--interface", "127.0.0.2"],
        )
        .await;
    assert_eq!(till.status, 403, "a cashier's token is refused");
    assert_eq!(till.json()["error"]["code"], "forbidden");
    assert_ne!(
        till.json()["error"]["message"],
        "not allowed from this address",
        "by the server's role check, not by nginx"
    );
    let anonymous = nginx.curl("/v1/admin/conflicts", &["--interface", "127.0.0.2"]).await;
    assert_eq!(anonymous.status, 401, "no token: the server's 401");
    // Everything else stays public, from anywhere.
    let scopes = nginx
        .curl("/v1/scopes", &["-H", &bearer(&token), "--interface", "127.0.0.2"])
        .await;
    assert_eq!(scopes.status, 200);
}

#[tokio::test]
async fn the_admin_api_can_be_limited_to_an_allowlist_by_choice() {
    let (a, b) = two_instances().await;
    let nginx = Nginx::start(&[&a, &b], &[("NGINX_ADMIN_API_ALLOW", "127.0.0.1/32")], |s| s);
    let token = a.token(OWNER, "owner-phone").await;
    let inside = nginx.curl("/v1/admin/conflicts", &["-H", &bearer(&token)]).await;
    assert_eq!(inside.status, 200, "from the allowlist");
    let outside = nginx
        .curl(
            "/v1/admin/conflicts",
            &["-H", &bearer(&token), "--interface", "127.0.0.2"],
        )
        .await;
    assert_eq!(outside.status, 403, "from outside it, even an owner");
    assert_eq!(outside.json()["error"]["message"], "not allowed from this address");
    let scopes = nginx
        .curl("/v1/scopes", &["-H", &bearer(&token), "--interface", "127.0.0.2"])
        .await;
    assert_eq!(scopes.status, 200);
}

#[tokio::test]
async fn a_stopped_instance_is_skipped_and_with_none_left_nginx_answers_503_unavailable() {
    let (a, b) = two_instances().await;
    let nginx = Nginx::start(&[&a, &b], &[], |s| s);
    let token = a.token(OWNER, "owner-phone").await;
    let client_id = Uuid::new_v4();
    // As during a rolling restart: one instance stops; every request, pushes included, is served by the other.
    a.stop().await.unwrap();
    for seq in 1..=6 {
        let body = json!({"client_id": client_id, "ops": [{"seq": seq, "id": Uuid::new_v4(), "type": "put",
            "collection": "customers", "key": format!("c-{seq}"), "data": {"id": format!("c-{seq}"), "name": "Moraa"}}]});
        let push = nginx
            .curl(
                "/v1/scopes/water/ops",
                &[
                    "-H",
                    &bearer(&token),
                    "-H",
                    "Content-Type: application/json",
                    "--data",
                    &body.to_string(),
                ],
            )
            .await;
        assert_eq!(push.status, 200, "push {seq}: {}", String::from_utf8_lossy(&push.body));
        assert_eq!(push.json()["last_seq"], seq);
        assert_eq!(nginx.curl("/v1/scopes", &["-H", &bearer(&token)]).await.status, 200);
    }
    b.stop().await.unwrap();
    let none = nginx.curl("/v1/scopes", &["-H", &bearer(&token)]).await;
    assert_eq!(
        (none.status, none.json()["error"]["code"].as_str()),
        (503, Some("unavailable"))
    );
}

#[tokio::test]
async fn cors_preflights_and_headers_pass_through_unchanged() {
    let origin = "https://erp.duka.test";
    let settings = [("DUKASYNC_CORS_ORIGINS", origin)];
    let app = TestApp::start_with(&settings).await;
    let nginx = Nginx::start(&[&app], &[], |s| s);
    // The preflight reaches the server (nginx neither answers nor swallows OPTIONS) and needs no token.
    let preflight = nginx
        .curl(
            "/v1/scopes/retail/ops",
            &[
                "-X",
                "OPTIONS",
                "-H",
                &format!("Origin: {origin}"),
                "-H",
                "Access-Control-Request-Method: POST",
                "-H",
                "Access-Control-Request-Headers: authorization,content-type",
            ],
        )
        .await;
    assert_eq!(preflight.status, 200, "{}", preflight.headers);
    assert_eq!(preflight.header("access-control-allow-origin"), Some(origin));
    assert_eq!(preflight.header("access-control-max-age"), Some("600"));
    let token = app.token(OWNER, "owner-phone").await;
    let scopes = nginx
        .curl(
            "/v1/scopes",
            &["-H", &bearer(&token), "-H", &format!("Origin: {origin}")],
        )
        .await;
    assert_eq!(scopes.status, 200);
    assert_eq!(scopes.header("access-control-allow-origin"), Some(origin));
    assert_eq!(
        scopes.headers.matches("access-control-allow-origin:").count(),
        1,
        "nginx adds no CORS header of its own"
    );
}
