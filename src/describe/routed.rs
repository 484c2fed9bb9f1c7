//! A blocking, read-only connection to one Redis or to a Redis Cluster, for the store reader
//! and settling. It finds out which by asking (`INFO cluster`), so a described system needs no
//! setting for it.
//!
//! On one Redis, a batch of reads is one MULTI/EXEC: one atomic snapshot. A Redis Cluster runs
//! MULTI only within one slot, so there a batch is split by slot and each slot's reads are one
//! MULTI/EXEC on the master that owns it. That is not one snapshot across slots; it is read after
//! settling, when the sale is quiescent (nothing in flight, no holds left to expire), so the
//! per-slot snapshots describe the same state.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};

/// Where the reads go.
pub enum Routed {
    /// One Redis.
    Single(redis::Connection),
    /// A Redis Cluster: who owns which slots, and a connection per master, opened when needed.
    Cluster {
        /// `(first slot, last slot, "host:port")` of every slot range.
        ranges: Vec<(u16, u16, String)>,
        /// Open connections by address.
        conns: BTreeMap<String, redis::Connection>,
        /// The URL given (for its credentials, reused for every master).
        seed: redis::ConnectionInfo,
    },
}

/// One read: the key it is routed by (`None`: any slot, e.g. TIME, goes with the first keyed
/// read) and the command.
pub struct Read {
    /// The key whose slot decides where the command runs.
    pub key: Option<String>,
    /// The command.
    pub cmd: redis::Cmd,
}

impl Read {
    /// A read routed by `key`.
    pub fn on(key: impl Into<String>, cmd: redis::Cmd) -> Read {
        Read {
            key: Some(key.into()),
            cmd,
        }
    }

    /// A read any node can answer.
    pub fn anywhere(cmd: redis::Cmd) -> Read {
        Read { key: None, cmd }
    }
}

impl Routed {
    /// Connects to the Redis at `url` and finds out whether it is part of a Redis Cluster.
    pub fn open(url: &str) -> anyhow::Result<Routed> {
        let mut conn = super::store::connect(url)?;
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query(&mut conn)
            .context("INFO cluster")?;
        if !info.lines().any(|l| l.trim() == "cluster_enabled:1") {
            return Ok(Routed::Single(conn));
        }
        let slots: redis::Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut conn)
            .context("CLUSTER SLOTS")?;
        let seed = redis::IntoConnectionInfo::into_connection_info(url)?;
        let ranges = slot_ranges(&slots)?;
        masters_within_reach(url, &ranges)?;
        Ok(Routed::Cluster {
            ranges,
            conns: BTreeMap::new(),
            seed,
        })
    }

    /// Runs `reads` and returns their answers in the same order: one MULTI/EXEC on one Redis,
    /// one per slot on a cluster (see the module's comment for why that is enough).
    pub fn read_all(&mut self, reads: Vec<Read>) -> anyhow::Result<Vec<redis::Value>> {
        match self {
            Routed::Single(conn) => {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for r in &reads {
                    pipe.add_command(r.cmd.clone());
                }
                Ok(pipe.query(conn)?)
            }
            Routed::Cluster {
                ranges,
                conns,
                seed,
            } => {
                let first = reads.iter().find_map(|r| r.key.as_deref()).unwrap_or("");
                let first_slot = slot(first.as_bytes());
                let mut groups: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
                for (i, r) in reads.iter().enumerate() {
                    let s = r.key.as_deref().map_or(first_slot, |k| slot(k.as_bytes()));
                    groups.entry(s).or_default().push(i);
                }
                let mut answers: Vec<Option<redis::Value>> = vec![None; reads.len()];
                for (s, members) in groups {
                    let Some((_, _, addr)) = ranges.iter().find(|(a, b, _)| (*a..=*b).contains(&s))
                    else {
                        bail!("no master of the Redis Cluster serves slot {s}");
                    };
                    let conn = match conns.entry(addr.clone()) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(e) => {
                            e.insert(open_master(seed, addr)?)
                        }
                    };
                    let mut pipe = redis::pipe();
                    pipe.atomic();
                    for &i in &members {
                        pipe.add_command(reads[i].cmd.clone());
                    }
                    let got: Vec<redis::Value> = pipe
                        .query(conn)
                        .with_context(|| format!("reading slot {s} on {addr}"))?;
                    if got.len() != members.len() {
                        bail!(
                            "{addr} gave {} answers for {} reads",
                            got.len(),
                            members.len()
                        );
                    }
                    for (i, v) in members.into_iter().zip(got) {
                        answers[i] = Some(v);
                    }
                }
                Ok(answers
                    .into_iter()
                    .map(|a| a.unwrap_or(redis::Value::Nil))
                    .collect())
            }
        }
    }
}

/// The store rule ([`crate::target::Reach::check_store`]) for the masters a cluster reports:
/// a seed on loopback (the default) vouches only for masters on loopback, so a cluster that
/// reports another host is refused before anything connects to it. A seed off loopback was
/// allowed by the person running grab-bench, and its masters with it.
fn masters_within_reach(seed_url: &str, ranges: &[(u16, u16, String)]) -> anyhow::Result<()> {
    use crate::target::Reach;
    if Reach::Loopback.check_store("", seed_url).is_err() {
        return Ok(());
    }
    for (_, _, addr) in ranges {
        // `host:port`, where an IPv6 host has colons of its own and no brackets.
        let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
        let host = match host.contains(':') && !host.starts_with('[') {
            true => format!("[{host}]"),
            false => host.to_string(),
        };
        Reach::Loopback
            .check_store(
                "a master the Redis Cluster reports (CLUSTER SLOTS)",
                &format!("redis://{host}"),
            )
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(())
}

/// A connection to one master at `addr`, with the seed URL's credentials and database.
fn open_master(seed: &redis::ConnectionInfo, addr: &str) -> anyhow::Result<redis::Connection> {
    let (host, port) = addr
        .rsplit_once(':')
        .with_context(|| format!("bad master address {addr:?}"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("bad port in {addr:?}"))?;
    let info = seed
        .clone()
        .set_addr(redis::ConnectionAddr::Tcp(host.to_string(), port));
    let conn = redis::Client::open(info)?
        .get_connection_with_timeout(Duration::from_secs(2))
        .with_context(|| format!("cannot reach the Redis Cluster master {addr}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(conn)
}

/// The slot ranges of a `CLUSTER SLOTS` answer: `[[first, last, [host, port, id, ...], ...], ...]`.
fn slot_ranges(v: &redis::Value) -> anyhow::Result<Vec<(u16, u16, String)>> {
    use redis::Value;
    let Value::Array(ranges) = v else {
        bail!("CLUSTER SLOTS answered {v:?}");
    };
    let mut out = Vec::new();
    for r in ranges {
        let Value::Array(parts) = r else {
            bail!("CLUSTER SLOTS: a range is {r:?}");
        };
        let (Some(Value::Int(a)), Some(Value::Int(b)), Some(Value::Array(master))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            bail!("CLUSTER SLOTS: a range is {parts:?}");
        };
        let host: String = redis::from_redis_value_ref(master.first().context("no host")?)?;
        let port: i64 = redis::from_redis_value_ref(master.get(1).context("no port")?)?;
        let host = if host.is_empty() {
            "127.0.0.1".into()
        } else {
            host
        };
        out.push((*a as u16, *b as u16, format!("{host}:{port}")));
    }
    Ok(out)
}

/// The Redis Cluster slot of `key`: CRC16 (XMODEM) of its hash tag (the part between the first
/// `{` and the next `}`, when not empty) or of the whole key, mod 16384.
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % 16384
}

/// CRC16/XMODEM, as Redis Cluster uses it.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_seed_vouches_only_for_loopback_masters() {
        let at = |addr: &str| vec![(0, 16383, addr.to_string())];
        for ok in ["127.0.0.1:7000", "localhost:7001", "::1:7002"] {
            assert!(
                masters_within_reach("redis://127.0.0.1:7000", &at(ok)).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "10.0.0.5:7000",
            "::ffff:10.0.0.1:7000",
            "redis.internal:6379",
        ] {
            let err = masters_within_reach("redis://127.0.0.1:7000", &at(bad)).unwrap_err();
            assert!(err.to_string().contains("loopback only"), "{bad}: {err}");
        }
        // A remote seed was allowed by whoever ran grab-bench, and its masters with it.
        assert!(masters_within_reach("redis://10.0.0.4:7000", &at("10.0.0.5:7000")).is_ok());
    }

    #[test]
    fn slots_are_redis_clusters() {
        // Figures from the Redis Cluster specification (CRC16 of "123456789" is 0x31C3) and
        // `CLUSTER KEYSLOT`.
        assert_eq!(slot(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        assert_eq!(slot(b"grab:{s}:inv"), slot(b"s"));
        assert_eq!(slot(b"grab:{s#2}:stock"), slot(b"s#2"));
    }
}
