//! `dukasync capture install|remove|list`: capture triggers on the backend's own tables (`store::capture`,
//! docs/backend-sql.md, "Capture").

use crate::{
    domain::{collections, ScopeId},
    inbox,
    store::capture::{self, CaptureSpec, ScopeSource},
};
use anyhow::{bail, Context};
use clap::Subcommand;
use sqlx::PgPool;

#[derive(Subcommand)]
pub enum CaptureCommand {
    /// Install (or replace) a trigger that queues a backend write for every INSERT, UPDATE and DELETE of a table.
    Install {
        /// The table, `table` or `schema.table` (e.g. erp_product).
        #[arg(long)]
        table: String,
        /// The collection its rows become.
        #[arg(long)]
        collection: String,
        /// The key column; its text form becomes the row's `id`.
        #[arg(long)]
        key: String,
        /// The column holding each row's scope id.
        #[arg(long, conflicts_with = "scope", required_unless_present = "scope")]
        scope_column: Option<String>,
        /// One scope for every row.
        #[arg(long)]
        scope: Option<String>,
        /// The columns that become the row's fields, comma-separated.
        #[arg(long, value_delimiter = ',')]
        columns: Vec<String>,
        /// Allow a collection devices also write (capture is one way: a device's edit is not written back to
        /// the table, and the next save of that table row overwrites it).
        #[arg(long)]
        allow_device_writes: bool,
        /// Also queue a put of every row the table holds now.
        #[arg(long)]
        backfill: bool,
    },
    /// Remove the capture trigger of a table.
    Remove {
        #[arg(long)]
        table: String,
    },
    /// List installed captures.
    List,
}

pub async fn execute(db: &PgPool, command: CaptureCommand) -> anyhow::Result<()> {
    match command {
        CaptureCommand::Install {
            table,
            collection,
            key,
            scope_column,
            scope,
            columns,
            allow_device_writes,
            backfill,
        } => {
            let Some(definition) = collections::find(&collection) else {
                bail!("unknown collection `{collection}`");
            };
            if !inbox::backend_may_write(definition) {
                bail!("the backend may not write collection `{collection}` (its rows are written by commands)");
            }
            if definition.writer == collections::Writer::Device && !allow_device_writes {
                bail!(
                    "devices also write `{collection}`; capture is one way (a device's edit is not written back to \
                     {table}, and the table's next save of that row overwrites it): pass --allow-device-writes to \
                     accept that"
                );
            }
            let scope = match (scope_column, scope) {
                (Some(column), None) => ScopeSource::Column(column),
                (None, Some(raw)) => ScopeSource::Value(ScopeId::parse(&raw).context("--scope is not a scope id")?),
                _ => bail!("give exactly one of --scope-column and --scope"),
            };
            let spec = CaptureSpec {
                table,
                collection,
                key_column: key,
                scope,
                columns: columns.into_iter().filter(|c| !c.is_empty()).collect(),
            };
            let table_columns = capture::table_columns(db, &spec.table).await?;
            let generated = capture::generate(&spec, &table_columns).map_err(anyhow::Error::msg)?;
            // The queueing functions check against the published collections: publish them now, so a capture
            // installed before the server's first start works at once.
            crate::store::inbox::publish_collections(db, &inbox::definitions()).await?;
            let queued = capture::install(db, &spec, &generated, backfill).await?;
            eprintln!(
                "capture installed: {} -> {} ({} rows queued by the backfill)",
                spec.table, spec.collection, queued
            );
            Ok(())
        }
        CaptureCommand::Remove { table } => {
            if !capture::remove(db, &table).await? {
                bail!("no capture on table `{table}`");
            }
            eprintln!("capture removed from {table}");
            Ok(())
        }
        CaptureCommand::List => {
            for c in capture::list(db).await? {
                println!(
                    "{}\t{}\tkey {}\tscope {}\tcolumns {}",
                    c.table,
                    c.collection,
                    c.key_column,
                    c.scope,
                    c.columns.join(",")
                );
            }
            Ok(())
        }
    }
}
