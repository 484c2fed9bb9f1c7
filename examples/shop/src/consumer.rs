//! `shop consume`: the queue consumer that turns queued buys into orders.
//!
//! It is a member of the consumer group `shop-consumers` on the stream `shop:orders`. It first
//! reads its own pending messages (delivered before, never acknowledged: a crash left them),
//! then new ones, blocking. Each message is one database transaction: insert the order (nothing
//! on a conflict with UNIQUE(user_id, item_id)) and, only when a row was inserted, decrement
//! shop_items.stock; commit; then XACK. A crash between the commit and the XACK redelivers the
//! message, whose insert then does nothing: at-least-once delivery, exactly one order.
//!
//! A message that cannot be processed (the database is down) stays pending and is retried from
//! the pending list after a pause; one without a buy (deleted by `init --overwrite`, or
//! malformed) is acknowledged and skipped.

use std::future::Future;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::args::{ConsumeConfig, Flaw};
use crate::db::Db;
use crate::error::Error;
use crate::setup::{Connections, announce_flaws};
use crate::store::{Message, ReadFrom, Store};

/// Messages read per XREADGROUP.
pub const BATCH: usize = 16;

/// How long a read of new messages blocks in Redis (and so, at most, how long a stop waits).
pub const BLOCK: Duration = Duration::from_secs(1);

/// The pause after a failed read or message before trying again.
const RETRY: Duration = Duration::from_millis(200);

/// Database connections of the consumer (it writes one message at a time).
const POOL: u32 = 2;

/// How the deliberate flaws change the consumer (read once from the flags).
#[derive(Debug, Clone, Copy, Default)]
struct Flaws {
    /// `ack-before-insert`: XACK first; every 25th message then lost.
    ack_before_insert: bool,
    /// `no-unique-key`: every 10th message processed twice.
    redeliver: bool,
    /// `db-stock-drift`: every 20th inserted order decrements twice.
    drift: bool,
}

/// What handling one message came to.
enum Step {
    /// Done with it (written and acknowledged, or skipped).
    Done,
    /// The stop came while it waited (`--slow`): it stays pending.
    Stopped,
}

/// A consumer that has joined the group.
pub struct Consumer {
    /// Redis: the stream and the group.
    store: Store,
    /// The database: the orders.
    db: Db,
    /// Its name in the group (its pending list is kept under it).
    name: String,
    /// The flaws switched on.
    flaws: Flaws,
    /// `--crash-after`: exit abruptly once this many messages are handled.
    crash_after: Option<u64>,
    /// `--slow`: write no order earlier than this after its buy was queued.
    slow: Option<Duration>,
    /// Messages with a buy this process has handled: the n of "every n-th".
    handled: u64,
    /// Orders this process has inserted (the drift counts these).
    inserted: u64,
}

impl Consumer {
    /// Connects, checks the tables exist, creates the group if missing and joins it.
    pub async fn open(config: &ConsumeConfig) -> Result<Consumer, Error> {
        let c = Connections::open(&config.common, BLOCK, POOL).await?;
        let tables = c.db.tables().await.map_err(|e| c.db_err(e))?;
        if !(tables.items && tables.orders) {
            return Err(Error::NotSetUp(format!(
                "the tables shop_items and shop_orders are missing in {}",
                c.db.target()
            )));
        }
        c.store.ensure_group().await.map_err(|e| c.redis_err(e))?;
        c.store
            .join(&config.consumer)
            .await
            .map_err(|e| c.redis_err(e))?;
        let common = &config.common;
        Ok(Consumer {
            store: c.store,
            db: c.db,
            name: config.consumer.clone(),
            flaws: Flaws {
                ack_before_insert: common.has(Flaw::AckBeforeInsert),
                redeliver: common.has(Flaw::NoUniqueKey),
                drift: common.has(Flaw::DbStockDrift),
            },
            crash_after: config.crash_after,
            slow: config.slow,
            handled: 0,
            inserted: 0,
        })
    }

    /// Consumes until `shutdown` completes: pending messages first, then new ones. A message is
    /// never cut short by the stop (except while it waits under `--slow`, before anything is
    /// written: it stays pending).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        tokio::pin!(shutdown);
        let mut from = ReadFrom::Pending;
        loop {
            let read = tokio::select! {
                biased;
                _ = &mut shutdown => return Ok(()),
                read = self.store.read(&self.name, from, BATCH, BLOCK) => read,
            };
            let messages = match read {
                Ok(messages) => messages,
                Err(err) => {
                    tracing::warn!("reading the queue: {}", self.store.describe(&err));
                    if err.is_no_group() {
                        // The stream (and its group) was deleted under us: make them again.
                        let again = self.store.ensure_group().await;
                        if let Err(e) = again.and(self.store.join(&self.name).await) {
                            tracing::warn!("recreating the group: {}", self.store.describe(&e));
                        }
                    }
                    if pause(&mut shutdown).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            if messages.is_empty() {
                // The pending list is drained (or the block ran out): read new messages.
                from = ReadFrom::New;
                continue;
            }
            for message in &messages {
                match self.handle(message, &mut shutdown).await {
                    Ok(Step::Done) => {}
                    Ok(Step::Stopped) => return Ok(()),
                    Err(why) => {
                        // It and the rest of the batch stay pending: read them again from there.
                        tracing::warn!("message {}: {why}; retrying", message.id);
                        from = ReadFrom::Pending;
                        if pause(&mut shutdown).await {
                            return Ok(());
                        }
                        break;
                    }
                }
                if stopped(&mut shutdown).await {
                    return Ok(());
                }
            }
        }
    }

    /// One message: wait (`--slow`), write, acknowledge, in the order the flaws say.
    async fn handle(
        &mut self,
        message: &Message,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<Step, String> {
        let Some(order) = &message.order else {
            tracing::warn!(
                "message {} carries no buy (deleted or malformed): acknowledged, skipped",
                message.id
            );
            self.ack(message).await?;
            return Ok(Step::Done);
        };
        let n = self.handled + 1;
        // A wait under a millisecond is not slept: the timer's 1 ms tick would make every
        // message of a burst cost a millisecond, and the lag would grow with the backlog.
        if let Some(wait) = self
            .slow
            .map(|slow| wait_for(message, slow))
            .filter(|w| *w > Duration::from_millis(1))
        {
            tokio::select! {
                biased;
                _ = shutdown.as_mut() => return Ok(Step::Stopped),
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if self.flaws.ack_before_insert {
            self.ack(message).await?;
            if n.is_multiple_of(25) {
                // The flaw: acknowledged, then "the process died" before the insert.
                tracing::debug!("ack-before-insert: message {} lost", message.id);
                self.handled = n;
                return Ok(Step::Done);
            }
        }
        let times = if self.flaws.redeliver && n.is_multiple_of(10) {
            2
        } else {
            1
        };
        for _ in 0..times {
            let decrements = if self.flaws.drift && (self.inserted + 1).is_multiple_of(20) {
                2
            } else {
                1
            };
            let inserted = self
                .db
                .write_order(order.user, &order.item, decrements)
                .await
                .map_err(|e| self.db.describe(&e))?;
            if inserted {
                self.inserted += 1;
            }
        }
        self.handled = n;
        if self.crash_after == Some(n) {
            eprintln!(
                "shop consume: --crash-after {n}: exiting with status 1 before acknowledging \
                 message {} (as if killed)",
                message.id
            );
            let _ = std::io::stderr().flush();
            std::process::exit(crate::error::exit::INTERNAL);
        }
        if !self.flaws.ack_before_insert {
            self.ack(message).await?;
        }
        Ok(Step::Done)
    }

    /// XACK, the failure in words.
    async fn ack(&self, message: &Message) -> Result<(), String> {
        self.store
            .ack(&message.id)
            .await
            .map_err(|e| format!("acknowledging: {}", self.store.describe(&e)))
    }
}

/// How long `--slow` makes `message` wait: until `slow` after it was queued (by Redis' clock,
/// from its id), never more than `slow`.
fn wait_for(message: &Message, slow: Duration) -> Duration {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let due_ms = message
        .queued_at_ms()
        .map_or(now_ms, |at| at.saturating_add(slow.as_millis() as u64));
    Duration::from_millis(due_ms.saturating_sub(now_ms)).min(slow)
}

/// Sleeps [`RETRY`]; true when the stop came first.
async fn pause(shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>) -> bool {
    tokio::select! {
        biased;
        _ = shutdown.as_mut() => true,
        _ = tokio::time::sleep(RETRY) => false,
    }
}

/// True when the stop has come (without waiting).
async fn stopped(shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>) -> bool {
    tokio::select! {
        biased;
        _ = shutdown.as_mut() => true,
        _ = std::future::ready(()) => false,
    }
}

/// The whole life of `shop consume` after flag parsing. Returns once a signal stopped it.
pub fn run(config: ConsumeConfig) -> Result<(), Error> {
    announce_flaws(&config.common, "consume");
    crate::server::runtime()?.block_on(async move {
        // Listen for the stop before saying we are ready: a SIGTERM right after the line must
        // stop us cleanly, not kill us.
        let shutdown = crate::server::shutdown_signal();
        let consumer = Consumer::open(&config).await?;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "consuming");
        let _ = out.flush();
        drop(out);
        consumer.run(shutdown).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_waits_until_due_and_never_longer_than_slow() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let msg = |ms: u64| Message {
            id: format!("{ms}-0"),
            order: None,
        };
        let slow = Duration::from_millis(2000);
        let w = wait_for(&msg(now - 500), slow);
        assert!(
            w <= Duration::from_millis(1500) && w >= Duration::from_millis(1400),
            "{w:?}"
        );
        assert_eq!(wait_for(&msg(now - 5000), slow), Duration::ZERO);
        // A clock far ahead of ours: never more than `slow`.
        assert_eq!(wait_for(&msg(now + 60_000), slow), slow);
        assert_eq!(
            wait_for(
                &Message {
                    id: "garbage".into(),
                    order: None
                },
                slow
            ),
            Duration::ZERO
        );
    }
}
