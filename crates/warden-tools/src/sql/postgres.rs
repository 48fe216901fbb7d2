//! The PostgreSQL engine. `sql` statements must pass every layer below:
//!
//! 1. a real SQL parser (sqlparser, PostgreSQL dialect) must find exactly one statement, a
//!    plain query: no `SELECT … INTO`, `FOR UPDATE`, `TABLE t`, data-modifying CTEs or table
//!    functions in `FROM`;
//! 2. the query is rewritten: every reference to an allowed table becomes a subquery of its
//!    allowed columns, fully qualified (`(SELECT "id", "name" FROM "public"."customers") AS
//!    customers`), so nothing in the query, a whole-row reference included, can see another
//!    column. Any other relation is refused, except a CTE name that is no system catalog's;
//! 3. every function called must be on a list of plain functions (no `pg_read_file`,
//!    `set_config`, `dblink`, `lo_import`, `pg_sleep`, `nextval`, …), and a qualified column
//!    reference must end in a known column or alias (no attribute-notation function calls);
//! 4. the statement sent is printed from the checked tree, never the caller's text, wrapped as
//!    `SELECT row_to_json(q)::text FROM (…) q LIMIT max_rows + 1`, in a `READ ONLY` transaction
//!    with `statement_timeout`, an empty `search_path` (an unqualified name can only reach
//!    `pg_catalog`), over the extended protocol (one statement per message), and rolled back.
//!
//! Connect as a role that may read only what the tools expose: the layers above do not depend
//! on it, but a role without superuser or `pg_read_server_files` makes the file-reading
//! functions unreachable even if a layer had a gap. Not yet: TLS to the server (the URL must
//! not ask for it; use loopback or a Unix socket).

use super::{
    parse_one, quote, result, visible_columns, Database, Engine, Plan, SqlSettings, MAX_RESULT_BYTES, MAX_VALUE_BYTES,
};
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::Client;
use serde_json::Value;
use sqlparser::ast::{
    AccessExpr, Expr, Ident, ObjectName, ObjectNamePart, Query, SelectItem, SetExpr, TableAlias, TableFactor, Visit,
    VisitMut, Visitor, VisitorMut,
};
use sqlparser::dialect::PostgreSqlDialect;
use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::time::Duration;
use warden_policy::guards::Dialect;

pub struct Postgres {
    config: warden_audit::pg_tls::PgTarget,
    schema: String,
    /// Allowed table → the subquery of its allowed columns that replaces it.
    views: BTreeMap<String, Query>,
    /// Allowed table → allowed column → its type (`format_type`), for casting bound values.
    types: BTreeMap<String, BTreeMap<String, String>>,
    /// Names of `pg_catalog`'s relations: no CTE may take one (an out-of-scope reference to it
    /// would reach the catalog).
    catalog: HashSet<String>,
    /// Lower-cased names a qualified column reference may end in: the allowed columns.
    columns: HashSet<String>,
    max_rows: usize,
    timeout: Duration,
    pool: Mutex<Vec<Client>>,
}

impl Postgres {
    /// Connect, and read the columns of each allowed table and the catalog's relation names.
    pub fn open(settings: &SqlSettings) -> Result<(Postgres, BTreeMap<String, Vec<String>>), String> {
        let Database::Postgres { url, password, schema } = &settings.database else {
            return Err("not a PostgreSQL database".into());
        };
        let config =
            warden_audit::pg::config(url, password.as_deref(), "warden-sql").map_err(|e| format!("sql.{e}"))?;
        let mut pg = Postgres {
            config,
            schema: schema.clone(),
            views: BTreeMap::new(),
            types: BTreeMap::new(),
            catalog: HashSet::new(),
            columns: HashSet::new(),
            max_rows: settings.max_rows,
            timeout: settings.timeout,
            pool: Mutex::new(Vec::new()),
        };
        let mut client = pg.connect()?;
        let mut exposed = BTreeMap::new();
        for (t, declared) in &settings.tables {
            let rows = client
                .query(
                    "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a \
                     WHERE a.attrelid = (SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
                     ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 \
                     AND c.relkind IN ('r', 'v', 'm', 'p', 'f')) AND a.attnum > 0 AND NOT a.attisdropped \
                     ORDER BY a.attnum",
                    &[schema, t],
                )
                .map_err(|e| message(&e))?;
            let have: BTreeMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            if have.is_empty() {
                return Err(format!("sql.tables: no table {t:?} in schema {schema:?}"));
            }
            let ordered: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            let visible = visible_columns(t, declared, ordered)?;
            let cols: Vec<String> = visible.iter().map(|c| quote(c)).collect();
            let view = format!("SELECT {} FROM {}.{}", cols.join(", "), quote(schema), quote(t));
            pg.views.insert(t.clone(), parse_one(&view, &PostgreSqlDialect {})?);
            pg.types.insert(t.clone(), visible.iter().map(|c| (c.clone(), have[c].clone())).collect());
            pg.columns.extend(visible.iter().map(|c| c.to_lowercase()));
            exposed.insert(t.clone(), visible);
        }
        let rows = client
            .query("SELECT relname::text FROM pg_catalog.pg_class WHERE relnamespace = 'pg_catalog'::regnamespace", &[])
            .map_err(|e| message(&e))?;
        pg.catalog = rows.iter().map(|r| r.get(0)).collect();
        pg.pool.lock().expect("pool").push(client);
        Ok((pg, exposed))
    }

    fn connect(&self) -> Result<Client, String> {
        self.config.connect().map_err(|e| format!("sql: cannot connect to PostgreSQL: {}", message(&e)))
    }

    /// Run `inner` (built or checked here) read-only; `names` are its columns when known.
    fn run(&self, inner: &str, params: &[Option<String>], names: Option<Vec<String>>) -> Result<Value, String> {
        let pooled = self.pool.lock().expect("pool").pop();
        let mut client = match pooled {
            Some(c) if !c.is_closed() => c,
            _ => self.connect()?,
        };
        let out = self.run_on(&mut client, inner, params, names);
        if !client.is_closed() {
            self.pool.lock().expect("pool").push(client);
        }
        out
    }

    fn run_on(
        &self,
        client: &mut Client,
        inner: &str,
        params: &[Option<String>],
        names: Option<Vec<String>>,
    ) -> Result<Value, String> {
        let ms = self.timeout.as_millis().max(1);
        let mut tx = client.build_transaction().read_only(true).start().map_err(|e| failed(&e, ms))?;
        tx.batch_execute(&format!(
            "SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {ms}; \
             SET LOCAL idle_in_transaction_session_timeout = {}; SET LOCAL search_path = ''; \
             SET LOCAL standard_conforming_strings = on",
            ms + 5000
        ))
        .map_err(|e| failed(&e, ms))?;
        let names = match names {
            Some(n) => n,
            None => tx.prepare(inner).map_err(|e| failed(&e, ms))?.columns().iter().map(|c| c.name().into()).collect(),
        };
        // A row larger than MAX_VALUE_BYTES is never sent (NULL in its place, then refused), and
        // rows are read one by one, up to MAX_RESULT_BYTES.
        let wrapped = format!(
            "SELECT CASE WHEN octet_length(r) <= {MAX_VALUE_BYTES} THEN r END \
             FROM (SELECT row_to_json(q)::text AS r FROM ({inner}) AS q LIMIT {}) AS w",
            self.max_rows + 1
        );
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let mut it = tx.query_raw(&wrapped, refs).map_err(|e| failed(&e, ms))?;
        let (mut rows, mut bytes, mut truncated) = (Vec::new(), 0usize, false);
        while let Some(r) = it.next().map_err(|e| failed(&e, ms))? {
            if rows.len() == self.max_rows {
                truncated = true;
                break;
            }
            let Some(text) = r.get::<_, Option<&str>>(0) else {
                return Err(format!("refused: a row of the result is larger than {} KiB", MAX_VALUE_BYTES >> 10));
            };
            bytes += text.len();
            if bytes > MAX_RESULT_BYTES {
                truncated = true;
                break;
            }
            rows.push(serde_json::from_str::<Value>(text).map_err(|e| format!("query failed: {e}"))?);
        }
        drop(it);
        tx.rollback().map_err(|e| failed(&e, ms))?;
        Ok(result(names, rows, truncated))
    }

    /// Layers 1 to 3: parse, check and rewrite; the SQL to run.
    fn rewrite(&self, sql: &str) -> Result<String, String> {
        let mut q = parse_one(sql, &PostgreSqlDialect {})?;
        let mut aliases = Aliases(self.columns.clone());
        let _ = Visit::visit(&q, &mut aliases);
        let mut r = Rewrite { pg: self, ctes: HashSet::new(), known: aliases.0 };
        if let ControlFlow::Break(e) = VisitMut::visit(&mut q, &mut r) {
            return Err(e);
        }
        Ok(q.to_string())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Each client owns a runtime, which must not be dropped inside an async context (a
        // reload may drop the tools there): drop them on a thread of their own.
        let clients = std::mem::take(&mut *self.pool.lock().unwrap_or_else(|e| e.into_inner()));
        if !clients.is_empty() {
            let _ = std::thread::Builder::new().name("warden-sql-close".into()).spawn(move || drop(clients));
        }
    }
}

impl Engine for Postgres {
    fn structured(&self, plan: &Plan<'_>) -> Result<Value, String> {
        let types = &self.types[plan.table];
        let cols: Vec<String> = plan.columns.iter().map(|c| quote(c)).collect();
        let mut sql = format!("SELECT {} FROM {}.{}", cols.join(", "), quote(&self.schema), quote(plan.table));
        let mut params = Vec::new();
        for (i, (col, op, value)) in plan.filters.iter().enumerate() {
            sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            params.push(match value {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                v => Some(v.to_string()),
            });
            // Values go as text and are cast to the column's type (from the catalog), so
            // `price > 3.5` compares numbers; LIKE compares text.
            let n = params.len();
            if *op == "like" {
                sql.push_str(&format!("{}::text LIKE ${n}::text", quote(col)));
            } else {
                sql.push_str(&format!("{} {op} ${n}::text::{}", quote(col), types[*col]));
            }
        }
        if let Some((col, desc)) = plan.order_by {
            sql.push_str(&format!(" ORDER BY {}{}", quote(col), if desc { " DESC" } else { "" }));
        }
        sql.push_str(&format!(" LIMIT {}", plan.limit));
        self.run(&sql, &params, Some(plan.columns.iter().map(|c| c.to_string()).collect()))
    }

    fn raw(&self, sql: &str) -> Result<Value, String> {
        let checked = self.rewrite(sql)?;
        self.run(&checked, &[], None)
    }

    fn dialect(&self) -> &'static str {
        "PostgreSQL"
    }
}

/// An identifier as PostgreSQL resolves it: unquoted names fold to lower case.
fn folded(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

fn idents(name: &ObjectName) -> Option<Vec<&Ident>> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(i),
            _ => None,
        })
        .collect()
}

/// First pass: every alias a query introduces (select items, table and CTE column lists), which
/// qualified references may end in.
struct Aliases(HashSet<String>);

impl Visitor for Aliases {
    type Break = ();
    fn pre_visit_select(&mut self, s: &sqlparser::ast::Select) -> ControlFlow<()> {
        for item in &s.projection {
            if let SelectItem::ExprWithAlias { alias, .. } = item {
                self.0.insert(folded(alias).to_lowercase());
            }
        }
        ControlFlow::Continue(())
    }
    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { alias: Some(a), .. } | TableFactor::Derived { alias: Some(a), .. } = t {
            self.0.extend(a.columns.iter().map(|c| folded(&c.name).to_lowercase()));
        }
        ControlFlow::Continue(())
    }
    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        for cte in q.with.iter().flat_map(|w| &w.cte_tables) {
            self.0.extend(cte.alias.columns.iter().map(|c| folded(&c.name).to_lowercase()));
        }
        ControlFlow::Continue(())
    }
}

/// Second pass: check every node and replace allowed tables by their views.
struct Rewrite<'a> {
    pg: &'a Postgres,
    /// CTE names seen so far (a reference before its CTE is seen is refused).
    ctes: HashSet<String>,
    known: HashSet<String>,
}

fn refuse<T>(why: impl Into<String>) -> ControlFlow<String, T> {
    ControlFlow::Break(format!("refused: {}", why.into()))
}

fn plain_body(b: &SetExpr) -> bool {
    match b {
        SetExpr::Select(s) => {
            s.into.is_none() && s.lateral_views.is_empty() && s.prewhere.is_none() && s.connect_by.is_empty()
        }
        SetExpr::Query(_) | SetExpr::Values(_) => true,
        SetExpr::SetOperation { left, right, .. } => plain_body(left) && plain_body(right),
        _ => false,
    }
}

impl VisitorMut for Rewrite<'_> {
    type Break = String;

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<String> {
        if !q.locks.is_empty()
            || q.for_clause.is_some()
            || q.settings.is_some()
            || q.format_clause.is_some()
            || !q.pipe_operators.is_empty()
            || !plain_body(&q.body)
        {
            return refuse("only a plain SELECT is allowed");
        }
        for cte in q.with.iter().flat_map(|w| &w.cte_tables) {
            let name = folded(&cte.alias.name);
            if name.starts_with("pg_") || self.pg.catalog.contains(&name) {
                return refuse(format!("a CTE may not be named {name:?}"));
            }
            self.ctes.insert(name);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<String> {
        match t {
            TableFactor::Table {
                args: None,
                with_hints,
                version: None,
                with_ordinality: false,
                partitions,
                json_path: None,
                sample: None,
                index_hints,
                ..
            } if with_hints.is_empty() && partitions.is_empty() && index_hints.is_empty() => ControlFlow::Continue(()),
            TableFactor::Derived { sample: None, .. } | TableFactor::NestedJoin { .. } => ControlFlow::Continue(()),
            _ => refuse("only tables, subqueries and joins may appear in FROM"),
        }
    }

    fn post_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<String> {
        let TableFactor::Table { name, alias, .. } = t else { return ControlFlow::Continue(()) };
        let Some(parts) = idents(name) else { return refuse("an unsupported table name") };
        let table = match parts.as_slice() {
            [t] if self.pg.views.contains_key(&folded(t)) => folded(t),
            [s, t] if folded(s) == self.pg.schema && self.pg.views.contains_key(&folded(t)) => folded(t),
            // a CTE of an enclosing query (its name is no catalog's, so an out-of-scope
            // reference fails to resolve under the empty search_path)
            [t] if self.ctes.contains(&folded(t)) => return ControlFlow::Continue(()),
            _ => return refuse(format!("table {name} is not allowed")),
        };
        let last = parts.last().map(|i| (*i).clone()).expect("a name has a part");
        let alias = alias.take().unwrap_or(TableAlias { explicit: true, name: last, columns: Vec::new(), at: None });
        *t = TableFactor::Derived {
            lateral: false,
            subquery: Box::new(self.pg.views[&table].clone()),
            alias: Some(alias),
            sample: None,
        };
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<String> {
        match e {
            // The same allow-list as the SQL argument guard's (unqualified names only).
            Expr::Function(f) if Dialect::Postgres.allows(&f.name, &[]) => ControlFlow::Continue(()),
            Expr::Function(f) => refuse(format!("function {} is not allowed", f.name)),
            // Object-identifier types turn a string into a catalog lookup: plain value types only.
            Expr::Cast { data_type, .. } if !warden_policy::guards::cast_allowed(data_type) => {
                refuse(format!("a cast to {data_type} is not allowed"))
            }
            Expr::TypedString(t) if !warden_policy::guards::cast_allowed(&t.data_type) => {
                refuse(format!("a literal of type {} is not allowed", t.data_type))
            }
            Expr::CompoundIdentifier(parts) => match parts.last() {
                Some(c) if self.known.contains(&folded(c).to_lowercase()) => ControlFlow::Continue(()),
                _ => refuse(format!("{} is not an allowed column", ObjectName::from(parts.clone()))),
            },
            Expr::CompoundFieldAccess { access_chain, .. }
                if access_chain.iter().any(|a| matches!(a, AccessExpr::Dot(_))) =>
            {
                refuse("field access is not allowed")
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

/// A driver error as text: the server's own message when there is one.
fn message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => d.message().to_string(),
        None => e.to_string(),
    }
}

fn failed(e: &postgres::Error, ms: u128) -> String {
    match e.code() {
        Some(c) if *c == SqlState::QUERY_CANCELED => format!("the query ran past its {ms} ms limit and was stopped"),
        Some(c) if *c == SqlState::READ_ONLY_SQL_TRANSACTION => "refused: not a read-only statement".into(),
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => format!("refused: {}", message(e)),
        _ => format!("query failed: {}", message(e)),
    }
}
