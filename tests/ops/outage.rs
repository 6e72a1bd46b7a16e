//! Issue 18, item 7c: while PostgreSQL is down, a request answers 503 `unavailable` within the documented
//! time (protocol §4: no pool connection within 3 s), not after several pool timeouts in a row.
//!
//! PostgreSQL "stops" for the server only: it reaches PostgreSQL through a small TCP proxy in the test, which
//! then closes its port (connections are refused, as when PostgreSQL is stopped) and cuts the open ones.

use crate::common::*;
use dukasync::wire::ErrorBody;
use reqwest::StatusCode;
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::{net::TcpListener, task::JoinHandle};

/// Forwards a local port to PostgreSQL until [`Proxy::stop`].
struct Proxy {
    port: u16,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let connections = connections.clone();
            async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        continue;
                    };
                    let upstream = upstream.clone();
                    connections.lock().unwrap().push(tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }));
                }
            }
        });
        Proxy {
            port,
            accept,
            connections,
        }
    }

    /// New connections are refused from now on, and the open ones are cut.
    async fn stop(self) {
        self.accept.abort();
        let _ = self.accept.await;
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err(),
            "the port is closed"
        );
    }
}

#[tokio::test]
async fn with_postgresql_down_pulls_answer_unavailable_within_the_pool_timeout() {
    let direct = fresh_database().await;
    let mut url = url::Url::parse(&direct).unwrap();
    let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let proxy = Proxy::start(upstream).await;
    url.set_port(Some(proxy.port)).unwrap();
    // The token stays cached through the outage, so each pull reaches the feed's own reads.
    let app = TestApp::on_database(url.as_str(), &[("DUKASYNC_TOKEN_CACHE_SECS", "300")]).await;
    let db = sqlx::PgPool::connect(&direct).await.unwrap();
    dukasync::demo::load(&db).await.unwrap();
    let token = issue_token(&db, OWNER, "owner-phone").await;
    let pull = || app.get("/v1/scopes/water/changes?since=0&limit=5", Some(&token));
    assert_eq!(pull().await.status(), StatusCode::OK);

    proxy.stop().await;
    // The first pull may fail on a connection the pool still held; the next ones must each find no connection
    // and say so once the pool's 3 s are up, not after a head read and a plain read each waited for them.
    for attempt in 0..3 {
        let started = Instant::now();
        let resp = pull().await;
        let elapsed = started.elapsed();
        let status = resp.status();
        let body: ErrorBody = resp.json().await.unwrap();
        assert_eq!(
            (status, body.error.code.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        );
        assert!(
            elapsed < Duration::from_millis(4500),
            "pull {attempt} answered 503 after {elapsed:?}"
        );
    }
}
