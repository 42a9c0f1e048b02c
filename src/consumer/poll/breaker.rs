//! The poller's circuit breaker and backoff: how it stops hammering a sick
//! upstream.
//!
//! After a failed poll the next one waits a random time in
//! `[0, min(cap, period × 2^failures))` ("full jitter"), so a fleet of
//! pollers does not retry in step. After `threshold` failures in a row the
//! breaker opens: nothing goes upstream for the cooldown, then one probe
//! (half-open) decides: success closes it, failure opens it again. Both are
//! pure state, driven by the poller with explicit times, so they are tested
//! without sleeping.

use std::fmt;
use std::time::{Duration, Instant};

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum State {
    /// Polling normally.
    Closed,
    /// No requests upstream until the instant.
    Open { until: Instant },
    /// The next poll is the one probe.
    HalfOpen,
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open { .. } => "open",
            State::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A change of state, to be logged as `poll.breaker`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    pub from: &'static str,
    pub to: &'static str,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: State,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures, for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            state: State::Closed,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// When the next request may go upstream, given when the backoff would
    /// send it: then, unless the breaker is open, in which case exactly when
    /// its cooldown ends. The cooldown replaces the backoff (which, after
    /// many failures, may be far longer): an open breaker probes once its
    /// cooldown has passed, not later.
    pub fn ready_at(&self, after_backoff: Instant) -> Instant {
        match self.state {
            State::Open { until } => until,
            _ => after_backoff,
        }
    }

    /// Called before a poll at `now`: an open breaker whose cooldown is over
    /// lets one probe through.
    pub fn before_poll(&mut self, now: Instant) -> Option<Transition> {
        match self.state {
            State::Open { until } if now >= until => self.to(State::HalfOpen),
            _ => None,
        }
    }

    /// A poll succeeded (200 or 304).
    pub fn on_success(&mut self) -> Option<Transition> {
        self.to(State::Closed)
    }

    /// A poll failed; `failures` counts the consecutive ones, this included.
    pub fn on_failure(&mut self, failures: u32, now: Instant) -> Option<Transition> {
        let open = State::Open {
            until: now + self.cooldown,
        };
        match self.state {
            State::HalfOpen => self.to(open),
            State::Closed if failures >= self.threshold => self.to(open),
            _ => None,
        }
    }

    fn to(&mut self, next: State) -> Option<Transition> {
        let from = self.state.name();
        self.state = next;
        (from != next.name()).then_some(Transition {
            from,
            to: next.name(),
        })
    }
}

/// The wait before the next poll: the period after a success, else full
/// jitter over `min(cap, period × 2^failures)`; `unit` is a uniform draw in
/// `[0, 1)`.
pub fn backoff(period: Duration, failures: u32, cap: Duration, unit: f64) -> Duration {
    if failures == 0 {
        return period;
    }
    let ceiling = period
        .checked_mul(1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(cap)
        .min(cap);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_probes_after_the_cooldown() {
        let t0 = Instant::now();
        let cool = Duration::from_secs(10);
        let mut b = Breaker::new(3, cool);
        assert_eq!(b.on_failure(1, t0), None);
        assert_eq!(b.on_failure(2, t0), None);
        let opened = b.on_failure(3, t0).unwrap();
        assert_eq!((opened.from, opened.to), ("closed", "open"));
        assert_eq!(b.ready_at(t0), t0 + cool);
        // A backoff longer than the cooldown does not delay the probe.
        assert_eq!(b.ready_at(t0 + Duration::from_secs(27)), t0 + cool);
        assert_eq!(b.before_poll(t0 + Duration::from_secs(9)), None);
        let probe = b.before_poll(t0 + cool).unwrap();
        assert_eq!((probe.from, probe.to), ("open", "half_open"));
        // A failed probe opens it again, for a new cooldown.
        let t1 = t0 + cool;
        assert_eq!(b.on_failure(4, t1).unwrap().to, "open");
        assert_eq!(b.ready_at(t1), t1 + cool);
        b.before_poll(t1 + cool);
        let closed = b.on_success().unwrap();
        assert_eq!((closed.from, closed.to), ("half_open", "closed"));
        assert_eq!(b.on_success(), None, "no transition, no event");
    }

    #[test]
    fn backoff_is_full_jitter_under_the_cap() {
        let p = Duration::from_millis(100);
        let cap = Duration::from_millis(1000);
        assert_eq!(backoff(p, 0, cap, 0.5), p);
        assert_eq!(
            backoff(p, 1, cap, 0.999_999),
            Duration::from_millis(200).mul_f64(0.999_999)
        );
        assert_eq!(backoff(p, 2, cap, 0.5), Duration::from_millis(200));
        assert_eq!(backoff(p, 3, cap, 0.0), Duration::ZERO);
        assert_eq!(backoff(p, 10, cap, 0.5), Duration::from_millis(500));
        assert_eq!(
            backoff(p, 200, cap, 0.5),
            Duration::from_millis(500),
            "no overflow"
        );
        let mut rng = fastrand::Rng::with_seed(1);
        let draws: Vec<Duration> = (0..1000).map(|_| backoff(p, 4, cap, rng.f64())).collect();
        assert!(draws.iter().all(|d| *d < cap));
        let mean = draws.iter().sum::<Duration>() / 1000;
        assert!((400..600).contains(&mean.as_millis()), "{mean:?}");
    }
}
