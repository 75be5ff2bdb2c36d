//! The invocation's deadline, computed once from the Lambda context and passed down: when work must
//! stop (`expiry`: deadline minus `DB_DEADLINE_MARGIN_S`) and when cleanup must be over (`hard`).

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// The runtime's own deadline; `None` outside Lambda (no limit).
    at: Option<Instant>,
    margin: Duration,
}

impl Deadline {
    /// `at` is the context's deadline (wall clock); `margin` is kept free to cancel, roll back and answer.
    pub fn new(at: Option<SystemTime>, margin: Duration) -> Deadline {
        let now = Instant::now();
        let at = at.map(|at| match at.duration_since(SystemTime::now()) {
            Ok(left) => now + left,
            Err(_) => now,
        });
        Deadline { at, margin }
    }

    /// No deadline: in-process callers and tests.
    pub fn none() -> Deadline {
        Deadline {
            at: None,
            margin: Duration::ZERO,
        }
    }

    pub fn margin(&self) -> Duration {
        self.margin
    }

    /// When work stops: the runtime's deadline minus the margin.
    pub fn expiry(&self) -> Option<Instant> {
        self.at
            .map(|at| at.checked_sub(self.margin).unwrap_or_else(Instant::now))
    }

    /// When cancel, rollback and unlock must be over: a third of the margin before the runtime's deadline,
    /// so the answer still reaches Lambda.
    pub fn hard(&self) -> Option<Instant> {
        self.at
            .map(|at| at.checked_sub(self.margin / 3).unwrap_or_else(Instant::now))
    }

    /// Time left before `expiry`; `None` without a deadline.
    pub fn left(&self) -> Option<Duration> {
        self.expiry()
            .map(|e| e.saturating_duration_since(Instant::now()))
    }

    /// `limit`, shortened to the time left.
    pub fn bound(&self, limit: Duration) -> Duration {
        self.left().map_or(limit, |left| left.min(limit))
    }

    /// Time left for cleanup before `hard` (a fallback of one second without a deadline).
    pub fn cleanup_left(&self) -> Duration {
        self.hard().map_or(Duration::from_secs(1), |h| {
            h.saturating_duration_since(Instant::now())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_keeps_the_margin_free() {
        let d = Deadline::new(
            Some(SystemTime::now() + Duration::from_secs(10)),
            Duration::from_secs(3),
        );
        let left = d.left().unwrap();
        assert!(
            left <= Duration::from_secs(7) && left > Duration::from_millis(6900),
            "{left:?}"
        );
        assert!(d.hard().unwrap() > d.expiry().unwrap());
        assert!(d.bound(Duration::from_secs(30)) <= Duration::from_secs(7));
        assert_eq!(d.bound(Duration::from_secs(1)), Duration::from_secs(1));
    }

    #[test]
    fn a_past_deadline_leaves_nothing() {
        let d = Deadline::new(
            Some(SystemTime::now() - Duration::from_secs(1)),
            Duration::from_secs(3),
        );
        assert_eq!(d.left(), Some(Duration::ZERO));
        assert_eq!(d.cleanup_left(), Duration::ZERO);
        assert_eq!(Deadline::none().left(), None);
        assert_eq!(
            Deadline::none().bound(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }
}
