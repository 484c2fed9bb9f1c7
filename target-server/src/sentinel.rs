//! The master of a Redis watched by Sentinel, found by asking the sentinels
//! (`SENTINEL get-master-addr-by-name NAME`) and found again after a failover: a command that
//! fails on the connection (dropped, refused, `READONLY` from a demoted master) makes the next
//! command discover the master anew. The command that failed is answered with its error, never
//! retried here: whether it took effect is unknown, and the caller says so.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use tokio::sync::Mutex;

/// A connection to whichever Redis the sentinels name as master right now.
pub struct SentinelMaster {
    /// The sentinels' URLs, asked in turn until one names a master.
    sentinels: Vec<String>,
    /// The monitored master's name (`sentinel monitor NAME ...`).
    name: String,
    /// The bound of each discovery step and of each command's answer.
    timeout: Duration,
    /// The master's connection once found, with a generation number so that a failed command
    /// forgets only the connection it failed on, not a newer one another task found since.
    current: Mutex<(u64, Option<MultiplexedConnection>)>,
}

impl SentinelMaster {
    /// Finds the master named `name` through `sentinels` and connects to it.
    pub async fn connect(
        sentinels: Vec<String>,
        name: String,
        timeout: Duration,
    ) -> redis::RedisResult<Arc<SentinelMaster>> {
        let master = Arc::new(SentinelMaster {
            sentinels,
            name,
            timeout,
            current: Mutex::new((0, None)),
        });
        master.get().await?;
        Ok(master)
    }

    /// The master's connection: the one in use, or a new one after asking the sentinels.
    async fn get(&self) -> redis::RedisResult<(u64, MultiplexedConnection)> {
        let mut current = self.current.lock().await;
        if let Some(conn) = &current.1 {
            return Ok((current.0, conn.clone()));
        }
        let conn = self.discover().await?;
        current.0 += 1;
        current.1 = Some(conn.clone());
        Ok((current.0, conn))
    }

    /// Forgets the connection of generation `generation` (a command failed on it).
    async fn forget(&self, generation: u64) {
        let mut current = self.current.lock().await;
        if current.0 == generation {
            current.1 = None;
        }
    }

    /// Asks each sentinel for the master's address and connects to it, checking that it says
    /// it is a master (`ROLE`): a sentinel may still name a master that is gone or demoted.
    async fn discover(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut last = None;
        for sentinel in &self.sentinels {
            match self.ask(sentinel).await {
                Ok(conn) => return Ok(conn),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Client, "no sentinel given"))
        }))
    }

    /// One sentinel's answer, and a connection to the master it names.
    async fn ask(&self, sentinel: &str) -> redis::RedisResult<MultiplexedConnection> {
        let mut conn = self.open(sentinel).await?;
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.name)
            .query_async(&mut conn)
            .await?;
        let Some((host, port)) = addr else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "the sentinel knows no such master",
                self.name.clone(),
            )));
        };
        let mut master = self.open(&format!("redis://{host}:{port}/0")).await?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut master).await?;
        let is_master = matches!(role.first(), Some(redis::Value::BulkString(b)) if b == b"master");
        if !is_master {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "the Redis the sentinel names is not a master (yet)",
                format!("{host}:{port}"),
            )));
        }
        Ok(master)
    }

    /// A multiplexed connection to `url` with this master's timeouts.
    async fn open(&self, url: &str) -> redis::RedisResult<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        redis::Client::open(url)?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

/// Whether `err` says the connection (not the command) failed, so the master must be found again.
fn lost_master(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || err.code() == Some("READONLY")
}

/// A handle on a [`SentinelMaster`] usable wherever a Redis connection is: each command goes to
/// the master's connection of the moment.
#[derive(Clone)]
pub struct SentinelConn(pub Arc<SentinelMaster>);

impl SentinelConn {
    /// The master's connection of the moment, kept for the commands that must reach the same
    /// server: a grant and the `WAIT` for its replication. Were the `WAIT` sent on a connection
    /// found after a failover, it would wait for that server's writes, not the grant's, and
    /// confirm a grant the failover lost.
    pub async fn pin(&self) -> redis::RedisResult<PinnedConn> {
        let (generation, conn) = self.0.get().await?;
        Ok(PinnedConn {
            master: Arc::clone(&self.0),
            generation,
            conn,
        })
    }
}

/// One connection of a [`SentinelMaster`] ([`SentinelConn::pin`]): a command that fails on it
/// makes the master's next command discover the master anew, and is not retried elsewhere.
#[derive(Clone)]
pub struct PinnedConn {
    /// The master it belongs to, told when the connection is lost.
    master: Arc<SentinelMaster>,
    /// The generation of `conn` in `master` (what is forgotten when it fails).
    generation: u64,
    /// The connection itself.
    conn: MultiplexedConnection,
}

impl PinnedConn {
    /// Tells the master its connection is lost when `answer` says so.
    async fn check<T>(&self, answer: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(err) = &answer
            && lost_master(err)
        {
            self.master.forget(self.generation).await;
        }
        answer
    }
}

impl ConnectionLike for PinnedConn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            let answer = self.conn.req_packed_command(cmd).await;
            self.check(answer).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            let answer = self.conn.req_packed_commands(pipeline, offset, count).await;
            self.check(answer).await
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move { self.pin().await?.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            self.pin()
                .await?
                .req_packed_commands(pipeline, offset, count)
                .await
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}
