//! The schema model and how DDL changes it. Identifiers are folded as PostgreSQL does
//! (unquoted → lower case; quoted kept), a leading `public.` schema is dropped, and types are
//! normalized (`int4`/`int` → `integer`, ...), so spelling never reads as a change.
//!
//! Statements with no effect on the model (transactions, `SET`, `COMMENT`, grants,
//! extensions) are understood as no-ops; any other statement the model does not cover is
//! refused with its location: the analysis fails closed.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, AlterTypeOperation, ColumnDef, ColumnOption, Expr, Ident, IndexColumn,
    ObjectName, ObjectNamePart, ObjectType, Statement, TableConstraint, UserDefinedTypeRepresentation,
};

use crate::plan::Location;
use crate::sql::Blocked;

/// A whole schema.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Schema {
    /// Tables by name.
    pub tables: BTreeMap<String, Table>,
    /// Enum types by name.
    pub enums: BTreeMap<String, EnumType>,
    /// Table renames applied by migrations (so a diff does not read them as drop + add).
    pub table_renames: Vec<Rename>,
    /// Column renames applied by migrations.
    pub column_renames: Vec<Rename>,
}

/// A rename: `table` is the table's name after the rename (for columns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rename {
    /// The table (columns only).
    pub table: Option<String>,
    /// Old name.
    pub from: String,
    /// New name.
    pub to: String,
    /// The statement.
    pub at: Location,
}

/// An enum type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnumType {
    /// Its values, in order.
    pub values: Vec<String>,
    /// Last statement that changed it.
    pub at: Location,
}

/// A table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    /// Columns by name.
    pub columns: BTreeMap<String, Column>,
    /// Primary key.
    pub primary_key: Option<Key>,
    /// Unique constraints and unique indexes, by name.
    pub uniques: BTreeMap<String, Key>,
    /// Foreign keys, by name.
    pub foreign_keys: BTreeMap<String, ForeignKey>,
    /// Row-level security enabled.
    pub rls_enabled: bool,
    /// Row-level security forced (applies to the table owner too).
    pub rls_forced: bool,
    /// Policies, by name.
    pub policies: BTreeMap<String, Policy>,
    /// Where the table was created.
    pub at: Location,
}

/// A column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    /// Normalized type.
    pub data_type: String,
    /// `NOT NULL`.
    pub not_null: bool,
    /// Default expression.
    pub default: Option<String>,
    /// Generated column.
    pub generated: bool,
    /// Added with a default, so existing rows were filled (stays true if the default is
    /// dropped later).
    pub backfilled: bool,
    /// Last statement that changed it.
    pub at: Location,
}

/// A primary key or unique constraint/index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Key {
    /// Columns, in order.
    pub columns: Vec<String>,
    /// Built `CONCURRENTLY` (no table lock while validating).
    pub concurrent: bool,
    /// Where it was defined.
    pub at: Location,
}

/// A foreign key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignKey {
    /// Local columns.
    pub columns: Vec<String>,
    /// Referenced table.
    pub ref_table: String,
    /// Where it was defined.
    pub at: Location,
}

/// A row-level-security policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// `USING` expression.
    pub using: Option<String>,
    /// `WITH CHECK` expression.
    pub with_check: Option<String>,
    /// Where it was defined.
    pub at: Location,
}

/// Folds an identifier as PostgreSQL does.
pub fn fold(ident: &Ident) -> String {
    if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() }
}

fn object_name(name: &ObjectName) -> String {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => fold(i),
            other => other.to_string().to_lowercase(),
        })
        .collect();
    let joined = parts.join(".");
    joined.strip_prefix("public.").map(str::to_owned).unwrap_or(joined)
}

fn normalize_type(t: &str) -> String {
    let t = t.to_lowercase();
    let base = match t.as_str() {
        "int" | "int4" | "integer" => "integer",
        "int8" | "bigint" => "bigint",
        "int2" | "smallint" => "smallint",
        "bool" | "boolean" => "boolean",
        "float8" | "double precision" => "double precision",
        "float4" | "real" => "real",
        "timestamptz" | "timestamp with time zone" => "timestamp with time zone",
        "varchar" | "character varying" => "character varying",
        other => other,
    };
    base.replace("varchar(", "character varying(")
}

fn index_column(c: &IndexColumn) -> String {
    match &c.column.expr {
        Expr::Identifier(i) => fold(i),
        other => other.to_string().to_lowercase(),
    }
}

fn unsupported(at: &Location, what: impl std::fmt::Display) -> Blocked {
    Blocked { location: at.clone(), message: format!("not understood, so the analysis is blocked: {what}") }
}

fn preview(stmt: &Statement) -> String {
    let s = stmt.to_string();
    if s.len() > 80 { format!("{}…", &s[..s.char_indices().nth(80).map_or(s.len(), |(i, _)| i)]) } else { s }
}

impl Schema {
    /// Applies every statement in order.
    ///
    /// # Errors
    /// [`Blocked`] at the first statement that cannot be applied.
    pub fn apply_all(&mut self, statements: &[(Location, Statement)]) -> Result<(), Blocked> {
        for (at, stmt) in statements {
            self.apply(at, stmt)?;
        }
        Ok(())
    }

    fn table_mut(&mut self, name: &str, at: &Location) -> Result<&mut Table, Blocked> {
        self.tables
            .get_mut(name)
            .ok_or_else(|| Blocked { location: at.clone(), message: format!("table {name} does not exist") })
    }

    /// Applies one statement.
    ///
    /// # Errors
    /// [`Blocked`] for statements the model does not understand or that contradict it.
    pub fn apply(&mut self, at: &Location, stmt: &Statement) -> Result<(), Blocked> {
        match stmt {
            Statement::CreateTable(ct) => {
                let name = object_name(&ct.name);
                if self.tables.contains_key(&name) && ct.if_not_exists {
                    return Ok(());
                }
                let mut table = Table {
                    columns: BTreeMap::new(),
                    primary_key: None,
                    uniques: BTreeMap::new(),
                    foreign_keys: BTreeMap::new(),
                    rls_enabled: false,
                    rls_forced: false,
                    policies: BTreeMap::new(),
                    at: at.clone(),
                };
                for col in &ct.columns {
                    add_column(&name, &mut table, col, at);
                }
                for constraint in &ct.constraints {
                    add_constraint(&name, &mut table, constraint, at)?;
                }
                self.tables.insert(name, table);
            }
            Statement::AlterTable(alter) => {
                let name = object_name(&alter.name);
                for op in &alter.operations {
                    self.alter_table(&name, op, at)?;
                }
            }
            Statement::CreateIndex(ci) => {
                let table_name = object_name(&ci.table_name);
                let columns: Vec<String> = ci.columns.iter().map(index_column).collect();
                let table = self.table_mut(&table_name, at)?;
                if ci.unique {
                    let name = ci
                        .name
                        .as_ref()
                        .map(object_name)
                        .unwrap_or_else(|| format!("{table_name}_{}_idx", columns.join("_")));
                    table.uniques.insert(name, Key { columns, concurrent: ci.concurrently, at: at.clone() });
                }
            }
            Statement::Drop { object_type, if_exists, names, .. } => {
                for n in names {
                    let name = object_name(n);
                    match object_type {
                        ObjectType::Table => {
                            if self.tables.remove(&name).is_none() && !if_exists {
                                return Err(Blocked {
                                    location: at.clone(),
                                    message: format!("DROP TABLE {name}: no such table"),
                                });
                            }
                        }
                        ObjectType::Index => {
                            for table in self.tables.values_mut() {
                                table.uniques.remove(&name);
                            }
                        }
                        ObjectType::Type => {
                            self.enums.remove(&name);
                        }
                        other => return Err(unsupported(at, format!("DROP {other}"))),
                    }
                }
            }
            Statement::CreateType { name, representation } => match representation {
                Some(UserDefinedTypeRepresentation::Enum { labels }) => {
                    let values = labels.iter().map(|l| l.value.clone()).collect();
                    self.enums.insert(object_name(name), EnumType { values, at: at.clone() });
                }
                _ => return Err(unsupported(at, preview(stmt))),
            },
            Statement::AlterType(alter) => {
                let name = object_name(&alter.name);
                let Some(e) = self.enums.get_mut(&name) else {
                    return Err(Blocked {
                        location: at.clone(),
                        message: format!("ALTER TYPE {name}: no such enum type"),
                    });
                };
                e.at = at.clone();
                match &alter.operation {
                    AlterTypeOperation::AddValue(add) => {
                        if !e.values.contains(&add.value.value) {
                            e.values.push(add.value.value.clone());
                        }
                    }
                    AlterTypeOperation::RenameValue(r) => {
                        for v in &mut e.values {
                            if *v == r.from.value {
                                v.clone_from(&r.to.value);
                            }
                        }
                    }
                    AlterTypeOperation::Rename(r) => {
                        let e = self.enums.remove(&name).expect("checked above");
                        self.enums.insert(fold(&r.new_name), e);
                    }
                }
            }
            Statement::CreatePolicy(cp) => {
                let table = self.table_mut(&object_name(&cp.table_name), at)?;
                table.policies.insert(
                    fold(&cp.name),
                    Policy {
                        using: cp.using.as_ref().map(|e| e.to_string()),
                        with_check: cp.with_check.as_ref().map(|e| e.to_string()),
                        at: at.clone(),
                    },
                );
            }
            Statement::DropPolicy(dp) => {
                let table = self.table_mut(&object_name(&dp.table_name), at)?;
                table.policies.remove(&fold(&dp.name));
            }
            Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Set(_)
            | Statement::Comment { .. }
            | Statement::Grant(_)
            | Statement::Revoke(_)
            | Statement::CreateExtension(_)
            // Data changes (backfills) leave the schema as it is.
            | Statement::Insert(_)
            | Statement::Update(_)
            | Statement::Delete(_) => {}
            other => return Err(unsupported(at, preview(other))),
        }
        Ok(())
    }

    fn alter_table(&mut self, name: &str, op: &AlterTableOperation, at: &Location) -> Result<(), Blocked> {
        match op {
            AlterTableOperation::RenameTable { table_name } => {
                let new = object_name(match table_name {
                    sqlparser::ast::RenameTableNameKind::As(n) | sqlparser::ast::RenameTableNameKind::To(n) => n,
                });
                let table = self
                    .tables
                    .remove(name)
                    .ok_or_else(|| Blocked { location: at.clone(), message: format!("table {name} does not exist") })?;
                self.tables.insert(new.clone(), table);
                self.table_renames.push(Rename { table: None, from: name.to_owned(), to: new, at: at.clone() });
                return Ok(());
            }
            AlterTableOperation::RenameColumn { old_column_name, new_column_name } => {
                let (from, to) = (fold(old_column_name), fold(new_column_name));
                let table = self.table_mut(name, at)?;
                let mut col = table.columns.remove(&from).ok_or_else(|| Blocked {
                    location: at.clone(),
                    message: format!("column {name}.{from} does not exist"),
                })?;
                col.at = at.clone();
                table.columns.insert(to.clone(), col);
                for key in table.primary_key.iter_mut().chain(table.uniques.values_mut()) {
                    for c in &mut key.columns {
                        if *c == from {
                            c.clone_from(&to);
                        }
                    }
                }
                self.column_renames.push(Rename { table: Some(name.to_owned()), from, to, at: at.clone() });
                return Ok(());
            }
            _ => {}
        }
        let table_name = name.to_owned();
        let table = self.table_mut(name, at)?;
        match op {
            AlterTableOperation::AddColumn { column_def, .. } => add_column(&table_name, table, column_def, at),
            AlterTableOperation::DropColumn { column_names, if_exists, .. } => {
                for c in column_names {
                    let c = fold(c);
                    if table.columns.remove(&c).is_none() && !if_exists {
                        return Err(Blocked {
                            location: at.clone(),
                            message: format!("column {table_name}.{c} does not exist"),
                        });
                    }
                }
            }
            AlterTableOperation::AlterColumn { column_name, op } => {
                let c = fold(column_name);
                let col = table.columns.get_mut(&c).ok_or_else(|| Blocked {
                    location: at.clone(),
                    message: format!("column {table_name}.{c} does not exist"),
                })?;
                col.at = at.clone();
                match op {
                    AlterColumnOperation::SetNotNull => col.not_null = true,
                    AlterColumnOperation::DropNotNull => col.not_null = false,
                    AlterColumnOperation::SetDefault { value } => col.default = Some(value.to_string()),
                    AlterColumnOperation::DropDefault => col.default = None,
                    AlterColumnOperation::SetDataType { data_type, .. } => {
                        col.data_type = normalize_type(&data_type.to_string())
                    }
                    other => return Err(unsupported(at, format!("ALTER COLUMN {other}"))),
                }
            }
            AlterTableOperation::AddConstraint { constraint, .. } => {
                add_constraint(&table_name, table, constraint, at)?
            }
            AlterTableOperation::DropConstraint { name: c, if_exists, .. } => {
                let c = fold(c);
                let removed = table.uniques.remove(&c).is_some()
                    || table.foreign_keys.remove(&c).is_some()
                    || (c == format!("{table_name}_pkey") && table.primary_key.take().is_some());
                if !removed && !if_exists {
                    return Err(Blocked {
                        location: at.clone(),
                        message: format!("constraint {c} on {table_name} is not in the model"),
                    });
                }
            }
            AlterTableOperation::DropPrimaryKey { .. } => table.primary_key = None,
            AlterTableOperation::ValidateConstraint { .. } => {}
            AlterTableOperation::EnableRowLevelSecurity => table.rls_enabled = true,
            AlterTableOperation::DisableRowLevelSecurity => table.rls_enabled = false,
            AlterTableOperation::ForceRowLevelSecurity => table.rls_forced = true,
            AlterTableOperation::NoForceRowLevelSecurity => table.rls_forced = false,
            other => return Err(unsupported(at, format!("ALTER TABLE {table_name} {other}"))),
        }
        Ok(())
    }
}

fn add_column(table_name: &str, table: &mut Table, col: &ColumnDef, at: &Location) {
    let name = fold(&col.name);
    let mut column = Column {
        data_type: normalize_type(&col.data_type.to_string()),
        not_null: false,
        default: None,
        generated: false,
        backfilled: false,
        at: at.clone(),
    };
    for option in &col.options {
        match &option.option {
            ColumnOption::NotNull => column.not_null = true,
            ColumnOption::Null => column.not_null = false,
            ColumnOption::Default(e) => {
                column.default = Some(e.to_string());
                column.backfilled = true;
            }
            ColumnOption::Generated { .. } | ColumnOption::Materialized(_) => column.generated = true,
            ColumnOption::PrimaryKey(_) => {
                column.not_null = true;
                table.primary_key = Some(Key { columns: vec![name.clone()], concurrent: false, at: at.clone() });
            }
            ColumnOption::Unique(_) => {
                table.uniques.insert(
                    format!("{table_name}_{name}_key"),
                    Key { columns: vec![name.clone()], concurrent: false, at: at.clone() },
                );
            }
            ColumnOption::ForeignKey(fk) => {
                table.foreign_keys.insert(
                    format!("{table_name}_{name}_fkey"),
                    ForeignKey {
                        columns: vec![name.clone()],
                        ref_table: object_name(&fk.foreign_table),
                        at: at.clone(),
                    },
                );
            }
            _ => {}
        }
    }
    // A serial column is NOT NULL with a generated default.
    if column.data_type.contains("serial") {
        column.not_null = true;
        column.generated = true;
    }
    table.columns.insert(name, column);
}

fn add_constraint(
    table_name: &str,
    table: &mut Table,
    constraint: &TableConstraint,
    at: &Location,
) -> Result<(), Blocked> {
    match constraint {
        TableConstraint::PrimaryKey(pk) => {
            let columns: Vec<String> = pk.columns.iter().map(index_column).collect();
            for c in &columns {
                if let Some(col) = table.columns.get_mut(c) {
                    col.not_null = true;
                }
            }
            table.primary_key = Some(Key { columns, concurrent: false, at: at.clone() });
        }
        TableConstraint::Unique(u) => {
            let columns: Vec<String> = u.columns.iter().map(index_column).collect();
            let name = u.name.as_ref().map(fold).unwrap_or_else(|| format!("{table_name}_{}_key", columns.join("_")));
            table.uniques.insert(name, Key { columns, concurrent: false, at: at.clone() });
        }
        TableConstraint::ForeignKey(fk) => {
            let columns: Vec<String> = fk.columns.iter().map(fold).collect();
            let name = fk.name.as_ref().map(fold).unwrap_or_else(|| format!("{table_name}_{}_fkey", columns.join("_")));
            table
                .foreign_keys
                .insert(name, ForeignKey { columns, ref_table: object_name(&fk.foreign_table), at: at.clone() });
        }
        TableConstraint::Check(_) => {}
        TableConstraint::UniqueUsingIndex(c) | TableConstraint::PrimaryKeyUsingIndex(c) => {
            // The constraint adopts an existing unique index (and its concurrency).
            let index = fold(&c.index_name);
            let key = table.uniques.remove(&index).ok_or_else(|| Blocked {
                location: at.clone(),
                message: format!("USING INDEX {index}: no unique index of that name on {table_name}"),
            })?;
            if matches!(constraint, TableConstraint::PrimaryKeyUsingIndex(_)) {
                table.primary_key = Some(key);
            } else {
                table.uniques.insert(c.name.as_ref().map(fold).unwrap_or(index), key);
            }
        }
        other => return Err(unsupported(at, format!("constraint {other}"))),
    }
    Ok(())
}
