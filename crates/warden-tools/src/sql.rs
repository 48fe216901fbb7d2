//! Read-only SQL over one SQLite database, limited to allow-listed tables and columns.
//!
//! `query` is structured: table, columns, filters, order and limit arrive as JSON. The statement
//! is built here from allow-listed identifiers only, and every value is a bound parameter, so
//! there is no text to inject into. `sql` (only when `raw_query` is on) takes one statement,
//! which must pass every layer below:
//!
//! 1. a real SQL parser (sqlparser, SQLite dialect) must find exactly one statement, a `SELECT`
//!    query;
//! 2. SQLite must prepare it as a single statement that it reports read-only;
//! 3. an authorizer allows only reads of allow-listed columns, SELECT, recursive CTEs and a
//!    list of plain functions. It refuses everything else: ATTACH, PRAGMA, writes, DDL,
//!    transactions, `load_extension`, `randomblob`, and any table not on the list, including
//!    `sqlite_schema`;
//! 4. the connection is opened read-only (`SQLITE_OPEN_READ_ONLY`) with `query_only` on,
//!    attached databases limited to 0, and extension loading off (rusqlite's default);
//! 5. a progress handler stops the query at its deadline, and rows beyond `max_rows` are not
//!    read.
//!
//! Defends against SQL injection through arguments, stacked statements
//! (`SELECT 1; DROP TABLE t`), `COMMIT; DROP …`, ATTACH of another file, PRAGMA writes,
//! extension loading, reading tables or columns that are not allowed, and runaway queries.
//!
//! Does not defend against disclosure of the rows the allow list permits. Those results pass
//! through Warden's output stages as untrusted text, like any upstream's.

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Settings of the SQL tools.
#[derive(Debug, Clone)]
pub struct SqlSettings {
    pub database: PathBuf,
    /// Table → allowed columns (`*`: all of them).
    pub tables: BTreeMap<String, Vec<String>>,
    pub raw_query: bool,
    pub max_rows: usize,
    pub timeout: Duration,
}

/// Functions a query may call. Everything else (load_extension, randomblob, zeroblob,
/// fts3_tokenizer, sqlite_*, …) is refused by the authorizer.
const FUNCTIONS: &[&str] = &[
    "count",
    "sum",
    "total",
    "avg",
    "min",
    "max",
    "group_concat",
    "string_agg",
    "lower",
    "upper",
    "length",
    "abs",
    "round",
    "coalesce",
    "ifnull",
    "nullif",
    "iif",
    "substr",
    "substring",
    "trim",
    "ltrim",
    "rtrim",
    "replace",
    "instr",
    "like",
    "glob",
    "date",
    "time",
    "datetime",
    "julianday",
    "unixepoch",
    "strftime",
    "typeof",
    "printf",
    "format",
    "hex",
    "quote",
    "sign",
    "char",
    "unicode",
];

const OPS: &[&str] = &["=", "!=", "<", "<=", ">", ">=", "like"];

pub struct Sql {
    settings: SqlSettings,
    /// Lower-cased table → allowed lower-cased columns (`None`: all).
    allowed: Arc<BTreeMap<String, Option<Vec<String>>>>,
    /// Columns of each table as declared, for `*` and for the schema the tools describe.
    columns: BTreeMap<String, Vec<String>>,
    pool: Mutex<Vec<Pooled>>,
}

struct Pooled {
    conn: Connection,
    /// Deadline of the running query, in ms since `epoch`.
    deadline: Arc<AtomicU64>,
    epoch: Instant,
}

impl Sql {
    pub fn new(settings: SqlSettings) -> Result<Sql, String> {
        let mut allowed = BTreeMap::new();
        for (t, cols) in &settings.tables {
            let all = cols.iter().any(|c| c == "*");
            allowed.insert(t.to_lowercase(), (!all).then(|| cols.iter().map(|c| c.to_lowercase()).collect()));
        }
        let mut s =
            Sql { settings, allowed: Arc::new(allowed), columns: BTreeMap::new(), pool: Mutex::new(Vec::new()) };
        // Read the declared columns with a plain read-only connection (the authorizer would
        // refuse PRAGMA table_info).
        let conn = Connection::open_with_flags(&s.settings.database, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("sql database {}: {e}", s.settings.database.display()))?;
        for (t, cols) in &s.settings.tables {
            let mut st = conn.prepare("SELECT name FROM pragma_table_info(?1)").map_err(|e| e.to_string())?;
            let have: Vec<String> = st
                .query_map([t], |r| r.get(0))
                .map_err(|e| e.to_string())?
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            if have.is_empty() {
                return Err(format!("sql.tables: no table {t:?} in {}", s.settings.database.display()));
            }
            for c in cols.iter().filter(|c| *c != "*") {
                if !have.iter().any(|h| h.eq_ignore_ascii_case(c)) {
                    return Err(format!("sql.tables.{t}: no column {c:?}"));
                }
            }
            let visible = if cols.iter().any(|c| c == "*") { have } else { cols.clone() };
            s.columns.insert(t.clone(), visible);
        }
        let c = s.connect()?;
        s.pool.lock().expect("pool").push(c);
        Ok(s)
    }

    fn connect(&self) -> Result<Pooled, String> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.settings.database, flags).map_err(|e| e.to_string())?;
        conn.pragma_update(None, "query_only", true).map_err(|e| e.to_string())?;
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0).map_err(|e| e.to_string())?;
        conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, 100_000).map_err(|e| e.to_string())?;
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, 10_000_000).map_err(|e| e.to_string())?;
        let allowed = self.allowed.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| authorize(&allowed, &ctx)));
        let deadline = Arc::new(AtomicU64::new(u64::MAX));
        let epoch = Instant::now();
        let d = deadline.clone();
        conn.progress_handler(1000, Some(move || epoch.elapsed().as_millis() as u64 > d.load(Ordering::Relaxed)));
        Ok(Pooled { conn, deadline, epoch })
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
                "description": format!("Runs exactly one read-only SELECT (SQLite) over these tables and columns: {}. At most {} rows.", described.join("; "), self.settings.max_rows),
                "inputSchema": {"type": "object", "additionalProperties": false, "required": ["query"], "properties": {
                    "query": {"type": "string", "maxLength": 10000}}},
                "annotations": ro}));
        }
        t
    }

    /// Run a tool; `None` when the name is not one of these tools.
    pub fn call(&self, name: &str, args: &Value) -> Option<Result<Value, String>> {
        Some(match name {
            "query" => self.structured(args),
            "sql" if self.settings.raw_query => match args.get("query").and_then(Value::as_str) {
                Some(q) => check_raw(q).and_then(|()| self.run(q, Vec::new())),
                None => Err("query: a string is required".into()),
            },
            _ => return None,
        })
    }

    fn structured(&self, args: &Value) -> Result<Value, String> {
        let table = args.get("table").and_then(Value::as_str).ok_or("table: a string is required")?;
        let (table, visible) =
            self.columns.get_key_value(table).ok_or_else(|| format!("table {table:?} is not allowed"))?;
        let column = |c: &str| -> Result<String, String> {
            visible
                .iter()
                .find(|v| v.as_str() == c)
                .map(|v| quote(v))
                .ok_or_else(|| format!("column {c:?} is not allowed in {table}"))
        };
        let cols: Vec<String> = match args.get("columns") {
            None | Some(Value::Null) => visible.iter().map(|c| quote(c)).collect(),
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|c| c.as_str().ok_or("columns: strings expected".to_string()).and_then(&column))
                .collect::<Result<_, _>>()?,
            _ => return Err("columns: a non-empty array of names".into()),
        };
        let mut sql = format!("SELECT {} FROM {}", cols.join(", "), quote(table));
        let mut params: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(w) = args.get("where").filter(|w| !w.is_null()) {
            let conds = w.as_array().ok_or("where: an array of conditions")?;
            let mut parts = Vec::new();
            for c in conds {
                let col = column(c.get("column").and_then(Value::as_str).ok_or("where: column is required")?)?;
                let op = c.get("op").and_then(Value::as_str).ok_or("where: op is required")?;
                let op = OPS.iter().find(|o| o.eq_ignore_ascii_case(op)).ok_or(format!("where: unknown op {op:?}"))?;
                params.push(bind(c.get("value").unwrap_or(&Value::Null))?);
                parts.push(format!("{col} {} ?{}", op.to_uppercase(), params.len()));
            }
            if !parts.is_empty() {
                sql.push_str(" WHERE ");
                sql.push_str(&parts.join(" AND "));
            }
        }
        if let Some(o) = args.get("order_by").and_then(Value::as_str) {
            let desc = args.get("descending").and_then(Value::as_bool).unwrap_or(false);
            sql.push_str(&format!(" ORDER BY {}{}", column(o)?, if desc { " DESC" } else { "" }));
        }
        let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(self.settings.max_rows as u64);
        sql.push_str(&format!(" LIMIT {}", limit.clamp(1, self.settings.max_rows as u64)));
        self.run(&sql, params)
    }

    fn run(&self, sql: &str, params: Vec<rusqlite::types::Value>) -> Result<Value, String> {
        let pooled = self.pool.lock().expect("pool").pop();
        let p = match pooled {
            Some(p) => p,
            None => self.connect()?,
        };
        let deadline = p.epoch.elapsed() + self.settings.timeout;
        p.deadline.store(deadline.as_millis() as u64, Ordering::Relaxed);
        let out = execute(&p.conn, sql, params, self.settings.max_rows, self.settings.timeout);
        p.deadline.store(u64::MAX, Ordering::Relaxed);
        self.pool.lock().expect("pool").push(p);
        out
    }
}

fn execute(
    conn: &Connection,
    sql: &str,
    params: Vec<rusqlite::types::Value>,
    max_rows: usize,
    timeout: Duration,
) -> Result<Value, String> {
    let mut st = conn.prepare(sql).map_err(|e| refused(&e))?;
    if !st.readonly() {
        return Err("refused: not a read-only statement".into());
    }
    let names: Vec<String> = st.column_names().iter().map(|s| s.to_string()).collect();
    let mut rows_out = Vec::new();
    let mut truncated = false;
    let mut rows = st.query(rusqlite::params_from_iter(params)).map_err(|e| refused(&e))?;
    loop {
        match rows.next() {
            Ok(Some(r)) => {
                if rows_out.len() == max_rows {
                    truncated = true;
                    break;
                }
                let mut obj = Map::new();
                for (i, n) in names.iter().enumerate() {
                    let v = match r.get_ref(i).map_err(|e| e.to_string())? {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(i) => json!(i),
                        ValueRef::Real(f) => json!(f),
                        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(b) => json!({"blob_bytes": b.len()}),
                    };
                    obj.insert(n.clone(), v);
                }
                rows_out.push(Value::Object(obj));
            }
            Ok(None) => break,
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::OperationInterrupted => {
                return Err(format!("the query ran past its {} ms limit and was stopped", timeout.as_millis()));
            }
            Err(e) => return Err(refused(&e)),
        }
    }
    Ok(json!({"columns": names, "row_count": rows_out.len(), "truncated": truncated, "rows": rows_out}))
}

fn refused(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::MultipleStatement => "refused: exactly one statement is allowed".into(),
        rusqlite::Error::SqliteFailure(f, Some(m))
            if f.code == rusqlite::ErrorCode::AuthorizationForStatementDenied =>
        {
            format!("refused: {m}")
        }
        e => format!("query failed: {e}"),
    }
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn bind(v: &Value) -> Result<rusqlite::types::Value, String> {
    use rusqlite::types::Value as V;
    Ok(match v {
        Value::Null => V::Null,
        Value::Bool(b) => V::Integer(*b as i64),
        Value::Number(n) => match n.as_i64() {
            Some(i) => V::Integer(i),
            None => V::Real(n.as_f64().ok_or("value: number out of range")?),
        },
        Value::String(s) => V::Text(s.clone()),
        _ => return Err("value: a string, number, boolean or null".into()),
    })
}

/// Layer 1: the parser must see exactly one statement, and it must be a query.
fn check_raw(sql: &str) -> Result<(), String> {
    use sqlparser::ast::Statement;
    use sqlparser::dialect::SQLiteDialect;
    let stmts = sqlparser::parser::Parser::new(&SQLiteDialect {})
        .with_recursion_limit(64)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| format!("refused: not valid SQL ({e})"))?;
    match stmts.as_slice() {
        [Statement::Query(_)] => Ok(()),
        [] => Err("refused: no statement".into()),
        [_] => Err("refused: only a SELECT query is allowed".into()),
        _ => Err("refused: exactly one statement is allowed".into()),
    }
}

/// Layer 3: what a statement may do while it is prepared.
fn authorize(allowed: &BTreeMap<String, Option<Vec<String>>>, ctx: &AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Select | AuthAction::Recursive => Authorization::Allow,
        // a common table expression's own rows: no database (the tables it reads are checked
        // on their own)
        AuthAction::Read { .. } if ctx.database_name.is_none() => Authorization::Allow,
        // real tables: only in the main database
        AuthAction::Read { table_name, column_name } if ctx.database_name == Some("main") => match allowed
            .get(&table_name.to_lowercase())
        {
            Some(None) => Authorization::Allow,
            Some(Some(cols)) if column_name.is_empty() || cols.iter().any(|c| c.eq_ignore_ascii_case(column_name)) => {
                Authorization::Allow
            }
            _ => Authorization::Deny,
        },
        AuthAction::Function { function_name } if FUNCTIONS.iter().any(|f| f.eq_ignore_ascii_case(function_name)) => {
            Authorization::Allow
        }
        _ => Authorization::Deny,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(tag: &str) -> (PathBuf, Sql) {
        let path = std::env::temp_dir().join(format!("warden-sql-{tag}-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE products(id INTEGER PRIMARY KEY, name TEXT, price REAL);
             CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT, email TEXT, ssn TEXT);
             CREATE TABLE secrets(k TEXT, v TEXT);
             INSERT INTO products VALUES (1,'tea',3.5),(2,'coffee',4.0),(3,'cake',5.25);
             INSERT INTO customers VALUES (1,'Ada','ada@example.com','123-45-6789');
             INSERT INTO secrets VALUES ('api','SECRET-VALUE');",
        )
        .unwrap();
        drop(c);
        let mut tables = BTreeMap::new();
        tables.insert("products".into(), vec!["*".into()]);
        tables.insert("customers".into(), vec!["id".into(), "name".into()]);
        let s = Sql::new(SqlSettings {
            database: path.clone(),
            tables,
            raw_query: true,
            max_rows: 2,
            timeout: Duration::from_millis(300),
        })
        .unwrap();
        (path, s)
    }

    fn sql(s: &Sql, q: &str) -> Result<Value, String> {
        s.call("sql", &json!({ "query": q })).unwrap()
    }

    #[test]
    fn structured_query_binds_values_and_checks_names() {
        let (path, s) = db("structured");
        let r = s
            .call("query", &json!({"table": "products", "where": [{"column": "price", "op": ">", "value": 3.6}], "order_by": "price"}))
            .unwrap()
            .unwrap();
        assert_eq!(r["rows"][0]["name"], "coffee");
        assert_eq!(r["row_count"], 2);
        // the reference server's injection: a value is only ever a value
        let r = s
            .call(
                "query",
                &json!({"table": "products", "where": [{"column": "name", "op": "=", "value": "x' OR '1'='1"}]}),
            )
            .unwrap()
            .unwrap();
        assert_eq!(r["row_count"], 0);
        for bad in [
            json!({"table": "secrets"}),
            json!({"table": "customers", "columns": ["ssn"]}),
            json!({"table": "customers", "where": [{"column": "ssn", "op": "=", "value": "1"}]}),
            json!({"table": "products; DROP TABLE products"}),
            json!({"table": "products", "columns": ["name FROM secrets --"]}),
            json!({"table": "products", "order_by": "(SELECT v FROM secrets)"}),
            json!({"table": "products", "where": [{"column": "id", "op": "= 1 OR 1=1 --", "value": 1}]}),
        ] {
            let r = s.call("query", &bad).unwrap();
            assert!(r.is_err(), "{bad} gave {r:?}");
        }
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn raw_query_refuses_everything_but_one_allowed_select() {
        let (path, s) = db("raw");
        let r = sql(&s, "SELECT name, price FROM products WHERE price < 5 ORDER BY id").unwrap();
        assert_eq!(r["rows"][1]["name"], "coffee");
        // row cap: three rows exist, two come back, marked truncated
        let r = sql(&s, "SELECT id FROM products").unwrap();
        assert_eq!(r["row_count"], 2);
        assert_eq!(r["truncated"], true);
        assert!(sql(&s, "SELECT count(*) AS n FROM customers").is_ok());
        for q in [
            "SELECT 1; DROP TABLE products",
            "COMMIT; DROP SCHEMA public CASCADE;",
            "DROP TABLE products",
            "DELETE FROM products",
            "INSERT INTO products VALUES (9,'x',1)",
            "UPDATE products SET price = 0",
            "ATTACH DATABASE '/tmp/evil.db' AS evil",
            "SELECT load_extension('/tmp/evil.so')",
            "PRAGMA query_only = OFF",
            "PRAGMA writable_schema = ON",
            "SELECT * FROM secrets",
            "SELECT ssn FROM customers",
            "SELECT * FROM customers",
            "SELECT sql FROM sqlite_master",
            "SELECT name FROM products UNION SELECT v FROM secrets",
            "WITH x AS (SELECT v FROM secrets) SELECT * FROM x",
            "SELECT randomblob(1000000000)",
            "VACUUM INTO '/tmp/copy.db'",
            "CREATE TABLE t(x)",
            "",
            "SELECT",
        ] {
            let r = sql(&s, q);
            assert!(r.is_err(), "{q:?} gave {r:?}");
            let text = format!("{r:?}");
            assert!(!text.contains("SECRET-VALUE") && !text.contains("123-45-6789"), "{q}: {text}");
        }
        // the database is unchanged
        let c = Connection::open(&path).unwrap();
        let n: i64 = c.query_row("SELECT count(*) FROM products", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 3);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn runaway_query_is_stopped_at_its_deadline() {
        let (path, s) = db("slow");
        let t = Instant::now();
        let r = sql(&s, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c");
        assert!(r.as_ref().unwrap_err().contains("limit"), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
        // the pooled connection still works afterwards
        assert!(sql(&s, "SELECT id FROM products").is_ok());
        let _ = std::fs::remove_file(path);
    }
}
