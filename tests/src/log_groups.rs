//! What CloudWatch Logs holds for a log group, read through the SDK (against moto).

use xtask_aws::aws::Clients;

/// The retention of log group `group`: `None` when the group does not exist, `Some(None)` when
/// it never expires.
pub async fn retention(c: &Clients, group: &str) -> anyhow::Result<Option<Option<i32>>> {
    let found = c
        .logs
        .describe_log_groups()
        .log_group_name_prefix(group)
        .send()
        .await?;
    Ok(found
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(group))
        .map(|g| g.retention_in_days()))
}
