//! The SQL guard: exactly one read-only query, tables and columns from allow-lists, and only
//! functions on an allow-list per dialect.
//!
//! Defends against: writes, DDL, transaction control and stacked statements (the Postgres
//! reference server's `COMMIT; DROP SCHEMA …`), `SELECT … INTO`, data-modifying CTEs, row locks,
//! reads of tables and columns outside the allow-lists, and every function not known to be a
//! pure computation — those that read files (`pg_read_file`, `load_file`, `readfile`), reach the
//! network (`dblink`), run SQL given as text (`query_to_xml`, `ts_stat`), change state
//! (`nextval`, `setval`, `lo_unlink`, `set_config`) or stall the database (`pg_sleep`,
//! `pg_advisory_lock`, `benchmark`). Quoting does not help (`"pg_read_file"(…)`, `` `load_file`(…)``:
//! an unknown name is refused however it is written; a quoted name in PostgreSQL keeps its case),
//! nor does a schema (`pg_catalog.lower` is refused: only bare names), nor a function in `FROM`
//! (refused outright: only tables, subqueries and joins). Casts and typed literals only to plain
//! value types ([`cast_allowed`]): `'public.secrets'::regclass::oid` and `'x'::regrole` would
//! look names up in the catalog.
//! Does not defend against: a view or a column default that calls something itself, expensive
//! queries made of allowed parts (bound them with a statement timeout on the database), dialect
//! features the parser does not know (refused as parse errors, so this fails closed).

use super::{refuse, Refusal};
use sqlparser::ast::{Ident, ObjectName, TableFactor, Visit, Visitor};
use std::ops::ControlFlow;

/// SQL guard settings.
#[derive(Debug, Clone, Default)]
pub struct SqlPolicy {
    /// Dialect: "generic", "sqlite", "postgres", "mysql".
    pub dialect: String,
    /// Tables a query may read (lower-case; empty: any).
    pub tables: Vec<String>,
    /// Columns a query may name (lower-case; empty: any). `*` is refused when set.
    pub columns: Vec<String>,
    /// Functions a query may call besides the dialect's allow-list (lower-case).
    pub functions: Vec<String>,
}

/// The dialects with a function allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Generic,
    Sqlite,
    Postgres,
    Mysql,
}

impl Dialect {
    pub fn of(name: &str) -> Dialect {
        match name {
            "sqlite" => Dialect::Sqlite,
            "postgres" | "postgresql" => Dialect::Postgres,
            "mysql" => Dialect::Mysql,
            _ => Dialect::Generic,
        }
    }

    /// The functions a query may call in this dialect: pure computations over the values of
    /// the row (aggregates, windows, strings, numbers, dates, conditionals). The generic
    /// dialect takes all of them (each is pure in every dialect that has it).
    pub fn functions(self) -> impl Iterator<Item = &'static str> {
        let lists: &'static [&'static [&'static str]] = match self {
            Dialect::Sqlite => &[COMMON, SQLITE],
            Dialect::Postgres => &[COMMON, POSTGRES],
            Dialect::Mysql => &[COMMON, MYSQL],
            Dialect::Generic => &[COMMON, SQLITE, POSTGRES, MYSQL],
        };
        lists.iter().flat_map(|l| l.iter()).copied()
    }

    /// Is a call of `name` allowed (besides `extra`)? Only a bare name counts: a schema-qualified
    /// one is refused. Unquoted names fold to lower case; a quoted name keeps its case in
    /// PostgreSQL (where `"LOWER"` is another function) and folds elsewhere.
    /// Is `name` (as a database engine reports a call, any case) on the list?
    pub fn allows_name(self, name: &str) -> bool {
        self.functions().any(|f| f.eq_ignore_ascii_case(name))
    }

    pub fn allows(self, name: &ObjectName, extra: &[String]) -> bool {
        let [part] = name.0.as_slice() else { return false };
        let Some(id) = part.as_ident() else { return false };
        let n = folded(id, self);
        self.functions().any(|f| f == n) || extra.contains(&n)
    }
}

/// Types a value may be cast to, or a literal typed as (`x::int`, `CAST(x AS text)`,
/// `DATE '2026-01-01'`), arrays of them included: plain values only. Object-identifier types
/// (`regclass`, `regrole`, `regproc`, `oid` …) turn a string into a catalog lookup
/// (`'public.secrets'::regclass::oid` names a table the query may not read), and any other or
/// schema-qualified type could have an input function of its own: refused.
pub fn cast_allowed(t: &sqlparser::ast::DataType) -> bool {
    const PLAIN: &[&str] = &[
        "TEXT",
        "VARCHAR",
        "CHAR",
        "CHARACTER",
        "CHARACTER VARYING",
        "CHAR VARYING",
        "STRING",
        "INT",
        "INTEGER",
        "SMALLINT",
        "BIGINT",
        "TINYINT",
        "INT2",
        "INT4",
        "INT8",
        "NUMERIC",
        "DECIMAL",
        "DEC",
        "REAL",
        "FLOAT",
        "FLOAT4",
        "FLOAT8",
        "DOUBLE",
        "DOUBLE PRECISION",
        "BOOL",
        "BOOLEAN",
        "DATE",
        "TIME",
        "TIMESTAMP",
        "DATETIME",
        "INTERVAL",
        "UUID",
        "JSON",
        "JSONB",
        "BYTEA",
        "BLOB",
    ];
    let mut text = t.to_string().to_ascii_uppercase();
    while let Some(inner) = text.strip_suffix("[]") {
        text = inner.trim_end().to_string();
    }
    // `NUMERIC(10,2)`, `VARCHAR(20)`, `TIMESTAMP(3) WITH TIME ZONE`: the name before any size.
    let name = text.split('(').next().unwrap_or_default().trim();
    let name =
        name.strip_suffix(" WITH TIME ZONE").or_else(|| name.strip_suffix(" WITHOUT TIME ZONE")).unwrap_or(name).trim();
    PLAIN.contains(&name)
}

fn folded(i: &Ident, d: Dialect) -> String {
    if i.quote_style.is_some() && d == Dialect::Postgres {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// In every dialect.
const COMMON: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "lower",
    "upper",
    "length",
    "abs",
    "round",
    "ceil",
    "ceiling",
    "floor",
    "mod",
    "power",
    "sqrt",
    "sign",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "substr",
    "substring",
    "trim",
    "ltrim",
    "rtrim",
    "replace",
    "concat",
    "left",
    "right",
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
];

/// PostgreSQL (also the built-in PostgreSQL tools' list).
pub const POSTGRES: &[&str] = &[
    "string_agg",
    "array_agg",
    "bool_and",
    "bool_or",
    "every",
    "json_agg",
    "jsonb_agg",
    "stddev",
    "variance",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "initcap",
    "char_length",
    "character_length",
    "octet_length",
    "trunc",
    "btrim",
    "position",
    "strpos",
    "lpad",
    "rpad",
    "concat_ws",
    "split_part",
    "reverse",
    "starts_with",
    "format",
    "date_trunc",
    "date_part",
    "extract",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_number",
    "age",
    "now",
    "current_date",
    "current_timestamp",
];

const SQLITE: &[&str] = &[
    "string_agg",
    "ifnull",
    "iif",
    "instr",
    "typeof",
    "group_concat",
    "total",
    "date",
    "time",
    "datetime",
    "julianday",
    "strftime",
    "unixepoch",
    "hex",
    "quote",
    "char",
    "unicode",
    "json_extract",
    "json_array_length",
];

const MYSQL: &[&str] = &[
    "ifnull",
    "if",
    "instr",
    "locate",
    "group_concat",
    "char_length",
    "character_length",
    "concat_ws",
    "lcase",
    "ucase",
    "lpad",
    "rpad",
    "truncate",
    "date_format",
    "now",
    "curdate",
    "curtime",
    "date",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "datediff",
    "timestampdiff",
    "json_extract",
    "json_length",
];

/// The query's shape, in every subquery: in `FROM` only tables (without arguments),
/// subqueries and joins; no `TABLE t` (a read the relation visitor does not see); and, when
/// columns are restricted, no `*` and no alias column list (`users u(name)` renames columns by
/// position, so an allowed name could stand for any column).
struct ShapeCheck {
    columns_restricted: bool,
    bad: Option<&'static str>,
}

impl ShapeCheck {
    fn refuse(&mut self, why: &'static str) -> ControlFlow<()> {
        self.bad = Some(why);
        ControlFlow::Break(())
    }

    fn body(&mut self, b: &sqlparser::ast::SetExpr) -> ControlFlow<()> {
        use sqlparser::ast::{SelectItem, SetExpr};
        match b {
            SetExpr::Table(_) => self.refuse("`TABLE name` is not allowed; select the columns"),
            SetExpr::Select(s)
                if self.columns_restricted
                    && s.projection
                        .iter()
                        .any(|p| matches!(p, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..))) =>
            {
                self.refuse("`*` is not allowed when columns are restricted")
            }
            SetExpr::Query(q) => self.body(&q.body),
            SetExpr::SetOperation { left, right, .. } => {
                self.body(left)?;
                self.body(right)
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

impl Visitor for ShapeCheck {
    type Break = ();

    fn pre_visit_query(&mut self, q: &sqlparser::ast::Query) -> ControlFlow<()> {
        self.body(&q.body)
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        let alias_columns = |a: &Option<sqlparser::ast::TableAlias>| a.as_ref().is_some_and(|a| !a.columns.is_empty());
        match t {
            TableFactor::Table { args, with_ordinality, alias, .. } => {
                if args.is_some() || *with_ordinality {
                    return self.refuse("the query calls a function in FROM (only tables, subqueries and joins)");
                }
                if self.columns_restricted && alias_columns(alias) {
                    return self.refuse("column aliases on a table are not allowed when columns are restricted");
                }
                ControlFlow::Continue(())
            }
            TableFactor::Derived { alias, .. } if self.columns_restricted && alias_columns(alias) => {
                self.refuse("column aliases on a subquery are not allowed when columns are restricted")
            }
            TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } => ControlFlow::Continue(()),
            _ => self.refuse("the query calls a function in FROM (only tables, subqueries and joins)"),
        }
    }
}

/// Check that `sql` is exactly one read-only query within the allow-lists.
pub fn sql(sql: &str, policy: &SqlPolicy) -> Result<(), Refusal> {
    use sqlparser::ast::{visit_expressions, visit_relations, visit_statements, Expr, SetExpr, Statement};
    use sqlparser::dialect::{GenericDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
    use std::ops::ControlFlow;
    if sql.len() > 64 * 1024 {
        return refuse("query is too long");
    }
    let dialect_name = Dialect::of(&policy.dialect);
    let dialect: Box<dyn sqlparser::dialect::Dialect> = match dialect_name {
        Dialect::Sqlite => Box::new(SQLiteDialect {}),
        Dialect::Postgres => Box::new(PostgreSqlDialect {}),
        Dialect::Mysql => Box::new(MySqlDialect {}),
        Dialect::Generic => Box::new(GenericDialect {}),
    };
    let stmts = sqlparser::parser::Parser::new(dialect.as_ref())
        .with_recursion_limit(50)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|_| Refusal("query does not parse"))?;
    let [stmt] = stmts.as_slice() else {
        return refuse(if stmts.is_empty() { "no statement" } else { "more than one statement" });
    };
    let Statement::Query(q) = stmt else {
        return refuse("only read-only queries (SELECT) are allowed");
    };
    let mut bad: Option<&'static str> = None;
    let _ = visit_statements(stmt, |s| {
        if !matches!(s, Statement::Query(_)) {
            bad = Some("the query contains a statement that is not a read");
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    fn body_writes(b: &SetExpr) -> bool {
        match b {
            SetExpr::Select(s) => s.into.is_some(),
            SetExpr::Query(q) => body_writes(&q.body),
            SetExpr::SetOperation { left, right, .. } => body_writes(left) || body_writes(right),
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => true,
            _ => false,
        }
    }
    let ctes_write = q.with.as_ref().is_some_and(|w| w.cte_tables.iter().any(|c| body_writes(&c.query.body)));
    if body_writes(&q.body) || ctes_write {
        return refuse("the query writes (INTO or a data-modifying clause)");
    }
    if !q.locks.is_empty() {
        return refuse("row locks (FOR UPDATE/SHARE) are not allowed");
    }
    if let Some(b) = bad {
        return refuse(b);
    }
    // Only tables, subqueries and joins in FROM: a function there (`generate_series`,
    // `LATERAL f(…)`, `dblink(…)`, `json_each`, `UNNEST`) is a call the allow-list would not see.
    let mut shape = ShapeCheck { columns_restricted: !policy.columns.is_empty(), bad: None };
    let _ = stmt.visit(&mut shape);
    if let Some(b) = shape.bad {
        return refuse(b);
    }
    let cte_names: Vec<String> = q
        .with
        .as_ref()
        .map(|w| w.cte_tables.iter().map(|c| c.alias.name.value.to_lowercase()).collect())
        .unwrap_or_default();
    if !policy.tables.is_empty() {
        let _ = visit_relations(stmt, |rel| {
            let name = rel
                .0
                .last()
                .map(|p| p.to_string().trim_matches(['"', '`', '[', ']']).to_lowercase())
                .unwrap_or_default();
            let schema_ok = rel.0.len() == 1 || policy.tables.iter().any(|t| t.eq_ignore_ascii_case(&rel.to_string()));
            if !(schema_ok && (policy.tables.contains(&name) || cte_names.contains(&name))) {
                bad = Some("the query reads a table that is not allowed");
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
    }
    let _ = visit_expressions(stmt, |e| {
        match e {
            Expr::Function(f) if !dialect_name.allows(&f.name, &policy.functions) => {
                bad = Some("the query calls a function that is not allowed");
                return ControlFlow::Break(());
            }
            Expr::Cast { data_type, .. } if !cast_allowed(data_type) => {
                bad = Some("the query casts to a type that is not allowed");
                return ControlFlow::Break(());
            }
            Expr::TypedString(t) if !cast_allowed(&t.data_type) => {
                bad = Some("the query types a literal as a type that is not allowed");
                return ControlFlow::Break(());
            }
            Expr::Identifier(id)
                if !policy.columns.is_empty() && !policy.columns.contains(&id.value.to_lowercase()) =>
            {
                bad = Some("the query names a column that is not allowed");
                return ControlFlow::Break(());
            }
            Expr::CompoundIdentifier(ids)
                if !policy.columns.is_empty()
                    && !ids.last().is_some_and(|id| policy.columns.contains(&id.value.to_lowercase())) =>
            {
                bad = Some("the query names a column that is not allowed");
                return ControlFlow::Break(());
            }
            _ => {}
        }
        ControlFlow::Continue(())
    });
    match bad {
        Some(b) => refuse(b),
        None => Ok(()),
    }
}
