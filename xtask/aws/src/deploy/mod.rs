//! `cargo xtask deploy`: discover the network from the RDS instance and the secret, preflight them,
//! build the desired state, then make AWS match it — plan each resource (role, log group, function)
//! against what AWS has, print the changes, and apply them in that order, waiting until Lambda says
//! the function is ready.

pub mod change;
pub mod desired;
pub mod function;
pub mod log_group;
pub mod role;
pub mod secret;
pub mod wait;

use anyhow::{Context, bail};
use xshell::Shell;

use crate::aws::{self, Clients, Settings, SettingsArgs};
use crate::preflight::{self, Network, Preflight};
use change::Change;
use desired::Desired;
use secret::Secret;
use xtask::build;

/// Create or update the role, the log group and the function in AWS (see the README for the permissions it needs)
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
    /// Also check that the function's subnets reach S3 (gateway endpoint or NAT), which a
    /// CloudFormation custom resource's answer needs; fail before any change when they do not
    #[arg(long)]
    pub check_s3: bool,
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
            let out = &mut std::io::stdout();
            if self.check_s3 {
                crate::s3_preflight::gate(&clients, &settings, out).await?;
            }
            deploy(&clients, &settings, &zip, self.dry_run, out).await?;
            Ok(())
        })
    }
}

/// What deploy found, checked, wanted and did.
#[derive(Debug)]
pub struct DeployReport {
    pub network: Network,
    /// `None` with `auth = "iam"`: no secret is read or granted.
    pub secret: Option<Secret>,
    pub preflight: Preflight,
    pub desired: Desired,
    pub changes: Vec<Change>,
    pub function_arn: Option<String>,
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
    let secret = match s.auth {
        crate::aws::DbAuth::Secret => {
            let secret = Secret::discover(c, s).await?;
            writeln!(out, "{secret}")?;
            Some(secret)
        }
        crate::aws::DbAuth::Iam => {
            writeln!(
                out,
                "auth: iam (no secret; the role may rds-db:connect as {} only)",
                s.iam_db_user
            )?;
            None
        }
    };
    let preflight = preflight::check(c, s, &network).await?;
    write!(out, "{preflight}")?;
    if !preflight.ok() {
        bail!("deploy: preflight failed, nothing was changed (see above for what to create)");
    }
    let desired = Desired::new(s, &network, secret.as_ref(), desired::code_sha256(zip));

    let observed_role = role::observe(c, &desired.role.name).await?;
    let role_arn = observed_role.as_ref().map(|r| r.arn.clone());
    let role_arn = role_arn.filter(|a| !a.is_empty());
    let observed_group = log_group::observe(c, &desired.log_group.name).await?;
    let observed_function = function::observe(c, &desired.function.name).await?;
    let mut changes = role::plan(&desired.role, observed_role.as_ref());
    changes.extend(log_group::plan(&desired.log_group, observed_group.as_ref()));
    changes.extend(function::plan(
        &desired.function,
        observed_function.as_ref(),
        role_arn.as_deref(),
    ));
    print_changes(&changes, dry_run, out)?;

    let mut report = DeployReport {
        function_arn: observed_function.and_then(|f| f.function_arn),
        network,
        secret,
        preflight,
        desired,
        changes,
    };
    if dry_run || report.changes.is_empty() {
        return Ok(report);
    }
    let (want, changes) = (&report.desired, &report.changes);
    let role_arn = role::apply(c, &want.role, changes, role_arn).await?;
    log_group::apply(c, &want.log_group, changes, out).await?;
    let created = function::apply(c, &want.function, &role_arn, zip, changes, out).await?;
    report.function_arn = created.or(report.function_arn);
    writeln!(out, "deployed {}", want.function.name)?;
    Ok(report)
}

fn print_changes(
    changes: &[Change],
    dry_run: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    if changes.is_empty() {
        writeln!(out, "up to date: nothing to change")?;
        return Ok(());
    }
    let heading = if dry_run {
        "would change (dry run)"
    } else {
        "changes"
    };
    writeln!(out, "{heading}:")?;
    for ch in changes {
        writeln!(out, "  - {}", ch.to_string().replace('\n', "\n    "))?;
    }
    Ok(())
}
