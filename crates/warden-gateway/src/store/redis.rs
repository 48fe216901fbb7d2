//! The Redis backend, for several Wardens sharing one set of limits, kill switches and
//! approvals. Standalone Redis (or one shard): scripts touch keys under one prefix.
//!
//! Keys (`P` is the configured prefix):
//! - `P:rl:<key>` GCRA theoretical arrival time, µs since the Unix epoch by Redis's clock;
//! - `P:q:<day>:<key>` calls on one UTC day;
//! - `P:kills` hash of switched-off targets (JSON), `P:kills:v` its version, `P:kills:epoch` a
//!   random token set when absent (its change reveals a store that lost its data);
//! - `P:ap:<id>` hash of one approval (`json`, `state`, `approver`, `decided_at`, `note`),
//!   `P:apd:<digest>` → id, `P:aps` ids by expiry. Approvals expire with their TTL.
//! - `P:sess-end:<nonce>` an ended 2025 session, until its id would have expired;
//! - `P:map:<name>` hash of a shared map, `P:map:<name>:v` its version;
//! - `P:rec:<kind>:<key>` a record (`SET … PX`; taken with `GETDEL`, Redis 6.2 or later).
//!
//! Every command has a response timeout; a Redis that does not answer in time is an outage, not a
//! hang.

use super::Kill;
use super::{
    kill_key, Approval, ApprovalState, Check, Decision, Limit, RecordKey, Redeem, Redeemed, Refusal, Store, StoreError,
};
use futures::future::BoxFuture;
use futures::FutureExt;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use std::collections::HashMap;
use std::time::Duration;

/// All limits of one call, atomically, by Redis's clock (µs, exact in Lua's doubles until 2255).
/// KEYS: the counters. ARGV, per key: kind ("r" | "q"), a, b — for "r" the interval and
/// tolerance in µs, for "q" the daily limit and 0. Returns {0} or {index (1-based), wait µs}.
const TAKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nexts = {}
for i = 1, #KEYS do
  local kind = ARGV[3 * i - 2]
  local a = tonumber(ARGV[3 * i - 1])
  local b = tonumber(ARGV[3 * i])
  local cur = tonumber(redis.call('GET', KEYS[i]) or '0')
  if kind == 'r' then
    local tat = math.max(cur, now)
    local allow_at = tat - b
    if now < allow_at then return {i, allow_at - now} end
    nexts[i] = tat + a
  else
    if cur >= a then
      local secs = tonumber(t[1])
      return {i, (86400 - secs % 86400) * 1000000}
    end
  end
end
for i = 1, #KEYS do
  if ARGV[3 * i - 2] == 'r' then
    redis.call('SET', KEYS[i], string.format('%d', nexts[i]), 'PX', math.floor((nexts[i] - now) / 1000) + 1000)
  else
    redis.call('INCR', KEYS[i])
    redis.call('EXPIRE', KEYS[i], 172800)
  end
end
return {0}
"#;

/// KEYS: digest key, index. ARGV: id, json, ttl secs, expires, hash-key prefix.
const OPEN: &str = r#"
local id = redis.call('GET', KEYS[1])
if id then
  local st = redis.call('HGET', ARGV[5] .. id, 'state')
  if st == 'pending' or st == 'approved' then return id end
end
local k = ARGV[5] .. ARGV[1]
redis.call('HSET', k, 'json', ARGV[2], 'state', 'pending')
redis.call('EXPIRE', k, ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return ARGV[1]
"#;

/// KEYS: approval hash. ARGV: from-state, to-state, approver, decided_at, note ('' = none).
/// Approver fields are written only when given.
const MOVE: &str = r#"
if redis.call('HGET', KEYS[1], 'state') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'approver', ARGV[3], 'decided_at', ARGV[4], 'note', ARGV[5]) end
return 1
"#;

/// KEYS: the counter. ARGV: its lifetime in ms from the first count.
const COUNT: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"#;

/// KEYS: the map's hash, its version. ARGV: field, value, only_new ("1" | "0"). 1 when set.
const MAP_PUT: &str = r#"
if ARGV[3] == '1' then
  if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('INCR', KEYS[2])
return 1
"#;

/// KEYS: claim, unless, put, extend (the put key stands in for an absent claim or extend).
/// ARGV: claim ms ('0': none), value, put ms, extend ms ('0': none). 0 done, 1 claimed, 2 blocked.
const REDEEM: &str = r#"
if ARGV[1] ~= '0' then
  if not redis.call('SET', KEYS[1], '1', 'PX', ARGV[1], 'NX') then return 1 end
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
if ARGV[4] ~= '0' then
  local t = redis.call('PTTL', KEYS[4])
  if t >= 0 and t < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[4], ARGV[4]) end
end
return 0
"#;

pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    take: Script,
    open: Script,
    mv: Script,
    count: Script,
    map_put: Script,
    redeem: Script,
}

/// A lifetime in ms for `PX`: at least 1 (never "no expiry").
fn px(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

/// An approval from its hash (`None` when it expired): the JSON written at open, with the fields
/// decisions change laid over it.
fn parse_approval(id: &str, h: &HashMap<String, String>) -> Result<Option<Approval>, StoreError> {
    let Some(json) = h.get("json") else { return Ok(None) };
    let mut a: Approval = serde_json::from_str(json).map_err(|e| StoreError(format!("approval {id}: {e}")))?;
    a.state = h.get("state").and_then(|s| ApprovalState::parse(s)).unwrap_or(ApprovalState::Denied);
    a.approver = h.get("approver").filter(|s| !s.is_empty()).cloned();
    a.decided_at = h.get("decided_at").and_then(|s| s.parse().ok());
    a.note = h.get("note").filter(|s| !s.is_empty()).cloned();
    Ok(Some(a))
}

fn err(e: redis::RedisError) -> StoreError {
    StoreError(format!("redis: {e}"))
}

impl RedisStore {
    /// Connect lazily: Warden starts even while Redis is down; calls then follow the outage
    /// policy until it is back.
    /// A store at `url` (`redis://`, or `rediss://` for TLS, verified against `ca` (PEM) when
    /// given, else the system's trust store).
    pub fn new(url: &str, prefix: &str, timeout: Duration, ca: Option<Vec<u8>>) -> Result<RedisStore, String> {
        let client = if url.starts_with("rediss://") {
            let certs = redis::TlsCertificates { client_tls: None, root_cert: ca };
            redis::Client::build_with_tls(url, certs).map_err(|e| format!("store.url: {e}"))?
        } else {
            redis::Client::open(url).map_err(|e| format!("store.url: {e}"))?
        };
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_lazy_with_config(client, cfg).map_err(|e| format!("store: {e}"))?;
        Ok(RedisStore {
            conn,
            prefix: prefix.to_string(),
            take: Script::new(TAKE),
            open: Script::new(OPEN),
            mv: Script::new(MOVE),
            count: Script::new(COUNT),
            map_put: Script::new(MAP_PUT),
            redeem: Script::new(REDEEM),
        })
    }

    fn k(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    fn rk(&self, r: RecordKey) -> String {
        self.k(&format!("rec:{}", r.joined()))
    }

    async fn get(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        let mut c = self.conn.clone();
        let h: HashMap<String, String> = c.hgetall(self.k(&format!("ap:{id}"))).await.map_err(err)?;
        parse_approval(id, &h)
    }

    async fn mv(
        &self,
        id: &str,
        from: ApprovalState,
        to: ApprovalState,
        d: Option<&Decision>,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let moved: i64 = self
            .mv
            .key(self.k(&format!("ap:{id}")))
            .arg(from.as_str())
            .arg(to.as_str())
            .arg(d.map_or("", |d| d.approver.as_str()))
            .arg(d.map_or(0, |d| d.at))
            .arg(d.and_then(|d| d.note.as_deref()).unwrap_or(""))
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(moved == 1)
    }
}

impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn take<'a>(&'a self, checks: &'a [Check]) -> BoxFuture<'a, Result<Result<(), Refusal>, StoreError>> {
        async move {
            if checks.is_empty() {
                return Ok(Ok(()));
            }
            let day = crate::clock::now_secs() / 86_400;
            let mut inv = self.take.prepare_invoke();
            for c in checks {
                match &c.limit {
                    Limit::Rate(r) => {
                        let interval = (r.interval_ns() / 1000).max(1);
                        inv.key(self.k(&format!("rl:{}", c.key))).arg("r").arg(interval).arg(interval * (r.burst - 1));
                    }
                    // The day in the key is Warden's; the wait until midnight is Redis's.
                    Limit::Daily(n) => {
                        inv.key(self.k(&format!("q:{day}:{}", c.key))).arg("q").arg(*n).arg(0);
                    }
                }
            }
            let mut c = self.conn.clone();
            let r: Vec<i64> = inv.invoke_async(&mut c).await.map_err(err)?;
            match r.as_slice() {
                [0] => Ok(Ok(())),
                [i, wait] if *i >= 1 && (*i as usize) <= checks.len() => Ok(Err(Refusal {
                    scope: checks[*i as usize - 1].scope,
                    retry_after: Duration::from_micros((*wait).max(0) as u64),
                })),
                other => Err(StoreError(format!("redis: unexpected limit answer {other:?}"))),
            }
        }
        .boxed()
    }

    fn kills(&self) -> BoxFuture<'_, Result<(u64, Vec<Kill>), StoreError>> {
        async move {
            let mut c = self.conn.clone();
            let (v, h): (Option<u64>, HashMap<String, String>) =
                redis::pipe().get(self.k("kills:v")).hgetall(self.k("kills")).query_async(&mut c).await.map_err(err)?;
            let mut list = Vec::with_capacity(h.len());
            for (field, json) in h {
                match serde_json::from_str::<Kill>(&json) {
                    Ok(k) => list.push(k),
                    // A record Warden cannot read still switches its target off.
                    Err(e) => {
                        let (server, tool) = field.split_once('\0').unwrap_or((&field, ""));
                        tracing::error!(server, tool, error = %e, "unreadable kill switch in redis; treated as off");
                        list.push(Kill {
                            server: server.into(),
                            tool: (!tool.is_empty()).then(|| tool.to_string()),
                            reason: "unreadable record".into(),
                            by: "unknown".into(),
                            at: 0,
                            cancel_in_flight: false,
                        });
                    }
                }
            }
            Ok((v.unwrap_or(0), list))
        }
        .boxed()
    }

    fn kills_version<'a>(&'a self, claim: &'a str) -> BoxFuture<'a, Result<(u64, String), StoreError>> {
        async move {
            let mut c = self.conn.clone();
            let (v, epoch): (Option<u64>, String) = redis::pipe()
                .get(self.k("kills:v"))
                .cmd("SET")
                .arg(self.k("kills:epoch"))
                .arg(claim)
                .arg("NX")
                .ignore()
                .get(self.k("kills:epoch"))
                .query_async(&mut c)
                .await
                .map_err(err)?;
            Ok((v.unwrap_or(0), epoch))
        }
        .boxed()
    }

    fn put_kill<'a>(&'a self, k: &'a Kill) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let mut c = self.conn.clone();
            let json = serde_json::to_string(k).expect("kill serialises");
            redis::pipe()
                .atomic()
                .hset(self.k("kills"), kill_key(&k.server, k.tool.as_deref()), json)
                .ignore()
                .incr(self.k("kills:v"), 1)
                .ignore()
                .query_async::<()>(&mut c)
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn remove_kill<'a>(&'a self, server: &'a str, tool: Option<&'a str>) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let mut c = self.conn.clone();
            let (removed, _): (u64, u64) = redis::pipe()
                .atomic()
                .hdel(self.k("kills"), kill_key(server, tool))
                .incr(self.k("kills:v"), 1)
                .query_async(&mut c)
                .await
                .map_err(err)?;
            Ok(removed > 0)
        }
        .boxed()
    }

    fn open_approval<'a>(&'a self, a: &'a Approval) -> BoxFuture<'a, Result<Approval, StoreError>> {
        async move {
            let ttl = a.expires.saturating_sub(crate::clock::now_secs()).max(1);
            let mut c = self.conn.clone();
            let id: String = self
                .open
                .key(self.k(&format!("apd:{}", a.digest)))
                .key(self.k("aps"))
                .arg(&a.id)
                .arg(serde_json::to_string(a).expect("approval serialises"))
                .arg(ttl)
                .arg(a.expires)
                .arg(self.k("ap:"))
                .invoke_async(&mut c)
                .await
                .map_err(err)?;
            self.get(&id).await?.ok_or_else(|| StoreError("redis: approval vanished while opened".into()))
        }
        .boxed()
    }

    fn approval<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Approval>, StoreError>> {
        self.get(id).boxed()
    }

    fn approvals(&self, limit: usize) -> BoxFuture<'_, Result<Vec<Approval>, StoreError>> {
        async move {
            let mut c = self.conn.clone();
            let now = crate::clock::now_secs();
            let _: () = c.zrembyscore(self.k("aps"), 0, now).await.map_err(err)?;
            let ids: Vec<String> = c.zrevrange(self.k("aps"), 0, limit as isize - 1).await.map_err(err)?;
            if ids.is_empty() {
                return Ok(vec![]); // an empty pipeline is not a valid request
            }
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.hgetall(self.k(&format!("ap:{id}")));
            }
            let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut c).await.map_err(err)?;
            let mut out = Vec::with_capacity(ids.len());
            for (id, h) in ids.iter().zip(&hashes) {
                out.extend(parse_approval(id, h)?);
            }
            out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
            Ok(out)
        }
        .boxed()
    }

    fn decide<'a>(&'a self, id: &'a str, d: &'a Decision) -> BoxFuture<'a, Result<Option<Approval>, StoreError>> {
        async move {
            let to = if d.approve { ApprovalState::Approved } else { ApprovalState::Denied };
            if !self.mv(id, ApprovalState::Pending, to, Some(d)).await? {
                return Ok(None);
            }
            self.get(id).await
        }
        .boxed()
    }

    fn consume<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.mv(id, ApprovalState::Approved, ApprovalState::Consumed, None).boxed()
    }

    fn revoke_session<'a>(&'a self, nonce: &'a str, expires: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let mut c = self.conn.clone();
            // Kept as long as the id could be presented (at least a second: never "no expiry").
            let ttl = expires.saturating_sub(crate::clock::now_secs()).max(1);
            c.set_ex::<_, _, ()>(self.k(&format!("sess-end:{nonce}")), 1, ttl).await.map_err(err)
        }
        .boxed()
    }

    fn session_revoked<'a>(&'a self, nonce: &'a str, _expires: u64) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let mut c = self.conn.clone();
            c.exists(self.k(&format!("sess-end:{nonce}"))).await.map_err(err)
        }
        .boxed()
    }

    fn put_record<'a>(
        &'a self,
        r: RecordKey<'a>,
        value: &'a [u8],
        ttl: Duration,
        only_new: bool,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let mut c = self.conn.clone();
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.rk(r)).arg(value).arg("PX").arg(px(ttl));
            if only_new {
                cmd.arg("NX");
            }
            let set: Option<String> = cmd.query_async(&mut c).await.map_err(err)?;
            Ok(set.is_some())
        }
        .boxed()
    }

    fn record<'a>(&'a self, r: RecordKey<'a>) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        async move {
            let mut c = self.conn.clone();
            c.get(self.rk(r)).await.map_err(err)
        }
        .boxed()
    }

    fn take_record<'a>(&'a self, r: RecordKey<'a>) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        async move {
            let mut c = self.conn.clone();
            redis::cmd("GETDEL").arg(self.rk(r)).query_async(&mut c).await.map_err(err)
        }
        .boxed()
    }

    fn delete_record<'a>(&'a self, r: RecordKey<'a>) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let mut c = self.conn.clone();
            c.del(self.rk(r)).await.map_err(err)
        }
        .boxed()
    }

    fn count_record<'a>(&'a self, r: RecordKey<'a>, ttl: Duration) -> BoxFuture<'a, Result<u64, StoreError>> {
        async move {
            let mut c = self.conn.clone();
            self.count.key(self.rk(r)).arg(px(ttl)).invoke_async(&mut c).await.map_err(err)
        }
        .boxed()
    }

    fn redeem<'a>(&'a self, r: &'a Redeem<'a>) -> BoxFuture<'a, Result<Redeemed, StoreError>> {
        async move {
            let put = self.rk(r.put.0);
            let mut c = self.conn.clone();
            let done: i64 = self
                .redeem
                .key(r.claim.map_or(put.clone(), |(k, _)| self.rk(k)))
                .key(self.rk(r.unless))
                .key(&put)
                .key(r.extend.map_or(put.clone(), |(k, _)| self.rk(k)))
                .arg(r.claim.map_or(0, |(_, ttl)| px(ttl)))
                .arg(r.put.1)
                .arg(px(r.put.2))
                .arg(r.extend.map_or(0, |(_, ttl)| px(ttl)))
                .invoke_async(&mut c)
                .await
                .map_err(err)?;
            match done {
                0 => Ok(Redeemed::Done),
                1 => Ok(Redeemed::Claimed),
                2 => Ok(Redeemed::Blocked),
                other => Err(StoreError(format!("redis: unexpected redemption answer {other}"))),
            }
        }
        .boxed()
    }

    fn map_put<'a>(
        &'a self,
        map: &'static str,
        field: &'a str,
        value: &'a str,
        only_new: bool,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let mut c = self.conn.clone();
            let set: i64 = self
                .map_put
                .key(self.k(&format!("map:{map}")))
                .key(self.k(&format!("map:{map}:v")))
                .arg(field)
                .arg(value)
                .arg(if only_new { "1" } else { "0" })
                .invoke_async(&mut c)
                .await
                .map_err(err)?;
            Ok(set == 1)
        }
        .boxed()
    }

    fn map_remove<'a>(&'a self, map: &'static str, field: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let mut c = self.conn.clone();
            redis::pipe()
                .atomic()
                .hdel(self.k(&format!("map:{map}")), field)
                .ignore()
                .incr(self.k(&format!("map:{map}:v")), 1)
                .ignore()
                .query_async::<()>(&mut c)
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn map_all(&self, map: &'static str) -> BoxFuture<'_, Result<super::MapFields, StoreError>> {
        async move {
            let mut c = self.conn.clone();
            let (v, h): (Option<u64>, HashMap<String, String>) = redis::pipe()
                .atomic()
                .get(self.k(&format!("map:{map}:v")))
                .hgetall(self.k(&format!("map:{map}")))
                .query_async(&mut c)
                .await
                .map_err(err)?;
            Ok((v.unwrap_or(0), h.into_iter().collect()))
        }
        .boxed()
    }

    fn map_version(&self, map: &'static str) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            let mut c = self.conn.clone();
            let v: Option<u64> = c.get(self.k(&format!("map:{map}:v"))).await.map_err(err)?;
            Ok(v.unwrap_or(0))
        }
        .boxed()
    }
}
