//! What deploy creates, as one value built from the settings and the discovery: the role with its
//! trust and policies, the log group with its retention, and the function's configuration with its
//! logging config. `deploy` makes AWS match it; a renderer
//! (a template) reads the same value, so the two cannot disagree.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use xtask::build::Arch;

use super::secret::Secret;
use crate::aws::{LogFormat, LogLevel, Settings};
use crate::preflight::Network;

/// Managed policy giving the function its ENIs in the VPC and its CloudWatch Logs.
pub const VPC_ACCESS_POLICY: &str =
    "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole";
/// Name of the inline policy that grants reading the one secret.
pub const SECRET_POLICY_NAME: &str = "read-db-secret";
/// Name of the inline policy that grants `rds-db:connect` as the one database user (`auth = "iam"`).
pub const IAM_CONNECT_POLICY_NAME: &str = "connect-db-iam";

/// Everything deploy creates or updates.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub role: RoleSpec,
    /// Created before the function, so its first invocation does not create a never-expiring group.
    pub log_group: LogGroupSpec,
    pub function: FunctionSpec,
}

/// The function's log group, `/aws/lambda/<function>`.
#[derive(Clone, Debug, PartialEq)]
pub struct LogGroupSpec {
    pub name: String,
    pub retention_days: i32,
}

/// The function's `LoggingConfig`: what Lambda sets `AWS_LAMBDA_LOG_FORMAT`/`_LEVEL` from.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggingSpec {
    pub format: LogFormat,
    /// `None` under Text: Lambda filters by level only for JSON logs.
    pub application_level: Option<LogLevel>,
    /// Lambda's own START/END/REPORT lines (JSON only); WARN keeps them out, the EMF and errors stay.
    pub system_level: Option<LogLevel>,
    pub log_group: String,
}

/// The role deploy wants: only Lambda may assume it, and it may do only what the function needs.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleSpec {
    pub name: String,
    pub description: &'static str,
    pub trust_policy: Value,
    /// ARNs of the managed policies attached, and no others.
    pub managed_policies: Vec<String>,
    /// Inline policies by name, and no others.
    pub inline_policies: BTreeMap<String, Value>,
}

/// The function configuration deploy wants.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionSpec {
    pub name: String,
    pub description: &'static str,
    pub runtime: &'static str,
    pub handler: &'static str,
    pub arch: Arch,
    pub memory: i32,
    pub timeout: i32,
    pub env: BTreeMap<String, String>,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    /// base64(sha256) of the zip to run (see [`code_sha256`]).
    pub code_sha256: String,
    pub logging: LoggingSpec,
}

impl Desired {
    /// The desired state for these settings, the discovered network and secret (`None` with
    /// `auth = "iam"`: no secret is read), and the code whose hash is `code_sha256`.
    pub fn new(
        s: &Settings,
        network: &Network,
        secret: Option<&Secret>,
        code_sha256: String,
    ) -> Desired {
        let (policy, mut env) = match secret {
            Some(secret) => (
                (
                    SECRET_POLICY_NAME,
                    secret_policy(&secret.arn, secret.kms_key.as_deref(), &s.region),
                ),
                vec![
                    ("DB_USER", s.db_user.clone()),
                    ("DB_SECRET_ID", secret.arn.clone()),
                ],
            ),
            None => (
                (
                    IAM_CONNECT_POLICY_NAME,
                    iam_connect_policy(&dbuser_arn(s, network)),
                ),
                vec![
                    ("DB_AUTH", "iam".to_string()),
                    ("DB_USER", s.iam_db_user.clone()),
                ],
            ),
        };
        let role = RoleSpec {
            name: s.role.clone(),
            description: "init-fn: applies documents_db migrations (cargo xtask deploy)",
            trust_policy: trust_policy(),
            managed_policies: vec![VPC_ACCESS_POLICY.to_string()],
            inline_policies: BTreeMap::from([(policy.0.to_string(), policy.1)]),
        };
        env.extend([
            ("DB_HOST", network.host.clone()),
            ("DB_PORT", network.port.to_string()),
            ("DB_NAME", s.database.clone()),
            ("DB_SSLMODE", s.sslmode.clone()),
        ]);
        let log_group = LogGroupSpec {
            name: crate::logs::group_name(&s.function_name),
            retention_days: s.log_retention_days,
        };
        let json = s.log_format == LogFormat::Json;
        let logging = LoggingSpec {
            format: s.log_format,
            application_level: json.then(|| s.log_level.unwrap_or(LogLevel::Info)),
            system_level: json.then_some(LogLevel::Warn),
            log_group: log_group.name.clone(),
        };
        let function = FunctionSpec {
            name: s.function_name.clone(),
            description: "Applies the documents_db migrations (init-fn)",
            runtime: "provided.al2023",
            handler: "bootstrap",
            arch: s.arch,
            memory: s.memory,
            timeout: s.timeout,
            env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            subnets: network.function_subnets.clone(),
            security_groups: network.function_security_groups.clone(),
            code_sha256,
            logging,
        };
        Desired {
            role,
            log_group,
            function,
        }
    }
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

/// `arn:aws:rds-db:<region>:<account>:dbuser:<DbiResourceId>/<user>`: the one user the function
/// may log in as with an IAM token.
pub fn dbuser_arn(s: &Settings, network: &Network) -> String {
    format!(
        "arn:aws:rds-db:{}:{}:dbuser:{}/{}",
        s.region, network.account, network.resource_id, s.iam_db_user
    )
}

/// The inline policy of `auth = "iam"`: `rds-db:connect` on the one database user, nothing else.
pub fn iam_connect_policy(dbuser_arn: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ConnectAsMigrator",
            "Effect": "Allow",
            "Action": "rds-db:connect",
            "Resource": dbuser_arn
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
    fn desired_state_comes_from_the_settings_and_the_discovery() {
        let s = Settings::from_manifest(&xtask::project_root().join("init-fn/Cargo.toml")).unwrap();
        let network = Network {
            instance: "ca-a2a-postgres".into(),
            host: "db.example".into(),
            port: 5432,
            vpc_id: "vpc-1".into(),
            db_subnets: vec!["subnet-a".into(), "subnet-b".into()],
            db_security_groups: vec!["sg-db".into()],
            function_subnets: vec!["subnet-a".into(), "subnet-b".into()],
            function_security_groups: vec!["sg-db".into()],
            resource_id: "db-ABCDEFGHIJKL".into(),
            account: "111122223333".into(),
            iam_auth_enabled: true,
        };
        let secret = Secret {
            arn: SECRET.into(),
            kms_key: None,
        };
        let d = Desired::new(&s, &network, Some(&secret), code_sha256(b"zip"));
        assert_eq!(d.role.name, "ca-a2a-lambda-db-init-role");
        assert_eq!(d.role.managed_policies, [VPC_ACCESS_POLICY]);
        assert_eq!(
            d.role.inline_policies[SECRET_POLICY_NAME],
            secret_policy(SECRET, None, "eu-west-3")
        );
        assert_eq!(
            (
                d.function.name.as_str(),
                d.function.memory,
                d.function.timeout
            ),
            ("ca-a2a-db-init", 128, 60)
        );
        assert_eq!(d.function.env["DB_HOST"], "db.example");
        assert_eq!(d.function.env["DB_SECRET_ID"], SECRET);
        assert_eq!(d.function.subnets, ["subnet-a", "subnet-b"]);
        assert_eq!(
            d.log_group,
            LogGroupSpec {
                name: "/aws/lambda/ca-a2a-db-init".into(),
                retention_days: 30
            }
        );
        assert_eq!(
            d.function.logging,
            LoggingSpec {
                format: LogFormat::Json,
                application_level: Some(LogLevel::Info),
                system_level: Some(LogLevel::Warn),
                log_group: "/aws/lambda/ca-a2a-db-init".into()
            }
        );
        let text = Settings {
            log_format: LogFormat::Text,
            log_level: None,
            ..s
        };
        let d = Desired::new(&text, &network, Some(&secret), code_sha256(b"zip"));
        assert_eq!(
            (
                d.function.logging.application_level,
                d.function.logging.system_level
            ),
            (None, None)
        );

        // auth = "iam": rds-db:connect on the one dbuser, no secretsmanager, DB_AUTH=iam.
        let iam = Settings {
            auth: crate::aws::DbAuth::Iam,
            ..text
        };
        let d = Desired::new(&iam, &network, None, code_sha256(b"zip"));
        assert_eq!(
            d.role.inline_policies.keys().collect::<Vec<_>>(),
            [IAM_CONNECT_POLICY_NAME]
        );
        let policy = &d.role.inline_policies[IAM_CONNECT_POLICY_NAME];
        assert_eq!(policy["Statement"].as_array().unwrap().len(), 1);
        assert_eq!(policy["Statement"][0]["Action"], "rds-db:connect");
        assert_eq!(
            policy["Statement"][0]["Resource"],
            "arn:aws:rds-db:eu-west-3:111122223333:dbuser:db-ABCDEFGHIJKL/init_fn_migrator"
        );
        assert!(!policy.to_string().contains("secretsmanager"));
        assert_eq!(d.function.env["DB_AUTH"], "iam");
        assert_eq!(d.function.env["DB_USER"], "init_fn_migrator");
        assert!(!d.function.env.contains_key("DB_SECRET_ID"));
    }
}
