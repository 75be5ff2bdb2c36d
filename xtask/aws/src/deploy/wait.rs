//! Deploy's wait after each write to the function: until Lambda reports it Active with its last
//! update applied, bounded by the one retry and wait policy.

use anyhow::{Context, bail};

use crate::aws::{Clients, lambda};
use crate::aws_error::describe;
use crate::retry;

/// Waits until `State=Active` and the last update succeeded (moto reports no `LastUpdateStatus`
/// after a create: that counts as success); a `Failed` state or update is an error with its reason
/// and what to do.
pub async fn ready(c: &Clients, name: &str, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    use lambda::types::{LastUpdateStatus, State};
    let mut wait = c.policy.wait(
        format!("{name} to be Active with its update applied"),
        c.policy.ready,
    );
    loop {
        let cfg = c
            .lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "deploy: get function configuration (lambda GetFunctionConfiguration): {}",
                    describe(&e)
                )
            })?;
        match (cfg.state(), cfg.last_update_status()) {
            (Some(State::Failed), _) => bail!(
                "deploy: Lambda could not create {name}: State=Failed, {}: {}. Fix the cause, then \
                 run `cargo xtask clean --keep-role` and `cargo xtask deploy` again",
                cfg.state_reason_code()
                    .map(|c| c.as_str())
                    .unwrap_or("(no reason code)"),
                cfg.state_reason()
                    .unwrap_or("(no reason)")
                    .trim_end_matches('.')
            ),
            (_, Some(LastUpdateStatus::Failed)) => bail!(
                "deploy: Lambda could not apply the update of {name}: LastUpdateStatus=Failed, {}: \
                 {}. The function may still run its previous code and configuration; fix the cause \
                 and re-run `cargo xtask deploy`",
                cfg.last_update_status_reason_code()
                    .map(|c| c.as_str())
                    .unwrap_or("(no reason code)"),
                cfg.last_update_status_reason()
                    .unwrap_or("(no reason)")
                    .trim_end_matches('.')
            ),
            (Some(State::Active), None | Some(LastUpdateStatus::Successful)) => {
                writeln!(
                    out,
                    "ready: State=Active, LastUpdateStatus={} after {:.1}s",
                    cfg.last_update_status()
                        .map(|s| s.as_str())
                        .unwrap_or("(none)"),
                    wait.elapsed().as_secs_f64()
                )?;
                return Ok(());
            }
            _ => {
                wait.progress(out, &retry::state_line(&cfg))
                    .context("deploy")?;
                wait.sleep().await;
            }
        }
    }
}
