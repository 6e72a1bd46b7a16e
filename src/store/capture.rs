//! Capture triggers (docs/backend-sql.md, "Capture"): a trigger on one of the backend's own tables (e.g.
//! Django's `erp_product`) that turns every INSERT, UPDATE and DELETE into a queued backend write
//! (`dukasync_api.put` / `delete`), so a plain ORM save reaches the devices with no change to the backend.
//!
//! The trigger's SQL is generated here from names that are validated (plain identifiers only) and quoted, and
//! from the columns' types read from the catalog, so that the mapping is fixed when the trigger is installed:
//! - the key column becomes the row's `id`, as text;
//! - `smallint`, `integer`, `bigint` and `boolean` stay JSON integers and booleans (a `bigint` beyond ±(2^53 - 1)
//!   makes the save fail, as `put` refuses it);
//! - `numeric` becomes a decimal string (`"12.50"`), never a float; `real` and `double precision` are refused at
//!   install (a float has no exact decimal string);
//! - `json` and `jsonb` are taken as they are; `timestamp with time zone` becomes UTC ISO 8601 with
//!   microseconds (`2026-01-31T09:00:00.000000Z`); every other type becomes its text form;
//! - SQL NULL becomes JSON null.

use crate::domain::ScopeId;
use sqlx::{PgPool, Row};

/// What a capture maps, as given to `dukasync capture install`.
#[derive(Debug, Clone)]
pub struct CaptureSpec {
    /// `table` or `schema.table`, plain identifiers.
    pub table: String,
    pub collection: String,
    pub key_column: String,
    pub scope: ScopeSource,
    /// The columns that become the row's fields (the key column becomes `id` whether listed or not).
    pub columns: Vec<String>,
}

/// Where a captured row's scope comes from.
#[derive(Debug, Clone)]
pub enum ScopeSource {
    /// A column of the table (its text form is the scope id).
    Column(String),
    /// The same scope for every row.
    Value(ScopeId),
}

/// An installed capture, as `capture list` shows it.
#[derive(Debug, Clone)]
pub struct Installed {
    pub table: String,
    pub collection: String,
    pub key_column: String,
    pub scope: String,
    pub columns: Vec<String>,
}

/// The trigger's name on the captured table.
const TRIGGER: &str = "dukasync_capture";

/// Whether `name` is a plain identifier (letters, digits, `_`, not starting with a digit, at most 63 bytes):
/// the only names accepted, so that what is installed is exactly what was asked.
pub fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= 63
}

/// `table` or `schema.table`, each part a plain identifier.
fn table_parts(table: &str) -> Result<Vec<&str>, String> {
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 || !parts.iter().all(|p| is_identifier(p)) {
        return Err(format!(
            "`{table}` is not a table name: use `table` or `schema.table`, letters, digits and _"
        ));
    }
    Ok(parts)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The table's quoted name and the name of its trigger function in `dukasync_api`.
fn names(table: &str) -> Result<(String, String), String> {
    let parts = table_parts(table)?;
    let quoted = parts.iter().map(|p| quote_ident(p)).collect::<Vec<_>>().join(".");
    let function = format!("capture__{}", parts.join("__"));
    if function.len() > 63 {
        return Err(format!("`{table}` is too long a name to capture"));
    }
    Ok((quoted, format!("dukasync_api.{}", quote_ident(&function))))
}

/// The JSON expression of column `column` (of SQL type `sql_type`) of the row `record` (`NEW`, `OLD`, `r`).
fn json_of(record: &str, column: &str, sql_type: &str) -> Result<String, String> {
    let value = format!("{record}.{}", quote_ident(column));
    Ok(match sql_type {
        "smallint" | "integer" | "bigint" | "boolean" | "jsonb" => format!("to_jsonb({value})"),
        "json" => format!("to_jsonb({value}::jsonb)"),
        "real" | "double precision" => {
            return Err(format!(
                "column `{column}` is {sql_type}: a float has no exact decimal string; use numeric"
            ))
        }
        "timestamp with time zone" => {
            format!(r#"to_jsonb(to_char({value} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))"#)
        }
        // numeric as a decimal string, and every other type as its text form.
        _ => format!("to_jsonb({value}::text)"),
    })
}

/// The generated SQL of a capture: the row expression and the statements that install it.
#[derive(Debug)]
pub struct Generated {
    /// The row as a `jsonb` expression over the record `r` (for a backfill).
    backfill: String,
    /// The trigger function, then the trigger.
    install: [String; 3],
}

/// Generates the capture's SQL from the spec and the table's columns with their types (`format_type`).
pub fn generate(spec: &CaptureSpec, table_columns: &[(String, String)]) -> Result<Generated, String> {
    let (table, function) = names(&spec.table)?;
    if table_columns.is_empty() {
        return Err(format!("no table `{}`", spec.table));
    }
    let type_of = |column: &str| {
        if !is_identifier(column) {
            return Err(format!("`{column}` is not a column name"));
        }
        table_columns
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, t)| t.as_str())
            .ok_or_else(|| format!("table `{}` has no column `{column}`", spec.table))
    };
    type_of(&spec.key_column)?;
    let mut fields: Vec<(&str, &str)> = Vec::new();
    for column in &spec.columns {
        if column == &spec.key_column {
            continue;
        }
        if column == "id" {
            return Err("column `id` would overwrite the key field `id`; use it as --key".into());
        }
        if fields.iter().any(|(c, _)| c == column) {
            return Err(format!("column `{column}` is listed twice"));
        }
        fields.push((column.as_str(), type_of(column)?));
    }
    let row = |record: &str| -> Result<String, String> {
        let mut pairs = vec![format!("'id', ({record}.{})::text", quote_ident(&spec.key_column))];
        for (column, sql_type) in &fields {
            pairs.push(format!(
                "{}, {}",
                quote_literal(column),
                json_of(record, column, sql_type)?
            ));
        }
        // jsonb_build_object takes at most 100 arguments: 40 fields per call, joined with ||.
        Ok(pairs
            .chunks(40)
            .map(|chunk| format!("jsonb_build_object({})", chunk.join(", ")))
            .collect::<Vec<_>>()
            .join(" || "))
    };
    let scope = |record: &str| -> Result<String, String> {
        Ok(match &spec.scope {
            ScopeSource::Column(column) => {
                type_of(column)?;
                format!("({record}.{})::text", quote_ident(column))
            }
            ScopeSource::Value(scope) => quote_literal(scope.as_str()),
        })
    };
    let key = |record: &str| format!("({record}.{})::text", quote_ident(&spec.key_column));
    let collection = quote_literal(&spec.collection);
    let source = quote_literal(&format!("capture:{}", spec.table));
    let (new_scope, old_scope) = (scope("NEW")?, scope("OLD")?);
    let function_sql = format!(
        r#"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $capture$
BEGIN
    -- Generated by `dukasync capture install` (docs/backend-sql.md); reinstall rather than edit.
    IF TG_OP = 'DELETE' THEN
        PERFORM dukasync_api.delete({old_scope}, {collection}, {old_key}, {source});
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND ({old_key} IS DISTINCT FROM {new_key} OR {old_scope} IS DISTINCT FROM {new_scope}) THEN
        -- The row moved to another key or scope: it leaves the old one.
        PERFORM dukasync_api.delete({old_scope}, {collection}, {old_key}, {source});
    END IF;
    PERFORM dukasync_api.put({new_scope}, {collection}, {new_key}, {new_row}, {source});
    RETURN NULL;
END
$capture$"#,
        old_key = key("OLD"),
        new_key = key("NEW"),
        new_row = row("NEW")?,
    );
    let drop = format!("DROP TRIGGER IF EXISTS {TRIGGER} ON {table}");
    let trigger = format!(
        "CREATE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()"
    );
    let backfill = format!(
        "SELECT count(dukasync_api.put({}, {collection}, {}, {}, {source})) FROM {table} AS r",
        scope("r")?,
        key("r"),
        row("r")?
    );
    Ok(Generated {
        backfill,
        install: [function_sql, drop, trigger],
    })
}

/// The columns of `table` with their types, in order (empty when there is no such table).
pub async fn table_columns(db: &PgPool, table: &str) -> Result<Vec<(String, String)>, sqlx::Error> {
    let Ok((quoted, _)) = names(table) else {
        return Ok(Vec::new());
    };
    sqlx::query_as(
        r#"SELECT attname::text, format_type(atttypid, NULL) FROM pg_attribute
            WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum"#,
    )
    .bind(quoted)
    .fetch_all(db)
    .await
}

/// Installs (or replaces) the capture in one transaction; with `backfill`, also queues a put of every existing
/// row. Returns the number of rows queued.
pub async fn install(
    db: &PgPool,
    spec: &CaptureSpec,
    generated: &Generated,
    backfill: bool,
) -> Result<i64, sqlx::Error> {
    let mut tx = db.begin().await?;
    for statement in &generated.install {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    let (scope_column, scope_value) = match &spec.scope {
        ScopeSource::Column(c) => (Some(c.as_str()), None),
        ScopeSource::Value(s) => (None, Some(s.as_str())),
    };
    sqlx::query(
        r#"INSERT INTO dukasync_api.captures (table_name, collection, key_column, scope_column, scope_value, columns)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (table_name) DO UPDATE SET collection = EXCLUDED.collection,
               key_column = EXCLUDED.key_column, scope_column = EXCLUDED.scope_column,
               scope_value = EXCLUDED.scope_value, columns = EXCLUDED.columns, installed_at = now()"#,
    )
    .bind(&spec.table)
    .bind(&spec.collection)
    .bind(&spec.key_column)
    .bind(scope_column)
    .bind(scope_value)
    .bind(&spec.columns)
    .execute(&mut *tx)
    .await?;
    let queued = if backfill {
        sqlx::query_scalar(&generated.backfill).fetch_one(&mut *tx).await?
    } else {
        0
    };
    tx.commit().await?;
    Ok(queued)
}

/// Removes the capture of `table`; `false` when there is none.
pub async fn remove(db: &PgPool, table: &str) -> Result<bool, sqlx::Error> {
    let Ok((quoted, function)) = names(table) else {
        return Ok(false);
    };
    let mut tx = db.begin().await?;
    let known = sqlx::query("DELETE FROM dukasync_api.captures WHERE table_name = $1")
        .bind(table)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    if !known {
        return Ok(false);
    }
    // The table may have been dropped meanwhile (its trigger with it).
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&quoted)
        .fetch_one(&mut *tx)
        .await?;
    if exists {
        sqlx::query(&format!("DROP TRIGGER IF EXISTS {TRIGGER} ON {quoted}"))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(&format!("DROP FUNCTION IF EXISTS {function}()"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Every installed capture, by table.
pub async fn list(db: &PgPool) -> Result<Vec<Installed>, sqlx::Error> {
    let rows = sqlx::query(
        r#"SELECT table_name, collection, key_column, COALESCE('column ' || scope_column, scope_value) AS scope,
                  columns FROM dukasync_api.captures ORDER BY table_name"#,
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Installed {
                table: r.try_get("table_name")?,
                collection: r.try_get("collection")?,
                key_column: r.try_get("key_column")?,
                scope: r.try_get("scope")?,
                columns: r.try_get("columns")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(columns: &[&str]) -> CaptureSpec {
        CaptureSpec {
            table: "erp_product".into(),
            collection: "products".into(),
            key_column: "id".into(),
            scope: ScopeSource::Column("business_id".into()),
            columns: columns.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn table() -> Vec<(String, String)> {
        [
            ("id", "bigint"),
            ("business_id", "character varying(40)"),
            ("name", "character varying(200)"),
            ("price", "numeric(12,2)"),
            ("weight", "double precision"),
        ]
        .iter()
        .map(|(c, t)| (c.to_string(), t.to_string()))
        .collect()
    }

    #[test]
    fn only_plain_identifiers_are_names() {
        assert!(is_identifier("erp_product") && is_identifier("_x1"));
        for bad in ["", "1a", "a-b", "a\"b", "a b", "a;drop", &"x".repeat(64)] {
            assert!(!is_identifier(bad), "{bad}");
        }
        assert!(table_parts("erp.product").is_ok());
        assert!(table_parts("a.b.c").is_err() && table_parts("erp.\"x\"").is_err());
    }

    #[test]
    fn numeric_becomes_a_decimal_string_and_floats_are_refused() {
        let generated = generate(&spec(&["name", "price"]), &table()).unwrap();
        let function = &generated.install[0];
        assert!(
            function.contains(r#"'price', to_jsonb(NEW."price"::text)"#),
            "{function}"
        );
        assert!(function.contains(r#"'id', (NEW."id")::text"#), "{function}");
        assert!(function.contains(r#"(NEW."business_id")::text"#), "{function}");
        let err = generate(&spec(&["weight"]), &table()).unwrap_err();
        assert!(err.contains("double precision"), "{err}");
    }

    #[test]
    fn unknown_or_repeated_columns_are_refused() {
        assert!(generate(&spec(&["nope"]), &table())
            .unwrap_err()
            .contains("no column `nope`"));
        assert!(generate(&spec(&["name", "name"]), &table())
            .unwrap_err()
            .contains("twice"));
        assert!(generate(&spec(&["na\"me"]), &table())
            .unwrap_err()
            .contains("not a column name"));
        assert!(generate(&spec(&["name"]), &[]).unwrap_err().contains("no table"));
    }
}
