//! Classifies what changed between two schema models, for data cached under the old one.
//! Additions that cannot break a reader (a nullable column, a column with a default, a new
//! table or index) are not findings.

use std::collections::BTreeSet;

use crate::model::{Rename, Schema, Table};
use crate::plan::{Finding, Severity};

fn renamed<'a>(renames: &'a [Rename], table: Option<&str>, from: &str) -> Option<&'a Rename> {
    renames.iter().find(|r| r.table.as_deref() == table && r.from == from)
}

/// The findings of moving from `before` to `after`.
pub fn diff(before: &Schema, after: &Schema) -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, old) in &before.tables {
        let (new_name, rename) = match renamed(&after.table_renames, None, name) {
            Some(r) => (r.to.as_str(), Some(r)),
            None => (name.as_str(), None),
        };
        let Some(new) = after.tables.get(new_name) else {
            out.push(Finding::new(
                "table_dropped",
                Severity::Breaking,
                Some(name),
                None,
                &old.at,
                format!("table {name} is dropped: cached objects built from it describe data that no longer exists"),
            ));
            continue;
        };
        if let Some(r) = rename {
            out.push(Finding::new(
                "table_renamed",
                Severity::Breaking,
                Some(name),
                None,
                &r.at,
                format!(
                    "table {name} is renamed to {}: readers and cached objects still using the old name break",
                    r.to
                ),
            ));
        }
        diff_table(new_name, old, new, after, &mut out);
    }
    for (name, old) in &before.enums {
        let Some(new) = after.enums.get(name) else {
            out.push(Finding::new(
                "enum_dropped",
                Severity::Breaking,
                None,
                Some(name),
                &old.at,
                format!("enum type {name} is dropped"),
            ));
            continue;
        };
        for value in old.values.iter().filter(|v| !new.values.contains(v)) {
            out.push(Finding::new(
                "enum_value_removed",
                Severity::Breaking,
                None,
                Some(&format!("{name}.{value}")),
                &new.at,
                format!("enum {name} loses value {value:?}: cached objects carrying it cannot be read by the new code"),
            ));
        }
        for value in new.values.iter().filter(|v| !old.values.contains(v)) {
            out.push(Finding::new("enum_value_added", Severity::Risky, None, Some(&format!("{name}.{value}")), &new.at, format!(
                "enum {name} gains value {value:?}: readers on the old contract cannot deserialize objects carrying it"
            )));
        }
    }
    out
}

fn diff_table(table: &str, old: &Table, new: &Table, after: &Schema, out: &mut Vec<Finding>) {
    let t = Some(table);
    let mut renamed_to = BTreeSet::new();
    // Nullability that only follows a column into or out of a changed primary key is part
    // of the primary_key_changed finding, not a change of its own.
    let in_pk = |tbl: &Table, c: &str| tbl.primary_key.as_ref().is_some_and(|k| k.columns.iter().any(|x| x == c));
    let pk_changed = old.primary_key.as_ref().map(|k| &k.columns) != new.primary_key.as_ref().map(|k| &k.columns);
    for (col, old_col) in &old.columns {
        let (new_col_name, rename) = match renamed(&after.column_renames, t, col) {
            Some(r) => (r.to.as_str(), Some(r)),
            None => (col.as_str(), None),
        };
        let Some(new_col) = new.columns.get(new_col_name) else {
            out.push(Finding::new(
                "column_dropped",
                Severity::Breaking,
                t,
                Some(col),
                &old_col.at,
                format!(
                    "column {table}.{col} is dropped: cached objects still carry it and new readers no longer expect it"
                ),
            ));
            continue;
        };
        if let Some(r) = rename {
            renamed_to.insert(r.to.clone());
            out.push(Finding::new(
                "column_renamed",
                Severity::Breaking,
                t,
                Some(col),
                &r.at,
                format!("column {table}.{col} is renamed to {}: cached objects use the old field name", r.to),
            ));
        }
        let at = &new_col.at;
        if old_col.data_type != new_col.data_type {
            out.push(Finding::new(
                "column_type_changed",
                Severity::Breaking,
                t,
                Some(new_col_name),
                at,
                format!(
                    "column {table}.{new_col_name} changes type from {} to {}: cached values have the old type",
                    old_col.data_type, new_col.data_type
                ),
            ));
        }
        let follows_pk = pk_changed && in_pk(old, col) != in_pk(new, new_col_name);
        if !old_col.not_null && new_col.not_null && !follows_pk {
            out.push(Finding::new("column_set_not_null", Severity::Risky, t, Some(new_col_name), at, format!(
                "column {table}.{new_col_name} becomes NOT NULL: the migration fails on existing NULLs, and objects cached with null values contradict the new contract"
            )));
        }
        if old_col.not_null && !new_col.not_null && !follows_pk {
            out.push(Finding::new(
                "not_null_dropped",
                Severity::Risky,
                t,
                Some(new_col_name),
                at,
                format!(
                    "column {table}.{new_col_name} may now be NULL: readers on the old contract do not expect null"
                ),
            ));
        }
        if old_col.default != new_col.default {
            out.push(Finding::new(
                "default_changed",
                Severity::Safe,
                t,
                Some(new_col_name),
                at,
                format!(
                    "default of {table}.{new_col_name} changes from {} to {}: only new rows are affected",
                    old_col.default.as_deref().unwrap_or("none"),
                    new_col.default.as_deref().unwrap_or("none")
                ),
            ));
        }
    }
    for (col, new_col) in &new.columns {
        if old.columns.contains_key(col) || renamed_to.contains(col) {
            continue;
        }
        if new_col.not_null && new_col.default.is_none() && !new_col.generated && !new_col.backfilled {
            out.push(Finding::new("not_null_column_added_without_default", Severity::Breaking, t, Some(col), &new_col.at, format!(
                "column {table}.{col} is added NOT NULL without a default: existing rows cannot satisfy it and cached objects lack the field"
            )));
        }
    }
    let old_pk = old.primary_key.as_ref().map(|k| &k.columns);
    let new_pk = new.primary_key.as_ref().map(|k| &k.columns);
    if old_pk.is_some() && old_pk != new_pk {
        let at = new.primary_key.as_ref().map_or(&new.at, |k| &k.at);
        out.push(Finding::new(
            "primary_key_changed",
            Severity::Breaking,
            t,
            None,
            at,
            format!(
                "primary key of {table} changes from ({}) to ({}): cached objects are keyed by the old identity",
                old_pk.map(|c| c.join(", ")).unwrap_or_default(),
                new_pk.map(|c| c.join(", ")).unwrap_or_default()
            ),
        ));
    }
    let old_uniques: BTreeSet<&Vec<String>> = old.uniques.values().map(|k| &k.columns).collect();
    for (name, key) in &new.uniques {
        let existing = key.columns.iter().all(|c| old.columns.contains_key(c));
        // Built concurrently, the index neither locks the table nor half-applies.
        if existing && !key.concurrent && !old_uniques.contains(&key.columns) {
            out.push(Finding::new("unique_added_on_existing_column", Severity::Risky, t, Some(&key.columns.join(",")), &key.at, format!(
                "unique constraint {name} on existing column(s) of {table}: the migration fails on duplicates and locks the table while it validates (build the index CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX)"
            )));
        }
    }
    for (name, fk) in &old.foreign_keys {
        let kept = new.foreign_keys.values().any(|n| n.columns == fk.columns && n.ref_table == fk.ref_table);
        if !kept {
            out.push(Finding::new(
                "foreign_key_dropped",
                Severity::Risky,
                t,
                Some(&fk.columns.join(",")),
                &fk.at,
                format!(
                    "foreign key {name} ({table} -> {}) is dropped: rows may now reference missing data",
                    fk.ref_table
                ),
            ));
        }
    }
}
