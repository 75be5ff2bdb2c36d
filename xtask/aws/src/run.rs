//! `cargo xtask run`: the original script's one command with the existing commands' code: deploy
//! (preflight included), invoke (report and rendered log lines), then clean unless `--keep`.
//! Fails when any step or the invocation failed, after cleaning up all the same.

use anyhow::{Context, bail};
use xshell::Shell;

use crate::aws::{self, Clients, Settings, SettingsArgs};
use crate::{clean, deploy, invoke};
use xtask::build;

/// Deploy, invoke once and show the result, then remove everything (unless --keep)
#[derive(clap::Args, Default)]
pub struct Run {
    /// Leave the function (and its role and log group) in place afterwards
    #[arg(long)]
    pub keep: bool,
    /// The event's action
    #[arg(long, value_parser = ["apply", "plan", "status", "verify"], default_value = "apply")]
    pub action: String,
    /// Upload this zip instead of building `target/lambda/init-fn/<arch>/bootstrap.zip`
    #[arg(long, value_name = "FILE")]
    pub zip: Option<std::path::PathBuf>,
    /// Ship even though `cargo xtask lint` has unaccepted findings in sql/ (printed loudly)
    #[arg(long)]
    pub allow_lint_findings: bool,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

impl Run {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        xtask::lint::gate_deploy(self.allow_lint_findings)?;
        let settings = Settings::load(&self.settings)?;
        let zip = match &self.zip {
            Some(p) => std::fs::read(p).with_context(|| format!("run: read {}", p.display()))?,
            None => {
                build::bootstrap(sh, settings.arch)?;
                std::fs::read(build::zip_path(settings.arch))?
            }
        };
        let event = serde_json::to_vec(&serde_json::json!({"action": self.action}))?;
        aws::runtime()?.block_on(async {
            let clients = Clients::new(&settings.sdk_config().await);
            run(
                &clients,
                &clients,
                &settings,
                &zip,
                &event,
                self.keep,
                &mut std::io::stdout(),
            )
            .await
        })
    }
}

/// Deploy → invoke → clean (unless `keep`). `invoker` makes the Invoke call: the same clients in
/// AWS; tests point it at a local Invoke API while moto plays the rest.
pub async fn run(
    c: &Clients,
    invoker: &Clients,
    s: &Settings,
    zip: &[u8],
    event: &[u8],
    keep: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    writeln!(out, "== deploy")?;
    let deployed = deploy::deploy(c, s, zip, false, out).await;
    let invoked = match &deployed {
        Ok(_) => {
            writeln!(out, "== invoke")?;
            match invoke::invoke(invoker, &s.function_name, event, out).await {
                Ok(inv) => {
                    inv.print(false, out)?;
                    inv.into_result().map(drop)
                }
                Err(e) => Err(e),
            }
        }
        Err(_) => Ok(()),
    };
    if let Err(e) = &invoked {
        writeln!(out, "run: {e:#}")?;
    }
    let cleaned = if keep {
        writeln!(
            out,
            "== kept function {} (--keep): `cargo xtask clean` removes it",
            s.function_name
        )?;
        Ok(())
    } else {
        writeln!(out, "== clean")?;
        clean::clean(c, s, false, out).await.map(drop)
    };
    match (deployed, invoked, cleaned) {
        (Err(d), _, c) => {
            if let Err(c) = c {
                writeln!(out, "run: clean after the failed deploy: {c:#}")?;
            }
            Err(d.context("run: deploy failed"))
        }
        (Ok(_), Err(i), Ok(())) => Err(i.context("run: the invocation failed (cleaned up)")),
        (Ok(_), Err(i), Err(c)) => {
            bail!("run: the invocation failed ({i:#}) and clean failed: {c:#}")
        }
        (Ok(_), Ok(()), Err(c)) => Err(c.context("run: clean failed")),
        (Ok(_), Ok(()), Ok(())) => Ok(()),
    }
}
