//! Read-only SQL over allow-listed tables and columns of one database: SQLite ([`sqlite`]) or
//! PostgreSQL ([`postgres`]).
//!
//! `query` is structured: table, columns, filters, order and limit arrive as JSON, are checked
//! here against the allow list ([`Plan`]), and each engine builds the statement from
//! allow-listed identifiers only, with every value a bound parameter, so there is no text to
//! inject into. `sql` (only when `raw_query` is on) takes one statement, checked by a real SQL
//! parser and then by the engine's own layers (see each module).
//!
//! Defends against SQL injection through arguments, stacked statements, writes and DDL,
//! attaching or reading other databases, schemas, tables or columns than those allowed,
//! dangerous functions (file access, extension loading, settings), and runaway queries (a
//! deadline and a row cap).
//!
//! Does not defend against disclosure of the rows the allow list permits. Those results pass
//! through Warden's output stages as untrusted text, like any upstream's.

pub mod postgres;
pub mod sqlite;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Which database, and how to reach it.
#[derive(Debug, Clone)]
pub enum Database {
    /// A SQLite file, opened read-only.
    Sqlite(PathBuf),
    /// A PostgreSQL server: a `postgres://` URL, an optional password (kept out of the URL),
    /// and the schema the tables are in.
    Postgres { url: String, password: Option<String>, schema: String },
}

/// Settings of the SQL tools.
#[derive(Debug, Clone)]
pub struct SqlSettings {
    pub database: Database,
    /// Table → allowed columns (`*`: all of them).
    pub tables: BTreeMap<String, Vec<String>>,
    pub raw_query: bool,
    pub max_rows: usize,
    pub timeout: Duration,
}

/// Largest value (SQLite) or row (PostgreSQL, as JSON) a query may return: a bigger one fails the
/// query with a clear error. `lpad('', 8000000, 'x')` or `repeat` over many rows would
/// otherwise fill Warden's memory before any output cap could apply.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most bytes of values in one result: rows past it are left out and the result says
/// `truncated`.
pub const MAX_RESULT_BYTES: usize = 8 << 20;

/// Comparison operators `query` accepts.
pub const OPS: &[&str] = &["=", "!=", "<", "<=", ">", ">=", "like"];

/// A checked `query` call: every identifier is one of the allowed ones, as declared.
#[derive(Debug)]
pub struct Plan<'a> {
    pub table: &'a str,
    pub columns: Vec<&'a str>,
    /// (column, operator from [`OPS`], value).
    pub filters: Vec<(&'a str, &'static str, &'a Value)>,
    pub order_by: Option<(&'a str, bool)>,
    pub limit: u64,
}

/// A database behind the tools.
trait Engine: Send + Sync {
    /// Run a checked structured query.
    fn structured(&self, plan: &Plan<'_>) -> Result<Value, String>;
    /// Check and run one raw statement.
    fn raw(&self, sql: &str) -> Result<Value, String>;
    /// The dialect, for the tool description.
    fn dialect(&self) -> &'static str;
}

pub struct Sql {
    settings: SqlSettings,
    /// Columns of each table as declared (all of them for `*`), in table order.
    columns: BTreeMap<String, Vec<String>>,
    engine: Box<dyn Engine>,
}

impl Sql {
    pub fn new(settings: SqlSettings) -> Result<Sql, String> {
        let (engine, columns): (Box<dyn Engine>, _) = match &settings.database {
            Database::Sqlite(_) => {
                let (e, c) = sqlite::Sqlite::open(&settings)?;
                (Box::new(e), c)
            }
            Database::Postgres { .. } => {
                // The driver runs its own runtime, which cannot start inside an async one: open
                // on a thread of its own, whoever calls.
                let (e, c) = std::thread::scope(|t| t.spawn(|| postgres::Postgres::open(&settings)).join())
                    .map_err(|_| "sql: opening PostgreSQL failed".to_string())??;
                (Box::new(e), c)
            }
        };
        Ok(Sql { settings, columns, engine })
    }

    /// One word for logs: the kind of database.
    pub fn dialect(&self) -> &'static str {
        self.engine.dialect()
    }

    pub fn tools(&self) -> Vec<Value> {
        let tables: Vec<&String> = self.columns.keys().collect();
        let described: Vec<String> = self.columns.iter().map(|(t, c)| format!("{t}({})", c.join(", "))).collect();
        let ro = json!({"readOnlyHint": true, "destructiveHint": false, "openWorldHint": false});
        let mut t = vec![json!({
            "name": "query", "title": "Query a table",
            "description": format!("Reads rows from one table. Tables and columns: {}. At most {} rows.", described.join("; "), self.settings.max_rows),
            "inputSchema": {"type": "object", "additionalProperties": false, "required": ["table"], "properties": {
                "table": {"type": "string", "enum": tables},
                "columns": {"type": "array", "items": {"type": "string"}, "maxItems": 64, "description": "Columns to return; default all allowed"},
                "where": {"type": "array", "maxItems": 16, "description": "Conditions, all of which must hold", "items": {"type": "object", "additionalProperties": false, "required": ["column", "op", "value"], "properties": {
                    "column": {"type": "string"}, "op": {"type": "string", "enum": OPS}, "value": {"type": ["string", "number", "boolean", "null"]}}}},
                "order_by": {"type": "string"},
                "descending": {"type": "boolean"},
                "limit": {"type": "integer", "minimum": 1, "maximum": self.settings.max_rows}}},
            "annotations": ro})];
        if self.settings.raw_query {
            t.push(json!({
                "name": "sql", "title": "Run a read-only SQL query",
                "description": format!("Runs exactly one read-only SELECT ({}) over these tables and columns: {}. At most {} rows.", self.engine.dialect(), described.join("; "), self.settings.max_rows),
                "inputSchema": {"type": "object", "additionalProperties": false, "required": ["query"], "properties": {
                    "query": {"type": "string", "maxLength": 10000}}},
                "annotations": ro}));
        }
        t
    }

    /// Run a tool; `None` when the name is not one of these tools.
    pub fn call(&self, name: &str, args: &Value) -> Option<Result<Value, String>> {
        Some(match name {
            "query" => self.plan(args).and_then(|p| self.engine.structured(&p)),
            "sql" if self.settings.raw_query => match args.get("query").and_then(Value::as_str) {
                Some(q) => self.engine.raw(q),
                None => Err("query: a string is required".into()),
            },
            _ => return None,
        })
    }

    /// Check a `query` call's arguments against the allow list.
    fn plan<'a>(&'a self, args: &'a Value) -> Result<Plan<'a>, String> {
        let table = args.get("table").and_then(Value::as_str).ok_or("table: a string is required")?;
        let (table, visible) =
            self.columns.get_key_value(table).ok_or_else(|| format!("table {table:?} is not allowed"))?;
        let column = |c: &str| -> Result<&'a str, String> {
            visible
                .iter()
                .find(|v| v.as_str() == c)
                .map(String::as_str)
                .ok_or_else(|| format!("column {c:?} is not allowed in {table}"))
        };
        let columns = match args.get("columns") {
            None | Some(Value::Null) => visible.iter().map(String::as_str).collect(),
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|c| c.as_str().ok_or("columns: strings expected".to_string()).and_then(column))
                .collect::<Result<_, _>>()?,
            _ => return Err("columns: a non-empty array of names".into()),
        };
        let mut filters = Vec::new();
        if let Some(w) = args.get("where").filter(|w| !w.is_null()) {
            for c in w.as_array().ok_or("where: an array of conditions")? {
                let col = column(c.get("column").and_then(Value::as_str).ok_or("where: column is required")?)?;
                let op = c.get("op").and_then(Value::as_str).ok_or("where: op is required")?;
                let op = OPS.iter().find(|o| o.eq_ignore_ascii_case(op)).ok_or(format!("where: unknown op {op:?}"))?;
                let value = c.get("value").unwrap_or(&Value::Null);
                if !matches!(value, Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)) {
                    return Err("value: a string, number, boolean or null".into());
                }
                filters.push((col, *op, value));
            }
        }
        let order_by = match args.get("order_by").and_then(Value::as_str) {
            Some(o) => Some((column(o)?, args.get("descending").and_then(Value::as_bool).unwrap_or(false))),
            None => None,
        };
        let max = self.settings.max_rows as u64;
        let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(max).clamp(1, max);
        Ok(Plan { table, columns, filters, order_by, limit })
    }
}

/// `"ident"`, with embedded quotes doubled (SQLite and PostgreSQL alike).
fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The columns of `table` the tools expose: those declared (each must be among `have`, the
/// table's real columns, in any case; the real name is kept), or all of `have` for `*`.
fn visible_columns(table: &str, declared: &[String], have: Vec<String>) -> Result<Vec<String>, String> {
    if declared.iter().any(|c| c == "*") {
        return Ok(have);
    }
    declared
        .iter()
        .map(|c| {
            have.iter()
                .find(|h| h.eq_ignore_ascii_case(c))
                .cloned()
                .ok_or(format!("sql.tables.{table}: no column {c:?}"))
        })
        .collect()
}

/// A result as the tools return it.
fn result(columns: Vec<String>, rows: Vec<Value>, truncated: bool) -> Value {
    json!({"columns": columns, "row_count": rows.len(), "truncated": truncated, "rows": rows})
}

/// Parse a raw statement with `dialect`: exactly one statement, and it must be a query.
fn parse_one(sql: &str, dialect: &dyn sqlparser::dialect::Dialect) -> Result<sqlparser::ast::Query, String> {
    use sqlparser::ast::Statement;
    let stmts = sqlparser::parser::Parser::new(dialect)
        .with_recursion_limit(64)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| format!("refused: not valid SQL ({e})"))?;
    match <[Statement; 1]>::try_from(stmts) {
        Ok([Statement::Query(q)]) => Ok(*q),
        Ok(_) => Err("refused: only a SELECT query is allowed".into()),
        Err(v) if v.is_empty() => Err("refused: no statement".into()),
        Err(_) => Err("refused: exactly one statement is allowed".into()),
    }
}
