//! `evidence::sql` against real servers: a private PostgreSQL (`sut::postgres`, also one whose
//! TCP logins need a password) and a private MariaDB (`sut::mariadb`), each on a free loopback
//! port. What a shop's schema may look like, what the read-only transaction refuses, how
//! failures read, and how fast 200,000 orders are read.

use std::time::{Duration, Instant};

use grab_bench::evidence::sql::{SqlError, SqlErrorKind, SqlOrder, SqlSource, Vars};
use grab_bench::sut::free_port;
use grab_bench::sut::mariadb::MariaDbProcess;
use grab_bench::sut::postgres::PostgresProcess;
use sqlx::{Connection, Executor};

/// The bound of every connect in these tests.
const CONNECT: Duration = Duration::from_secs(10);

/// The bound of a whole test (servers included).
const TEST_BOUND: Duration = Duration::from_secs(180);

/// 2025-01-02 03:04:05.123456 UTC in Unix µs: the creation time of the test rows.
const T0_US: i64 = 1_735_787_045_123_456;

async fn postgres() -> PostgresProcess {
    tokio::task::spawn_blocking(PostgresProcess::start)
        .await
        .unwrap()
        .expect("PostgreSQL starts (bash scripts/install-deps.sh)")
}

async fn mariadb() -> MariaDbProcess {
    tokio::task::spawn_blocking(MariaDbProcess::start)
        .await
        .unwrap()
        .expect("MariaDB starts (bash scripts/install-deps.sh)")
}

/// Runs set-up statements (the test's own private database: writing there is fine).
async fn pg_setup(url: &str, statements: &[&str]) {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    for s in statements {
        c.execute(*s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    c.close().await.unwrap();
}

/// The same for MariaDB.
async fn my_setup(url: &str, statements: &[&str]) {
    let mut c = sqlx::MySqlConnection::connect(url).await.unwrap();
    for s in statements {
        c.execute(*s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    c.close().await.unwrap();
}

fn vars(item: &str, sale: &str) -> Vars {
    Vars {
        item: item.into(),
        sale: sale.into(),
    }
}

fn order(id: &str, user: &str, item: &str, state: &str, created_unix_us: i64) -> SqlOrder {
    SqlOrder {
        id: id.into(),
        user: user.into(),
        item: item.into(),
        state: state.into(),
        created_unix_us,
    }
}

/// The orders `orders_sql` reads (no stock query) from `url`.
async fn read_orders(url: &str, orders_sql: &str) -> Result<Vec<SqlOrder>, SqlError> {
    let source = SqlSource::new(url, None, Some(orders_sql)).unwrap();
    let mut conn = source.connect(CONNECT).await?;
    conn.orders(&vars("7", "spring")).await
}

/// The stock `stock_sql` reads from `url` with item 7 of sale "spring".
async fn read_stock(url: &str, stock_sql: &str) -> Result<i64, SqlError> {
    let source = SqlSource::new(url, Some(stock_sql), None).unwrap();
    let mut conn = source.connect(CONNECT).await?;
    conn.stock(&vars("7", "spring")).await
}

/// Runs a whole test within [`TEST_BOUND`].
async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_BOUND, f)
        .await
        .expect("the test finishes in time")
}

const PG_SHOP: &[&str] = &[
    "CREATE TABLE items (id bigint PRIMARY KEY, sale text NOT NULL, stock int NOT NULL)",
    "INSERT INTO items VALUES (7, 'spring', 42), (8, 'spring', 1)",
    "CREATE TABLE orders (id bigserial PRIMARY KEY, user_id bigint NOT NULL, \
     item_id bigint NOT NULL, state varchar(16) NOT NULL, created_at timestamp(6) NOT NULL)",
    "INSERT INTO orders (user_id, item_id, state, created_at) VALUES \
     (101, 7, 'paid', '2025-01-02 03:04:05.123456'), \
     (102, 7, 'held', '2025-01-02 03:04:06.123456'), \
     (103, 8, 'paid', '2025-01-02 03:04:07')",
    "CREATE TYPE order_state AS ENUM ('held', 'paid')",
    "CREATE TABLE variety (n numeric(20,0), u uuid, t text, v varchar(10), c char(8), \
     i2 int2, i4 int4, i8 int8, e order_state, ts timestamp(6), tz timestamptz, \
     f8 float8, ms bigint, nu numeric, d date)",
    "INSERT INTO variety VALUES (12345678901234567890, '00112233-4455-6677-8899-aabbccddeeff', \
     'user-1', 'it', 'ab', 3, 4, 5, 'paid', '2025-01-02 03:04:05.123456', \
     '2025-01-02 04:04:05.123456+01', 1735787045.123456, 1735787045123, 1735787045.123456, \
     '2025-01-02')",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_orders_and_stock_are_read_from_a_shops_schema() {
    bounded(async {
        let pg = postgres().await;
        pg_setup(&pg.url, PG_SHOP).await;
        let source = SqlSource::new(
            &pg.url,
            Some("SELECT stock FROM items WHERE id = {item} AND sale = {sale};"),
            Some(
                "SELECT id, user_id, item_id, state, created_at FROM orders\n\
                 WHERE item_id = {item} ORDER BY id -- the item's orders",
            ),
        )
        .unwrap();
        assert_eq!(
            source.describe(),
            format!("PostgreSQL grab@127.0.0.1:{}/grab", pg.port)
        );
        let mut conn = source.connect(CONNECT).await.unwrap();
        let v = vars("7", "spring");
        assert_eq!(conn.stock(&v).await.unwrap(), 42);
        assert_eq!(conn.count_orders(&v).await.unwrap(), 2);
        let expected = vec![
            order("1", "101", "7", "paid", T0_US),
            order("2", "102", "7", "held", T0_US + 1_000_000),
        ];
        assert_eq!(conn.orders(&v).await.unwrap(), expected);
        let snap = conn.snapshot(&v).await.unwrap();
        assert_eq!((snap.stock, snap.orders), (Some(42), Some(expected)));
        assert_eq!(conn.count_orders(&vars("8", "spring")).await.unwrap(), 1);
        // A value that does not fit the parameter the server inferred (item_id is bigint).
        let e = conn.stock(&vars("seven", "spring")).await.unwrap_err();
        assert_eq!(e.kind, SqlErrorKind::Query, "{e}");
        assert!(e.message.contains("{item} is \"seven\""), "{e}");
        assert!(e.message.contains("INT8"), "{e}");
        conn.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_columns_are_decoded_forgivingly_by_their_types() {
    bounded(async {
        let pg = postgres().await;
        pg_setup(&pg.url, PG_SHOP).await;
        let url = pg.url.as_str();
        let uuid = "00112233-4455-6677-8899-aabbccddeeff";
        for (sql, expected) in [
            (
                "SELECT n, t, c, e, ts FROM variety",
                order("12345678901234567890", "user-1", "ab", "paid", T0_US),
            ),
            (
                "SELECT u, v, i2, i4, tz FROM variety",
                order(uuid, "it", "3", "4", T0_US),
            ),
            (
                "SELECT i8, n, v, e, f8 FROM variety",
                order("5", "12345678901234567890", "it", "paid", T0_US),
            ),
            (
                "SELECT t, i8, i4, i2, ms FROM variety",
                order("user-1", "5", "4", "3", T0_US - 456),
            ),
            (
                "SELECT t, t, t, t, nu FROM variety",
                order("user-1", "user-1", "user-1", "user-1", T0_US),
            ),
            (
                "SELECT i8, t, t, t, extract(epoch FROM tz) FROM variety",
                order("5", "user-1", "user-1", "user-1", T0_US),
            ),
            (
                "SELECT i8, t, t, t, i4 FROM variety",
                order("5", "user-1", "user-1", "user-1", 4_000_000),
            ),
        ] {
            let got = read_orders(url, sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(got, vec![expected], "{sql}");
        }
        // Stock: any integer, or a numeric without fraction (sum() of bigint is numeric).
        for (sql, expected) in [
            ("SELECT stock FROM items WHERE id = {item}", 42),
            ("SELECT sum(stock::bigint) FROM items", 43),
            ("SELECT count(*) FROM items", 2),
            ("SELECT 12::int2", 12),
            ("SELECT 12.000::numeric", 12),
        ] {
            assert_eq!(read_stock(url, sql).await.unwrap(), expected, "{sql}");
        }
    })
    .await;
}

/// Asserts `result` is an error of `kind` whose message contains every one of `says`.
fn assert_error<T: std::fmt::Debug>(
    result: Result<T, SqlError>,
    kind: SqlErrorKind,
    says: &[&str],
) {
    let e = result.expect_err("an error");
    assert_eq!(e.kind, kind, "{e}");
    for s in says {
        assert!(e.message.contains(s), "{s:?} not in: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wrong_shapes_and_sql_errors_say_what_to_fix() {
    bounded(async {
        let pg = postgres().await;
        pg_setup(&pg.url, PG_SHOP).await;
        let url = pg.url.as_str();
        let at = format!("127.0.0.1:{}", pg.port);
        let shape = SqlErrorKind::Shape;
        assert_error(
            read_orders(url, "SELECT i8, t, t, t FROM variety").await,
            shape.clone(),
            &[
                "returns 4 columns (i8, t, t, t); it must return 5",
                "creation time",
                &at,
            ],
        );
        // Checked on the statement even when no row comes back.
        assert_error(
            read_orders(url, "SELECT i8, t FROM variety WHERE false").await,
            shape.clone(),
            &["returns 2 columns"],
        );
        assert_error(
            read_orders(url, "SELECT f8, t, t, t, ts FROM variety").await,
            shape.clone(),
            &["column 1 (f8) is FLOAT8; it must be the order id"],
        );
        assert_error(
            read_orders(url, "SELECT i8, t, t, t, d FROM variety").await,
            shape.clone(),
            &["column 5 (d) is DATE; it must be the creation time"],
        );
        assert_error(
            read_orders(url, "SELECT i8, NULL::text AS who, t, t, ts FROM variety").await,
            shape.clone(),
            &["row 1, column 2 (who): NULL; every order needs the user id"],
        );
        assert_error(
            read_orders(
                url,
                "SELECT i8, t, t, t, 'infinity'::timestamp FROM variety",
            )
            .await,
            shape.clone(),
            &["row 1, column 5", "infinite"],
        );
        assert_error(
            read_stock(url, "SELECT stock FROM items WHERE id = 99").await,
            shape.clone(),
            &["returned no row"],
        );
        assert_error(
            read_stock(url, "SELECT stock FROM items").await,
            shape.clone(),
            &["returned 2 rows"],
        );
        assert_error(
            read_stock(url, "SELECT 'many'::text").await,
            shape.clone(),
            &["column 1 (text) is TEXT; it must be the tickets left: an integer"],
        );
        assert_error(
            read_stock(url, "SELECT 1.5::numeric").await,
            shape,
            &["1.5, not a whole number"],
        );
        assert_error(
            read_orders(url, "SELECT * FROM no_such_table").await,
            SqlErrorKind::Query,
            &[
                "the orders query failed on PostgreSQL grab@",
                &at,
                "no_such_table",
                "42P01",
            ],
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_read_only_transaction_refuses_what_a_select_smuggles_in() {
    bounded(async {
        let pg = postgres().await;
        pg_setup(
            &pg.url,
            &[
                "CREATE SEQUENCE s",
                "CREATE TABLE t (a int)",
                "INSERT INTO t VALUES (1)",
                "CREATE FUNCTION wipe() RETURNS int LANGUAGE sql AS 'DELETE FROM t; SELECT 0'",
            ],
        )
        .await;
        let url = pg.url.as_str();
        let read_only = ["read-only transaction", "25006", "READ ONLY transaction"];
        // These pass the check (they are SELECTs): the server refuses them.
        assert_error(
            read_stock(url, "SELECT nextval('s')").await,
            SqlErrorKind::Query,
            &read_only,
        );
        assert_error(
            read_stock(url, "SELECT wipe()").await,
            SqlErrorKind::Query,
            &read_only,
        );
        // Nor can a SELECT turn the transaction read-write: its snapshot is already taken.
        let flip = "SELECT length(set_config('transaction_read_only', 'off', true))";
        assert_error(
            read_stock(url, flip).await,
            SqlErrorKind::Query,
            &["read-write mode must be set before any query"],
        );
        // These do not pass the check; sent anyway, the server refuses them too.
        let cte = "WITH x AS (INSERT INTO t VALUES (2) RETURNING a) SELECT count(*) FROM x";
        let two = "SELECT 1; DELETE FROM t";
        let query = SqlErrorKind::Query;
        for (sql, kind, says) in [
            (cte, query.clone(), &read_only[..]),
            ("DELETE FROM t RETURNING a", query.clone(), &read_only[..]),
            (
                two,
                query,
                &["cannot insert multiple commands into a prepared statement"][..],
            ),
            // Returns no column: refused on the prepared statement's shape, never run.
            (
                "SELECT 1 INTO u",
                SqlErrorKind::Shape,
                &["returns no column"][..],
            ),
        ] {
            assert!(
                SqlSource::new(url, Some(sql), None).is_err(),
                "{sql} passes the check"
            );
            let source = SqlSource::new_unchecked(url, Some(sql), None).unwrap();
            let mut conn = source.connect(CONNECT).await.unwrap();
            let e = conn.stock(&vars("", "")).await.unwrap_err();
            assert_eq!(e.kind, kind, "{sql}: {e}");
            assert!(says.iter().all(|s| e.message.contains(s)), "{sql}: {e}");
        }
        // Nothing was written, and a session that had a refusal still reads.
        let source = SqlSource::new(url, Some("SELECT count(*) FROM t"), None).unwrap();
        let mut conn = source.connect(CONNECT).await.unwrap();
        assert!(conn.stock(&vars("", "")).await.is_ok());
        let mut direct = sqlx::PgConnection::connect(url).await.unwrap();
        let (rows, next): (i64, i64) =
            sqlx::query_as("SELECT (SELECT count(*) FROM t WHERE a = 1), nextval('s')")
                .fetch_one(&mut direct)
                .await
                .unwrap();
        assert_eq!(
            (rows, next),
            (1, 1),
            "t untouched, the sequence never advanced"
        );
        assert_eq!(conn.stock(&vars("", "")).await.unwrap(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_wrong_password_is_a_login_error_that_never_shows_it() {
    bounded(async {
        let right = "Right-pw.1";
        let pg = tokio::task::spawn_blocking(move || PostgresProcess::start_with_password(right))
            .await
            .unwrap()
            .expect("PostgreSQL starts");
        let at = format!("127.0.0.1:{}", pg.port);
        let url = format!("postgres://grab:${{GRAB_TEST_PW}}@{at}/grab");
        let source = SqlSource::new(&url, Some("SELECT 1"), None).unwrap();
        let env_with =
            |pw: &'static str| move |name: &str| (name == "GRAB_TEST_PW").then(|| pw.to_string());
        let mut conn = source
            .connect_with_env(CONNECT, &env_with(right))
            .await
            .expect("the right password logs in");
        assert_eq!(conn.stock(&vars("", "")).await.unwrap(), 1);
        assert!(!format!("{conn:?}").contains(right), "{conn:?}");

        let wrong = "wr0ng-Secret";
        let e = source
            .connect_with_env(CONNECT, &env_with(wrong))
            .await
            .unwrap_err();
        assert_eq!(e.kind, SqlErrorKind::Login, "{e}");
        for s in ["user grab", &at, "from ${GRAB_TEST_PW}", "28P01"] {
            assert!(e.message.contains(s), "{s:?} not in: {e}");
        }
        for shown in [e.message.clone(), format!("{e:?}")] {
            assert!(!shown.contains(wrong) && !shown.contains(right), "{shown}");
        }
        // Written in the URL: the same, and the URL's copy is redacted.
        let literal = format!("postgres://grab:{wrong}@{at}/grab");
        let e = SqlSource::new(&literal, Some("SELECT 1"), None)
            .unwrap()
            .connect(CONNECT)
            .await
            .unwrap_err();
        assert_eq!(e.kind, SqlErrorKind::Login, "{e}");
        assert!(e.message.contains("written in the URL"), "{e}");
        assert!(!format!("{e:?}").contains(wrong), "{e:?}");
        assert!(!grab_bench::evidence::sql::redact(&literal).contains(wrong));
        // No password at all: the hint says how to give one.
        let e = SqlSource::new(&pg.url, Some("SELECT 1"), None)
            .unwrap()
            .connect(CONNECT)
            .await
            .unwrap_err();
        assert_eq!(e.kind, SqlErrorKind::Login, "{e}");
        assert!(e.message.contains("the URL gives no password"), "{e}");
        // The variable not set at all.
        let e = source
            .connect_with_env(CONNECT, &|_| None)
            .await
            .unwrap_err();
        assert_eq!(
            e.kind,
            SqlErrorKind::MissingEnv("GRAB_TEST_PW".into()),
            "{e}"
        );
        assert!(
            e.message.contains("${GRAB_TEST_PW}, which is not set"),
            "{e}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_and_slow_answers_are_bounded_and_named() {
    bounded(async {
        // Nothing listens: refused at once, for both dialects.
        let port = free_port().unwrap();
        for (scheme, product) in [
            ("postgres", "PostgreSQL"),
            ("mysql", "MySQL"),
            ("mariadb", "MariaDB"),
        ] {
            let url = format!("{scheme}://shop:${{PW}}@127.0.0.1:{port}/shop");
            let source = SqlSource::new(&url, Some("SELECT 1"), None).unwrap();
            let started = Instant::now();
            let e = source
                .connect_with_env(CONNECT, &|_| Some("pw".into()))
                .await
                .unwrap_err();
            assert_eq!(e.kind, SqlErrorKind::Unreachable, "{e}");
            let says = format!("cannot reach {product} at 127.0.0.1:{port} (connection refused)");
            assert!(e.message.starts_with(&says), "{e}");
            assert!(e.message.contains("user shop"), "{e}");
            assert!(started.elapsed() < Duration::from_secs(5));
        }
        // Something listens but never answers: the connect timeout.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let source = SqlSource::new(
            &format!("postgres://shop@127.0.0.1:{port}/shop"),
            None,
            None,
        )
        .unwrap();
        let started = Instant::now();
        let e = source
            .connect(Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(e.kind, SqlErrorKind::Timeout, "{e}");
        assert!(
            e.message
                .contains(&format!("127.0.0.1:{port} gave no answer")),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(silent);

        // A query slower than its bound: Timeout, then the next read connects again.
        // The sale's length is how many seconds the query sleeps.
        let pg = postgres().await;
        let sleepy = "SELECT 2 FROM pg_sleep(length({sale}))";
        let source = SqlSource::new(&pg.url, Some(sleepy), None).unwrap();
        let mut conn = source.connect(CONNECT).await.unwrap();
        conn.set_query_timeout(Duration::from_millis(300));
        let started = Instant::now();
        let e = conn.stock(&vars("", "sleep")).await.unwrap_err();
        assert_eq!(e.kind, SqlErrorKind::Timeout, "{e}");
        assert!(
            e.message.contains("gave no answer to a query within 300ms"),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(conn.stock(&vars("", "")).await.unwrap(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_200k_orders_are_read_well_under_three_seconds() {
    bounded(async {
        let pg = postgres().await;
        pg_setup(
            &pg.url,
            &[
                "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint NOT NULL, \
                 item_id varchar(64) NOT NULL, state varchar(16) NOT NULL, \
                 created_at timestamp(6) NOT NULL)",
                "INSERT INTO orders SELECT g, 1000000 + g, 'item-7', \
                 CASE WHEN g % 3 = 0 THEN 'held' ELSE 'paid' END, \
                 timestamp '2025-01-02 03:04:05.123456' + g * interval '1 microsecond' \
                 FROM generate_series(1, 200000) AS g",
                "VACUUM ANALYZE orders",
            ],
        )
        .await;
        let source = SqlSource::new(
            &pg.url,
            None,
            Some(
                "SELECT id, user_id, item_id, state, created_at FROM orders \
                 WHERE item_id = 'item-' || {item} ORDER BY id",
            ),
        )
        .unwrap();
        let mut conn = source.connect(CONNECT).await.unwrap();
        let v = vars("7", "spring");
        let started = Instant::now();
        assert_eq!(conn.count_orders(&v).await.unwrap(), 200_000);
        let counted = started.elapsed();
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            let orders = conn.orders(&v).await.unwrap();
            best = best.min(started.elapsed());
            assert_eq!(orders.len(), 200_000);
            assert_eq!(
                orders[0],
                order("1", "1000001", "item-7", "paid", T0_US + 1)
            );
            assert_eq!(orders[199_999].created_unix_us, T0_US + 200_000);
        }
        let build = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        eprintln!("200,000 orders read in {best:?} (best of 3; count(*) in {counted:?}; {build})");
        // The bound is for a release build; a debug build gets more room.
        let bound = if cfg!(debug_assertions) { 10 } else { 3 };
        assert!(best < Duration::from_secs(bound), "{best:?}");
    })
    .await;
}

const MY_SHOP: &[&str] = &[
    "CREATE TABLE items (id varchar(64) PRIMARY KEY, sale varchar(64) NOT NULL, stock int NOT NULL)",
    "INSERT INTO items VALUES ('7', 'spring', 42), ('8', 'spring', 1)",
    "CREATE TABLE orders (id bigint AUTO_INCREMENT PRIMARY KEY, user_id bigint unsigned NOT NULL, \
     item_id varchar(64) NOT NULL, state enum('held', 'paid') NOT NULL, \
     created_at timestamp(6) NOT NULL)",
    "INSERT INTO orders (user_id, item_id, state, created_at) VALUES \
     (101, '7', 'paid', '2025-01-02 03:04:05.123456'), \
     (102, '7', 'held', '2025-01-02 03:04:06.123456'), \
     (103, '8', 'paid', '2025-01-02 03:04:07')",
    "CREATE TABLE variety (n decimal(20,0), t text, c char(8), vb varbinary(16), \
     i1 tinyint, i4 int, dt datetime(6), d0 datetime, f8 double, ms bigint, de decimal(20,6), \
     d date)",
    "INSERT INTO variety VALUES (12345678901234567890, 'user-1', 'ab', 'bin', 3, 4, \
     '2025-01-02 03:04:05.123456', '2025-01-02 03:04:05', 1735787045.123456, 1735787045123, \
     1735787045.123456, '2025-01-02')",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_orders_and_stock_are_read_from_a_shops_schema() {
    bounded(async {
        let db = mariadb().await;
        my_setup(&db.url, MY_SHOP).await;
        let url = db.url.as_str();
        let source = SqlSource::new(
            url,
            Some("SELECT stock FROM items WHERE id = {item} AND sale = {sale}"),
            Some(
                "SELECT id, user_id, item_id, state, created_at FROM orders \
                 WHERE item_id = {item} ORDER BY id -- the item's orders",
            ),
        )
        .unwrap();
        let mut conn = source.connect(CONNECT).await.unwrap();
        let v = vars("7", "spring");
        assert_eq!(conn.stock(&v).await.unwrap(), 42);
        assert_eq!(conn.count_orders(&v).await.unwrap(), 2);
        let expected = vec![
            order("1", "101", "7", "paid", T0_US),
            order("2", "102", "7", "held", T0_US + 1_000_000),
        ];
        assert_eq!(conn.orders(&v).await.unwrap(), expected);
        let snap = conn.snapshot(&v).await.unwrap();
        assert_eq!((snap.stock, snap.orders), (Some(42), Some(expected)));
        assert_error(
            read_orders(url, "SELECT * FROM no_such_table").await,
            SqlErrorKind::Query,
            &[
                "the orders query failed on MySQL grab@127.0.0.1:",
                "no_such_table",
            ],
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_columns_are_decoded_forgivingly_by_their_types() {
    bounded(async {
        let db = mariadb().await;
        my_setup(&db.url, MY_SHOP).await;
        let url = db.url.as_str();
        for (sql, expected) in [
            (
                "SELECT n, t, c, vb, dt FROM variety",
                order("12345678901234567890", "user-1", "ab", "bin", T0_US),
            ),
            (
                "SELECT i1, i4, t, t, d0 FROM variety",
                order("3", "4", "user-1", "user-1", T0_US - 123_456),
            ),
            (
                "SELECT i4, t, t, t, f8 FROM variety",
                order("4", "user-1", "user-1", "user-1", T0_US),
            ),
            (
                "SELECT i4, t, t, t, ms FROM variety",
                order("4", "user-1", "user-1", "user-1", T0_US - 456),
            ),
            (
                "SELECT i4, t, t, t, de FROM variety",
                order("4", "user-1", "user-1", "user-1", T0_US),
            ),
            (
                "SELECT CAST(i4 AS CHAR), t, t, t, UNIX_TIMESTAMP(dt) FROM variety",
                order("4", "user-1", "user-1", "user-1", T0_US),
            ),
        ] {
            let got = read_orders(url, sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(got, vec![expected], "{sql}");
        }
        for (sql, expected) in [
            ("SELECT SUM(stock) FROM items", 43),
            ("SELECT COUNT(*) FROM items", 2),
            ("SELECT CAST(12 AS UNSIGNED)", 12),
        ] {
            assert_eq!(read_stock(url, sql).await.unwrap(), expected, "{sql}");
        }
        assert_error(
            read_orders(url, "SELECT i4, t, t, t, d FROM variety").await,
            SqlErrorKind::Shape,
            &["column 5 (d) is DATE; it must be the creation time"],
        );
        assert_error(
            read_orders(url, "SELECT i4, t FROM variety WHERE 1 = 0").await,
            SqlErrorKind::Shape,
            &["returns 2 columns"],
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_the_read_only_transaction_refuses_writes() {
    bounded(async {
        let db = mariadb().await;
        my_setup(
            &db.url,
            &[
                "CREATE TABLE t (a int)",
                "INSERT INTO t VALUES (1)",
                "CREATE FUNCTION wipe() RETURNS int MODIFIES SQL DATA \
                 BEGIN DELETE FROM t; RETURN 0; END",
            ],
        )
        .await;
        let url = db.url.as_str();
        // A SELECT that passes the check, calling a function that writes: the server refuses.
        assert_error(
            read_stock(url, "SELECT wipe()").await,
            SqlErrorKind::Query,
            &["READ ONLY transaction"],
        );
        for (sql, says) in [
            ("DELETE FROM t", "READ ONLY transaction"),
            ("INSERT INTO t VALUES (2)", "READ ONLY transaction"),
            ("SELECT 1; DELETE FROM t", "SQL syntax"),
        ] {
            assert!(
                SqlSource::new(url, Some(sql), None).is_err(),
                "{sql} passes the check"
            );
            let source = SqlSource::new_unchecked(url, Some(sql), None).unwrap();
            let mut conn = source.connect(CONNECT).await.unwrap();
            let e = conn.stock(&vars("", "")).await.unwrap_err();
            assert_eq!(e.kind, SqlErrorKind::Query, "{sql}: {e}");
            assert!(e.message.contains(says), "{sql}: {e}");
        }
        assert_eq!(
            read_stock(url, "SELECT COUNT(*) FROM t WHERE a = 1")
                .await
                .unwrap(),
            1
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_a_wrong_password_is_a_login_error_that_never_shows_it() {
    bounded(async {
        let db = mariadb().await;
        my_setup(
            &db.url,
            &["CREATE TABLE t (a int)", "INSERT INTO t VALUES (1)"],
        )
        .await;
        // A read-only user with a password, created by root over the Unix socket.
        let right = "Right-pw.2";
        let root = sqlx::mysql::MySqlConnectOptions::new()
            .socket(&db.socket)
            .username("root");
        let mut root = sqlx::MySqlConnection::connect_with(&root).await.unwrap();
        for s in [
            format!("CREATE USER 'shop'@'127.0.0.1' IDENTIFIED BY '{right}'"),
            "GRANT SELECT ON grab.* TO 'shop'@'127.0.0.1'".to_string(),
        ] {
            root.execute(s.as_str()).await.unwrap();
        }
        let at = format!("127.0.0.1:{}", db.port);
        let source = SqlSource::new(
            &format!("mariadb://shop:${{SHOP_PW}}@{at}/grab"),
            Some("SELECT COUNT(*) FROM t"),
            None,
        )
        .unwrap();
        let env_with = |pw: &'static str| move |_: &str| Some(pw.to_string());
        let mut conn = source
            .connect_with_env(CONNECT, &env_with(right))
            .await
            .unwrap();
        assert_eq!(conn.stock(&vars("", "")).await.unwrap(), 1);
        let wrong = "wr0ng-Secret";
        let e = source
            .connect_with_env(CONNECT, &env_with(wrong))
            .await
            .unwrap_err();
        assert_eq!(e.kind, SqlErrorKind::Login, "{e}");
        for s in [
            "MariaDB at",
            &at,
            "user shop",
            "from ${SHOP_PW}",
            "Access denied",
        ] {
            assert!(e.message.contains(s), "{s:?} not in: {e}");
        }
        assert!(
            !e.message.contains(wrong) && !format!("{e:?}").contains(wrong),
            "{e:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_without_a_zone_are_read_in_the_zone_they_were_written_in() {
    bounded(async {
        // MariaDB: the server's zone is +08:00 and the shop writes NOW() into a DATETIME. Read
        // without a declared zone, the server's own is used; a declared zone wins.
        let db = mariadb().await;
        let root = format!(
            "mysql://root@localhost/grab?socket={}",
            db.socket.display()
        );
        my_setup(&root, &["SET GLOBAL time_zone = '+08:00'"]).await;
        my_setup(
            &db.url,
            &[
                "CREATE TABLE orders (id int PRIMARY KEY, user_id int, item varchar(8), \
                 state varchar(8), created_at datetime(6))",
                // As the shop's own client writes: in the server's zone (sqlx sets +00:00).
                "SET time_zone = @@global.time_zone",
                "INSERT INTO orders VALUES (1, 101, '7', 'paid', NOW(6))",
            ],
        )
        .await;
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        let sql = "SELECT id, user_id, item, state, created_at FROM orders";
        let read = |zone: Option<i32>| {
            let source = SqlSource::new(&db.url, None, Some(sql))
                .unwrap()
                .with_time_zone(zone);
            async move {
                let mut conn = source.connect(CONNECT).await.unwrap();
                conn.orders(&vars("7", "spring")).await.unwrap()[0].created_unix_us
            }
        };
        let server = read(None).await;
        assert!(
            (server - now_us).abs() < 60_000_000,
            "read in the server's zone: {} s from now",
            (server - now_us) / 1_000_000
        );
        let declared_utc = read(Some(0)).await;
        assert_eq!(declared_utc - server, 8 * 3600 * 1_000_000);

        // PostgreSQL: a `timestamp` column written in +08:00, declared so.
        let pg = postgres().await;
        pg_setup(
            &pg.url,
            &[
                "CREATE TABLE orders (id int, user_id int, item text, state text, created_at timestamp(6))",
                "INSERT INTO orders VALUES (1, 101, '7', 'paid', '2025-01-02 11:04:05.123456')",
            ],
        )
        .await;
        let source = SqlSource::new(&pg.url, None, Some(sql))
            .unwrap()
            .with_time_zone(Some(8 * 3600));
        let mut conn = source.connect(CONNECT).await.unwrap();
        let got = conn.orders(&vars("7", "spring")).await.unwrap();
        assert_eq!(got[0].created_unix_us, T0_US);
        // A timestamptz carries its zone: a declared zone does not move it.
        pg_setup(
            &pg.url,
            &[
                "CREATE TABLE zoned (id int, user_id int, item text, state text, created_at timestamptz)",
                "INSERT INTO zoned VALUES (1, 101, '7', 'paid', '2025-01-02 11:04:05.123456+08')",
            ],
        )
        .await;
        let source = SqlSource::new(
            &pg.url,
            None,
            Some("SELECT id, user_id, item, state, created_at FROM zoned"),
        )
        .unwrap()
        .with_time_zone(Some(8 * 3600));
        let mut conn = source.connect(CONNECT).await.unwrap();
        let got = conn.orders(&vars("7", "spring")).await.unwrap();
        assert_eq!(got[0].created_unix_us, T0_US);
    })
    .await;
}
