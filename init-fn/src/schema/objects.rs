//! Schema objects by identity, from a [`Catalog`] reading: what a migration created or dropped is the
//! difference of the readings before and after it; what it found in place is what the server's
//! `… already exists, skipping` notices name (SQLSTATE 42P07, 42701, 42710), looked up in the catalog.

use crate::{schema::catalog::Catalog, session::Notice};

/// What an object is, as the report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Table,
    ForeignTable,
    View,
    MaterializedView,
    Sequence,
    Column,
    Index,
    Constraint,
    Trigger,
    Function,
    Procedure,
    Aggregate,
    Enum,
    Domain,
    CompositeType,
    RangeType,
    Extension,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Table => "table",
            Kind::ForeignTable => "foreign_table",
            Kind::View => "view",
            Kind::MaterializedView => "materialized_view",
            Kind::Sequence => "sequence",
            Kind::Column => "column",
            Kind::Index => "index",
            Kind::Constraint => "constraint",
            Kind::Trigger => "trigger",
            Kind::Function => "function",
            Kind::Procedure => "procedure",
            Kind::Aggregate => "aggregate",
            Kind::Enum => "enum",
            Kind::Domain => "domain",
            Kind::CompositeType => "composite_type",
            Kind::RangeType => "range_type",
            Kind::Extension => "extension",
        }
    }

    fn of_relkind(relkind: &str) -> Kind {
        match relkind {
            "f" => Kind::ForeignTable,
            "v" => Kind::View,
            "m" => Kind::MaterializedView,
            "S" => Kind::Sequence,
            _ => Kind::Table,
        }
    }
}

/// An object by identity: kind, name (a function's with its argument types) and, for what lives on
/// a table (column, index, constraint, trigger), the table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    pub kind: Kind,
    pub name: String,
    pub table: Option<String>,
}

impl Catalog {
    /// Every object, in creation order (oid; a column after its table, by position).
    pub fn objects(&self) -> Vec<ObjectId> {
        let mut all: Vec<((u32, i16), ObjectId)> = Vec::new();
        let id = |kind, name: &str, table: Option<&str>| ObjectId {
            kind,
            name: name.to_string(),
            table: table.map(str::to_string),
        };
        for r in &self.relations {
            all.push(((r.oid, 0), id(Kind::of_relkind(&r.relkind), &r.name, None)));
        }
        for c in &self.columns {
            all.push((
                (c.table_oid, c.number),
                id(Kind::Column, &c.name, Some(&c.table)),
            ));
        }
        for i in &self.indexes {
            all.push(((i.oid, 0), id(Kind::Index, &i.name, Some(&i.table))));
        }
        for k in &self.constraints {
            all.push(((k.oid, 0), id(Kind::Constraint, &k.name, Some(&k.table))));
        }
        for t in &self.triggers {
            all.push(((t.oid, 0), id(Kind::Trigger, &t.name, Some(&t.table))));
        }
        for f in &self.functions {
            let kind = match f.prokind.as_str() {
                "p" => Kind::Procedure,
                "a" => Kind::Aggregate,
                _ => Kind::Function,
            };
            all.push(((f.oid, 0), id(kind, &f.signature, None)));
        }
        for t in &self.types {
            let kind = match t.typtype.as_str() {
                "e" => Kind::Enum,
                "d" => Kind::Domain,
                "c" => Kind::CompositeType,
                _ => Kind::RangeType,
            };
            all.push(((t.oid, 0), id(kind, &t.name, None)));
        }
        for x in &self.extensions {
            all.push(((x.oid, 0), id(Kind::Extension, &x.name, None)));
        }
        all.sort_by_key(|a| a.0);
        all.into_iter().map(|(_, o)| o).collect()
    }

    /// The object a server notice says was already there (`relation "x" already exists, skipping`:
    /// 42P07; `column "c" of relation "t" …`: 42701; `extension "e" …`: 42710), looked up in this reading.
    pub fn named_by(&self, notice: &Notice) -> Option<ObjectId> {
        let kinds: &[Kind] = match notice.code.as_str() {
            "42P07" => &[
                Kind::Table,
                Kind::Index,
                Kind::Sequence,
                Kind::View,
                Kind::MaterializedView,
                Kind::ForeignTable,
            ],
            "42701" => &[Kind::Column],
            "42710" => &[
                Kind::Extension,
                Kind::Enum,
                Kind::Domain,
                Kind::CompositeType,
                Kind::RangeType,
                Kind::Trigger,
                Kind::Constraint,
            ],
            _ => return None,
        };
        let names = quoted(&notice.message);
        let name = names.first()?;
        let table = names.get(1);
        self.objects().into_iter().find(|o| {
            kinds.contains(&o.kind)
                && o.name == *name
                && (table.is_none() || o.table.as_ref() == table)
        })
    }
}

/// What changed between two readings: objects that appeared and objects that disappeared, in
/// creation order. The columns of a table that appeared (or disappeared) with it are part of it.
pub fn changes(before: &Catalog, after: &Catalog) -> (Vec<ObjectId>, Vec<ObjectId>) {
    let (was, is) = (before.objects(), after.objects());
    let appeared: Vec<ObjectId> = is.iter().filter(|o| !was.contains(o)).cloned().collect();
    let gone: Vec<ObjectId> = was.iter().filter(|o| !is.contains(o)).cloned().collect();
    (without_own_columns(appeared), without_own_columns(gone))
}

fn without_own_columns(objects: Vec<ObjectId>) -> Vec<ObjectId> {
    let tables: Vec<String> = objects
        .iter()
        .filter(|o| matches!(o.kind, Kind::Table | Kind::ForeignTable))
        .map(|o| o.name.clone())
        .collect();
    objects
        .into_iter()
        .filter(|o| {
            !(o.kind == Kind::Column && o.table.as_ref().is_some_and(|t| tables.contains(t)))
        })
        .collect()
}

/// The names a server message quotes, in order: `"x"`, and the quotes of translated messages.
fn quoted(message: &str) -> Vec<String> {
    const PAIRS: [(char, char); 4] = [('"', '"'), ('«', '»'), ('»', '«'), ('“', '”')];
    let mut names = Vec::new();
    let mut rest = message;
    while let Some((start, open)) = rest
        .char_indices()
        .find(|(_, c)| PAIRS.iter().any(|(o, _)| o == c))
    {
        let close = PAIRS.iter().find(|(o, _)| *o == open).map(|p| p.1).unwrap();
        let after = &rest[start + open.len_utf8()..];
        let Some(end) = after.find(close) else { break };
        names.push(after[..end].trim().to_string());
        rest = &after[end + close.len_utf8()..];
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::catalog::{Column, Constraint, Index, Relation};

    fn id(kind: Kind, name: &str, table: Option<&str>) -> ObjectId {
        ObjectId {
            kind,
            name: name.to_string(),
            table: table.map(str::to_string),
        }
    }

    fn sample() -> Catalog {
        Catalog {
            relations: vec![Relation {
                oid: 10,
                name: "documents".into(),
                relkind: "r".into(),
                definition: None,
                owned_by: None,
            }],
            columns: vec![Column {
                table_oid: 10,
                table: "documents".into(),
                number: 1,
                name: "id".into(),
                type_name: "integer".into(),
                not_null: true,
                default: None,
                identity: String::new(),
                generated: String::new(),
                collation: None,
            }],
            indexes: vec![Index {
                oid: 12,
                name: "documents_pkey".into(),
                table: "documents".into(),
                definition: String::new(),
                unique: true,
                primary: true,
                valid: true,
            }],
            constraints: vec![Constraint {
                oid: 11,
                name: "documents_pkey".into(),
                table: "documents".into(),
                contype: "p".into(),
                definition: "PRIMARY KEY (id)".into(),
                validated: true,
            }],
            ..Catalog::default()
        }
    }

    #[test]
    fn objects_come_in_creation_order_and_new_tables_keep_their_columns() {
        let after = sample();
        assert_eq!(
            after.objects(),
            [
                id(Kind::Table, "documents", None),
                id(Kind::Column, "id", Some("documents")),
                id(Kind::Constraint, "documents_pkey", Some("documents")),
                id(Kind::Index, "documents_pkey", Some("documents")),
            ]
        );
        let (created, dropped) = changes(&Catalog::default(), &after);
        assert_eq!(created.len(), 3, "{created:?}");
        assert!(dropped.is_empty());
        let mut before = after.clone();
        before.columns.clear();
        let (created, _) = changes(&before, &after);
        assert_eq!(created, [id(Kind::Column, "id", Some("documents"))]);
    }

    #[test]
    fn notices_name_objects_found_in_place() {
        let c = sample();
        let notice = |code: &str, message: &str| Notice {
            code: code.into(),
            message: message.into(),
        };
        assert_eq!(
            c.named_by(&notice(
                "42P07",
                "relation \"documents\" already exists, skipping"
            )),
            Some(id(Kind::Table, "documents", None))
        );
        assert_eq!(
            c.named_by(&notice(
                "42P07",
                "relation \"documents_pkey\" already exists, skipping"
            )),
            Some(id(Kind::Index, "documents_pkey", Some("documents")))
        );
        assert_eq!(
            c.named_by(&notice(
                "42701",
                "la colonne « id » de la relation « documents » existe déjà, poursuite du traitement"
            )),
            Some(id(Kind::Column, "id", Some("documents")))
        );
        assert_eq!(
            c.named_by(&notice("42P07", "relation \"gone\" already exists")),
            None
        );
        assert_eq!(
            c.named_by(&notice("00000", "table \"x\" does not exist, skipping")),
            None
        );
    }
}
