//! What each client may hold: its open connections, and its budget of run requests (the rate
//! limit). A client is an IPv4 address or an IPv6 /64 ([`ClientKey`]).
//!
//! Every table here is bounded: connections are counted only while open, and the rate limiter
//! tracks a bounded number of clients. Nothing here touches a socket or a run.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;

/// Clients tracked at most; past it, clients whose buckets are full again are forgotten, and if
/// that is not enough, all are (a flood from this many addresses defeats per-client limits
/// anyway; memory stays bounded).
const MAX_TRACKED_CLIENTS: usize = 100_000;

/// A token bucket per client: `per_minute` requests in a burst, refilled at `per_minute` a
/// minute.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<ClientKey, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// What counts as one client: an IPv4 address, or an IPv6 /64 (one subscriber's prefix; a
/// single host can use any address in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(u32),
    V6Prefix(u64),
}

impl ClientKey {
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => ClientKey::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one request from `ip`'s budget, or say how long until it has one again.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let mut buckets = lock(&self.buckets);
        if buckets.len() >= MAX_TRACKED_CLIENTS {
            buckets.retain(|_, bucket| refill(bucket, now, per_second, capacity) < capacity);
            if buckets.len() >= MAX_TRACKED_CLIENTS {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(ClientKey::of(ip)).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        bucket.tokens = refill(bucket, now, per_second, capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

fn refill(bucket: &Bucket, now: Instant, per_second: f64, capacity: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    (bucket.tokens + elapsed * per_second).min(capacity)
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

    /// A place for one more connection from `ip`, or `None` when it has its cap open. The map
    /// holds only clients with open connections, so it never has more than [`MAX_CONNECTIONS`](super::limits::MAX_CONNECTIONS)
    /// entries.
    pub fn enter(&self, ip: IpAddr) -> Option<ClientSlot> {
        let key = ClientKey::of(ip);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::limits::{MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT};

    #[test]
    fn rate_limit_allows_a_burst_then_refills() {
        let limiter = RateLimiter::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let start = Instant::now();
        assert!(limiter.check(ip, start).is_ok());
        assert!(limiter.check(ip, start).is_ok());
        let wait = limiter.check(ip, start).unwrap_err();
        assert!((29.0..=30.0).contains(&wait.as_secs_f64()), "{wait:?}");
        // Another client has its own budget.
        assert!(limiter.check("192.0.2.2".parse().unwrap(), start).is_ok());
        assert!(limiter.check(ip, start + Duration::from_secs(30)).is_ok());
        assert!(limiter.check(ip, start + Duration::from_secs(30)).is_err());
    }

    #[test]
    fn an_ipv6_64_is_one_client_and_mapped_v4_is_v4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::of(a), ClientKey::of(b));
        assert_ne!(ClientKey::of(a), ClientKey::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(
            ClientKey::of(mapped),
            ClientKey::of("192.0.2.1".parse().unwrap())
        );
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
        assert!(per_client.enter("192.0.2.2".parse().unwrap()).is_some());
        let v6: Vec<_> = (0..MAX_CONNECTIONS_PER_CLIENT)
            .map(|i| per_client.enter(format!("2001:db8::{i:x}").parse().unwrap()))
            .collect();
        assert!(v6.iter().all(Option::is_some));
        assert!(per_client
            .enter("2001:db8::ffff:1".parse().unwrap())
            .is_none());
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
}
