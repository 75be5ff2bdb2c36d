//! `cargo xtask deploy`: discover the network from the RDS instance, preflight it, then create or
//! update the least-privilege role and the function, waiting until Lambda says it is ready.

use std::collections::HashMap;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use xshell::Shell;

use crate::aws::{self, Clients, Settings, SettingsArgs, describe, lambda};
use crate::preflight::{self, Network, Preflight};
use crate::retry;
use aws_sdk_lambda::error::ProvideErrorMetadata;
use xtask::build::{self, Arch};

/// Managed policy giving the function its ENIs in the VPC and its CloudWatch Logs.
pub const VPC_ACCESS_POLICY: &str =
    "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole";
/// Name of the inline policy that grants reading the one secret.
pub const SECRET_POLICY_NAME: &str = "read-db-secret";

/// Create or update the role and the function in AWS (see the README for the permissions it needs)
#[derive(clap::Args, Default)]
pub struct Deploy {
    /// Print the discovery, the preflight and every change that would be made, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Upload this zip instead of building `target/lambda/init-fn/<arch>/bootstrap.zip`
    #[arg(long, value_name = "FILE")]
    pub zip: Option<std::path::PathBuf>,
    /// Ship even though `cargo xtask lint` has unaccepted findings in sql/ (printed loudly)
    #[arg(long)]
    pub allow_lint_findings: bool,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

impl Deploy {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        // The binary embeds sql/: never ship a migration that locks or rewrites live tables unseen.
        xtask::lint::gate_deploy(self.allow_lint_findings)?;
        let settings = Settings::load(&self.settings)?;
        let zip = match &self.zip {
            Some(p) => std::fs::read(p).with_context(|| format!("deploy: read {}", p.display()))?,
            None => {
                build::bootstrap(sh, settings.arch)?;
                std::fs::read(build::zip_path(settings.arch))?
            }
        };
        let rt = aws::runtime()?;
        rt.block_on(async {
            let clients = Clients::new(&settings.sdk_config().await);
            deploy(
                &clients,
                &settings,
                &zip,
                self.dry_run,
                &mut std::io::stdout(),
            )
            .await?;
            Ok(())
        })
    }
}

/// One change deploy makes (or would make, under `--dry-run`).
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    CreateRole { name: String, trust_policy: Value },
    UpdateTrustPolicy { trust_policy: Value },
    AttachPolicy { arn: String },
    DetachPolicy { arn: String },
    PutInlinePolicy { name: String, document: Value },
    DeleteInlinePolicy { name: String },
    CreateFunction,
    UpdateCode { from_sha256: String },
    UpdateConfiguration { fields: Vec<String> },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
        match self {
            Change::CreateRole { name, trust_policy } => {
                write!(
                    f,
                    "create role {name} with trust policy\n{}",
                    pretty(trust_policy)
                )
            }
            Change::UpdateTrustPolicy { trust_policy } => {
                write!(
                    f,
                    "update the role's trust policy to\n{}",
                    pretty(trust_policy)
                )
            }
            Change::AttachPolicy { arn } => write!(f, "attach managed policy {arn}"),
            Change::DetachPolicy { arn } => write!(f, "detach managed policy {arn} (not needed)"),
            Change::PutInlinePolicy { name, document } => {
                write!(f, "put inline policy {name}\n{}", pretty(document))
            }
            Change::DeleteInlinePolicy { name } => {
                write!(f, "delete inline policy {name} (not needed)")
            }
            Change::CreateFunction => write!(f, "create the function"),
            Change::UpdateCode { from_sha256 } => {
                write!(f, "update the function's code (was sha256 {from_sha256})")
            }
            Change::UpdateConfiguration { fields } => {
                write!(
                    f,
                    "update the function's configuration: {}",
                    fields.join(", ")
                )
            }
        }
    }
}

/// What deploy found, checked and did.
#[derive(Debug)]
pub struct DeployReport {
    pub network: Network,
    pub preflight: Preflight,
    pub secret_arn: String,
    pub changes: Vec<Change>,
    pub function: FunctionSpec,
    pub function_arn: Option<String>,
}

/// The function configuration deploy wants.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionSpec {
    pub name: String,
    pub runtime: &'static str,
    pub handler: &'static str,
    pub arch: Arch,
    pub memory: i32,
    pub timeout: i32,
    pub env: std::collections::BTreeMap<String, String>,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub code_sha256: String,
}

/// Trust policy: only the Lambda service may assume the role.
pub fn trust_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]
    })
}

/// The inline policy: `GetSecretValue` on the one secret, and `kms:Decrypt` only for a customer key.
pub fn secret_policy(secret_arn: &str, kms_key: Option<&str>, region: &str) -> Value {
    let mut statements = vec![json!({
        "Sid": "ReadDbSecret",
        "Effect": "Allow",
        "Action": "secretsmanager:GetSecretValue",
        "Resource": secret_arn
    })];
    if let Some(key) = kms_key {
        statements.push(json!({
            "Sid": "DecryptDbSecret",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": kms_key_arn(key, secret_arn),
            "Condition": {"StringEquals": {"kms:ViaService": format!("secretsmanager.{region}.amazonaws.com")}}
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// A key id becomes a key ARN in the secret's account and region; an alias cannot be a resource of
/// `kms:Decrypt`, so it is left to the ViaService condition on every key.
fn kms_key_arn(key: &str, secret_arn: &str) -> String {
    if key.starts_with("arn:") && key.contains(":key/") {
        return key.to_string();
    }
    let parts: Vec<&str> = secret_arn.split(':').collect();
    if key.starts_with("alias/") || key.contains(":alias/") || parts.len() < 5 {
        return "*".to_string();
    }
    format!("arn:{}:kms:{}:{}:key/{key}", parts[1], parts[3], parts[4])
}

/// base64(sha256(zip)), the form of Lambda's `CodeSha256`.
pub fn code_sha256(zip: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(zip))
}

/// Discover, preflight, plan, and (unless `dry_run`) apply. Everything it reports goes to `out`.
pub async fn deploy(
    c: &Clients,
    s: &Settings,
    zip: &[u8],
    dry_run: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<DeployReport> {
    let c = &c.for_command();
    let network = preflight::discover(c, s).await?;
    writeln!(out, "{network}")?;

    let secret = c
        .secrets
        .describe_secret()
        .secret_id(&s.secret)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "deploy: describe secret {} (secretsmanager DescribeSecret): {}",
                s.secret,
                describe(&e)
            )
        })?;
    let secret_arn = secret
        .arn()
        .context("deploy: the secret has no ARN")?
        .to_string();
    // The AWS-managed key needs no grant; any other key is the customer's and needs kms:Decrypt.
    let kms_key = secret
        .kms_key_id()
        .filter(|k| !k.ends_with("alias/aws/secretsmanager"));
    writeln!(
        out,
        "secret: {secret_arn}{}",
        match kms_key {
            Some(k) => format!(" (customer key {k})"),
            None => " (AWS-managed key)".to_string(),
        }
    )?;

    let preflight = preflight::check(c, s, &network).await?;
    write!(out, "{preflight}")?;
    if !preflight.ok() {
        bail!("deploy: preflight failed, nothing was changed (see above for what to create)");
    }

    let function = FunctionSpec {
        name: s.function_name.clone(),
        runtime: "provided.al2023",
        handler: "bootstrap",
        arch: s.arch,
        memory: s.memory,
        timeout: s.timeout,
        env: [
            ("DB_HOST", network.host.clone()),
            ("DB_PORT", network.port.to_string()),
            ("DB_NAME", s.database.clone()),
            ("DB_USER", s.db_user.clone()),
            ("DB_SECRET_ID", secret_arn.clone()),
            ("DB_SSLMODE", s.sslmode.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        subnets: network.function_subnets.clone(),
        security_groups: network.function_security_groups.clone(),
        code_sha256: code_sha256(zip),
    };
    let policy = secret_policy(&secret_arn, kms_key, &s.region);

    let (mut changes, role_arn) = plan_role(c, s, &policy).await?;
    let existing = get_function(c, &s.function_name).await?;
    changes.extend(plan_function(
        existing.as_ref(),
        &function,
        role_arn.as_deref(),
    ));

    if changes.is_empty() {
        writeln!(out, "up to date: nothing to change")?;
    } else {
        writeln!(
            out,
            "{}:",
            if dry_run {
                "would change (dry run)"
            } else {
                "changes"
            }
        )?;
        for ch in &changes {
            writeln!(out, "  - {}", ch.to_string().replace('\n', "\n    "))?;
        }
    }
    let mut function_arn = existing
        .as_ref()
        .and_then(|f| f.function_arn())
        .map(str::to_string);
    if dry_run || changes.is_empty() {
        return Ok(DeployReport {
            network,
            preflight,
            secret_arn,
            changes,
            function,
            function_arn,
        });
    }

    let role_arn = apply_role(c, s, &changes, role_arn).await?;
    for ch in &changes {
        match ch {
            Change::CreateFunction => {
                let arn = create_function(c, &function, &role_arn, zip, out).await?;
                writeln!(out, "created {arn}")?;
                function_arn = Some(arn);
                wait_ready(c, &function.name, out).await?;
            }
            Change::UpdateCode { .. } => {
                update_code(c, &function, zip, out).await?;
                writeln!(out, "code update accepted")?;
                wait_ready(c, &function.name, out).await?;
            }
            Change::UpdateConfiguration { fields } => {
                update_configuration(c, &function, &role_arn, out).await?;
                writeln!(out, "configuration update accepted ({})", fields.join(", "))?;
                wait_ready(c, &function.name, out).await?;
            }
            _ => {}
        }
    }
    writeln!(out, "deployed {}", s.function_name)?;
    Ok(DeployReport {
        network,
        preflight,
        secret_arn,
        changes,
        function,
        function_arn,
    })
}

/// IAM returns policy documents URL-encoded; compare them as JSON.
fn policy_json(doc: &str) -> Option<Value> {
    serde_json::from_str(doc)
        .ok()
        .or_else(|| serde_json::from_str(&percent_decode(doc)).ok())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Role changes, and the role's ARN when it already exists.
async fn plan_role(
    c: &Clients,
    s: &Settings,
    policy: &Value,
) -> anyhow::Result<(Vec<Change>, Option<String>)> {
    let role = match c.iam.get_role().role_name(&s.role).send().await {
        Ok(out) => out.role,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_no_such_entity_exception()) =>
        {
            None
        }
        Err(e) => bail!(
            "deploy: get role {} (iam GetRole): {}",
            s.role,
            describe(&e)
        ),
    };
    let Some(role) = role else {
        return Ok((
            vec![
                Change::CreateRole {
                    name: s.role.clone(),
                    trust_policy: trust_policy(),
                },
                Change::AttachPolicy {
                    arn: VPC_ACCESS_POLICY.to_string(),
                },
                Change::PutInlinePolicy {
                    name: SECRET_POLICY_NAME.to_string(),
                    document: policy.clone(),
                },
            ],
            None,
        ));
    };
    let mut changes = Vec::new();
    if role.assume_role_policy_document().and_then(policy_json) != Some(trust_policy()) {
        changes.push(Change::UpdateTrustPolicy {
            trust_policy: trust_policy(),
        });
    }
    let attached = c
        .iam
        .list_attached_role_policies()
        .role_name(&s.role)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("deploy: list attached policies: {}", describe(&e)))?;
    let mut has_vpc = false;
    for p in attached.attached_policies() {
        match p.policy_arn() {
            Some(VPC_ACCESS_POLICY) => has_vpc = true,
            Some(arn) => changes.push(Change::DetachPolicy {
                arn: arn.to_string(),
            }),
            None => {}
        }
    }
    if !has_vpc {
        changes.push(Change::AttachPolicy {
            arn: VPC_ACCESS_POLICY.to_string(),
        });
    }
    let inline = c
        .iam
        .list_role_policies()
        .role_name(&s.role)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("deploy: list inline policies: {}", describe(&e)))?;
    let mut has_secret = false;
    for name in inline.policy_names() {
        if name != SECRET_POLICY_NAME {
            changes.push(Change::DeleteInlinePolicy { name: name.clone() });
            continue;
        }
        let current = c
            .iam
            .get_role_policy()
            .role_name(&s.role)
            .policy_name(name)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("deploy: get inline policy: {}", describe(&e)))?;
        has_secret = policy_json(current.policy_document()).as_ref() == Some(policy);
    }
    if !has_secret {
        changes.push(Change::PutInlinePolicy {
            name: SECRET_POLICY_NAME.to_string(),
            document: policy.clone(),
        });
    }
    Ok((changes, Some(role.arn).filter(|a| !a.is_empty())))
}

/// Applies the role changes; returns the role ARN.
async fn apply_role(
    c: &Clients,
    s: &Settings,
    changes: &[Change],
    mut role_arn: Option<String>,
) -> anyhow::Result<String> {
    let err = |what: &str, e: &dyn std::fmt::Display| anyhow::anyhow!("deploy: {what}: {e}");
    for ch in changes {
        match ch {
            Change::CreateRole { name, trust_policy } => {
                let created = c
                    .iam
                    .create_role()
                    .role_name(name)
                    .assume_role_policy_document(trust_policy.to_string())
                    .description("init-fn: applies documents_db migrations (cargo xtask deploy)")
                    .send()
                    .await;
                role_arn = match created {
                    Ok(out) => out.role.map(|r| r.arn),
                    // A retried call whose first answer was lost: the role is there.
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_entity_already_exists_exception()) =>
                    {
                        c.iam
                            .get_role()
                            .role_name(name)
                            .send()
                            .await
                            .map_err(|e| err("get role (iam GetRole)", &describe(&e)))?
                            .role
                            .map(|r| r.arn)
                    }
                    Err(e) => return Err(err("create role (iam CreateRole)", &describe(&e))),
                };
            }
            Change::UpdateTrustPolicy { trust_policy } => {
                c.iam
                    .update_assume_role_policy()
                    .role_name(&s.role)
                    .policy_document(trust_policy.to_string())
                    .send()
                    .await
                    .map_err(|e| err("update trust policy", &describe(&e)))?;
            }
            Change::AttachPolicy { arn } => {
                c.iam
                    .attach_role_policy()
                    .role_name(&s.role)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(|e| err("attach policy (iam AttachRolePolicy)", &describe(&e)))?;
            }
            Change::DetachPolicy { arn } => {
                c.iam
                    .detach_role_policy()
                    .role_name(&s.role)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(|e| err("detach policy", &describe(&e)))?;
            }
            Change::PutInlinePolicy { name, document } => {
                c.iam
                    .put_role_policy()
                    .role_name(&s.role)
                    .policy_name(name)
                    .policy_document(document.to_string())
                    .send()
                    .await
                    .map_err(|e| err("put inline policy (iam PutRolePolicy)", &describe(&e)))?;
            }
            Change::DeleteInlinePolicy { name } => {
                c.iam
                    .delete_role_policy()
                    .role_name(&s.role)
                    .policy_name(name)
                    .send()
                    .await
                    .map_err(|e| err("delete inline policy", &describe(&e)))?;
            }
            _ => {}
        }
    }
    role_arn.context("deploy: the role has no ARN")
}

pub async fn get_function(
    c: &Clients,
    name: &str,
) -> anyhow::Result<Option<lambda::types::FunctionConfiguration>> {
    match c.lambda.get_function().function_name(name).send().await {
        Ok(out) => Ok(out.configuration),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => bail!(
            "deploy: get function {name} (lambda GetFunction): {}",
            describe(&e)
        ),
    }
}

fn lambda_arch(a: Arch) -> lambda::types::Architecture {
    match a {
        Arch::Arm64 => lambda::types::Architecture::Arm64,
        Arch::X86_64 => lambda::types::Architecture::X8664,
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Function changes: create, or the code and configuration fields that differ.
fn plan_function(
    current: Option<&lambda::types::FunctionConfiguration>,
    want: &FunctionSpec,
    role_arn: Option<&str>,
) -> Vec<Change> {
    let Some(cur) = current else {
        return vec![Change::CreateFunction];
    };
    let mut changes = Vec::new();
    let arch_differs = cur.architectures().first() != Some(&lambda_arch(want.arch));
    if cur.code_sha256() != Some(want.code_sha256.as_str()) || arch_differs {
        changes.push(Change::UpdateCode {
            from_sha256: cur.code_sha256().unwrap_or("none").to_string(),
        });
    }
    let mut fields = Vec::new();
    if cur.runtime().map(|r| r.as_str()) != Some(want.runtime) {
        fields.push("runtime");
    }
    if cur.handler() != Some(want.handler) {
        fields.push("handler");
    }
    if cur.memory_size() != Some(want.memory) {
        fields.push("memory");
    }
    if cur.timeout() != Some(want.timeout) {
        fields.push("timeout");
    }
    // A role created in this run has a new ARN; an existing one must be the function's.
    if role_arn.is_none_or(|arn| cur.role() != Some(arn)) {
        fields.push("role");
    }
    let env: std::collections::BTreeMap<String, String> = cur
        .environment()
        .and_then(|e| e.variables())
        .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    if env != want.env {
        fields.push("environment");
    }
    let (subnets, sgs) = cur
        .vpc_config()
        .map(|v| (sorted(v.subnet_ids()), sorted(v.security_group_ids())))
        .unwrap_or_default();
    if subnets != sorted(&want.subnets) || sgs != sorted(&want.security_groups) {
        fields.push("vpc");
    }
    if !fields.is_empty() {
        changes.push(Change::UpdateConfiguration {
            fields: fields.into_iter().map(str::to_string).collect(),
        });
    }
    changes
}

fn environment(want: &FunctionSpec) -> lambda::types::Environment {
    lambda::types::Environment::builder()
        .set_variables(Some(
            want.env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        ))
        .build()
}

fn vpc_config(want: &FunctionSpec) -> lambda::types::VpcConfig {
    lambda::types::VpcConfig::builder()
        .set_subnet_ids(Some(want.subnets.clone()))
        .set_security_group_ids(Some(want.security_groups.clone()))
        .build()
}

async fn create_function(
    c: &Clients,
    want: &FunctionSpec,
    role_arn: &str,
    zip: &[u8],
    out: &mut dyn std::io::Write,
) -> anyhow::Result<String> {
    let req = c
        .lambda
        .create_function()
        .function_name(&want.name)
        .description("Applies the documents_db migrations (init-fn)")
        .runtime(lambda::types::Runtime::Providedal2023)
        .handler(want.handler)
        .role(role_arn)
        .architectures(lambda_arch(want.arch))
        .memory_size(want.memory)
        .timeout(want.timeout)
        .environment(environment(want))
        .vpc_config(vpc_config(want))
        .code(
            lambda::types::FunctionCode::builder()
                .zip_file(lambda::primitives::Blob::new(zip))
                .build(),
        );
    let created = retry::lambda_call(c, &want.name, "CreateFunction", out, || req.clone().send())
        .await
        .context("deploy: create function")?;
    let arn = match created {
        Ok(out) => out.function_arn,
        // A retried call whose first answer was lost: the function is there, made from this request.
        Err(e)
            if e.as_service_error().is_some_and(|e| {
                e.is_resource_conflict_exception()
                    && e.message().is_some_and(|m| m.contains("already exist"))
            }) =>
        {
            get_function(c, &want.name)
                .await?
                .and_then(|f| f.function_arn)
        }
        Err(e) => bail!(
            "deploy: create function (lambda CreateFunction): {}",
            describe(&e)
        ),
    };
    arn.context("deploy: no function ARN")
}

async fn update_code(
    c: &Clients,
    want: &FunctionSpec,
    zip: &[u8],
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let req = c
        .lambda
        .update_function_code()
        .function_name(&want.name)
        .zip_file(lambda::primitives::Blob::new(zip))
        .architectures(lambda_arch(want.arch));
    retry::lambda_call(c, &want.name, "UpdateFunctionCode", out, || {
        req.clone().send()
    })
    .await
    .context("deploy: update code")?
    .map_err(|e| {
        anyhow::anyhow!(
            "deploy: update code (lambda UpdateFunctionCode): {}",
            describe(&e)
        )
    })?;
    Ok(())
}

async fn update_configuration(
    c: &Clients,
    want: &FunctionSpec,
    role_arn: &str,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let req = c
        .lambda
        .update_function_configuration()
        .function_name(&want.name)
        .runtime(lambda::types::Runtime::Providedal2023)
        .handler(want.handler)
        .role(role_arn)
        .memory_size(want.memory)
        .timeout(want.timeout)
        .environment(environment(want))
        .vpc_config(vpc_config(want));
    retry::lambda_call(c, &want.name, "UpdateFunctionConfiguration", out, || {
        req.clone().send()
    })
    .await
    .context("deploy: update configuration")?
    .map_err(|e| {
        anyhow::anyhow!(
            "deploy: update configuration (lambda UpdateFunctionConfiguration): {}",
            describe(&e)
        )
    })?;
    Ok(())
}

/// Waits until `State=Active` and the last update succeeded (moto reports no `LastUpdateStatus`
/// after a create: that counts as success); a `Failed` state or update is an error with its reason
/// and what to do.
pub async fn wait_ready(
    c: &Clients,
    name: &str,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str =
        "arn:aws:secretsmanager:eu-west-3:111122223333:secret:ca-a2a/db-password-AbCdEf";

    #[test]
    fn secret_policy_is_least_privilege() {
        let p = secret_policy(SECRET, None, "eu-west-3");
        assert_eq!(p["Statement"].as_array().unwrap().len(), 1);
        assert_eq!(p["Statement"][0]["Action"], "secretsmanager:GetSecretValue");
        assert_eq!(p["Statement"][0]["Resource"], SECRET);

        let p = secret_policy(SECRET, Some("1234abcd-12ab"), "eu-west-3");
        assert_eq!(p["Statement"][1]["Action"], "kms:Decrypt");
        assert_eq!(
            p["Statement"][1]["Resource"],
            "arn:aws:kms:eu-west-3:111122223333:key/1234abcd-12ab"
        );
        assert_eq!(
            p["Statement"][1]["Condition"]["StringEquals"]["kms:ViaService"],
            "secretsmanager.eu-west-3.amazonaws.com"
        );
        let p = secret_policy(SECRET, Some("alias/db"), "eu-west-3");
        assert_eq!(p["Statement"][1]["Resource"], "*");
    }

    #[test]
    fn iam_documents_are_compared_decoded() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            policy_json(encoded),
            Some(json!({"Version": "2012-10-17", "Statement": []}))
        );
        assert_eq!(policy_json("{\"a\": 1}"), Some(json!({"a": 1})));
    }
}
