//! `cargo xtask clean`: removes what deploy created — the function, its log group, and (unless
//! `--keep-role`) the role with its policies. Idempotent: what is already gone is reported as such.

use anyhow::Context;
use xshell::Shell;

use crate::aws::{self, Clients, Settings, SettingsArgs};
use crate::aws_error::describe;

/// Delete the function, its log group and its role (the RDS instance and the secret are untouched)
#[derive(clap::Args, Default)]
pub struct Clean {
    /// Keep the IAM role and its policies
    #[arg(long)]
    pub keep_role: bool,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

impl Clean {
    pub fn run(self, _sh: &Shell) -> anyhow::Result<()> {
        let settings = Settings::load(&self.settings)?;
        aws::runtime()?.block_on(async {
            let clients = Clients::new(&settings.sdk_config().await);
            clean(&clients, &settings, self.keep_role, &mut std::io::stdout()).await?;
            Ok(())
        })
    }
}

/// Deletes everything deploy made; returns what was actually removed (empty: nothing was left).
pub async fn clean(
    c: &Clients,
    s: &Settings,
    keep_role: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    let mut gone = |what: String, out: &mut dyn std::io::Write, existed: bool| {
        let _ = writeln!(
            out,
            "{} {what}",
            if existed { "deleted" } else { "already gone:" }
        );
        if existed {
            removed.push(what);
        }
    };

    let c = &c.for_command();
    let name = &s.function_name;
    let req = c.lambda.delete_function().function_name(name);
    let deleted =
        crate::retry::lambda_call(&c.lambda, &c.policy, name, "DeleteFunction", out, || {
            req.clone().send()
        })
        .await
        .context("clean: delete function")?;
    let existed = match deleted {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => anyhow::bail!(
            "clean: delete function {name} (lambda DeleteFunction): {}",
            describe(&e)
        ),
    };
    gone(format!("function {name}"), out, existed);

    let group = crate::logs::group_name(name);
    let existed = match c
        .logs
        .delete_log_group()
        .log_group_name(&group)
        .send()
        .await
    {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => anyhow::bail!("clean: delete log group {group}: {}", describe(&e)),
    };
    gone(format!("log group {group}"), out, existed);

    if keep_role {
        writeln!(out, "kept role {} (--keep-role)", s.role)?;
    } else {
        let role = &s.role;
        let not_found = |code: Option<&str>| code == Some("NoSuchEntity");
        match c.iam.list_role_policies().role_name(role).send().await {
            Ok(list) => {
                for p in list.policy_names() {
                    c.iam
                        .delete_role_policy()
                        .role_name(role)
                        .policy_name(p)
                        .send()
                        .await
                        .map_err(|e| {
                            anyhow::anyhow!("clean: delete inline policy {p}: {}", describe(&e))
                        })?;
                    gone(format!("inline policy {p} of role {role}"), out, true);
                }
            }
            Err(e)
                if not_found(
                    e.as_service_error()
                        .and_then(|e| aws::iam::error::ProvideErrorMetadata::code(e)),
                ) => {}
            Err(e) => anyhow::bail!("clean: list inline policies of {role}: {}", describe(&e)),
        }
        match c
            .iam
            .list_attached_role_policies()
            .role_name(role)
            .send()
            .await
        {
            Ok(list) => {
                for p in list.attached_policies() {
                    let arn = p.policy_arn().unwrap_or_default();
                    c.iam
                        .detach_role_policy()
                        .role_name(role)
                        .policy_arn(arn)
                        .send()
                        .await
                        .map_err(|e| anyhow::anyhow!("clean: detach {arn}: {}", describe(&e)))?;
                    gone(format!("attachment of {arn} to role {role}"), out, true);
                }
            }
            Err(e)
                if not_found(
                    e.as_service_error()
                        .and_then(|e| aws::iam::error::ProvideErrorMetadata::code(e)),
                ) => {}
            Err(e) => anyhow::bail!("clean: list attached policies of {role}: {}", describe(&e)),
        }
        let existed = match c.iam.delete_role().role_name(role).send().await {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_no_such_entity_exception()) =>
            {
                false
            }
            Err(e) => anyhow::bail!(
                "clean: delete role {role} (iam DeleteRole): {}",
                describe(&e)
            ),
        };
        gone(format!("role {role}"), out, existed);
    }
    if removed.is_empty() {
        writeln!(out, "nothing was left to clean")?;
    }
    Ok(removed)
}
