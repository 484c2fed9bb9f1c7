//! Every SQL statement of the shop, for PostgreSQL and for MySQL/MariaDB, each call bounded by
//! `--db-timeout`. The schema is the same on both:
//!
//! ```sql
//! shop_items  (id varchar(64) PRIMARY KEY, stock int NOT NULL)
//! shop_orders (id bigserial | bigint AUTO_INCREMENT PRIMARY KEY,
//!              user_id bigint NOT NULL, item_id varchar(64) NOT NULL, state varchar(16) NOT NULL,
//!              created_at timestamp(6) NOT NULL DEFAULT now (UTC),
//!              CONSTRAINT shop_orders_user_item UNIQUE (user_id, item_id))
//! ```
//!
//! The unique key is what makes a redelivered message harmless: the consumer's insert does
//! nothing on a conflict (`ON CONFLICT DO NOTHING` / `INSERT IGNORE`) and the stock is only
//! decremented when a row was inserted. The `no-unique-key` flaw creates a plain index instead.

use std::time::Duration;

use sqlx::Connection;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};

use crate::target::{Backend, DbTarget, redact};

/// Why a database call gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The call (or transaction) took longer than `--db-timeout`.
    #[error("database call timed out")]
    Timeout,
    /// The driver or the server failed.
    #[error("{0}")]
    Sql(#[from] sqlx::Error),
}

/// The pool of one backend.
#[derive(Debug, Clone)]
enum Pool {
    /// PostgreSQL.
    Pg(PgPool),
    /// MySQL or MariaDB.
    My(MySqlPool),
}

/// The shop's handle on its database.
#[derive(Debug, Clone)]
pub struct Db {
    /// Connections, opened on demand up to the pool's size.
    pool: Pool,
    /// Where it is: names it in messages, and its password redacts driver messages.
    target: DbTarget,
    /// The bound of every call.
    timeout: Duration,
}

/// Which of the shop's tables exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    /// `shop_items`.
    pub items: bool,
    /// `shop_orders`.
    pub orders: bool,
}

impl Db {
    /// Connects to `target` once (the login is checked now) and makes a pool of up to
    /// `max_connections`, opened on demand.
    pub async fn open(
        target: &DbTarget,
        timeout: Duration,
        max_connections: u32,
    ) -> Result<Db, DbError> {
        let password = target.password.as_ref().map(|s| s.expose());
        let pool = match target.backend {
            Backend::Postgres => {
                let mut options = PgConnectOptions::new_without_pgpass()
                    .host(&target.host)
                    .port(target.port)
                    .username(&target.user)
                    .database(&target.database)
                    .ssl_mode(PgSslMode::Disable)
                    .application_name("shop");
                if let Some(p) = password {
                    options = options.password(p);
                }
                // One connection now, so that a refusal is reported at once and as itself (the
                // pool would retry a refused connection until its timeout).
                let probe = sqlx::PgConnection::connect_with(&options);
                bounded(timeout, probe).await??.close().await?;
                Pool::Pg(
                    PgPoolOptions::new()
                        .max_connections(max_connections)
                        .acquire_timeout(timeout)
                        .connect_lazy_with(options),
                )
            }
            Backend::MySql => {
                let mut options = MySqlConnectOptions::new()
                    .host(&target.host)
                    .port(target.port)
                    .username(&target.user)
                    .database(&target.database)
                    .ssl_mode(MySqlSslMode::Disabled);
                if let Some(p) = password {
                    options = options.password(p);
                }
                let probe = sqlx::MySqlConnection::connect_with(&options);
                bounded(timeout, probe).await??.close().await?;
                Pool::My(
                    MySqlPoolOptions::new()
                        .max_connections(max_connections)
                        .acquire_timeout(timeout)
                        .connect_lazy_with(options),
                )
            }
        };
        Ok(Db {
            pool,
            target: target.clone(),
            timeout,
        })
    }

    /// `err` in words, without the password.
    pub fn describe(&self, err: &DbError) -> String {
        redact(&err.to_string(), self.target.password.as_ref())
    }

    /// Where the database is, for messages (`PostgreSQL at HOST:PORT as USER (database DB)`).
    pub fn target(&self) -> &DbTarget {
        &self.target
    }

    /// Which of the shop's tables exist in the URL's database (PostgreSQL: its current schema).
    pub async fn tables(&self) -> Result<Tables, DbError> {
        let names: Vec<(String,)> = match &self.pool {
            Pool::Pg(p) => {
                let q = sqlx::query_as(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = current_schema() \
                     AND table_name IN ('shop_items', 'shop_orders')",
                );
                self.bounded(q.fetch_all(p)).await?
            }
            Pool::My(p) => {
                let q = sqlx::query_as(
                    "SELECT CAST(table_name AS CHAR) FROM information_schema.tables \
                     WHERE table_schema = DATABASE() \
                     AND table_name IN ('shop_items', 'shop_orders')",
                );
                self.bounded(q.fetch_all(p)).await?
            }
        };
        Ok(Tables {
            items: names.iter().any(|(n,)| n == "shop_items"),
            orders: names.iter().any(|(n,)| n == "shop_orders"),
        })
    }

    /// True when shop_orders has a UNIQUE constraint (the shop's is on (user_id, item_id)).
    pub async fn has_unique_key(&self) -> Result<bool, DbError> {
        let (n,): (i64,) = match &self.pool {
            Pool::Pg(p) => {
                let q = sqlx::query_as(
                    "SELECT count(*) FROM information_schema.table_constraints \
                     WHERE table_schema = current_schema() AND table_name = 'shop_orders' \
                     AND constraint_type = 'UNIQUE'",
                );
                self.bounded(q.fetch_one(p)).await?
            }
            Pool::My(p) => {
                let q = sqlx::query_as(
                    "SELECT COUNT(*) FROM information_schema.table_constraints \
                     WHERE table_schema = DATABASE() AND table_name = 'shop_orders' \
                     AND constraint_type = 'UNIQUE'",
                );
                self.bounded(q.fetch_one(p)).await?
            }
        };
        Ok(n > 0)
    }

    /// Creates the tables that are missing; `unique` false is the `no-unique-key` flaw (a plain
    /// index on (user_id, item_id) instead of the unique key).
    pub async fn create_schema(&self, unique: bool) -> Result<(), DbError> {
        let key = if unique {
            ",\n  CONSTRAINT shop_orders_user_item UNIQUE (user_id, item_id)"
        } else {
            ""
        };
        match &self.pool {
            Pool::Pg(p) => {
                let items = "CREATE TABLE IF NOT EXISTS shop_items (\n  \
                             id varchar(64) PRIMARY KEY,\n  stock int NOT NULL)";
                let orders = format!(
                    "CREATE TABLE IF NOT EXISTS shop_orders (\n  \
                     id bigserial PRIMARY KEY,\n  user_id bigint NOT NULL,\n  \
                     item_id varchar(64) NOT NULL,\n  state varchar(16) NOT NULL,\n  \
                     created_at timestamp(6) NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'){key})"
                );
                self.bounded(sqlx::query(items).execute(p)).await?;
                self.bounded(sqlx::query(&orders).execute(p)).await?;
                if !unique {
                    let index = "CREATE INDEX IF NOT EXISTS shop_orders_user_item \
                                 ON shop_orders (user_id, item_id)";
                    self.bounded(sqlx::query(index).execute(p)).await?;
                }
            }
            Pool::My(p) => {
                let key = if unique {
                    key
                } else {
                    ",\n  INDEX shop_orders_user_item (user_id, item_id)"
                };
                let items = "CREATE TABLE IF NOT EXISTS shop_items (\n  \
                             id varchar(64) NOT NULL PRIMARY KEY,\n  stock int NOT NULL)";
                let orders = format!(
                    "CREATE TABLE IF NOT EXISTS shop_orders (\n  \
                     id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,\n  \
                     user_id bigint NOT NULL,\n  item_id varchar(64) NOT NULL,\n  \
                     state varchar(16) NOT NULL,\n  \
                     created_at timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6){key})"
                );
                self.bounded(sqlx::query(items).execute(p)).await?;
                self.bounded(sqlx::query(&orders).execute(p)).await?;
            }
        }
        Ok(())
    }

    /// What exists of `item` in the tables that exist: its shop_items row, its orders. Each
    /// finding is a phrase for the refusal message.
    pub async fn existing_rows(&self, item: &str, tables: Tables) -> Result<Vec<String>, DbError> {
        let mut found = Vec::new();
        if tables.items {
            let row: Option<(i32,)> = match &self.pool {
                Pool::Pg(p) => {
                    let q = sqlx::query_as("SELECT stock FROM shop_items WHERE id = $1").bind(item);
                    self.bounded(q.fetch_optional(p)).await?
                }
                Pool::My(p) => {
                    let q = sqlx::query_as("SELECT stock FROM shop_items WHERE id = ?").bind(item);
                    self.bounded(q.fetch_optional(p)).await?
                }
            };
            if row.is_some() {
                found.push(format!("shop_items row {item:?}"));
            }
        }
        if tables.orders {
            let (n,): (i64,) = match &self.pool {
                Pool::Pg(p) => {
                    let q = sqlx::query_as("SELECT count(*) FROM shop_orders WHERE item_id = $1")
                        .bind(item);
                    self.bounded(q.fetch_one(p)).await?
                }
                Pool::My(p) => {
                    let q = sqlx::query_as("SELECT COUNT(*) FROM shop_orders WHERE item_id = ?")
                        .bind(item);
                    self.bounded(q.fetch_one(p)).await?
                }
            };
            if n > 0 {
                found.push(format!("{n} shop_orders rows of {item:?}"));
            }
        }
        Ok(found)
    }

    /// Puts `item` on sale with `stock`, in one transaction. With `overwrite`, its orders are
    /// deleted and its row replaced; without, an existing row refuses (returns false, nothing
    /// written).
    pub async fn set_up_item(
        &self,
        item: &str,
        stock: u32,
        overwrite: bool,
    ) -> Result<bool, DbError> {
        let stock = stock as i32; // checked ≤ i32::MAX by args
        match &self.pool {
            Pool::Pg(p) => {
                self.bounded(async {
                    let mut tx = p.begin().await?;
                    let done = if overwrite {
                        sqlx::query("DELETE FROM shop_orders WHERE item_id = $1")
                            .bind(item)
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query(
                            "INSERT INTO shop_items (id, stock) VALUES ($1, $2) \
                             ON CONFLICT (id) DO UPDATE SET stock = EXCLUDED.stock",
                        )
                        .bind(item)
                        .bind(stock)
                        .execute(&mut *tx)
                        .await?;
                        true
                    } else {
                        sqlx::query(
                            "INSERT INTO shop_items (id, stock) VALUES ($1, $2) \
                             ON CONFLICT (id) DO NOTHING",
                        )
                        .bind(item)
                        .bind(stock)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                            == 1
                    };
                    tx.commit().await?;
                    Ok(done)
                })
                .await
            }
            Pool::My(p) => {
                self.bounded(async {
                    let mut tx = p.begin().await?;
                    let done = if overwrite {
                        sqlx::query("DELETE FROM shop_orders WHERE item_id = ?")
                            .bind(item)
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query(
                            "INSERT INTO shop_items (id, stock) VALUES (?, ?) \
                             ON DUPLICATE KEY UPDATE stock = VALUES(stock)",
                        )
                        .bind(item)
                        .bind(stock)
                        .execute(&mut *tx)
                        .await?;
                        true
                    } else {
                        sqlx::query("INSERT IGNORE INTO shop_items (id, stock) VALUES (?, ?)")
                            .bind(item)
                            .bind(stock)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected()
                            == 1
                    };
                    tx.commit().await?;
                    Ok(done)
                })
                .await
            }
        }
    }

    /// The items on sale and their database stock, by id.
    pub async fn items(&self) -> Result<Vec<(String, i32)>, DbError> {
        let sql = "SELECT id, stock FROM shop_items ORDER BY id";
        match &self.pool {
            Pool::Pg(p) => self.bounded(sqlx::query_as(sql).fetch_all(p)).await,
            Pool::My(p) => self.bounded(sqlx::query_as(sql).fetch_all(p)).await,
        }
    }

    /// The id of `user`'s order of `item`, if one was written (the first, should there be
    /// several).
    pub async fn order_of(&self, user: i64, item: &str) -> Result<Option<i64>, DbError> {
        let row: Option<(i64,)> = match &self.pool {
            Pool::Pg(p) => {
                let q = sqlx::query_as(
                    "SELECT id FROM shop_orders WHERE user_id = $1 AND item_id = $2 \
                     ORDER BY id LIMIT 1",
                )
                .bind(user)
                .bind(item);
                self.bounded(q.fetch_optional(p)).await?
            }
            Pool::My(p) => {
                let q = sqlx::query_as(
                    "SELECT id FROM shop_orders WHERE user_id = ? AND item_id = ? \
                     ORDER BY id LIMIT 1",
                )
                .bind(user)
                .bind(item);
                self.bounded(q.fetch_optional(p)).await?
            }
        };
        Ok(row.map(|(id,)| id))
    }

    /// Writes `user`'s order of `item` in one transaction: the insert (nothing on a conflict
    /// with the unique key), then, only if a row was inserted, a stock decrement guarded by
    /// `stock > 0` — and under `db-stock-drift` (`decrements` = 2) a second one without the
    /// guard, so the drift survives a sell-out (the stock goes below zero). Returns whether a
    /// row was inserted.
    pub async fn write_order(
        &self,
        user: i64,
        item: &str,
        decrements: u32,
    ) -> Result<bool, DbError> {
        match &self.pool {
            Pool::Pg(p) => {
                self.bounded(async {
                    let mut tx = p.begin().await?;
                    let inserted = sqlx::query(
                        "INSERT INTO shop_orders (user_id, item_id, state) \
                         VALUES ($1, $2, 'created') ON CONFLICT DO NOTHING",
                    )
                    .bind(user)
                    .bind(item)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    if inserted {
                        for i in 0..decrements {
                            // The drift's extra decrement is the bug: unguarded.
                            let sql = if i == 0 {
                                "UPDATE shop_items SET stock = stock - 1 WHERE id = $1 AND stock > 0"
                            } else {
                                "UPDATE shop_items SET stock = stock - 1 WHERE id = $1"
                            };
                            sqlx::query(sql).bind(item).execute(&mut *tx).await?;
                        }
                    }
                    tx.commit().await?;
                    Ok(inserted)
                })
                .await
            }
            Pool::My(p) => {
                self.bounded(async {
                    let mut tx = p.begin().await?;
                    let inserted = sqlx::query(
                        "INSERT IGNORE INTO shop_orders (user_id, item_id, state) \
                         VALUES (?, ?, 'created')",
                    )
                    .bind(user)
                    .bind(item)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    if inserted {
                        for i in 0..decrements {
                            // The drift's extra decrement is the bug: unguarded.
                            let sql = if i == 0 {
                                "UPDATE shop_items SET stock = stock - 1 WHERE id = ? AND stock > 0"
                            } else {
                                "UPDATE shop_items SET stock = stock - 1 WHERE id = ?"
                            };
                            sqlx::query(sql).bind(item).execute(&mut *tx).await?;
                        }
                    }
                    tx.commit().await?;
                    Ok(inserted)
                })
                .await
            }
        }
    }

    /// Runs `fut` under the per-call timeout. A transaction cut short is rolled back when its
    /// connection goes back to the pool.
    async fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, DbError> {
        Ok(bounded(self.timeout, fut).await??)
    }
}

/// `fut` under `bound`.
async fn bounded<T>(bound: Duration, fut: impl Future<Output = T>) -> Result<T, DbError> {
    tokio::time::timeout(bound, fut)
        .await
        .map_err(|_| DbError::Timeout)
}
