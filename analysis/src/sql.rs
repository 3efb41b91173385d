//! Parsing. Each statement is parsed on its own so every one carries the location it starts
//! at; a statement sqlparser rejects, or one the model does not understand, blocks the
//! analysis with `file:line:col` — it is never skipped.

use sqlparser::ast::Statement;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use crate::plan::Location;

/// The SQL dialect of the inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// PostgreSQL (default): unquoted identifiers fold to lower case; RLS is checked.
    Postgres,
    /// MySQL.
    Mysql,
    /// SQLite.
    Sqlite,
}

impl Dialect {
    /// The dialect's name as serialized (`postgres`, `mysql`, `sqlite`).
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }
}

impl std::str::FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            "mysql" => Ok(Dialect::Mysql),
            "sqlite" => Ok(Dialect::Sqlite),
            other => Err(format!("dialect: {other:?} is not postgres, mysql or sqlite")),
        }
    }
}

/// Why an analysis could not be completed: the input is unparsable or not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct Blocked {
    /// Where.
    pub location: Location,
    /// The parser's message, or what is not understood.
    pub message: String,
}

/// Parses `sql` (from `file`) into statements with their start locations.
///
/// # Errors
/// [`Blocked`] at the first statement sqlparser rejects.
pub fn parse(file: &str, sql: &str, dialect: Dialect) -> Result<Vec<(Location, Statement)>, Blocked> {
    let pg = sqlparser::dialect::PostgreSqlDialect {};
    let my = sqlparser::dialect::MySqlDialect {};
    let lite = sqlparser::dialect::SQLiteDialect {};
    let d: &dyn sqlparser::dialect::Dialect = match dialect {
        Dialect::Postgres => &pg,
        Dialect::Mysql => &my,
        Dialect::Sqlite => &lite,
    };
    let at = |line: u64, column: u64| Location { file: file.to_owned(), line, column };
    let mut parser =
        Parser::new(d).try_with_sql(sql).map_err(|e| Blocked { location: at(1, 1), message: e.to_string() })?;
    let mut out = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        let next = parser.peek_token();
        if next.token == Token::EOF {
            break;
        }
        let location = at(next.span.start.line, next.span.start.column);
        let statement =
            parser.parse_statement().map_err(|e| Blocked { location: location.clone(), message: e.to_string() })?;
        let after = parser.peek_token();
        if after.token != Token::SemiColon && after.token != Token::EOF {
            return Err(Blocked {
                location: at(after.span.start.line, after.span.start.column),
                message: format!("expected ';' or end of input after the statement, found {}", after.token),
            });
        }
        out.push((location, statement));
    }
    Ok(out)
}
