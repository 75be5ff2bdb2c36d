//! AWS settings and clients shared by deploy, invoke and clean: `[package.metadata.lambda.deploy]`
//! in `init-fn/Cargo.toml`, overridden by flags and `AWS_PROFILE` / `AWS_REGION`; one SDK config
//! (rustls + ring, no aws-lc) that honours `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`.

use std::path::Path;

use anyhow::{Context, bail};
use aws_config::{BehaviorVersion, Region};

use crate::retry::Policy;
use xtask::build::Arch;
pub use xtask::local::logging::{LogFormat, LogLevel};

pub use aws_config::SdkConfig;
pub use aws_sdk_cloudwatchlogs as logs;
pub use aws_sdk_ec2 as ec2;
pub use aws_sdk_iam as iam;
pub use aws_sdk_lambda as lambda;
pub use aws_sdk_rds as rds;
pub use aws_sdk_secretsmanager as secretsmanager;

/// Region when neither `--region`, `AWS_REGION` nor the metadata says one.
pub const DEFAULT_REGION: &str = "eu-west-3";

/// How the function logs in to the database (`DB_AUTH`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DbAuth {
    /// The password from the Secrets Manager secret (the role may read that one secret)
    #[default]
    Secret,
    /// An RDS IAM token signed with the function's role (the role may `rds-db:connect` as one user)
    Iam,
}

impl DbAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            DbAuth::Secret => "secret",
            DbAuth::Iam => "iam",
        }
    }
}

/// The deploy settings, after the metadata table, the environment and the flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `secret` or `iam` [metadata: auth].
    pub auth: DbAuth,
    /// The login role in `iam` mode [metadata: iam_db_user, init_fn_migrator]; `db_user` is the
    /// master user the secret belongs to.
    pub iam_db_user: String,
    pub function_name: String,
    pub role: String,
    pub region: String,
    pub profile: Option<String>,
    pub memory: i32,
    pub timeout: i32,
    pub arch: Arch,
    pub rds_instance: String,
    pub secret: String,
    pub database: String,
    pub db_user: String,
    pub sslmode: String,
    /// Empty: the RDS instance's DB subnet group.
    pub subnets: Vec<String>,
    /// Empty: the RDS instance's VPC security groups.
    pub security_groups: Vec<String>,
    /// The function's `LoggingConfig` log format.
    pub log_format: LogFormat,
    /// Its application log level; `None`: INFO under JSON, none under Text (Lambda filters by level
    /// only for JSON logs).
    pub log_level: Option<LogLevel>,
    /// Retention of the log group `/aws/lambda/<function>`, one of CloudWatch's values.
    pub log_retention_days: i32,
}

/// The retention periods CloudWatch Logs accepts (`PutRetentionPolicy`), in days.
pub const RETENTION_DAYS: [i32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// A metadata value named by one of a flag enum's names, case-insensitively.
fn parse_named<T: clap::ValueEnum>(key: &str, value: &str, expected: &str) -> anyhow::Result<T> {
    T::from_str(value, true)
        .map_err(|_| anyhow::anyhow!("{key} = {value:?} is not one of {expected}"))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    auth: Option<String>,
    iam_db_user: Option<String>,
    function_name: String,
    role: String,
    region: Option<String>,
    memory: Option<i32>,
    timeout: Option<i32>,
    arch: Option<String>,
    rds_instance: String,
    secret: String,
    database: Option<String>,
    db_user: Option<String>,
    sslmode: Option<String>,
    #[serde(default)]
    subnets: Vec<String>,
    #[serde(default)]
    security_groups: Vec<String>,
    log_format: Option<String>,
    log_level: Option<String>,
    log_retention_days: Option<i32>,
}

impl Settings {
    /// `[package.metadata.lambda.deploy]` of the given `Cargo.toml`, without any override.
    pub fn from_manifest(manifest: &Path) -> anyhow::Result<Settings> {
        let text = std::fs::read_to_string(manifest)
            .with_context(|| format!("read {}", manifest.display()))?;
        Settings::from_toml(&text)
            .with_context(|| format!("{}: [package.metadata.lambda.deploy]", manifest.display()))
    }

    pub fn from_toml(text: &str) -> anyhow::Result<Settings> {
        #[derive(serde::Deserialize)]
        struct Manifest {
            package: Package,
        }
        #[derive(serde::Deserialize)]
        struct Package {
            metadata: PackageMetadata,
        }
        #[derive(serde::Deserialize)]
        struct PackageMetadata {
            lambda: LambdaMetadata,
        }
        #[derive(serde::Deserialize)]
        struct LambdaMetadata {
            deploy: Metadata,
        }
        let m = toml::from_str::<Manifest>(text)?
            .package
            .metadata
            .lambda
            .deploy;
        let s = Settings {
            auth: match &m.auth {
                Some(v) => parse_named("auth", v, "secret, iam")?,
                None => DbAuth::Secret,
            },
            iam_db_user: m
                .iam_db_user
                .unwrap_or_else(|| "init_fn_migrator".to_string()),
            function_name: m.function_name,
            role: m.role,
            region: m.region.unwrap_or_else(|| DEFAULT_REGION.to_string()),
            profile: None,
            memory: m.memory.unwrap_or(128),
            timeout: m.timeout.unwrap_or(60),
            arch: Arch::parse(m.arch.as_deref().unwrap_or("arm64"))?,
            rds_instance: m.rds_instance,
            secret: m.secret,
            database: m.database.unwrap_or_else(|| "documents_db".to_string()),
            db_user: m.db_user.unwrap_or_else(|| "postgres".to_string()),
            sslmode: m.sslmode.unwrap_or_else(|| "verify-full".to_string()),
            subnets: m.subnets,
            security_groups: m.security_groups,
            log_format: match &m.log_format {
                Some(v) => parse_named("log_format", v, "JSON, Text")?,
                None => LogFormat::Json,
            },
            log_level: m
                .log_level
                .map(|v| parse_named("log_level", &v, "TRACE, DEBUG, INFO, WARN, ERROR, FATAL"))
                .transpose()?,
            log_retention_days: m.log_retention_days.unwrap_or(30),
        };
        if let (LogFormat::Text, Some(level)) = (s.log_format, s.log_level) {
            bail!(
                "log_level = {:?} needs log_format = \"JSON\": Lambda filters by level only for JSON logs",
                level.as_str()
            );
        }
        s.checked()
    }

    /// The settings, or the named reason CloudWatch would refuse them.
    fn checked(self) -> anyhow::Result<Settings> {
        let days = self.log_retention_days;
        if !RETENTION_DAYS.contains(&days) {
            bail!(
                "log_retention_days = {days} is not a retention CloudWatch Logs accepts: one of {}",
                RETENTION_DAYS.map(|d| d.to_string()).join(", ")
            );
        }
        Ok(self)
    }

    /// The project's settings: `init-fn/Cargo.toml`, then `AWS_REGION` / `AWS_PROFILE`, then `flags`.
    pub fn load(flags: &SettingsArgs) -> anyhow::Result<Settings> {
        let mut s = Settings::from_manifest(&xtask::project_root().join("init-fn/Cargo.toml"))?;
        if let Ok(region) = std::env::var("AWS_REGION")
            && !region.is_empty()
        {
            s.region = region;
        }
        if let Ok(profile) = std::env::var("AWS_PROFILE")
            && !profile.is_empty()
        {
            s.profile = Some(profile);
        }
        flags.apply(&mut s);
        // The metadata's level is for JSON; a level asked for on the command line must apply.
        if let (Some(level), LogFormat::Text) = (flags.log_level, s.log_format) {
            bail!(
                "--log-level {} needs --log-format json: Lambda filters by level only for JSON logs",
                level.as_str().to_lowercase()
            );
        }
        s.checked()
    }

    /// The database user the function logs in as: the migration role in `iam` mode.
    pub fn function_db_user(&self) -> &str {
        match self.auth {
            DbAuth::Secret => &self.db_user,
            DbAuth::Iam => &self.iam_db_user,
        }
    }

    /// The SDK configuration for these settings: region, profile, the environment's credentials and
    /// endpoint overrides (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_LAMBDA`, ...).
    pub async fn sdk_config(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .http_client(https_client());
        if let Some(p) = &self.profile {
            loader = loader.profile_name(p);
        }
        loader.load().await
    }
}

/// Overrides of the metadata table, shared by deploy, invoke and clean.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SettingsArgs {
    /// How the function logs in to the database [metadata: auth, secret]
    #[arg(long, value_enum)]
    pub auth: Option<DbAuth>,
    /// Lambda function name [metadata: function_name]
    #[arg(long)]
    pub function_name: Option<String>,
    /// IAM role name for the function [metadata: role]
    #[arg(long)]
    pub role: Option<String>,
    /// AWS region [AWS_REGION, metadata: region, eu-west-3]
    #[arg(long)]
    pub region: Option<String>,
    /// Named profile for credentials [AWS_PROFILE]
    #[arg(long)]
    pub profile: Option<String>,
    /// Memory in MB [metadata: memory]
    #[arg(long)]
    pub memory: Option<i32>,
    /// Timeout in seconds [metadata: timeout]
    #[arg(long)]
    pub timeout: Option<i32>,
    /// Architecture [metadata: arch]
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// RDS instance identifier [metadata: rds_instance]
    #[arg(long)]
    pub rds_instance: Option<String>,
    /// Secrets Manager secret id or ARN holding the password [metadata: secret]
    #[arg(long)]
    pub secret: Option<String>,
    /// Subnet for the function, repeatable [metadata: subnets, else the RDS subnet group]
    #[arg(long = "subnet")]
    pub subnets: Vec<String>,
    /// Security group for the function, repeatable [metadata: security_groups, else the instance's]
    #[arg(long = "security-group")]
    pub security_groups: Vec<String>,
    /// The function's log format [metadata: log_format, json]
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// The function's application log level, JSON only [metadata: log_level, info]
    #[arg(long, value_enum)]
    pub log_level: Option<LogLevel>,
    /// Days the log group keeps events [metadata: log_retention_days, 30]
    #[arg(long)]
    pub log_retention_days: Option<i32>,
}

impl SettingsArgs {
    pub fn apply(&self, s: &mut Settings) {
        let set = |dst: &mut String, src: &Option<String>| {
            if let Some(v) = src {
                dst.clone_from(v);
            }
        };
        set(&mut s.function_name, &self.function_name);
        set(&mut s.role, &self.role);
        set(&mut s.region, &self.region);
        set(&mut s.rds_instance, &self.rds_instance);
        set(&mut s.secret, &self.secret);
        if self.profile.is_some() {
            s.profile.clone_from(&self.profile);
        }
        if let Some(m) = self.memory {
            s.memory = m;
        }
        if let Some(t) = self.timeout {
            s.timeout = t;
        }
        if let Some(a) = self.arch {
            s.arch = a;
        }
        if !self.subnets.is_empty() {
            s.subnets.clone_from(&self.subnets);
        }
        if !self.security_groups.is_empty() {
            s.security_groups.clone_from(&self.security_groups);
        }
        if let Some(f) = self.log_format {
            s.log_format = f;
        }
        if self.log_level.is_some() {
            s.log_level = self.log_level;
        }
        if let Some(d) = self.log_retention_days {
            s.log_retention_days = d;
        }
        if let Some(a) = self.auth {
            s.auth = a;
        }
    }
}

/// HTTPS with rustls + ring: the SDK crates are built without default features (no aws-lc-rs).
pub fn https_client() -> lambda::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// An SDK config for a local endpoint (moto, `cargo xtask serve`): fixed dummy credentials, no
/// profile, no instance metadata, every service at `endpoint`.
pub async fn local_sdk_config(endpoint: &str, region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(lambda::config::Credentials::new(
            "testing", "testing", None, None, "local",
        ))
        .http_client(https_client())
        .load()
        .await
}

/// The clients deploy, invoke and clean use, from one SDK config, and the retry and wait policy
/// every call of theirs goes through.
#[derive(Clone, Debug)]
pub struct Clients {
    pub lambda: lambda::Client,
    pub iam: iam::Client,
    pub rds: rds::Client,
    pub ec2: ec2::Client,
    pub logs: logs::Client,
    pub secrets: secretsmanager::Client,
    pub policy: Policy,
}

impl Clients {
    pub fn new(config: &SdkConfig) -> Clients {
        Clients::with_policy(config, Policy::default())
    }

    /// Clients whose SDK retries (throttling, 5xx) and waits follow `policy`.
    pub fn with_policy(config: &SdkConfig, policy: Policy) -> Clients {
        let config = config
            .to_builder()
            .retry_config(policy.sdk_retry_config())
            .build();
        macro_rules! client {
            ($svc:ident) => {
                $svc::Client::from_conf(
                    $svc::config::Builder::from(&config)
                        .interceptor(policy.retry_report())
                        .build(),
                )
            };
        }
        Clients {
            lambda: client!(lambda),
            iam: client!(iam),
            rds: client!(rds),
            ec2: client!(ec2),
            logs: client!(logs),
            secrets: client!(secretsmanager),
            policy,
        }
    }

    /// The same clients for one command: its waits end with the command's budget.
    pub fn for_command(&self) -> Clients {
        let mut c = self.clone();
        c.policy.deadline = Some(std::time::Instant::now() + c.policy.command);
        c
    }
}

pub use xtask::runtime;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_metadata_parses_with_seed_names() {
        let s = Settings::from_manifest(&xtask::project_root().join("init-fn/Cargo.toml")).unwrap();
        assert_eq!(s.function_name, "ca-a2a-db-init");
        assert_eq!(s.role, "ca-a2a-lambda-db-init-role");
        assert_eq!(s.region, "eu-west-3");
        assert_eq!(s.rds_instance, "ca-a2a-postgres");
        assert_eq!(s.secret, "ca-a2a/db-password");
        assert_eq!(s.memory, 128);
        assert_eq!(s.timeout, 60);
        assert_eq!(s.arch, Arch::Arm64);
    }

    #[test]
    fn flags_override_metadata() {
        let mut s =
            Settings::from_manifest(&xtask::project_root().join("init-fn/Cargo.toml")).unwrap();
        SettingsArgs {
            region: Some("us-east-1".into()),
            memory: Some(256),
            arch: Some(Arch::X86_64),
            subnets: vec!["subnet-1".into()],
            ..Default::default()
        }
        .apply(&mut s);
        assert_eq!(
            (s.region.as_str(), s.memory, s.arch, s.subnets.as_slice()),
            (
                "us-east-1",
                256,
                Arch::X86_64,
                &["subnet-1".to_string()][..]
            )
        );
        assert_eq!(s.function_name, "ca-a2a-db-init");
    }
}
