//! The one retry and wait policy of every AWS call deploy, invoke and clean make: the SDK's standard
//! retries for throttling and 5xx (an explicit attempt budget), Lambda's 409 "an update is in
//! progress" (wait until the function settles, then call again), IAM propagation of a role Lambda
//! cannot assume yet (call again), and waits that are named, bounded and print their progress.
//! Below the clients: it takes the Lambda client it polls, never the command's `Clients`.

use std::time::{Duration, Instant};

use anyhow::bail;
use aws_sdk_lambda as lambda;
use aws_sdk_lambda::config::http::HttpResponse;
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};

use crate::aws_error::{describe, is_conflict, is_role_propagation};

/// Says on stderr each retry the SDK makes (after throttling or a 5xx): which API, which attempt.
#[derive(Debug)]
pub struct RetryReport {
    max_attempts: u32,
}

impl aws_sdk_lambda::config::Intercept for RetryReport {
    fn name(&self) -> &'static str {
        "RetryReport"
    }

    fn read_before_attempt(
        &self,
        _ctx: &aws_sdk_lambda::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _rc: &aws_sdk_lambda::config::RuntimeComponents,
        cfg: &mut aws_sdk_lambda::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        use aws_smithy_runtime_api::client::{orchestrator::Metadata, retries::RequestAttempts};
        let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        if attempt > 1 {
            let api = cfg
                .load::<Metadata>()
                .map(|m| format!("{} {}", m.service().to_lowercase(), m.name()))
                .unwrap_or_default();
            eprintln!(
                "retrying {api}: attempt {attempt} of {} (the last one was throttled or failed \
                 on AWS's side)",
                self.max_attempts
            );
        }
        Ok(())
    }
}

/// Bounds of every retry and wait. `Default` is what AWS needs; tests shrink them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Attempts per call (the first included) while AWS throttles or answers 5xx.
    pub max_attempts: u32,
    /// First backoff between attempts; it doubles (with jitter) up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How often a wait asks again.
    pub poll: Duration,
    /// A wait prints what it waits for at least this often.
    pub progress_every: Duration,
    /// The function to become Active with its last update Successful.
    pub ready: Duration,
    /// A conflicting update (409) to finish before the call is made again.
    pub conflict: Duration,
    /// IAM to let Lambda assume the role.
    pub propagation: Duration,
    /// One deploy or clean in all: no wait runs past it.
    pub command: Duration,
    /// When the running command's budget ends (see `Clients::for_command`).
    pub deadline: Option<Instant>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            // Backoffs of at most 1, 2, 4, 4 s: about 11 s per call before giving up.
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(4),
            poll: Duration::from_secs(2),
            progress_every: Duration::from_secs(5),
            // A function in a VPC takes a minute or two to get its network interfaces.
            ready: Duration::from_secs(4 * 60),
            conflict: Duration::from_secs(3 * 60),
            // IAM usually propagates within 10 s, rarely more than a minute.
            propagation: Duration::from_secs(2 * 60),
            command: Duration::from_secs(5 * 60),
            deadline: None,
        }
    }
}

impl Policy {
    /// The SDK's standard retry mode with this policy's budget (throttling, 5xx, timeouts).
    pub fn sdk_retry_config(&self) -> aws_config::retry::RetryConfig {
        aws_config::retry::RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_initial_backoff(self.initial_backoff)
            .with_max_backoff(self.max_backoff)
    }

    /// The interceptor that reports the SDK's retries.
    pub fn retry_report(&self) -> RetryReport {
        RetryReport {
            max_attempts: self.max_attempts,
        }
    }

    /// A wait for `what`, at most `bound` and never past the command's deadline.
    pub fn wait(&self, what: impl Into<String>, bound: Duration) -> Wait {
        let now = Instant::now();
        let mut until = now + bound;
        let mut by_deadline = false;
        if let Some(d) = self.deadline
            && d < until
        {
            until = d;
            by_deadline = true;
        }
        Wait {
            what: what.into(),
            started: now,
            until,
            by_deadline,
            command: self.command,
            poll: self.poll,
            progress_every: self.progress_every,
            last_report: None,
            last_status: String::new(),
        }
    }
}

/// One named, bounded wait.
#[derive(Debug)]
pub struct Wait {
    what: String,
    started: Instant,
    until: Instant,
    by_deadline: bool,
    command: Duration,
    poll: Duration,
    progress_every: Duration,
    last_report: Option<Instant>,
    last_status: String,
}

impl Wait {
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn expired(&self) -> bool {
        Instant::now() >= self.until
    }

    /// Why the wait ended: its own bound, or the command's budget.
    pub fn gave_up(&self) -> String {
        let waited = self.elapsed().as_secs_f64();
        if self.by_deadline {
            format!(
                "gave up waiting for {} after {waited:.1}s: the command's budget of {}s is spent",
                self.what,
                self.command.as_secs()
            )
        } else {
            format!("gave up waiting for {} after {waited:.1}s", self.what)
        }
    }

    /// Prints `waiting for <what>: <status> (<elapsed>)` when the status changed or a report is due;
    /// an error once the wait is past its bound.
    pub fn progress(&mut self, out: &mut dyn std::io::Write, status: &str) -> anyhow::Result<()> {
        if self.expired() {
            bail!("{} ({status})", self.gave_up());
        }
        let due = status != self.last_status
            || self
                .last_report
                .is_none_or(|t| t.elapsed() >= self.progress_every);
        if due {
            writeln!(
                out,
                "waiting for {}: {status} ({:.1}s)",
                self.what,
                self.elapsed().as_secs_f64()
            )?;
            self.last_report = Some(Instant::now());
            self.last_status = status.to_string();
        }
        Ok(())
    }

    /// Sleeps one poll interval (never past the bound).
    pub async fn sleep(&self) {
        let left = self.until.saturating_duration_since(Instant::now());
        tokio::time::sleep(self.poll.min(left)).await;
    }
}

/// Calls Lambda with `send` until the answer is one a retry cannot change, and returns it: after a
/// 409 (an update in progress, a function still Pending) it waits until the function has settled and
/// calls again; while IAM has not propagated the role it calls again. Both bounded by the policy.
pub async fn lambda_call<T, E, Fut>(
    lambda: &lambda::Client,
    policy: &Policy,
    function: &str,
    api: &str,
    out: &mut dyn std::io::Write,
    mut send: impl FnMut() -> Fut,
) -> anyhow::Result<Result<T, SdkError<E, HttpResponse>>>
where
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut conflict: Option<Wait> = None;
    let mut propagation: Option<Wait> = None;
    loop {
        let res = send().await;
        let Some(e) = res.as_ref().err().and_then(|e| e.as_service_error()) else {
            return Ok(res);
        };
        if is_conflict(e) {
            let w = conflict.get_or_insert_with(|| {
                policy.wait(
                    format!(
                        "{function} to settle (no creation or update in progress) before {api}"
                    ),
                    policy.conflict,
                )
            });
            w.progress(out, "Lambda answers 409 ResourceConflictException")?;
            wait_settled(lambda, function, w, out).await?;
            continue;
        }
        if is_role_propagation(e) {
            let w = propagation.get_or_insert_with(|| {
                policy.wait(
                    format!("IAM to let Lambda assume the role ({api})"),
                    policy.propagation,
                )
            });
            if w.expired() {
                bail!(
                    "IAM has not propagated the role yet: {}; Lambda still answers {}. Re-running \
                     `cargo xtask deploy` is safe: it keeps what exists and makes only what is \
                     missing",
                    w.gave_up(),
                    describe(res.as_ref().err().unwrap()).trim_end_matches('.')
                );
            }
            w.progress(out, "the role is not assumable by Lambda yet")?;
            w.sleep().await;
            continue;
        }
        return Ok(res);
    }
}

/// Waits (within `w`) until the function is neither Pending nor InProgress; a function that no
/// longer exists has settled too.
async fn wait_settled(
    lambda: &lambda::Client,
    function: &str,
    w: &mut Wait,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    use lambda::types::{LastUpdateStatus, State};
    loop {
        let cfg = match lambda
            .get_function_configuration()
            .function_name(function)
            .send()
            .await
        {
            Ok(cfg) => cfg,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Ok(());
            }
            Err(e) => bail!("get function configuration of {function}: {}", describe(&e)),
        };
        let busy = cfg.state() == Some(&State::Pending)
            || cfg.last_update_status() == Some(&LastUpdateStatus::InProgress);
        if !busy {
            return Ok(());
        }
        w.progress(out, &state_line(&cfg))?;
        w.sleep().await;
    }
}

/// `State=Active, LastUpdateStatus=InProgress` as Lambda reports it.
pub fn state_line(
    cfg: &lambda::operation::get_function_configuration::GetFunctionConfigurationOutput,
) -> String {
    format!(
        "State={}, LastUpdateStatus={}",
        cfg.state().map(|s| s.as_str()).unwrap_or("(none)"),
        cfg.last_update_status()
            .map(|s| s.as_str())
            .unwrap_or("(none)")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_reports_changes_and_ends_at_the_earlier_of_its_bound_and_the_deadline() {
        let policy = Policy {
            progress_every: Duration::from_secs(60),
            deadline: Some(Instant::now()),
            command: Duration::from_secs(300),
            ..Policy::default()
        };
        let mut out = Vec::new();
        let mut w = policy.wait("f to be Active", Duration::from_secs(60));
        let err = w.progress(&mut out, "State=Pending").unwrap_err();
        assert!(
            err.to_string()
                .contains("the command's budget of 300s is spent (State=Pending)"),
            "{err}"
        );

        let policy = Policy {
            progress_every: Duration::from_secs(60),
            ..Policy::default()
        };
        let mut w = policy.wait("f to be Active", Duration::from_secs(60));
        for status in ["State=Pending", "State=Pending", "State=Active"] {
            w.progress(&mut out, status).unwrap();
        }
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out.matches("waiting for f to be Active: State=").count(),
            2,
            "{out}"
        );
    }
}
