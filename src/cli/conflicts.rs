//! `dukasync conflicts list|show|resolve`: the conflicts admin API for the owner on the server, through the same
//! domain functions as the HTTP handlers. Output is the API's JSON on stdout.
//!
//! `list` and `show` without `--by` see every scope (whoever runs this has the database); `resolve` always acts
//! as a user (`--by <email>`), who must be an owner or manager of the conflict's scope and is recorded as the
//! one who decided.

use crate::{
    conflicts::{self, Admin},
    domain::{Role, ScopeId},
    store::accounts,
    wire::{ConflictsQuery, Decision, ResolveRequest},
};
use anyhow::{Context, Result};
use clap::Subcommand;
use serde::Serialize;
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Subcommand)]
pub enum ConflictsCommand {
    /// List conflicts, newest first (filters as `GET /v1/admin/conflicts`).
    List {
        #[arg(long)]
        scope: Option<String>,
        /// open or resolved
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        collection: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        /// The device the operation came from (UUID).
        #[arg(long)]
        device: Option<Uuid>,
        /// Created at or after (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Created before (RFC 3339).
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long)]
        limit: Option<u32>,
        /// `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
        /// Only the scopes this user (email) administers.
        #[arg(long)]
        by: Option<String>,
    },
    /// Show one conflict with its diff, origin and the row now.
    Show {
        id: Uuid,
        #[arg(long)]
        by: Option<String>,
    },
    /// Resolve a conflict as an owner or manager of its scope.
    Resolve {
        id: Uuid,
        /// keep_server, take_client, merge (field conflicts) or accept (every other kind)
        #[arg(long)]
        decision: String,
        /// For merge: JSON, the conflicting fields ({"field": value}) or the whole row.
        #[arg(long)]
        value: Option<String>,
        /// The row version the decision was made against (default: the conflict's row_version).
        #[arg(long)]
        expected_version: Option<i64>,
        #[arg(long)]
        note: Option<String>,
        /// Email of the owner or manager deciding.
        #[arg(long)]
        by: String,
    },
}

pub async fn execute(db: &PgPool, command: ConflictsCommand) -> Result<()> {
    match command {
        ConflictsCommand::List {
            scope,
            status,
            collection,
            kind,
            device,
            since,
            until,
            limit,
            cursor,
            by,
        } => {
            let (user_id, roles) = identity(db, by.as_deref()).await?;
            let admin = Admin { user_id, roles: &roles };
            let query = ConflictsQuery {
                scope,
                status,
                collection,
                kind,
                device,
                since,
                until,
                limit,
                cursor,
            };
            print(&conflicts::list(db, &admin, query).await.map_err(describe)?)
        }
        ConflictsCommand::Show { id, by } => {
            let (user_id, roles) = identity(db, by.as_deref()).await?;
            let admin = Admin { user_id, roles: &roles };
            print(&conflicts::show(db, &admin, id).await.map_err(describe)?)
        }
        ConflictsCommand::Resolve {
            id,
            decision,
            value,
            expected_version,
            note,
            by,
        } => {
            let (user_id, roles) = identity(db, Some(&by)).await?;
            let admin = Admin { user_id, roles: &roles };
            let decision: Decision = serde_json::from_value(serde_json::Value::String(decision.clone()))
                .with_context(|| format!("unknown decision {decision:?}"))?;
            let value = value
                .map(|v| serde_json::from_str(&v).context("--value is not JSON"))
                .transpose()?;
            let request = ResolveRequest {
                decision,
                value,
                expected_version,
                note,
            };
            let detail = conflicts::resolve(db, &admin, id, request).await.map_err(describe)?;
            eprintln!("resolved conflict {id} ({})", detail.kind);
            print(&detail)
        }
    }
}

/// The user acting (nil and every scope as owner when nobody is named) and their roles.
async fn identity(db: &PgPool, email: Option<&str>) -> Result<(Uuid, HashMap<ScopeId, Role>)> {
    let Some(email) = email else {
        let scopes = crate::store::scope_heads(db).await?;
        let roles = scopes
            .into_iter()
            .filter_map(|(id, _)| Some((ScopeId::parse(&id)?, Role::Owner)))
            .collect();
        return Ok((Uuid::nil(), roles));
    };
    let user = accounts::user_by_email(db, email)
        .await?
        .with_context(|| format!("no user with email {email}"))?;
    let roles = accounts::roles_of(db, user)
        .await?
        .into_iter()
        .filter_map(|(scope, role)| Some((ScopeId::parse(&scope)?, Role::parse(&role)?)))
        .collect();
    Ok((user, roles))
}

/// The API's error code and message, and for a 409 the conflict now.
fn describe(err: crate::error::Error) -> anyhow::Error {
    let mut text = format!(
        "{} ({}, HTTP {})",
        err.public_message(),
        err.code(),
        err.status().as_u16()
    );
    if let Some(details) = err.details() {
        text.push_str(&format!(
            "\n{}",
            serde_json::to_string_pretty(&details).unwrap_or_default()
        ));
    }
    anyhow::anyhow!(text)
}

fn print<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
