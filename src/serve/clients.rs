//! What each client may hold: its open connections, the memory of its answers (runs in progress
//! and answers not yet read), and its budget of run requests (the rate limit). A client is an
//! IPv4 address, an IPv6 /64, or on a unix socket the peer's uid ([`ClientKey`]).
//!
//! Every table here is bounded: connections and answers are counted only while they exist, and
//! the rate limiter tracks a bounded number of clients. Nothing here touches a socket or a run.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;

/// Who is on the other end of a connection: an IP address (TCP, with or without TLS), or on a
/// unix socket the uid the kernel vouches for (`SO_PEERCRED`). The socket is created 0600, so
/// that uid is the serving user's or root's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    Ip(IpAddr),
    Uid(u32),
}

impl From<IpAddr> for Client {
    fn from(ip: IpAddr) -> Client {
        Client::Ip(ip.to_canonical())
    }
}

/// As the audit log and messages show it: the IP address, or `uid:N`.
impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Ip(ip) => write!(f, "{ip}"),
            Client::Uid(uid) => write!(f, "uid:{uid}"),
        }
    }
}

/// What counts as one client: an IPv4 address, an IPv6 /64 (one subscriber's prefix; a single
/// host can use any address in it), or a local user on the unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientKey {
    V4(u32),
    V6Prefix(u64),
    Uid(u32),
}

impl ClientKey {
    pub fn of(client: impl Into<Client>) -> ClientKey {
        match client.into() {
            Client::Ip(ip) => match ip.to_canonical() {
                IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
                IpAddr::V6(v6) => ClientKey::V6Prefix((u128::from(v6) >> 64) as u64),
            },
            Client::Uid(uid) => ClientKey::Uid(uid),
        }
    }
}

/// Clients whose budgets are tracked at most. A client is tracked only while its bucket is not
/// full (a full bucket is the same as none), so this bounds the distinct clients that spent part
/// of their budget within the last minute, and the table's memory (a few MB).
pub const MAX_TRACKED_CLIENTS: usize = 100_000;

/// A token bucket per client: `per_minute` requests in a burst, refilled at `per_minute` a
/// minute.
///
/// A bucket is forgotten once it is full again, never before: no flood of new addresses can
/// hand a client that spent its budget a fresh one. When the table is full of buckets still
/// refilling, clients that are not in it share one more bucket, so a flood from more addresses
/// than the table holds gets one client's budget between them (new clients in that minute share
/// it too; the clients already tracked keep exactly theirs).
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    table: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    max_tracked: usize,
    by_client: HashMap<ClientKey, Bucket>,
    /// Every tracked bucket by the instant it is full again, soonest first.
    by_full_at: BTreeSet<(Instant, ClientKey)>,
    /// The budget shared by clients that arrive while the table is full.
    untracked: Bucket,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    /// When `tokens` reaches the capacity again.
    full_at: Instant,
}

impl Bucket {
    fn full(capacity: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: capacity,
            updated: now,
            full_at: now,
        }
    }

    /// Refill for the time since the last request, then take one token, or say how long until
    /// there is one.
    fn take(&mut self, now: Instant, capacity: f64) -> Result<(), Duration> {
        let per_second = capacity / 60.0;
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(capacity);
        self.updated = now;
        let taken = if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_second))
        };
        self.full_at = now + Duration::from_secs_f64((capacity - self.tokens) / per_second);
        taken
    }
}

impl Buckets {
    fn check(&mut self, key: ClientKey, now: Instant, capacity: f64) -> Result<(), Duration> {
        // Forget the buckets that are full again: the same as never having seen those clients.
        while let Some(&(full_at, full)) = self.by_full_at.first() {
            if full_at > now {
                break;
            }
            self.by_full_at.pop_first();
            self.by_client.remove(&full);
        }
        if let Some(bucket) = self.by_client.get_mut(&key) {
            self.by_full_at.remove(&(bucket.full_at, key));
            let taken = bucket.take(now, capacity);
            self.by_full_at.insert((bucket.full_at, key));
            return taken;
        }
        if self.by_client.len() >= self.max_tracked {
            return self.untracked.take(now, capacity);
        }
        let mut bucket = Bucket::full(capacity, now);
        let taken = bucket.take(now, capacity);
        self.by_client.insert(key, bucket);
        self.by_full_at.insert((bucket.full_at, key));
        taken
    }
}

impl RateLimiter {
    /// A limiter of `per_minute` requests per client that tracks at most `max_tracked` clients
    /// ([`MAX_TRACKED_CLIENTS`] but in tests).
    pub fn new(per_minute: u32, max_tracked: usize) -> RateLimiter {
        let per_minute = per_minute.max(1);
        let now = Instant::now();
        RateLimiter {
            per_minute,
            table: Mutex::new(Buckets {
                max_tracked,
                by_client: HashMap::new(),
                by_full_at: BTreeSet::new(),
                untracked: Bucket::full(f64::from(per_minute), now),
            }),
        }
    }

    /// Take one request from `client`'s budget, or say how long until it has one again.
    pub fn check(&self, client: impl Into<Client>, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(self.per_minute);
        lock(&self.table).check(ClientKey::of(client), now, capacity)
    }

    /// Clients whose budgets are tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        lock(&self.table).by_client.len()
    }
}

/// Open connections per client, and the most one client may have (`None`: no cap).
#[derive(Debug, Clone)]
pub struct PerClient {
    open: Arc<Mutex<HashMap<ClientKey, usize>>>,
    cap: Option<usize>,
}

impl PerClient {
    pub fn new(cap: Option<usize>) -> PerClient {
        PerClient {
            open: Arc::default(),
            cap,
        }
    }

    /// A place for one more connection from `client`, or `None` when it has its cap open. The map
    /// holds only clients with open connections, so it never has more than [`MAX_CONNECTIONS`](super::limits::MAX_CONNECTIONS)
    /// entries.
    pub fn enter(&self, client: impl Into<Client>) -> Option<ClientSlot> {
        let key = ClientKey::of(client);
        let mut open = lock(&self.open);
        let count = open.entry(key).or_insert(0);
        if self.cap.is_some_and(|cap| *count >= cap) {
            if *count == 0 {
                open.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            open: self.clone(),
            key,
        })
    }
}

/// One open connection of a client, given back on drop.
pub struct ClientSlot {
    open: PerClient,
    key: ClientKey,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.open.open);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The memory of each client's answers: reserved for the largest answer its run could give when
/// the run is admitted, cut to the answer's real size when it is ready, given back when it has
/// been sent or its connection is gone. With a cap, a client holds at most that much, except
/// that one answer is always allowed (a server whose single answer may be larger than the cap
/// still serves everyone, one answer at a time).
#[derive(Debug, Clone)]
pub struct AnswerBudget {
    held: Arc<Mutex<HashMap<ClientKey, u64>>>,
    cap: Option<u64>,
}

/// A client's answers would hold more than its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    /// Bytes the client's answers hold now.
    pub held: u64,
    pub cap: u64,
}

impl AnswerBudget {
    pub fn new(cap: Option<u64>) -> AnswerBudget {
        AnswerBudget {
            held: Arc::default(),
            cap,
        }
    }

    pub fn cap(&self) -> Option<u64> {
        self.cap
    }

    /// Reserve `bytes` for an answer to `client`, or say what its answers hold already. The map
    /// holds only clients with answers, so it never has more entries than open connections.
    pub fn reserve(
        &self,
        client: impl Into<Client>,
        bytes: u64,
    ) -> Result<AnswerCharge, OverBudget> {
        let key = ClientKey::of(client);
        let mut held = lock(&self.held);
        let now = held.get(&key).copied().unwrap_or(0);
        if let Some(cap) = self.cap {
            if now > 0 && now.saturating_add(bytes) > cap {
                return Err(OverBudget { held: now, cap });
            }
        }
        *held.entry(key).or_insert(0) += bytes;
        Ok(AnswerCharge {
            budget: self.clone(),
            key,
            bytes,
        })
    }

    /// Bytes held by `client`'s answers now.
    pub fn held(&self, client: impl Into<Client>) -> u64 {
        lock(&self.held)
            .get(&ClientKey::of(client))
            .copied()
            .unwrap_or(0)
    }
}

/// One answer's share of its client's budget, given back on drop.
#[derive(Debug)]
pub struct AnswerCharge {
    budget: AnswerBudget,
    key: ClientKey,
    bytes: u64,
}

impl AnswerCharge {
    /// Give back what the answer turned out not to need.
    pub fn shrink_to(&mut self, bytes: u64) {
        if bytes < self.bytes {
            let mut held = lock(&self.budget.held);
            if let Some(count) = held.get_mut(&self.key) {
                *count -= self.bytes - bytes;
            }
            self.bytes = bytes;
        }
    }
}

impl Drop for AnswerCharge {
    fn drop(&mut self) {
        let mut held = lock(&self.budget.held);
        if let Some(count) = held.get_mut(&self.key) {
            *count -= self.bytes;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::limits::{MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT};

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_unix_peer_is_one_client_per_uid() {
        assert_eq!(ClientKey::of(Client::Uid(1000)), ClientKey::Uid(1000));
        assert_ne!(
            ClientKey::of(Client::Uid(1000)),
            ClientKey::of(Client::Uid(0))
        );
        assert_eq!(Client::Uid(1000).to_string(), "uid:1000");
        assert_eq!(
            Client::from(ip("::ffff:192.0.2.1")).to_string(),
            "192.0.2.1"
        );
        let per_client = PerClient::new(Some(1));
        let _held = per_client.enter(Client::Uid(1000)).unwrap();
        assert!(per_client.enter(Client::Uid(1000)).is_none());
        assert!(per_client.enter(Client::Uid(0)).is_some());
        let limiter = RateLimiter::new(1, MAX_TRACKED_CLIENTS);
        let now = Instant::now();
        assert!(limiter.check(Client::Uid(1000), now).is_ok());
        assert!(limiter.check(Client::Uid(1000), now).is_err());
        assert!(limiter.check(Client::Uid(0), now).is_ok());
    }

    #[test]
    fn rate_limit_allows_a_burst_then_refills() {
        let limiter = RateLimiter::new(2, MAX_TRACKED_CLIENTS);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let start = Instant::now();
        assert!(limiter.check(ip, start).is_ok());
        assert!(limiter.check(ip, start).is_ok());
        let wait = limiter.check(ip, start).unwrap_err();
        assert!((29.0..=30.0).contains(&wait.as_secs_f64()), "{wait:?}");
        // Another client has its own budget.
        assert!(limiter.check(super::tests::ip("192.0.2.2"), start).is_ok());
        assert!(limiter.check(ip, start + Duration::from_secs(30)).is_ok());
        assert!(limiter.check(ip, start + Duration::from_secs(30)).is_err());
    }

    /// A flood of new addresses, more than the table holds, leaves a spent budget spent: the
    /// clients past the table share one budget, and every bucket is forgotten once full.
    #[test]
    fn a_flood_of_new_clients_never_resets_a_spent_budget() {
        let limiter = RateLimiter::new(2, 100);
        let start = Instant::now();
        let established: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limiter.check(established, start).is_ok());
        assert!(limiter.check(established, start).is_ok());
        assert!(limiter.check(established, start).is_err());
        let flood = |n: u32, at: Instant| -> usize {
            (0..n)
                .filter(|i| {
                    let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
                    limiter.check(ip, at).is_ok()
                })
                .count()
        };
        let later = start + Duration::from_secs(1);
        // 99 fit beside the established client; the other 101 share one budget of 2.
        assert_eq!(flood(200, later), 99 + 2);
        assert_eq!(limiter.tracked(), 100);
        let wait = limiter.check(established, later).unwrap_err();
        assert!(wait > Duration::from_secs(28), "{wait:?}");
        // Each bucket is forgotten once it is full again (a minute for one spent token), and
        // only then.
        assert_eq!(limiter.tracked(), 100);
        let refilled = start + Duration::from_secs(62);
        assert!(limiter.check(established, refilled).is_ok());
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn an_ipv6_64_is_one_client_and_mapped_v4_is_v4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::of(a), ClientKey::of(b));
        assert_ne!(ClientKey::of(a), ClientKey::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(ClientKey::of(mapped), ClientKey::of(ip("192.0.2.1")));
    }

    #[test]
    fn connections_are_capped_per_client_and_given_back() {
        let per_client = PerClient::new(Some(MAX_CONNECTIONS_PER_CLIENT));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let slots: Vec<_> = (0..MAX_CONNECTIONS_PER_CLIENT)
            .map(|_| per_client.enter(a).expect("under the cap"))
            .collect();
        assert!(per_client.enter(a).is_none());
        // Another client is not affected; an IPv6 /64 is one client.
        assert!(per_client.enter(ip("192.0.2.2")).is_some());
        let v6: Vec<_> = (0..MAX_CONNECTIONS_PER_CLIENT)
            .map(|i| per_client.enter(ip(&format!("2001:db8::{i:x}"))))
            .collect();
        assert!(v6.iter().all(Option::is_some));
        assert!(per_client.enter(ip("2001:db8::ffff:1")).is_none());
        drop(slots);
        assert!(per_client.enter(a).is_some());
        drop(v6);
        assert!(lock(&per_client.open).is_empty());
    }

    #[test]
    fn no_cap_takes_every_connection_and_a_small_cap_holds() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let uncapped = PerClient::new(None);
        let slots: Vec<_> = (0..MAX_CONNECTIONS)
            .map(|_| uncapped.enter(a).expect("no cap"))
            .collect();
        drop(slots);
        assert!(lock(&uncapped.open).is_empty());
        let two = PerClient::new(Some(2));
        let slots: Vec<_> = (0..2).map(|_| two.enter(a).expect("under 2")).collect();
        assert!(two.enter(a).is_none());
        drop(slots);
        assert!(lock(&two.open).is_empty());
    }

    #[test]
    fn answer_memory_is_capped_per_client_and_given_back() {
        let budget = AnswerBudget::new(Some(100));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut first = budget.reserve(a, 60).unwrap();
        assert_eq!(
            budget.reserve(a, 60).unwrap_err(),
            OverBudget { held: 60, cap: 100 }
        );
        // Another client has its own; one answer is always allowed, even past the cap.
        let big = budget.reserve(b, 500).unwrap();
        assert_eq!(budget.held(b), 500);
        drop(big);
        // A finished answer smaller than its reservation makes room.
        first.shrink_to(10);
        let second = budget.reserve(a, 60).unwrap();
        assert_eq!(budget.held(a), 70);
        drop(first);
        drop(second);
        assert!(lock(&budget.held).is_empty());
        let uncapped = AnswerBudget::new(None);
        let held: Vec<_> = (0..10)
            .map(|_| uncapped.reserve(a, u64::MAX / 20).unwrap())
            .collect();
        drop(held);
        assert!(lock(&uncapped.held).is_empty());
    }

    /// The full-size table: a flood of one more address than it holds leaves a spent budget
    /// spent, and the table never grows past its size.
    #[test]
    fn the_full_table_holds_and_never_grows() {
        let limiter = RateLimiter::new(1, MAX_TRACKED_CLIENTS);
        let start = Instant::now();
        let established: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limiter.check(established, start).is_ok());
        let at = start + Duration::from_secs(1);
        let admitted = (0..MAX_TRACKED_CLIENTS as u32 + 10)
            .filter(|i| {
                let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
                limiter.check(ip, at).is_ok()
            })
            .count();
        assert_eq!(admitted, MAX_TRACKED_CLIENTS - 1 + 1);
        assert_eq!(limiter.tracked(), MAX_TRACKED_CLIENTS);
        assert!(limiter.check(established, at).is_err());
    }
}
