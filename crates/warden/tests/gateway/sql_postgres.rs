//! The built-in SQL tools over a real PostgreSQL server (started on loopback by the harness),
//! connected as its superuser: every refusal below holds on Warden's own layers, not on the
//! role's privileges.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use warden_testkit::harness::{postgres_server, warden, Client, Postgres};
use warden_tools::{Database, Sql, SqlSettings};

const SCHEMA: &str = "
CREATE TABLE products(id int PRIMARY KEY, name text, price numeric(8,2), in_stock boolean);
CREATE TABLE customers(id int PRIMARY KEY, name text, email text, ssn text);
CREATE TABLE secrets(k text, v text);
INSERT INTO products VALUES (1, 'tea', 3.50, true), (2, 'coffee', 4.00, true), (3, 'cake', 5.25, false);
INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com', '123-45-6789'), (2, 'Bob', 'bob@example.com', '987-65-4321');
INSERT INTO secrets VALUES ('api', 'SECRET-VALUE');
";

fn database(pg: &Postgres) {
    pg.sql(|c| c.batch_execute(SCHEMA).unwrap());
}

fn tables() -> BTreeMap<String, Vec<String>> {
    let mut t = BTreeMap::new();
    t.insert("products".into(), vec!["*".into()]);
    t.insert("customers".into(), vec!["id".into(), "name".into()]);
    t
}

#[test]
fn postgres_sql_tools_refuse_every_escape_even_as_superuser() {
    let pg = postgres_server();
    database(&pg);
    let s = Sql::new(SqlSettings {
        database: Database::Postgres { url: pg.url.clone(), password: None, schema: "public".into() },
        tables: tables(),
        raw_query: true,
        max_rows: 2,
        timeout: Duration::from_millis(500),
    })
    .unwrap();
    let query = |args: Value| s.call("query", &args).unwrap();
    let sql = |q: &str| s.call("sql", &json!({ "query": q })).unwrap();

    // structured: values are bound and cast to the column's type
    let r = query(
        json!({"table": "products", "where": [{"column": "price", "op": ">", "value": 3.6}], "order_by": "price"}),
    )
    .unwrap();
    assert_eq!(r["rows"][0]["name"], "coffee", "{r}");
    assert_eq!(r["columns"], json!(["id", "name", "price", "in_stock"]));
    let r = query(json!({"table": "products", "where": [{"column": "in_stock", "op": "=", "value": false}]})).unwrap();
    assert_eq!(r["rows"][0]["name"], "cake", "{r}");
    let r = query(json!({"table": "customers", "where": [{"column": "name", "op": "like", "value": "A%"}]})).unwrap();
    assert_eq!(r["rows"], json!([{"id": 1, "name": "Ada"}]));
    let r =
        query(json!({"table": "products", "where": [{"column": "name", "op": "=", "value": "x' OR '1'='1"}]})).unwrap();
    assert_eq!(r["row_count"], 0);
    for bad in [
        json!({"table": "secrets"}),
        json!({"table": "customers", "columns": ["email"]}),
        json!({"table": "customers", "where": [{"column": "ssn", "op": "=", "value": "1"}]}),
        json!({"table": "products; DROP TABLE products"}),
        json!({"table": "products", "order_by": "(SELECT v FROM secrets)"}),
    ] {
        assert!(query(bad.clone()).is_err(), "{bad}");
    }

    // raw: what is allowed works, and sees only allowed columns
    let r = sql("SELECT name, price FROM products WHERE price < 5 ORDER BY id").unwrap();
    assert_eq!(r["rows"], json!([{"name": "tea", "price": 3.5}, {"name": "coffee", "price": 4.0}]));
    let r = sql("SELECT id FROM products").unwrap();
    assert_eq!((r["row_count"].clone(), r["truncated"].clone()), (json!(2), json!(true)));
    let r = sql("WITH big AS (SELECT * FROM products WHERE price > 4) SELECT count(*) AS n FROM big").unwrap();
    assert_eq!(r["rows"][0]["n"], 1);
    let r =
        sql("SELECT c.name, upper(p.name) AS product FROM customers c JOIN products p ON p.id = c.id ORDER BY c.id")
            .unwrap();
    assert_eq!(r["rows"][0], json!({"name": "Ada", "product": "TEA"}));
    // a whole-row reference is the row of the allowed columns only
    let r = sql("SELECT c FROM customers c ORDER BY c.id").unwrap();
    assert_eq!(r["rows"][0]["c"], json!({"id": 1, "name": "Ada"}), "{r}");
    let r = sql("SELECT * FROM public.customers ORDER BY 1").unwrap();
    assert_eq!(r["columns"], json!(["id", "name"]));

    for q in [
        "SELECT 1; DROP TABLE products",
        "COMMIT; DROP SCHEMA public CASCADE;",
        "DROP TABLE products",
        "DELETE FROM products",
        "INSERT INTO products VALUES (9, 'x', 1, true)",
        "UPDATE products SET price = 0",
        "TRUNCATE products",
        "COPY secrets TO '/tmp/secrets.csv'",
        "SET transaction_read_only = off",
        "SELECT * FROM secrets",
        "SELECT v FROM public.secrets",
        "TABLE secrets",
        "SELECT ssn FROM customers",
        "SELECT email FROM customers",
        "SELECT c.email FROM customers c",
        "SELECT c.ssn FROM customers AS c",
        "SELECT (c).ssn FROM customers c",
        "SELECT c.text FROM customers c",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT name FROM products UNION SELECT v FROM secrets",
        "WITH x AS (SELECT v FROM secrets) SELECT * FROM x",
        "SELECT * FROM (WITH secrets AS (SELECT 1 AS v) SELECT * FROM secrets) a, secrets",
        "WITH pg_authid AS (SELECT 1) SELECT * FROM pg_authid",
        "WITH d AS (DELETE FROM products RETURNING *) SELECT * FROM d",
        "SELECT * INTO stolen FROM products",
        "SELECT * FROM products FOR UPDATE",
        "SELECT * FROM pg_catalog.pg_authid",
        "SELECT * FROM pg_shadow",
        "SELECT * FROM pg_class",
        "SELECT table_name FROM information_schema.tables",
        "SELECT pg_read_file('/etc/passwd')",
        // issue 20 finding 12: catalog lookups through casts and typed literals
        "SELECT 'public.secrets'::regclass::oid AS o FROM products",
        "SELECT 'pg_read_server_files'::regrole::oid AS o FROM products",
        "SELECT regnamespace 'pg_catalog' AS o FROM products",
        "SELECT CAST('pg_sleep' AS regproc) AS o FROM products",
        "SELECT pg_catalog.pg_read_file('/etc/passwd')",
        "SELECT * FROM pg_read_file('/etc/passwd')",
        "SELECT * FROM generate_series(1, 10)",
        "SELECT lo_import('/etc/passwd')",
        "SELECT set_config('transaction_read_only', 'off', true)",
        "SELECT current_setting('data_directory')",
        "SELECT pg_sleep(10)",
        "SELECT nextval('s')",
        "SELECT dblink('host=127.0.0.1', 'SELECT 1')",
        "SELECT query_to_xml('SELECT * FROM secrets', true, true, '')",
        "SELECT (SELECT v FROM secrets LIMIT 1)",
        "SELECT name FROM products WHERE EXISTS (SELECT 1 FROM secrets)",
        "",
        "SELECT",
    ] {
        let r = sql(q);
        assert!(r.is_err(), "{q:?} gave {r:?}");
        let text = format!("{r:?}");
        assert!(
            !text.contains("SECRET-VALUE") && !text.contains("123-45-6789") && !text.contains("root:"),
            "{q}: {text}"
        );
    }
    // quoting games parse to literals, never to statements
    for q in [r"SELECT '\'; DROP TABLE products; --' AS s", r"SELECT E'\'; DROP TABLE products; --' AS s"] {
        let _ = sql(q);
    }

    // a runaway query is stopped at its deadline, and the pool recovers
    let t = Instant::now();
    let r = sql("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c");
    assert!(r.as_ref().unwrap_err().contains("limit"), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(sql("SELECT id FROM products").is_ok());

    // issue 19 finding 13 / issue 20 finding 7: padding functions cannot fill Warden's memory:
    // a row over 1 MiB is never sent by the server and the query is refused
    let r = sql("SELECT lpad('', 8000000, 'x') AS pad FROM products");
    assert!(r.as_ref().is_err_and(|e| e.contains("larger than 1024 KiB")), "{:?}", r.map(|v| v["row_count"].clone()));
    let r = sql("SELECT repeat('x', 2000000) AS pad FROM products");
    assert!(r.is_err());
    assert!(sql("SELECT id::text AS t, price::numeric(10,1) AS p FROM products").is_ok(), "plain casts work");
    let r = sql("SELECT lpad('', 1000, 'x') AS pad FROM products").unwrap();
    assert_eq!(r["rows"][0]["pad"].as_str().unwrap().len(), 1000);

    // nothing changed
    pg.sql(|c| {
        let n: i64 = c.query_one("SELECT count(*) FROM public.products", &[]).unwrap().get(0);
        assert_eq!(n, 3);
        let v: String = c.query_one("SELECT v FROM public.secrets", &[]).unwrap().get(0);
        assert_eq!(v, "SECRET-VALUE");
        let t: i64 = c.query_one("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", &[]).unwrap().get(0);
        assert_eq!(t, 3, "no table was created");
    });
}

#[tokio::test]
async fn postgres_builtin_upstream_end_to_end() {
    let pg = postgres_server();
    database(&pg);
    // the password comes from a secret reference (trust authentication ignores it)
    std::env::set_var("WARDEN_TEST_PG_PASSWORD", "not-in-the-url");
    let up = format!(
        "[[upstream]]\nname = \"db\"\ntransport = \"builtin\"\n\
         [upstream.sql]\nurl = {:?}\npassword = {{ env = \"WARDEN_TEST_PG_PASSWORD\" }}\nraw_query = true\n\
         [upstream.sql.tables]\nproducts = [\"*\"]\ncustomers = [\"id\", \"name\"]\n",
        pg.url
    );
    let w = warden("", &up);
    let mut c = Client::new(&w.url);
    c.initialize().await;
    let list = c.call(2, "tools/list", json!({})).await;
    let desc = list["result"]["tools"].to_string();
    assert!(desc.contains("db__query") && desc.contains("PostgreSQL") && !desc.contains("email"), "{list}");
    let r = c.tool(3, "db__query", json!({"table": "customers", "order_by": "id"})).await;
    let out = r["result"]["structuredContent"].clone();
    assert_eq!(out["rows"], json!([{"id": 1, "name": "Ada"}, {"id": 2, "name": "Bob"}]), "{r}");
    let r = c.tool(4, "db__sql", json!({"query": "COMMIT; DROP SCHEMA public CASCADE;"})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    let r = c.tool(5, "db__sql", json!({"query": "SELECT name FROM customers ORDER BY id DESC LIMIT 1"})).await;
    assert_eq!(r["result"]["structuredContent"]["rows"][0]["name"], "Bob", "{r}");
    let n: i64 = pg.sql(|db| db.query_one("SELECT count(*) FROM public.customers", &[]).unwrap().get(0));
    assert_eq!(n, 2);
}
