//! The SQLite engine. `sql` statements must pass every layer below:
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

use super::{parse_one, quote, result, visible_columns, Database, Engine, Plan, SqlSettings};
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

/// Functions a query may call: the SQL guard's SQLite list (`warden_policy::guards::Dialect`)
/// and the `LIKE`/`GLOB` operators (SQLite authorizes them as functions). Everything else
/// (load_extension, randomblob, zeroblob, fts3_tokenizer, sqlite_*, printf's padding, …) is
/// refused by the authorizer.
fn allowed_function(name: &str) -> bool {
    warden_policy::guards::Dialect::Sqlite.allows_name(name)
        || name.eq_ignore_ascii_case("like")
        || name.eq_ignore_ascii_case("glob")
}

pub struct Sqlite {
    database: PathBuf,
    /// Lower-cased table → allowed lower-cased columns (`None`: all).
    allowed: Arc<BTreeMap<String, Option<Vec<String>>>>,
    max_rows: usize,
    timeout: Duration,
    pool: Mutex<Vec<Pooled>>,
}

struct Pooled {
    conn: Connection,
    /// Deadline of the running query, in ms since `epoch`.
    deadline: Arc<AtomicU64>,
    epoch: Instant,
}

impl Sqlite {
    /// Open the database and read the declared columns of each allowed table.
    pub fn open(settings: &SqlSettings) -> Result<(Sqlite, BTreeMap<String, Vec<String>>), String> {
        let Database::Sqlite(database) = &settings.database else { return Err("not a SQLite database".into()) };
        let mut allowed = BTreeMap::new();
        for (t, cols) in &settings.tables {
            let all = cols.iter().any(|c| c == "*");
            allowed.insert(t.to_lowercase(), (!all).then(|| cols.iter().map(|c| c.to_lowercase()).collect()));
        }
        let s = Sqlite {
            database: database.clone(),
            allowed: Arc::new(allowed),
            max_rows: settings.max_rows,
            timeout: settings.timeout,
            pool: Mutex::new(Vec::new()),
        };
        // Read the declared columns with a plain read-only connection (the authorizer would
        // refuse PRAGMA table_info).
        let conn = Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("sql database {}: {e}", database.display()))?;
        let mut columns = BTreeMap::new();
        for (t, cols) in &settings.tables {
            let mut st = conn.prepare("SELECT name FROM pragma_table_info(?1)").map_err(|e| e.to_string())?;
            let have: Vec<String> = st
                .query_map([t], |r| r.get(0))
                .map_err(|e| e.to_string())?
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            if have.is_empty() {
                return Err(format!("sql.tables: no table {t:?} in {}", database.display()));
            }
            columns.insert(t.clone(), visible_columns(t, cols, have)?);
        }
        let c = s.connect()?;
        s.pool.lock().expect("pool").push(c);
        Ok((s, columns))
    }

    fn connect(&self) -> Result<Pooled, String> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.database, flags).map_err(|e| e.to_string())?;
        conn.pragma_update(None, "query_only", true).map_err(|e| e.to_string())?;
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0).map_err(|e| e.to_string())?;
        conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, 100_000).map_err(|e| e.to_string())?;
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, super::MAX_VALUE_BYTES as i32).map_err(|e| e.to_string())?;
        // A row is at most this many values of at most MAX_VALUE_BYTES each.
        conn.set_limit(Limit::SQLITE_LIMIT_COLUMN, MAX_COLUMNS).map_err(|e| e.to_string())?;
        let allowed = self.allowed.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| authorize(&allowed, &ctx)));
        let deadline = Arc::new(AtomicU64::new(u64::MAX));
        let epoch = Instant::now();
        let d = deadline.clone();
        conn.progress_handler(1000, Some(move || epoch.elapsed().as_millis() as u64 > d.load(Ordering::Relaxed)));
        Ok(Pooled { conn, deadline, epoch })
    }

    fn run(&self, sql: &str, params: Vec<rusqlite::types::Value>) -> Result<Value, String> {
        let pooled = self.pool.lock().expect("pool").pop();
        let p = match pooled {
            Some(p) => p,
            None => self.connect()?,
        };
        let deadline = p.epoch.elapsed() + self.timeout;
        p.deadline.store(deadline.as_millis() as u64, Ordering::Relaxed);
        let out = execute(&p.conn, sql, params, self.max_rows, self.timeout);
        p.deadline.store(u64::MAX, Ordering::Relaxed);
        self.pool.lock().expect("pool").push(p);
        out
    }
}

impl Engine for Sqlite {
    fn structured(&self, plan: &Plan<'_>) -> Result<Value, String> {
        let cols: Vec<String> = plan.columns.iter().map(|c| quote(c)).collect();
        let mut sql = format!("SELECT {} FROM {}", cols.join(", "), quote(plan.table));
        let mut params = Vec::new();
        for (i, (col, op, value)) in plan.filters.iter().enumerate() {
            sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            params.push(bind(value)?);
            sql.push_str(&format!("{} {} ?{}", quote(col), op.to_uppercase(), params.len()));
        }
        if let Some((col, desc)) = plan.order_by {
            sql.push_str(&format!(" ORDER BY {}{}", quote(col), if desc { " DESC" } else { "" }));
        }
        sql.push_str(&format!(" LIMIT {}", plan.limit));
        self.run(&sql, params)
    }

    fn raw(&self, sql: &str) -> Result<Value, String> {
        // Layer 1; layers 2 to 5 are in `run` and the connection.
        parse_one(sql, &sqlparser::dialect::SQLiteDialect {})?;
        self.run(sql, Vec::new())
    }

    fn dialect(&self) -> &'static str {
        "SQLite"
    }
}

/// Most columns a statement may have (SQLite's own default is 2,000).
const MAX_COLUMNS: i32 = 100;

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
    let mut bytes = 0usize;
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
                    // Checked value by value: a wide row must not be copied whole first.
                    if bytes > super::MAX_RESULT_BYTES {
                        break;
                    }
                    let v = match r.get_ref(i).map_err(|e| e.to_string())? {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(i) => json!(i),
                        ValueRef::Real(f) => json!(f),
                        ValueRef::Text(t) => {
                            bytes += t.len();
                            Value::String(String::from_utf8_lossy(t).into_owned())
                        }
                        ValueRef::Blob(b) => json!({"blob_bytes": b.len()}),
                    };
                    bytes += n.len() + 8;
                    obj.insert(n.clone(), v);
                }
                if bytes > super::MAX_RESULT_BYTES {
                    truncated = true;
                    break;
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
    Ok(result(names, rows_out, truncated))
}

fn refused(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::MultipleStatement => "refused: exactly one statement is allowed".into(),
        rusqlite::Error::SqliteFailure(f, Some(m))
            if f.code == rusqlite::ErrorCode::AuthorizationForStatementDenied =>
        {
            format!("refused: {m}")
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::TooBig => {
            format!("refused: a value is larger than {} KiB (string or blob too big)", super::MAX_VALUE_BYTES >> 10)
        }
        rusqlite::Error::SqliteFailure(_, Some(m)) if m.starts_with("too many columns") => {
            format!("refused: at most {MAX_COLUMNS} columns ({m})")
        }
        e => format!("query failed: {e}"),
    }
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
        AuthAction::Function { function_name } if allowed_function(function_name) => Authorization::Allow,
        _ => Authorization::Deny,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Sql;

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
            database: Database::Sqlite(path.clone()),
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

    /// Issue 19, finding 13: a value built by the query itself (doubling a string) is capped, so
    /// a few rows cannot fill Warden's memory before any output cap applies.
    #[test]
    fn oversized_values_are_refused() {
        let (path, s) = db("big");
        let grow = |n: u32| {
            format!("WITH RECURSIVE c(s, n) AS (SELECT 'xxxxxxxx', 0 UNION ALL SELECT s || s, n + 1 FROM c WHERE n < {n}) SELECT s FROM c ORDER BY n DESC LIMIT 1")
        };
        let ok = sql(&s, &grow(10)).unwrap();
        assert_eq!(ok["rows"][0]["s"].as_str().unwrap().len(), 8 << 10);
        let r = sql(&s, &grow(18));
        assert!(
            r.as_ref().is_err_and(|e| e.contains("too big")),
            "a 2 MiB value: {:?}",
            r.map(|v| v["row_count"].clone())
        );
        let _ = std::fs::remove_file(path);
    }
}
