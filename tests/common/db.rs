//! Databases: where PostgreSQL is (the environment or `.dukasync/env`), a migrated template, a fresh database per
//! test cloned from it, the sweep of databases left by ended test processes, and feed rows written straight in.

use dukasync::{
    domain::ScopeId,
    store::{self, changes::RowWrite},
};
use sqlx::{Connection, PgConnection, PgPool};
use std::collections::HashMap;
use tokio::sync::OnceCell;
use uuid::Uuid;

/// Settings from the environment or `.dukasync/env`.
pub fn service_env() -> HashMap<String, String> {
    let mut vars = HashMap::new();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/.dukasync/env");
    if let Ok(text) = std::fs::read_to_string(file) {
        for line in text.lines() {
            if let Some((k, v)) = line.trim().trim_start_matches("export ").split_once('=') {
                vars.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
    }
    for key in ["DUKASYNC_DATABASE_URL", "DUKASYNC_REDIS_URL"] {
        if let Ok(v) = std::env::var(key) {
            vars.insert(key.to_string(), v);
        }
    }
    assert!(
        vars.contains_key("DUKASYNC_DATABASE_URL"),
        "no DUKASYNC_DATABASE_URL: run `deploy/services.sh start` (or `deploy/dev test`) first"
    );
    vars
}

pub fn admin_url() -> String {
    service_env()["DUKASYNC_DATABASE_URL"].clone()
}

fn with_database(url: &str, name: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("database URL");
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// A migrated template database, named after the migrations so a schema change makes a new one.
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let admin = admin_url();
            let mut hasher = blake3::Hasher::new();
            for m in store::MIGRATOR.iter() {
                hasher.update(&m.checksum);
            }
            let name = format!("dukasync_tmpl_{}", &hasher.finalize().to_hex()[..12]);
            let mut conn = PgConnection::connect(&admin)
                .await
                .expect("cannot reach PostgreSQL: start it with `deploy/services.sh start` (deploy/dev test does)");
            // Serialise template creation across concurrently running test binaries.
            sqlx::query("SELECT pg_advisory_lock(727274)")
                .execute(&mut conn)
                .await
                .unwrap();
            let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&name)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            if !exists {
                let building = format!("{name}_building");
                sqlx::query(&format!("DROP DATABASE IF EXISTS {building}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                sqlx::query(&format!("CREATE DATABASE {building}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let pool = PgPool::connect(&with_database(&admin, &building)).await.unwrap();
                store::migrate(&pool)
                    .await
                    .expect("migrations apply to an empty database");
                pool.close().await;
                sqlx::query(&format!("ALTER DATABASE {building} RENAME TO {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            sqlx::query("SELECT pg_advisory_unlock(727274)")
                .execute(&mut conn)
                .await
                .unwrap();
            name
        })
        .await
}

/// The name of a new test database: it carries this process's id, so that [`sweep_databases`] can tell when the
/// test process that made it is gone.
pub fn test_database_name() -> String {
    format!("{TEST_DB_PREFIX}{}_{}", std::process::id(), Uuid::new_v4().simple())
}

const TEST_DB_PREFIX: &str = "dukasync_test_";

/// Drops, once per test process and in a thread of its own (tests do not wait for it), the test databases whose
/// process has ended: each test makes a database and leaves it for inspection, and without this they piled up
/// (thousands, tens of GB) on a developer's cluster. One left by a crashed or failed run goes at the next run.
fn sweep_databases() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let admin = admin_url();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let Ok(mut conn) = PgConnection::connect(&admin).await else {
                    return;
                };
                let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
                    .bind(format!("{TEST_DB_PREFIX}%"))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap_or_default();
                for name in names {
                    let owner = name[TEST_DB_PREFIX.len()..]
                        .split('_')
                        .next()
                        .and_then(|p| p.parse::<u32>().ok());
                    // Names from before the process id was part of them have no owner to wait for.
                    let alive = owner.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
                    if !alive {
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                    }
                }
            });
        });
    });
}

/// A fresh, migrated, empty database; returns its URL.
pub async fn fresh_database() -> String {
    sweep_databases();
    let template = template().await;
    let admin = admin_url();
    let name = test_database_name();
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
        .execute(&mut conn)
        .await
        .unwrap();
    with_database(&admin, &name)
}

/// A fresh database with the demo data loaded, for tests that need the schema and its triggers but no server.
pub async fn demo_database() -> PgPool {
    let pool = PgPool::connect(&fresh_database().await).await.unwrap();
    dukasync::demo::load(&pool).await.unwrap();
    pool
}

pub async fn write_rows(db: &PgPool, scope: &str, writes: Vec<RowWrite>) -> Vec<i64> {
    let scope = ScopeId::parse(scope).unwrap();
    let mut tx = db.begin().await.unwrap();
    let versions = store::changes::append(&mut tx, &scope, &writes)
        .await
        .unwrap()
        .expect("scope exists");
    tx.commit().await.unwrap();
    versions
}

pub fn upsert(collection: &str, key: &str, data: serde_json::Value) -> RowWrite {
    RowWrite {
        collection: collection.into(),
        key: key.into(),
        data: Some(data),
    }
}

pub fn delete(collection: &str, key: &str) -> RowWrite {
    RowWrite {
        collection: collection.into(),
        key: key.into(),
        data: None,
    }
}
