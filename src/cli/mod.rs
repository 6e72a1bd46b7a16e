//! The `dukasync` command line: `serve`, `migrate`, `demo-data`, token and account administration.
//!
//! Configuration comes from `DUKASYNC_*` variables (see `config`); a bad one stops the command with one line.

use crate::{
    app,
    auth::NewToken,
    cache::{Cache, Redis},
    config::Config,
    demo,
    domain::{collections, Role, ScopeId},
    feed, reference, setup,
    state::AppState,
    store::{self, accounts, tokens},
    wire::{NewAccount, NewPairingCode, NewPaymentMethod},
};
mod capture;
mod conflicts;
mod span_fields;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "dukasync", version, about = "Offline-first sync server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API on DUKASYNC_LISTEN until SIGTERM or SIGINT.
    Serve,
    /// Apply pending database migrations.
    Migrate,
    /// Load the demo businesses, users, devices and reference data (idempotent).
    DemoData,
    /// Issue, revoke and list device tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Create a scope (a business) with the standard chart of accounts and payment methods; on an existing
    /// scope, rename it and add the standard rows it lacks.
    ScopeAdd {
        id: String,
        #[arg(long)]
        name: String,
        /// Create the scope empty, without the standard chart and payment methods (to import a chart of one's
        /// own; its commands then fail until one is added).
        #[arg(long)]
        bare: bool,
    },
    /// Add an account to a scope's chart (as POST /v1/scopes/{scope}/accounts).
    AccountAdd {
        #[arg(long)]
        scope: String,
        #[arg(long)]
        code: String,
        #[arg(long)]
        name: String,
        /// asset, liability, equity, revenue or expense
        #[arg(long = "type")]
        kind: String,
    },
    /// Add a payment method posting to an asset account (as POST /v1/scopes/{scope}/payment_methods).
    PaymentMethodAdd {
        #[arg(long)]
        scope: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        account: String,
    },
    /// Create a user or update their role in a scope. `--role backend` makes the ERP's service user, which
    /// writes rows over HTTP (protocol §14): a user of its own, never a person's (then `token issue` for it).
    UserAdd {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        scope: String,
        /// owner, manager, cashier or backend
        #[arg(long)]
        role: String,
        /// The user's id in the ERP (the `sub` of the JWTs its backend signs, protocol §3.2).
        #[arg(long)]
        external_id: Option<String>,
    },
    /// Create a one-time pairing code for a user (new users need --name) and a role in a scope; a phone
    /// exchanges it for a device token at POST /v1/pair (protocol §3.3).
    PairingCode {
        #[arg(long)]
        scope: String,
        #[arg(long)]
        email: String,
        /// owner, manager or cashier
        #[arg(long)]
        role: String,
        /// The name of a new user.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        device_name: Option<String>,
    },
    /// Cache operations (Redis).
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Compact a scope's change log below a version; cursors older than it must then reset.
    Compact {
        #[arg(long)]
        scope: String,
        #[arg(long)]
        below: i64,
    },
    /// Drop stored operation results older than some days (see protocol/README.md, "Retention").
    PruneResults {
        #[arg(long, default_value_t = 30)]
        older_than_days: u32,
    },
    /// List, show and resolve recorded conflicts (as /v1/admin/conflicts).
    #[command(subcommand)]
    Conflicts(conflicts::ConflictsCommand),
    /// Install, remove and list capture triggers on the backend's own tables (docs/backend-sql.md).
    #[command(subcommand)]
    Capture(capture::CaptureCommand),
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Pre-load Redis with every reference snapshot and the most recent closed feed windows.
    Warm {
        /// Only this scope (default: every scope).
        #[arg(long)]
        scope: Option<String>,
        /// Closed feed windows per scope, newest first.
        #[arg(long, default_value_t = 8)]
        windows: i64,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue a token for a user's device (created if new). Prints the token on stdout; it is not stored.
    Issue {
        #[arg(long)]
        email: String,
        #[arg(long)]
        device: String,
        #[arg(long, default_value = "")]
        label: String,
        /// Make the token expire after this many days (default: it never expires).
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// Revoke a token by its id (see `token list`). Takes effect on every server within seconds.
    Revoke { id: Uuid },
    /// List tokens (ids, devices, last seen); never the tokens themselves.
    List,
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("dukasync: {err}");
            return ExitCode::from(2);
        }
    };
    // Every command reads the collections (serve, capture, conflicts): a bad file stops them all, with every
    // mistake listed.
    let set = match collections::file::load(config.collections_file.as_deref()) {
        Ok(set) => set,
        Err(mistakes) => {
            let source = config
                .collections_file
                .as_ref()
                .map_or("the built-in file".into(), |p| p.display().to_string());
            eprintln!("dukasync: {source}: {} mistake(s) in the collections:", mistakes.len());
            for line in mistakes {
                eprintln!("  {line}");
            }
            return ExitCode::from(2);
        }
    };
    if let Err(err) = collections::install(set) {
        eprintln!("dukasync: {err}");
        return ExitCode::FAILURE;
    }
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("dukasync: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dukasync: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::{fmt, EnvFilter};
    let filter = EnvFilter::try_from_env("DUKASYNC_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = std::env::var("DUKASYNC_LOG_FORMAT").is_ok_and(|v| v == "json");
    // A failed write to stderr (its reader went away) is dropped. By default tracing-subscriber reports it with
    // `eprintln!`, which panics on a closed pipe: every task that logged then panicked, connections closed
    // without an answer and SIGTERM went unheeded (tests/ops/log_sink.rs).
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    if json {
        builder.json().fmt_fields(span_fields::JsonSpanFields).init();
    } else {
        builder.init();
    }
}

async fn execute(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            crate::failpoint::warn_if_any();
            let state = AppState::new(config)?;
            check_schema(&state).await?;
            check_durability(&state).await?;
            let listener = tokio::net::TcpListener::bind(state.config.listen)
                .await
                .with_context(|| format!("cannot listen on DUKASYNC_LISTEN={}", state.config.listen))?;
            let signal = app::termination_signal().context("cannot install signal handlers")?;
            app::serve(state, listener, signal).await
        }
        Command::Migrate => {
            let db = connect(&config).await?;
            store::migrate(&db).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::DemoData => {
            let db = connect(&config).await?;
            demo::load(&db).await?;
            eprintln!("demo data loaded");
            Ok(())
        }
        Command::Token(TokenCommand::Issue {
            email,
            device,
            label,
            expires_days,
        }) => {
            let db = connect(&config).await?;
            let user = accounts::user_by_email(&db, &email)
                .await?
                .with_context(|| format!("no user with email {email}"))?;
            let device_id = accounts::ensure_device(&db, user, &device).await?;
            let token = NewToken::generate();
            let id = match expires_days {
                None => tokens::insert(&db, device_id, &token.hash, &label).await?,
                Some(days) => {
                    let lifetime = std::time::Duration::from_secs(86_400 * u64::from(days));
                    let (id, expires_at) =
                        store::token_admin::insert_expiring(&db, device_id, &token.hash, &label, lifetime).await?;
                    eprintln!("the token expires at {}", expires_at.to_rfc3339());
                    id
                }
            };
            eprintln!("issued token {id} for {email} on device {device:?}; it is shown once:");
            println!("{}", token.plaintext);
            Ok(())
        }
        Command::Token(TokenCommand::Revoke { id }) => {
            let db = connect(&config).await?;
            if !tokens::revoke(&db, id).await? {
                bail!("no live token with id {id}");
            }
            eprintln!("revoked token {id}");
            Ok(())
        }
        Command::Token(TokenCommand::List) => {
            let db = connect(&config).await?;
            for t in tokens::list(&db).await? {
                let state = if t.revoked_at.is_some() { "revoked" } else { "live" };
                let seen = t.last_seen_at.map(|s| s.to_rfc3339()).unwrap_or_else(|| "never".into());
                println!(
                    "{}  {state:7}  {:28}  {:16}  last seen {seen}  {}",
                    t.id, t.email, t.device_name, t.label
                );
            }
            Ok(())
        }
        Command::ScopeAdd { id, name, bare } => {
            let db = connect(&config).await?;
            let scope = ScopeId::parse(&id).context("scope ids are lowercase letters, digits and '-', at most 40")?;
            if bare {
                accounts::ensure_scope(&db, &scope, &name).await?;
                eprintln!("scope {scope} ready, empty");
                return Ok(());
            }
            let written = setup::add_scope(&db, &scope, &name).await.map_err(cli_error)?;
            eprintln!("scope {scope} ready ({written} standard accounts and payment methods added)");
            Ok(())
        }
        Command::AccountAdd {
            scope,
            code,
            name,
            kind,
        } => {
            let db = connect(&config).await?;
            let scope = ScopeId::parse(&scope).context("not a scope id")?;
            let new = NewAccount { code, name, kind };
            let created = setup::add_account(&db, &scope, &new).await.map_err(cli_error)?;
            eprintln!("account {} added to {scope} at version {}", new.code, created.version);
            Ok(())
        }
        Command::PaymentMethodAdd {
            scope,
            id,
            name,
            account,
        } => {
            let db = connect(&config).await?;
            let scope = ScopeId::parse(&scope).context("not a scope id")?;
            let new = NewPaymentMethod { id, name, account };
            let created = setup::add_payment_method(&db, &scope, &new).await.map_err(cli_error)?;
            eprintln!(
                "payment method {} added to {scope} at version {}",
                new.id, created.version
            );
            Ok(())
        }
        Command::UserAdd {
            email,
            name,
            scope,
            role,
            external_id,
        } => {
            let db = connect(&config).await?;
            let scope = ScopeId::parse(&scope).context("not a scope id")?;
            let role = Role::parse(&role).context("role must be owner, manager, cashier or backend")?;
            if let Some(user) = accounts::user_by_email(&db, &email).await? {
                // A token speaks for its user in every scope, so a person's phone must never become the backend,
                // nor the backend's token a person: one user is either, never both.
                let roles = accounts::roles_of(&db, user).await?;
                if let Some((other, their)) = roles
                    .iter()
                    .find(|(_, r)| (r == Role::Backend.as_str()) != role.is_backend())
                {
                    bail!(
                        "{email} is {their} of {other}: the backend role is for a service user of its own, \
                         never a person's (use another email)"
                    );
                }
            }
            let user = accounts::ensure_user(&db, &email, &name).await?;
            accounts::set_role(&db, user, &scope, role).await?;
            if let Some(external_id) = external_id {
                store::backend_users::set_external_id(&db, user, &external_id)
                    .await
                    .context("external id taken by another user, or longer than 255 characters")?;
            }
            eprintln!("{email} is {} of {scope}", role.as_str());
            Ok(())
        }
        Command::PairingCode {
            scope,
            email,
            role,
            name,
            device_name,
        } => {
            let db = connect(&config).await?;
            let scope = ScopeId::parse(&scope).context("not a scope id")?;
            let new = NewPairingCode {
                email,
                name,
                role,
                device_name,
            };
            let code = crate::auth::pairing::create(&db, &config.enrollment, &scope, None, &new)
                .await
                .map_err(cli_error)?;
            eprintln!(
                "pairing code for {} as {} of {scope}, valid until {}; it is shown once:",
                code.email,
                code.role.as_str(),
                code.expires_at.to_rfc3339()
            );
            println!("{}", code.code);
            if let Some(url) = code.url {
                println!("{url}");
            }
            Ok(())
        }
        Command::Cache(CacheCommand::Warm { scope, windows }) => cache_warm(&config, scope, windows).await,
        Command::Compact { scope, below } => {
            let db = connect(&config).await?;
            let scope = ScopeId::parse(&scope).context("not a scope id")?;
            let mut tx = db.begin().await?;
            let removed = store::changes::compact(&mut tx, &scope, below)
                .await?
                .with_context(|| format!("no scope {scope}, or version {below} is beyond its head"))?;
            tx.commit().await?;
            eprintln!("removed {removed} superseded changes and tombstones below version {below} of {scope}");
            Ok(())
        }
        Command::PruneResults { older_than_days } => {
            let db = connect(&config).await?;
            let removed = store::replay::prune_results(&db, older_than_days).await?;
            eprintln!("removed {removed} stored operation results older than {older_than_days} days");
            Ok(())
        }
        Command::Conflicts(command) => conflicts::execute(&connect(&config).await?, command).await,
        Command::Capture(command) => capture::execute(&connect(&config).await?, command).await,
    }
}

/// `dukasync cache warm`: what a server would compute on its first requests, stored in Redis now.
async fn cache_warm(config: &Config, scope: Option<String>, windows: i64) -> anyhow::Result<()> {
    let Some(url) = &config.redis_url else {
        bail!("DUKASYNC_REDIS_URL is not set: only Redis can be warmed from outside the server");
    };
    let db = connect(config).await?;
    let redis = std::sync::Arc::new(Redis::with_timeout(
        url,
        config.redis_ca.as_ref(),
        config.cache.redis_timeout,
    )?);
    if !redis.ping().await {
        bail!("cannot reach Redis at DUKASYNC_REDIS_URL");
    }
    // No in-process layer: this process exits, only Redis keeps what it stores.
    let cache = std::sync::Arc::new(Cache::new(0, Some(redis)));
    let feed_windows = feed::windows::WindowCache::new(cache.clone(), config.cache.window);
    let scopes: Vec<ScopeId> = match scope {
        Some(raw) => vec![ScopeId::parse(&raw).context("not a scope id")?],
        None => store::scope_heads(&db)
            .await?
            .into_iter()
            .filter_map(|(id, _)| ScopeId::parse(&id))
            .collect(),
    };
    for scope in scopes {
        let snapshots = reference::warm(&cache, &db, &scope)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let stored = feed::windows::warm(&feed_windows, &db, &scope, windows.max(0)).await?;
        eprintln!("{scope}: {snapshots} reference snapshots and {stored} feed windows stored in Redis");
    }
    Ok(())
}

/// The API's error as one line: its code and message (`no scope` for a scope that does not exist).
fn cli_error(err: crate::error::Error) -> anyhow::Error {
    match err {
        crate::error::Error::Internal(inner) => inner,
        other => anyhow::anyhow!("{} ({})", other, other.code()),
    }
}

async fn connect(config: &Config) -> anyhow::Result<sqlx::PgPool> {
    let db = store::connect_lazy(config)?;
    store::ping(&db)
        .await
        .context("cannot reach PostgreSQL at DUKASYNC_DATABASE_URL")?;
    Ok(db)
}

/// With `DUKASYNC_DURABLE_STANDBYS` set, refuses to serve when the role cannot see the standbys' positions
/// (every push would then report nothing durable, and phones would keep their operations forever), and says
/// whether a named standby is connected.
async fn check_durability(state: &AppState) -> anyhow::Result<()> {
    let standbys = state.durability.standbys();
    if standbys.is_empty() {
        return Ok(());
    }
    match store::durability::can_read_positions(&state.db).await {
        Ok(true) => {}
        Ok(false) => bail!(
            "DUKASYNC_DURABLE_STANDBYS is set, but this database role cannot read replication positions; \
             grant it: GRANT pg_monitor TO <the role of DUKASYNC_DATABASE_URL>"
        ),
        Err(err) => {
            tracing::warn!(error = %err, "PostgreSQL is not reachable at start-up; standbys not checked");
            return Ok(());
        }
    }
    match store::durability::standbys(&state.db, standbys).await {
        Ok(found) if found.flushed.is_some() => tracing::info!(?standbys, "a durable standby is connected"),
        Ok(_) => tracing::warn!(
            ?standbys,
            "no standby of DUKASYNC_DURABLE_STANDBYS is connected: pushes report durable_seq 0 and phones keep \
             their acknowledged operations until one is (deploy/BACKUP.md)"
        ),
        Err(err) => tracing::warn!(error = %err, "could not read pg_stat_replication"),
    }
    Ok(())
}

/// Refuses to serve an out-of-date schema; tolerates PostgreSQL being down (the server reports not-ready).
async fn check_schema(state: &AppState) -> anyhow::Result<()> {
    let applied = store::applied_migrations(&state.db).await;
    match applied {
        Ok(applied) => {
            let missing = store::MIGRATOR.iter().filter(|m| !applied.contains(&m.version)).count();
            if missing > 0 {
                bail!("the database lacks {missing} migration(s); run `dukasync migrate` first");
            }
            Ok(())
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => {
            bail!("the database has no dukasync schema; run `dukasync migrate` first")
        }
        // An outage passes, a TLS mismatch does not: the start fails with one line, as a configuration error.
        Err(err) if is_tls_failure(&err) => bail!(
            "cannot connect to PostgreSQL over TLS as DUKASYNC_DATABASE_URL says ({err}); check its sslmode and sslrootcert"
        ),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("28000") && refuses_plain(e.message()) => bail!(
            "PostgreSQL accepts only TLS connections ({}); set sslmode=verify-full (or require) in DUKASYNC_DATABASE_URL",
            e.message()
        ),
        Err(err) => {
            tracing::warn!(error = %err, "PostgreSQL is not reachable at start-up; serving as not ready");
            Ok(())
        }
    }
}

/// Whether connecting failed in TLS: sqlx's own TLS errors (e.g. "server does not support TLS" for
/// `sslmode=require`), and the certificate checks of rustls, which reach us wrapped in an I/O error.
fn is_tls_failure(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(io) => io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()),
        _ => false,
    }
}

/// Whether a refused login (SQLSTATE 28000) says the connection was refused for being unencrypted: pg_hba.conf
/// has only `hostssl` lines for it ("no encryption" since PostgreSQL 14, "SSL off" before).
fn refuses_plain(message: &str) -> bool {
    message.contains("no encryption") || message.contains("SSL off")
}
