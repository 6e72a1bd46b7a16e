//! Bounds on pairing attempts (protocol §3.3): at most `per_key` per client address and `total` in all per
//! one-minute window, per instance, in process. Every attempt counts, right or wrong: a wrong code cannot be
//! told apart from a typo of a right one, and redemptions are rare.
//!
//! A fixed window (not a sliding one) is enough: at worst twice the limit passes around a window's edge, which
//! the arithmetic of §3.3 allows for. The map holds at most `total` addresses: once the total is reached no new
//! address is recorded until the window ends.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

const WINDOW: Duration = Duration::from_secs(60);

pub struct AttemptLimiter {
    per_key: u32,
    total: u32,
    window: Mutex<Window>,
}

struct Window {
    started: Instant,
    total: u32,
    by_key: HashMap<IpAddr, u32>,
}

impl AttemptLimiter {
    pub fn new(per_key: u32, total: u32) -> Self {
        AttemptLimiter {
            per_key,
            total,
            window: Mutex::new(Window {
                started: Instant::now(),
                total: 0,
                by_key: HashMap::new(),
            }),
        }
    }

    /// Counts an attempt from `key`; `Err(seconds)` (until the window ends, at least 1) when over a limit, and
    /// then the attempt is not counted.
    pub fn attempt(&self, key: IpAddr) -> Result<(), u64> {
        // A panic while holding the lock cannot leave the counters inconsistent (plain increments).
        let mut window = self.window.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if now.duration_since(window.started) >= WINDOW {
            window.started = now;
            window.total = 0;
            window.by_key.clear();
        }
        let used = window.by_key.get(&key).copied().unwrap_or(0);
        if window.total >= self.total || used >= self.per_key {
            let left = WINDOW.saturating_sub(now.duration_since(window.started));
            return Err(left.as_secs_f64().ceil().max(1.0) as u64);
        }
        window.total += 1;
        window.by_key.insert(key, used + 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_and_the_total_are_bounded() {
        let limiter = AttemptLimiter::new(2, 3);
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            "10.0.0.3".parse().unwrap(),
        );
        assert!(limiter.attempt(a).is_ok());
        assert!(limiter.attempt(a).is_ok());
        let wait = limiter.attempt(a).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(limiter.attempt(b).is_ok());
        // The total (3) is reached: a fresh address is refused too.
        assert!(limiter.attempt(c).is_err());
    }
}
