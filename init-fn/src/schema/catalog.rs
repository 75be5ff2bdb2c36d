//! The objects of schema `public` as PostgreSQL itself describes them: plain structs read from
//! `pg_catalog` by the named queries in [`QUERIES`] (one per object kind, each returning the columns its
//! struct needs), with the server's own renderings of types and definitions. The ledger and the
//! members of extensions are left out. The `objects` module turns a reading into object identities,
//! `description` into the canonical schema drift compares. No `crate::` imports: xtask shares this file.

use tokio_postgres::{Client, Row, types::ToSql};

/// The schema every rendering is relative to while reading: names in `public` print unqualified,
/// whatever search_path the session (or a migration's `SET`) left behind.
const PINNED_SEARCH_PATH: &str = "public";

/// A catalog query that failed, by name.
#[derive(Debug)]
pub struct CatalogError {
    pub query: &'static str,
    pub source: tokio_postgres::Error,
}

/// A catalog query by name: what it reads is documented by the struct it fills.
#[derive(Debug, Clone, Copy)]
pub struct Query {
    pub name: &'static str,
    pub sql: &'static str,
}

/// Keeps the ledger and extension members out; `$1` is the ledger's table name.
macro_rules! own_relation {
    ($oid:literal) => {
        concat!(
            "c.relname <> $1 AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass AND e.objid = ",
            $oid,
            " AND e.deptype = 'e')"
        )
    };
}

pub const RELATIONS: Query = Query {
    name: "relations",
    sql: concat!(
        "SELECT c.oid, c.relname::text, c.relkind::text, \
                CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) \
                     WHEN c.relkind = 'S' THEN (SELECT format('%s start %s increment %s min %s max %s cache %s%s', \
                         format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, \
                         CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END) FROM pg_sequence s WHERE s.seqrelid = c.oid) END, \
                (SELECT t.relname::text || '.' || a.attname::text FROM pg_depend d \
                   JOIN pg_class t ON t.oid = d.refobjid \
                   JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
                  WHERE c.relkind = 'S' AND d.classid = 'pg_class'::regclass AND d.objid = c.oid \
                    AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') AND ",
        own_relation!("c.oid"),
        " ORDER BY c.oid"
    ),
};

pub const COLUMNS: Query = Query {
    name: "columns",
    sql: concat!(
        "SELECT c.oid, c.relname::text, a.attnum, a.attname::text, format_type(a.atttypid, a.atttypmod), \
                a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid), a.attidentity::text, a.attgenerated::text, \
                CASE WHEN a.attcollation <> y.typcollation THEN \
                  (SELECT quote_ident(l.collname) FROM pg_collation l WHERE l.oid = a.attcollation) END \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type y ON y.oid = a.atttypid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'f') AND a.attnum > 0 \
           AND NOT a.attisdropped AND ",
        own_relation!("c.oid"),
        " ORDER BY c.oid, a.attnum"
    ),
};

pub const INDEXES: Query = Query {
    name: "indexes",
    sql: concat!(
        "SELECT i.oid, i.relname::text, c.relname::text, pg_get_indexdef(i.oid), x.indisunique, \
                x.indisprimary, x.indisvalid \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = i.relnamespace \
         WHERE n.nspname = 'public' AND ",
        own_relation!("c.oid"),
        " ORDER BY i.oid"
    ),
};

pub const CONSTRAINTS: Query = Query {
    name: "constraints",
    sql: concat!(
        "SELECT k.oid, k.conname::text, c.relname::text, k.contype::text, pg_get_constraintdef(k.oid), \
                k.convalidated \
         FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND k.contype IN ('c', 'f', 'p', 'u', 'x') AND ",
        own_relation!("c.oid"),
        " ORDER BY k.oid"
    ),
};

pub const TRIGGERS: Query = Query {
    name: "triggers",
    sql: concat!(
        "SELECT g.oid, g.tgname::text, c.relname::text, pg_get_triggerdef(g.oid), g.tgenabled::text \
         FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND NOT g.tgisinternal AND ",
        own_relation!("c.oid"),
        " ORDER BY g.oid"
    ),
};

pub const FUNCTIONS: Query = Query {
    name: "functions",
    sql: "SELECT p.oid, p.proname::text || '(' || pg_get_function_identity_arguments(p.oid) || ')', \
                 p.prokind::text, l.lanname::text, pg_get_function_result(p.oid), \
                 md5(CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) ELSE p.prosrc END) \
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
          JOIN pg_language l ON l.oid = p.prolang \
          WHERE n.nspname = 'public' AND NOT EXISTS (SELECT 1 FROM pg_depend e \
            WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e') \
          ORDER BY p.oid",
};

/// Enums, domains, ranges and standalone composite types (not the row types of tables). A domain's
/// NOT NULL is `typnotnull`: PostgreSQL 17 also lists it as a constraint (`n`), 15 does not.
pub const TYPES: Query = Query {
    name: "types",
    sql: "SELECT y.oid, y.typname::text, y.typtype::text, \
                 CASE y.typtype \
                   WHEN 'e' THEN (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) \
                                    FROM pg_enum e WHERE e.enumtypid = y.oid) \
                   WHEN 'd' THEN format_type(y.typbasetype, y.typtypmod) \
                     || CASE WHEN y.typnotnull THEN ' not null' ELSE '' END \
                     || coalesce(' default ' || y.typdefault, '') \
                     || coalesce((SELECT string_agg(' ' || pg_get_constraintdef(k.oid), '' ORDER BY k.conname) \
                                    FROM pg_constraint k WHERE k.contypid = y.oid AND k.contype <> 'n'), '') \
                   WHEN 'c' THEN (SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod), \
                                                    ', ' ORDER BY a.attnum) \
                                    FROM pg_attribute a WHERE a.attrelid = y.typrelid AND a.attnum > 0 AND NOT a.attisdropped) \
                   WHEN 'r' THEN (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = y.oid) \
                 END \
          FROM pg_type y JOIN pg_namespace n ON n.oid = y.typnamespace \
          WHERE n.nspname = 'public' \
            AND (y.typtype IN ('e', 'd', 'r') \
                 OR (y.typtype = 'c' AND (SELECT c.relkind FROM pg_class c WHERE c.oid = y.typrelid) = 'c')) \
            AND NOT EXISTS (SELECT 1 FROM pg_depend e \
              WHERE e.classid = 'pg_type'::regclass AND e.objid = y.oid AND e.deptype = 'e') \
          ORDER BY y.oid",
};

/// Extensions installed into `public`.
pub const EXTENSIONS: Query = Query {
    name: "extensions",
    sql: "SELECT x.oid, x.extname::text, x.extversion FROM pg_extension x \
          JOIN pg_namespace n ON n.oid = x.extnamespace \
          WHERE n.nspname = 'public' ORDER BY x.oid",
};

/// Every query the reader runs, in the order it runs them.
pub const QUERIES: [Query; 8] = [
    RELATIONS,
    COLUMNS,
    INDEXES,
    CONSTRAINTS,
    TRIGGERS,
    FUNCTIONS,
    TYPES,
    EXTENSIONS,
];

/// A table, view, materialized view, foreign table or sequence (`pg_class`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    pub name: String,
    /// `r` table, `p` partitioned table, `f` foreign table, `v` view, `m` materialized view, `S` sequence.
    pub relkind: String,
    /// `pg_get_viewdef` of a view or materialized view; a sequence's type, start, increment, bounds,
    /// cache and cycle.
    pub definition: Option<String>,
    /// `table.column` a sequence belongs to (serial or identity).
    pub owned_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub table_oid: u32,
    pub table: String,
    pub number: i16,
    pub name: String,
    /// `format_type`: `character varying(50)`, `timestamp without time zone`.
    pub type_name: String,
    pub not_null: bool,
    /// `pg_get_expr` of the default (or of the generation expression).
    pub default: Option<String>,
    /// `a` always / `d` by default as identity; empty otherwise.
    pub identity: String,
    /// `s` stored generated column; empty otherwise.
    pub generated: String,
    /// The column's collation when it is not its type's default.
    pub collation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub oid: u32,
    pub name: String,
    pub table: String,
    /// `pg_get_indexdef`.
    pub definition: String,
    pub unique: bool,
    pub primary: bool,
    /// `false`: left INVALID by a failed or cancelled `CREATE INDEX CONCURRENTLY`; the planner ignores it.
    pub valid: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub oid: u32,
    pub name: String,
    pub table: String,
    /// `c` check, `f` foreign key, `p` primary key, `u` unique, `x` exclusion.
    pub contype: String,
    /// `pg_get_constraintdef`.
    pub definition: String,
    /// `false` after `NOT VALID` until `VALIDATE CONSTRAINT`.
    pub validated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub oid: u32,
    pub name: String,
    pub table: String,
    /// `pg_get_triggerdef`.
    pub definition: String,
    /// `O` fires (origin and local), `D` disabled, `R` replica only, `A` always.
    pub enabled: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub oid: u32,
    /// `name(identity arguments)`, which tells overloads apart.
    pub signature: String,
    /// `f` function, `p` procedure, `a` aggregate, `w` window function.
    pub prokind: String,
    pub language: String,
    pub result: Option<String>,
    /// md5 of `pg_get_functiondef` (the source for aggregates).
    pub body_md5: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type {
    pub oid: u32,
    pub name: String,
    /// `e` enum, `d` domain, `c` composite, `r` range.
    pub typtype: String,
    /// Enum labels, a domain's base type (with not null, default and checks), a composite's attributes
    /// or a range's subtype.
    pub definition: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub oid: u32,
    pub name: String,
    pub version: String,
}

/// One reading of schema `public`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub relations: Vec<Relation>,
    pub columns: Vec<Column>,
    pub indexes: Vec<Index>,
    pub constraints: Vec<Constraint>,
    pub triggers: Vec<Trigger>,
    pub functions: Vec<Function>,
    pub types: Vec<Type>,
    pub extensions: Vec<Extension>,
}

impl Catalog {
    /// Reads schema `public` with every query of [`QUERIES`] (the ledger named `ledger` left out), in
    /// one read-only snapshot under [`PINNED_SEARCH_PATH`] (`SET LOCAL`: the session's own setting is
    /// back after it).
    pub async fn read(client: &Client, ledger: &str) -> Result<Catalog, CatalogError> {
        let read = Self::read_pinned(client, ledger).await;
        let end = if read.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = client.batch_execute(end).await;
        let catalog = read?;
        ended.map_err(|source| CatalogError {
            query: "commit",
            source,
        })?;
        Ok(catalog)
    }

    async fn read_pinned(client: &Client, ledger: &str) -> Result<Catalog, CatalogError> {
        let run = |q: Query| async move {
            let params: &[&(dyn ToSql + Sync)] = if q.sql.contains("$1") {
                &[&ledger]
            } else {
                &[]
            };
            client
                .query(q.sql, params)
                .await
                .map_err(|source| CatalogError {
                    query: q.name,
                    source,
                })
        };
        let pin = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL search_path = {PINNED_SEARCH_PATH}"
        );
        let pinned = async {
            client
                .batch_execute(&pin)
                .await
                .map_err(|source| CatalogError {
                    query: "search_path",
                    source,
                })
        };
        // Sent together, in this order (biased): the driver pipelines them, so a reading costs about
        // one round trip, and the server parses every query after the pin.
        let ((), relations, columns, indexes, constraints, triggers, functions, types, extensions) =
            tokio::try_join!(
                biased;
                pinned,
                run(QUERIES[0]),
                run(QUERIES[1]),
                run(QUERIES[2]),
                run(QUERIES[3]),
                run(QUERIES[4]),
                run(QUERIES[5]),
                run(QUERIES[6]),
                run(QUERIES[7]),
            )?;
        Ok(Catalog {
            relations: relations.iter().map(relation).collect(),
            columns: columns.iter().map(column).collect(),
            indexes: indexes.iter().map(index).collect(),
            constraints: constraints.iter().map(constraint).collect(),
            triggers: triggers.iter().map(trigger).collect(),
            functions: functions.iter().map(function).collect(),
            types: types.iter().map(type_).collect(),
            extensions: extensions.iter().map(extension).collect(),
        })
    }

    /// Tables (plain and partitioned), in creation order.
    pub fn tables(&self) -> impl Iterator<Item = &Relation> {
        self.relations
            .iter()
            .filter(|r| matches!(r.relkind.as_str(), "r" | "p"))
    }
}

fn relation(r: &Row) -> Relation {
    Relation {
        oid: r.get(0),
        name: r.get(1),
        relkind: r.get(2),
        definition: r.get(3),
        owned_by: r.get(4),
    }
}

fn column(r: &Row) -> Column {
    Column {
        table_oid: r.get(0),
        table: r.get(1),
        number: r.get(2),
        name: r.get(3),
        type_name: r.get(4),
        not_null: r.get(5),
        default: r.get(6),
        identity: r.get(7),
        generated: r.get(8),
        collation: r.get(9),
    }
}

fn index(r: &Row) -> Index {
    Index {
        oid: r.get(0),
        name: r.get(1),
        table: r.get(2),
        definition: r.get(3),
        unique: r.get(4),
        primary: r.get(5),
        valid: r.get(6),
    }
}

fn constraint(r: &Row) -> Constraint {
    Constraint {
        oid: r.get(0),
        name: r.get(1),
        table: r.get(2),
        contype: r.get(3),
        definition: r.get(4),
        validated: r.get(5),
    }
}

fn trigger(r: &Row) -> Trigger {
    Trigger {
        oid: r.get(0),
        name: r.get(1),
        table: r.get(2),
        definition: r.get(3),
        enabled: r.get(4),
    }
}

fn function(r: &Row) -> Function {
    Function {
        oid: r.get(0),
        signature: r.get(1),
        prokind: r.get(2),
        language: r.get(3),
        result: r.get(4),
        body_md5: r.get(5),
    }
}

fn type_(r: &Row) -> Type {
    Type {
        oid: r.get(0),
        name: r.get(1),
        typtype: r.get(2),
        definition: r.get(3),
    }
}

fn extension(r: &Row) -> Extension {
    Extension {
        oid: r.get(0),
        name: r.get(1),
        version: r.get(2),
    }
}
