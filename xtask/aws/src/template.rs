//! `cargo xtask template`: deploy's discovery and preflight (plus the S3 check a custom resource's
//! answer needs), then deploy's [`Desired`] value rendered as a CloudFormation or SAM template with a
//! `Custom::SchemaMigration` resource that runs the migrations on stack create and update.

use std::fmt;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use xshell::Shell;

use crate::aws::{self, Clients, Settings, SettingsArgs};
use crate::deploy::desired::Desired;
use crate::deploy::secret::Secret;
use crate::{preflight, s3_preflight, yaml};
use init_fn::engine::migration::Migration;
use xtask::build;

/// The template's dialect.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Plain CloudFormation: the code comes from the parameters CodeS3Bucket / CodeS3Key
    #[default]
    Cloudformation,
    /// AWS SAM: `CodeUri` is the zip `cargo xtask build` writes (`sam deploy` uploads it)
    Sam,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Cloudformation => "cloudformation",
            Format::Sam => "sam",
        })
    }
}

/// Write a CloudFormation or SAM template with exactly what deploy creates (read-only in AWS)
#[derive(clap::Args, Default)]
pub struct Template {
    /// Template dialect
    #[arg(long, value_enum, default_value_t = Format::Cloudformation)]
    pub format: Format,
    /// Write the template to FILE (relative to the project root) instead of stdout
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

impl Template {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        // A bad --out fails before any AWS call, and a template is written whole or not at all.
        let out = match &self.out {
            Some(p) => Some(writable(&sh.current_dir().join(p))?),
            None => None,
        };
        let settings = Settings::load(&self.settings)?;
        let dir = match &out {
            Some(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
            None => sh.current_dir(),
        };
        let zip = build::zip_path(settings.arch);
        if self.format == Format::Sam && !zip.exists() {
            eprintln!(
                "note: {} does not exist yet: `cargo xtask build` writes it before `sam deploy`",
                zip.display()
            );
        }
        let code_uri = relative(&zip, &dir);
        let rt = aws::runtime()?;
        let text = rt.block_on(async {
            let clients = Clients::new(&settings.sdk_config().await);
            let log = &mut std::io::stderr();
            template(&clients, &settings, self.format, &code_uri, log).await
        })?;
        match out {
            Some(p) => {
                std::fs::write(&p, &text)
                    .with_context(|| format!("template: write {}", p.display()))?;
                eprintln!("wrote {} ({} template)", p.display(), self.format);
            }
            None => print!("{text}"),
        }
        Ok(())
    }
}

/// The `--out` path when a file can be written there: not a directory, in a directory that exists.
pub fn writable(path: &Path) -> anyhow::Result<PathBuf> {
    let path =
        std::path::absolute(path).with_context(|| format!("template: --out {}", path.display()))?;
    if path.is_dir() {
        bail!(
            "template: --out {} is a directory, not a file",
            path.display()
        );
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    if !parent.is_dir() {
        bail!(
            "template: --out {}: directory {} does not exist",
            path.display(),
            parent.display()
        );
    }
    Ok(path)
}

/// `to` relative to the directory `from` (both absolute), as SAM resolves `CodeUri`.
fn relative(to: &Path, from: &Path) -> String {
    let to: Vec<Component> = to.components().collect();
    let from: Vec<Component> = from.components().collect();
    let common = to.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let mut p = PathBuf::new();
    for _ in common..from.len() {
        p.push("..");
    }
    p.extend(&to[common..]);
    p.to_string_lossy().into_owned()
}

/// Discover and preflight as deploy does (and the S3 path), report to `log`, and render the template.
pub async fn template(
    c: &Clients,
    s: &Settings,
    format: Format,
    code_uri: &str,
    log: &mut dyn Write,
) -> anyhow::Result<String> {
    let c = &c.for_command();
    let network = preflight::discover(c, s).await?;
    writeln!(log, "{network}")?;
    let secret = match s.auth {
        crate::aws::DbAuth::Secret => {
            let secret = Secret::discover(c, s).await?;
            writeln!(log, "{secret}")?;
            Some(secret)
        }
        crate::aws::DbAuth::Iam => {
            writeln!(log, "auth: iam (no secret)")?;
            None
        }
    };
    let mut checks = preflight::check(c, s, &network).await?;
    checks
        .checks
        .push(s3_preflight::check(c, s, &network).await?);
    write!(log, "{checks}")?;
    if !checks.ok() {
        bail!("template: preflight failed, no template was written (see above for what to create)");
    }
    // The code is a parameter of the template, so its hash is no part of what it renders.
    let desired = Desired::new(s, &network, secret.as_ref(), String::new());
    let checksum = migrations_checksum(&init_fn::engine::migration::embedded());
    Ok(render(&desired, format, &checksum, code_uri))
}

/// sha256 over each migration's version, name and ledger checksum (the engine's own), one per
/// line: it changes when a file in sql/ is added, renamed or edited, and for nothing else.
pub fn migrations_checksum(migrations: &[Migration]) -> String {
    let mut h = Sha256::new();
    for m in migrations {
        h.update(format!("{:04} {} {}\n", m.version, m.name, m.checksum));
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The template for `d` (pure: the unit tests and `template` call the same code).
pub fn render(d: &Desired, format: Format, checksum: &str, code_uri: &str) -> String {
    let mut doc = Map::new();
    let note = |doc: &mut Map<String, Value>, text: &str| {
        doc.insert(yaml::comment(text), Value::Null);
    };
    note(
        &mut doc,
        &format!(
            "init-fn ({}): the role and the function `cargo xtask deploy` creates, and a",
            d.function.name
        ),
    );
    note(
        &mut doc,
        "custom resource that applies the documents_db migrations on stack create and update.",
    );
    note(
        &mut doc,
        &format!(
            "Written by `cargo xtask template --format {format}` from [package.metadata.lambda.deploy]"
        ),
    );
    note(
        &mut doc,
        "and what deploy discovered (network, secret): regenerate it, do not edit it.",
    );
    match format {
        Format::Cloudformation => note(
            &mut doc,
            "Deploy: aws cloudformation deploy --template-file FILE --stack-name init-fn --capabilities CAPABILITY_NAMED_IAM --parameter-overrides CodeS3Bucket=... CodeS3Key=...",
        ),
        Format::Sam => note(
            &mut doc,
            "Deploy: cargo xtask build && sam deploy --template-file FILE --stack-name init-fn --capabilities CAPABILITY_NAMED_IAM --resolve-s3",
        ),
    }
    doc.insert("AWSTemplateFormatVersion".into(), json!("2010-09-09"));
    if format == Format::Sam {
        doc.insert("Transform".into(), json!("AWS::Serverless-2016-10-31"));
    }
    doc.insert(
        "Description".into(),
        json!("init-fn: applies the documents_db migrations (least-privilege role, function in the database's VPC)"),
    );
    if format == Format::Cloudformation {
        doc.insert(
            "Parameters".into(),
            json!({
                "CodeS3Bucket": {
                    "Type": "String",
                    "Description": format!("Bucket holding the function's zip (cargo xtask build: target/lambda/init-fn/{}/bootstrap.zip)", d.function.arch)
                },
                "CodeS3Key": {"Type": "String", "Description": "Key of the zip in CodeS3Bucket"}
            }),
        );
    }
    doc.insert(
        "Resources".into(),
        json!({
            "# The role: only Lambda may assume it; VPC networking and logs; the one secret.": null,
            "Role": role(d),
            "# The function's log group, made before the function so it never lacks a retention.": null,
            "LogGroup": log_group(d),
            "# The function, in the database's subnets and security groups.": null,
            "Function": function(d, format, code_uri),
            "# Runs the migrations: Create and Update apply them; Delete leaves the schema as it is.": null,
            "# MigrationsChecksum changes only when a file in sql/ does, so only then does an update apply.": null,
            "SchemaMigration": {
                "Type": "Custom::SchemaMigration",
                "Properties": {
                    "ServiceToken": {"!GetAtt": "Function.Arn"},
                    "MigrationsChecksum": checksum
                }
            }
        }),
    );
    doc.insert(
        "Outputs".into(),
        json!({
            "FunctionArn": {"Value": {"!GetAtt": "Function.Arn"}},
            "RoleArn": {"Value": {"!GetAtt": "Role.Arn"}},
            "LatestVersion": {
                "Description": "The latest migration version applied (the custom resource's Data)",
                "Value": {"!GetAtt": "SchemaMigration.LatestVersion"}
            }
        }),
    );
    yaml::render(&doc)
}

fn role(d: &Desired) -> Value {
    let r = &d.role;
    let policies: Vec<Value> = r
        .inline_policies
        .iter()
        .map(|(name, doc)| json!({"PolicyName": name, "PolicyDocument": doc}))
        .collect();
    json!({
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": r.name,
            "Description": r.description,
            "AssumeRolePolicyDocument": r.trust_policy,
            "ManagedPolicyArns": r.managed_policies,
            "Policies": policies
        }
    })
}

fn function(d: &Desired, format: Format, code_uri: &str) -> Value {
    let f = &d.function;
    let mut p = Map::new();
    p.insert("FunctionName".into(), json!(f.name));
    p.insert("Description".into(), json!(f.description));
    p.insert("Runtime".into(), json!(f.runtime));
    p.insert("Handler".into(), json!(f.handler));
    p.insert("Architectures".into(), json!([f.arch.as_str()]));
    p.insert("MemorySize".into(), json!(f.memory));
    p.insert("Timeout".into(), json!(f.timeout));
    p.insert("Role".into(), json!({"!GetAtt": "Role.Arn"}));
    let kind = match format {
        Format::Cloudformation => {
            let code =
                json!({"S3Bucket": {"!Ref": "CodeS3Bucket"}, "S3Key": {"!Ref": "CodeS3Key"}});
            p.insert("Code".into(), code);
            "AWS::Lambda::Function"
        }
        Format::Sam => {
            p.insert("CodeUri".into(), json!(code_uri));
            "AWS::Serverless::Function"
        }
    };
    p.insert(
        "VpcConfig".into(),
        json!({"SubnetIds": f.subnets, "SecurityGroupIds": f.security_groups}),
    );
    p.insert("Environment".into(), json!({"Variables": f.env}));
    let l = &f.logging;
    let mut logging = Map::new();
    logging.insert("LogFormat".into(), json!(l.format.as_str()));
    if let Some(level) = l.application_level {
        logging.insert("ApplicationLogLevel".into(), json!(level.as_str()));
    }
    if let Some(level) = l.system_level {
        logging.insert("SystemLogLevel".into(), json!(level.as_str()));
    }
    logging.insert("LogGroup".into(), json!({"!Ref": "LogGroup"}));
    p.insert("LoggingConfig".into(), Value::Object(logging));
    json!({"Type": kind, "Properties": p})
}

fn log_group(d: &Desired) -> Value {
    json!({
        "Type": "AWS::Logs::LogGroup",
        "Properties": {
            "LogGroupName": d.log_group.name,
            "RetentionInDays": d.log_group.retention_days
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        template: Template,
    }

    #[test]
    fn an_unknown_format_is_named_with_the_known_ones() {
        let err = Cli::try_parse_from(["template", "--format", "json"])
            .err()
            .expect("json is no format");
        let text = err.to_string();
        assert!(
            text.contains("invalid value 'json' for '--format <FORMAT>'"),
            "{text}"
        );
        assert!(
            text.contains("[possible values: cloudformation, sam]"),
            "{text}"
        );
        let ok = Cli::try_parse_from(["template", "--format", "sam"]).unwrap();
        assert_eq!(ok.template.format, Format::Sam);
    }

    #[test]
    fn an_unwritable_out_is_refused_before_any_aws_call() {
        let dir = std::env::temp_dir();
        let err = writable(&dir).unwrap_err().to_string();
        assert!(err.contains("is a directory, not a file"), "{err}");
        let missing = dir.join("init-fn-no-such-dir/template.yaml");
        let err = writable(&missing).unwrap_err().to_string();
        assert!(err.contains("init-fn-no-such-dir does not exist"), "{err}");
        let sh = Shell::new().unwrap();
        let cmd = Template {
            out: Some(missing.clone()),
            ..Template::default()
        };
        let err = cmd.run(&sh).unwrap_err().to_string();
        assert!(err.starts_with("template: --out"), "{err}");
        assert!(!missing.exists());
    }

    #[test]
    fn code_uri_is_relative_to_the_template() {
        let zip = Path::new("/p/target/lambda/init-fn/arm64/bootstrap.zip");
        assert_eq!(
            relative(zip, Path::new("/p")),
            "target/lambda/init-fn/arm64/bootstrap.zip"
        );
        assert_eq!(
            relative(zip, Path::new("/p/deploy")),
            "../target/lambda/init-fn/arm64/bootstrap.zip"
        );
    }

    #[test]
    fn the_checksum_follows_sql_only() {
        let a = Migration::new(1, "initial_schema", "CREATE TABLE t (id int);\n");
        let b = Migration::new(2, "add_index", "CREATE INDEX i ON t (id);\n");
        let base = migrations_checksum(&[a.clone(), b.clone()]);
        assert!(
            base.starts_with("sha256:") && base.len() == 7 + 64,
            "{base}"
        );
        assert_eq!(base, migrations_checksum(&[a.clone(), b.clone()]));
        let edited = Migration::new(2, "add_index", "CREATE INDEX i ON t (id DESC);\n");
        assert_ne!(base, migrations_checksum(&[a.clone(), edited]));
        let renamed = Migration::new(2, "index", "CREATE INDEX i ON t (id);\n");
        assert_ne!(base, migrations_checksum(&[a.clone(), renamed]));
        assert_ne!(base, migrations_checksum(&[a]));
    }
}
