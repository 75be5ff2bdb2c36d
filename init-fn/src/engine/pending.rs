//! The `plan` action's view of pending migrations: each statement on one line, whether it runs in a
//! transaction, and the lock it takes on which existing table, with the table's size and row estimate
//! from the catalog (so the cost is the same at any table size). A statement kind plan cannot
//! classify says `lock_unknown` instead of guessing.

use tokio_postgres::Client;

use crate::{
    engine::migration::{Migration, unsplittable},
    engine::report::{
        MigrationReport, MigrationState, PlannedLock, PlannedMigration, PlannedStatement,
    },
    error::{InitError, server_error},
    plan::locks::{self, Effect, Link, LockMode, On, RowChange},
};

/// Relation kinds a plan shows locks on: tables (plain, partitioned, foreign), views, materialized views.
const LOCKABLE: &str = "('r', 'p', 'f', 'v', 'm')";

/// The plan of every migration `reports` calls pending.
pub async fn plan(
    client: &Client,
    migrations: &[Migration],
    reports: &[MigrationReport],
) -> Result<Vec<PlannedMigration>, InitError> {
    let mut planned = Vec::new();
    for m in migrations {
        let pending = reports
            .iter()
            .any(|r| r.version == m.version && r.state == MigrationState::Pending);
        if !pending {
            continue;
        }
        let mut statements = Vec::new();
        let split = crate::sql::split(&m.sql).map_err(|err| unsplittable(m, &err))?;
        for statement in split {
            let effect = locks::classify(&statement.text);
            let mut locks = Vec::new();
            for (table, mode) in locked_tables(client, &effect).await? {
                let (size_bytes, rows_estimate) = table_facts(client, &table).await?;
                locks.push(PlannedLock {
                    mode: mode.as_str(),
                    table,
                    blocks: mode.blocks(),
                    size_bytes,
                    rows_estimate,
                });
            }
            statements.push(PlannedStatement {
                line: statement.line,
                sql: statement.one_line(),
                locks,
                lock_unknown: !effect.known,
            });
        }
        planned.push(PlannedMigration {
            version: m.version,
            name: m.name.clone(),
            in_transaction: m.transactional,
            statements,
        });
    }
    Ok(planned)
}

/// The existing tables `effect` locks and the strongest mode on each, in the order it names them:
/// the relations it names, then those the catalog links to them (foreign keys, a view's sources).
pub async fn locked_tables(
    client: &Client,
    effect: &Effect,
) -> Result<Vec<(String, LockMode)>, InitError> {
    let mut out: Vec<(String, LockMode)> = Vec::new();
    let mut add = |table: String, mode: LockMode| match out.iter_mut().find(|(t, _)| *t == table) {
        Some((_, m)) => *m = (*m).max(mode),
        None => out.push((table, mode)),
    };
    for lock in &effect.locks {
        let (sql, name) = match &lock.on {
            On::Table(t) => (
                format!(
                    "SELECT c.oid::regclass::text FROM pg_class c \
                     WHERE c.oid = to_regclass($1) AND c.relkind IN {LOCKABLE}"
                ),
                t,
            ),
            On::TableOfIndex(i) => (
                "SELECT x.indrelid::regclass::text FROM pg_index x WHERE x.indexrelid = to_regclass($1)"
                    .to_string(),
                i,
            ),
        };
        for table in names(client, &sql, &[&qualified(name)]).await? {
            add(table, lock.mode);
        }
    }
    for linked in &effect.linked {
        for (table, mode) in linked_tables(client, &linked.via, linked.mode).await? {
            add(table, mode);
        }
    }
    Ok(out)
}

/// The tables `via` leads to, each with the mode it takes there (sorted by name).
async fn linked_tables(
    client: &Client,
    via: &Link,
    mode: LockMode,
) -> Result<Vec<(String, LockMode)>, InitError> {
    let none: Option<Vec<String>> = None;
    let mut found = match via {
        Link::ReferencedBy(t) => with_mode(
            names(client, REFERENCED, &[&qualified(t), &none]).await?,
            mode,
        ),
        Link::Referencing(t) => with_mode(
            names(client, REFERENCING, &[&qualified(t), &none, &true]).await?,
            mode,
        ),
        Link::ReferencedByConstraint { table, constraint } => with_mode(
            names(
                client,
                REFERENCED_BY_CONSTRAINT,
                &[&qualified(table), &truncate(constraint.trim_matches('"'))],
            )
            .await?,
            mode,
        ),
        Link::ReadBy(view) => with_mode(names(client, READ_BY, &[&qualified(view)]).await?, mode),
        Link::RowChanges { table, change } => {
            let table = qualified(table);
            let columns = match change {
                RowChange::Update(columns) => Some(
                    columns
                        .iter()
                        .map(|c| truncate(c.trim_matches('"')))
                        .collect::<Vec<_>>(),
                ),
                RowChange::Insert | RowChange::Delete => None,
            };
            let mut found = Vec::new();
            // This table's foreign keys are checked when its rows get or change their key values.
            if !matches!(change, RowChange::Delete) {
                found = with_mode(
                    names(client, REFERENCED, &[&table, &columns]).await?,
                    LockMode::RowShare,
                );
            }
            // Other tables' foreign keys are checked (or act) when a referenced row changes or goes.
            if !matches!(change, RowChange::Insert) {
                let delete = matches!(change, RowChange::Delete);
                let rows = client
                    .query(REFERENCING, &[&table, &columns, &delete])
                    .await
                    .map_err(|e| lookup_error(&e))?;
                for r in rows {
                    let writes: bool = r.get(1);
                    let mode = if writes {
                        LockMode::RowExclusive
                    } else {
                        LockMode::RowShare
                    };
                    found.push((r.get(0), mode));
                }
            }
            found
        }
    };
    found.sort();
    Ok(found)
}

fn with_mode(tables: Vec<String>, mode: LockMode) -> Vec<(String, LockMode)> {
    tables.into_iter().map(|t| (t, mode)).collect()
}

/// Tables the foreign keys of relation `$1` (a name `to_regclass` reads) reference (those on the
/// columns `$2` only, when not null).
const REFERENCED: &str = "SELECT DISTINCT k.confrelid::regclass::text FROM pg_constraint k \
     WHERE k.contype = 'f' AND k.conrelid = to_regclass($1) AND k.confrelid <> k.conrelid \
       AND ($2::text[] IS NULL OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = k.conrelid \
            AND a.attnum = ANY (k.conkey) AND a.attname::text = ANY ($2)))";

/// Tables whose foreign keys reference `$1` (on its columns `$2` only, when not null), and whether
/// their `ON DELETE` (`$3`) or `ON UPDATE` action writes to them (`CASCADE`, `SET NULL|DEFAULT`).
const REFERENCING: &str = "SELECT k.conrelid::regclass::text, bool_or(CASE WHEN $3 THEN k.confdeltype ELSE k.confupdtype END IN ('c', 'n', 'd')) \
     FROM pg_constraint k \
     WHERE k.contype = 'f' AND k.confrelid = to_regclass($1) AND k.confrelid <> k.conrelid \
       AND ($2::text[] IS NULL OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = k.confrelid \
            AND a.attnum = ANY (k.confkey) AND a.attname::text = ANY ($2))) \
     GROUP BY 1";

/// The table constraint `$2` of `$1` references, when it is a foreign key.
const REFERENCED_BY_CONSTRAINT: &str = "SELECT k.confrelid::regclass::text FROM pg_constraint k \
     WHERE k.contype = 'f' AND k.conrelid = to_regclass($1) AND k.conname::text = $2::text \
       AND k.confrelid <> k.conrelid";

/// The relations the rewrite rule of view `$1` reads.
const READ_BY: &str = "SELECT DISTINCT s.oid::regclass::text FROM pg_rewrite w \
     JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid \
      AND d.refclassid = 'pg_class'::regclass \
     JOIN pg_class s ON s.oid = d.refobjid \
     WHERE w.ev_class = to_regclass($1) AND s.oid <> w.ev_class \
       AND s.relkind IN ('r', 'p', 'f', 'v', 'm')";

/// A relation name as `plan`'s words carry it (`t`, `s.t`, `s"."T` once the outer quotes are gone)
/// read as the server reads it: schema and name, each cut to [`NAME_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub schema: Option<String>,
    pub name: String,
}

/// `NAMEDATALEN - 1`: the longest identifier the server keeps; it cuts longer ones (with a NOTICE).
pub const NAME_BYTES: usize = 63;

/// `raw`'s schema and name, as the server truncates them.
pub fn relation(raw: &str) -> Relation {
    let raw = raw.trim_matches('"');
    let split = ["\".\"", "\".", ".\"", "."]
        .iter()
        .find_map(|sep| raw.rsplit_once(sep));
    match split {
        Some((schema, name)) => Relation {
            schema: Some(truncate(schema.trim_matches('"'))),
            name: truncate(name.trim_matches('"')),
        },
        None => Relation {
            schema: None,
            name: truncate(raw),
        },
    }
}

/// `ident` cut to at most [`NAME_BYTES`] bytes on a character boundary (the server's `pg_mbcliplen`).
pub fn truncate(ident: &str) -> String {
    if ident.len() <= NAME_BYTES {
        return ident.to_string();
    }
    let mut end = NAME_BYTES;
    while !ident.is_char_boundary(end) {
        end -= 1;
    }
    ident[..end].to_string()
}

/// `"schema"."name"` (or `"name"`, found on the search_path): what `to_regclass` reads back exactly.
fn qualified(raw: &str) -> String {
    let r = relation(raw);
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    match &r.schema {
        Some(schema) => format!("{}.{}", quote(schema), quote(&r.name)),
        None => quote(&r.name),
    }
}

fn lookup_error(e: &tokio_postgres::Error) -> InitError {
    server_error("plan: looking up locked tables", e)
}

async fn names(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<String>, InitError> {
    let rows = client
        .query(sql, params)
        .await
        .map_err(|e| lookup_error(&e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Total size and row estimate of the existing relation `table` (as `regclass` prints it).
async fn table_facts(client: &Client, table: &str) -> Result<(i64, Option<i64>), InitError> {
    let row = client
        .query_one(
            "SELECT pg_total_relation_size(c.oid), c.reltuples::float8 \
             FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&table],
        )
        .await
        .map_err(|e| server_error(&format!("plan: reading the size of {table}"), &e))?;
    let estimate: f64 = row.get(1);
    Ok((
        row.get(0),
        (estimate >= 0.0).then_some(estimate.round() as i64),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_as_the_server_reads_them() {
        let long = "a".repeat(70);
        assert_eq!(relation(&long).name.len(), 63);
        // 62 ASCII bytes then a 2-byte character: cut before it, never inside.
        let multibyte = format!("{}é{}", "b".repeat(62), "c".repeat(5));
        assert_eq!(relation(&multibyte).name, "b".repeat(62));
        let r = relation("staging.orders");
        assert_eq!(
            (r.schema.as_deref(), r.name.as_str()),
            (Some("staging"), "orders")
        );
        let r = relation("My Schema\".\"Orders");
        assert_eq!(
            (r.schema.as_deref(), r.name.as_str()),
            (Some("My Schema"), "Orders")
        );
        assert_eq!(
            qualified("My Schema\".\"Orders"),
            "\"My Schema\".\"Orders\""
        );
        assert_eq!(qualified("t"), "\"t\"");
    }
}
