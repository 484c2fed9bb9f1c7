//! `shop init` (and `serve --item`): the schema, and each item's stock in the database and in
//! Redis. Without `--overwrite` everything is checked before anything is written, so a refusal
//! (exit 7) changes nothing.

use crate::args::{Common, Flaw, Setup};
use crate::db::Db;
use crate::error::Error;
use crate::keys::ItemKeys;
use crate::store::Store;

/// Redis and the database, opened. Start-up failures are already [`Error`]s with their exit
/// code; so are the calls made through [`Connections::redis_err`] and [`Connections::db_err`].
pub struct Connections {
    /// Redis.
    pub store: Store,
    /// The database.
    pub db: Db,
    /// `Redis at HOST:PORT`, for messages.
    redis_at: String,
}

impl Connections {
    /// Opens both (Redis first: it is the cheaper to find missing). `block` is the longest
    /// blocking Redis read the process will make; `pool` the database pool's size.
    pub async fn open(
        common: &Common,
        block: std::time::Duration,
        pool: u32,
    ) -> Result<Connections, Error> {
        let redis_at = common.redis.to_string();
        let store = Store::open(&common.redis, common.redis_timeout, block)
            .await
            .map_err(|e| Error::Redis {
                at: redis_at.clone(),
                reason: crate::target::redact(&e.to_string(), common.redis.password()),
            })?;
        let db = Db::open(&common.db, common.db_timeout, pool)
            .await
            .map_err(|e| Error::Db {
                at: common.db.to_string(),
                reason: crate::target::redact(&e.to_string(), common.db.password.as_ref()),
            })?;
        Ok(Connections {
            store,
            db,
            redis_at,
        })
    }

    /// A Redis failure at start as the exit-5 error.
    pub fn redis_err(&self, err: crate::store::StoreError) -> Error {
        Error::Redis {
            at: self.redis_at.clone(),
            reason: self.store.describe(&err),
        }
    }

    /// A database failure at start as the exit-5 error.
    pub fn db_err(&self, err: crate::db::DbError) -> Error {
        Error::Db {
            at: self.db.target().to_string(),
            reason: self.db.describe(&err),
        }
    }
}

/// Creates what is missing of the schema and sets up `setup`'s items. In order:
///
/// 1. shop_orders, if it exists, must have the unique key exactly when `no-unique-key` is off
///    (a table in the other shape is refused: it is never altered or dropped);
/// 2. without `--overwrite`: no Redis key, shop_items row or order of any item may exist;
/// 3. the tables are created if missing, the rows written (one transaction per item: with
///    `--overwrite` its orders deleted and its stock replaced);
/// 4. the Redis keys set (stock, buyers emptied); with `--overwrite` the items' entries are
///    deleted from the stream; the consumer group is created if missing.
pub async fn init(c: &Connections, common: &Common, setup: &Setup) -> Result<(), Error> {
    let db = |e| c.db_err(e);
    let redis = |e| c.redis_err(e);
    let unique = !common.has(Flaw::NoUniqueKey);
    let tables = c.db.tables().await.map_err(db)?;
    if tables.orders {
        let has = c.db.has_unique_key().await.map_err(db)?;
        if has != unique {
            return Err(Error::Schema(if has {
                "shop_orders has a UNIQUE key, and --flaw no-unique-key asks for a table without \
                 one"
                .into()
            } else {
                "shop_orders has no UNIQUE(user_id, item_id) key (it was created with --flaw \
                 no-unique-key), and this run asks for one"
                    .into()
            }));
        }
    }
    let keys: Vec<ItemKeys> = setup.items.iter().map(|i| ItemKeys::new(&i.id)).collect();
    if !setup.overwrite {
        let mut found = c
            .store
            .existing(keys.iter().flat_map(|k| k.all()))
            .await
            .map_err(redis)?;
        for item in &setup.items {
            found.extend(c.db.existing_rows(&item.id, tables).await.map_err(db)?);
        }
        if !found.is_empty() {
            return Err(Error::Exists { found });
        }
    }
    c.db.create_schema(unique).await.map_err(db)?;
    for item in &setup.items {
        if !c
            .db
            .set_up_item(&item.id, item.stock, setup.overwrite)
            .await
            .map_err(db)?
        {
            // Another process wrote the row between the check above and now.
            return Err(Error::Exists {
                found: vec![format!("shop_items row {:?}", item.id)],
            });
        }
    }
    for (item, k) in setup.items.iter().zip(&keys) {
        if !c
            .store
            .set_up(k, item.stock, setup.overwrite)
            .await
            .map_err(redis)?
        {
            let found = c.store.existing(k.all()).await.map_err(redis)?;
            return Err(Error::Exists { found });
        }
    }
    if setup.overwrite {
        let ids: Vec<&str> = setup.items.iter().map(|i| i.id.as_str()).collect();
        let gone = c.store.forget_queued(&ids).await.map_err(redis)?;
        if gone > 0 {
            tracing::info!("--overwrite: deleted {gone} queued messages of {ids:?}");
        }
    }
    c.store.ensure_group().await.map_err(redis)?;
    Ok(())
}

/// Announces each deliberate flaw on stderr, so nobody mistakes a flawed run for a correct one.
pub fn announce_flaws(common: &Common, subcommand: &str) {
    for flaw in &common.flaws {
        eprintln!(
            "shop {subcommand}: WARNING: running with the deliberate flaw `{}` ({}; acts in \
             {}): this shop is WRONG on purpose, for testing an auditor",
            flaw.name(),
            flaw.effect(),
            flaw.acts_in()
        );
    }
}
