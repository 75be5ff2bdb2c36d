//! The function's log group, reconciled: read its retention (`observe`), compare it with the desired
//! one (`plan`, pure), and create it or set its retention (`apply`, the only code here that writes to
//! CloudWatch Logs). Deploy runs it before the function, so Lambda never creates the group itself.

use anyhow::bail;

use super::change::Change;
use super::desired::LogGroupSpec;
use crate::aws::Clients;
use crate::aws_error::describe;

/// What CloudWatch Logs has for the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// `None`: events never expire.
    pub retention_days: Option<i32>,
}

/// The group as CloudWatch Logs has it; `None` when there is no such group.
pub async fn observe(c: &Clients, name: &str) -> anyhow::Result<Option<Observed>> {
    let mut pages = c
        .logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            anyhow::anyhow!(
                "deploy: describe log group {name} (logs DescribeLogGroups): {}",
                describe(&e)
            )
        })?;
        // A prefix also matches `/aws/lambda/<function>-other`: only the exact name is ours.
        if let Some(group) = page
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name))
        {
            return Ok(Some(Observed {
                retention_days: group.retention_in_days(),
            }));
        }
    }
    Ok(None)
}

/// Create the group with its retention, or set the retention when it differs.
pub fn plan(want: &LogGroupSpec, current: Option<&Observed>) -> Vec<Change> {
    match current {
        None => vec![Change::CreateLogGroup {
            name: want.name.clone(),
            retention_days: want.retention_days,
        }],
        Some(cur) if cur.retention_days != Some(want.retention_days) => {
            vec![Change::SetRetention {
                days: want.retention_days,
                from: cur.retention_days,
            }]
        }
        Some(_) => Vec::new(),
    }
}

/// Makes the log group changes among `changes`.
pub async fn apply(
    c: &Clients,
    want: &LogGroupSpec,
    changes: &[Change],
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    for ch in changes {
        match ch {
            Change::CreateLogGroup { .. } => {
                create(c, &want.name).await?;
                retention(c, want).await?;
                writeln!(
                    out,
                    "created log group {} (retention {} days)",
                    want.name, want.retention_days
                )?;
            }
            Change::SetRetention { .. } => {
                retention(c, want).await?;
                writeln!(
                    out,
                    "log group retention set to {} days",
                    want.retention_days
                )?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// `CreateLogGroup`; a group that appeared since `observe` (a first invocation, a retried call whose
/// answer was lost) is the same group, and its retention is set next.
async fn create(c: &Clients, name: &str) -> anyhow::Result<()> {
    match c.logs.create_log_group().log_group_name(name).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_already_exists_exception()) =>
        {
            Ok(())
        }
        Err(e) => bail!(
            "deploy: create log group {name} (logs CreateLogGroup): {}",
            describe(&e)
        ),
    }
}

async fn retention(c: &Clients, want: &LogGroupSpec) -> anyhow::Result<()> {
    c.logs
        .put_retention_policy()
        .log_group_name(&want.name)
        .retention_in_days(want.retention_days)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "deploy: set the retention of {} (logs PutRetentionPolicy): {}",
                want.name,
                describe(&e)
            )
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want() -> LogGroupSpec {
        LogGroupSpec {
            name: "/aws/lambda/f".into(),
            retention_days: 30,
        }
    }

    #[test]
    fn a_missing_group_is_created_with_its_retention() {
        assert_eq!(
            plan(&want(), None),
            vec![Change::CreateLogGroup {
                name: "/aws/lambda/f".into(),
                retention_days: 30
            }]
        );
    }

    #[test]
    fn only_a_differing_retention_is_set() {
        let as_wanted = Observed {
            retention_days: Some(30),
        };
        assert_eq!(plan(&want(), Some(&as_wanted)), vec![]);
        // What Lambda leaves when it creates the group on a first invocation: never expire.
        let forever = Observed {
            retention_days: None,
        };
        assert_eq!(
            plan(&want(), Some(&forever)),
            vec![Change::SetRetention {
                days: 30,
                from: None
            }]
        );
        assert_eq!(
            plan(
                &want(),
                Some(&Observed {
                    retention_days: Some(7)
                })
            ),
            vec![Change::SetRetention {
                days: 30,
                from: Some(7)
            }]
        );
    }
}
