//! The Lambda function, reconciled: read its configuration (`observe`), compare it with the desired
//! one (`plan`, pure), and create or update it (`apply`, the only code here that writes to Lambda),
//! each write waited for until Lambda says the function is ready.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, bail};
use aws_sdk_lambda::error::ProvideErrorMetadata;
use xtask::build::Arch;

use super::change::Change;
use super::desired::{FunctionSpec, LoggingSpec};
use super::wait;
use crate::aws::{Clients, lambda};
use crate::aws_error::describe;
use crate::retry;

/// The function's configuration as Lambda has it; `None` when there is no such function.
pub async fn observe(
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

/// Create the function, or update the code and the configuration fields that differ. `role_arn`
/// is the existing role's; `None` means the role is created in this run, so its ARN is new.
pub fn plan(
    want: &FunctionSpec,
    current: Option<&lambda::types::FunctionConfiguration>,
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
    let env: BTreeMap<String, String> = cur
        .environment()
        .and_then(|e| e.variables())
        .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let (subnets, sgs) = cur
        .vpc_config()
        .map(|v| (sorted(v.subnet_ids()), sorted(v.security_group_ids())))
        .unwrap_or_default();
    let differs = [
        (
            "runtime",
            cur.runtime().map(|r| r.as_str()) != Some(want.runtime),
        ),
        ("handler", cur.handler() != Some(want.handler)),
        ("memory", cur.memory_size() != Some(want.memory)),
        ("timeout", cur.timeout() != Some(want.timeout)),
        ("role", role_arn.is_none_or(|arn| cur.role() != Some(arn))),
        ("environment", env != want.env),
        (
            "vpc",
            subnets != sorted(&want.subnets) || sgs != sorted(&want.security_groups),
        ),
        // Lambda always reports a LoggingConfig; an endpoint that models none (moto) is not compared.
        (
            "logging",
            cur.logging_config()
                .is_some_and(|l| !logging_is(l, &want.logging)),
        ),
    ];
    let fields: Vec<String> = differs
        .into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(field, _)| field.to_string())
        .collect();
    if !fields.is_empty() {
        changes.push(Change::UpdateConfiguration { fields });
    }
    changes
}

/// Makes the function changes among `changes`, each waited for until the function is ready; returns
/// the ARN of a function it created.
pub async fn apply(
    c: &Clients,
    want: &FunctionSpec,
    role_arn: &str,
    zip: &[u8],
    changes: &[Change],
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Option<String>> {
    let mut created = None;
    for ch in changes {
        let done = match ch {
            Change::CreateFunction => {
                let arn = create(c, want, role_arn, zip, out).await?;
                let done = format!("created {arn}");
                created = Some(arn);
                done
            }
            Change::UpdateCode { .. } => {
                let req = c
                    .lambda
                    .update_function_code()
                    .function_name(&want.name)
                    .zip_file(lambda::primitives::Blob::new(zip))
                    .architectures(lambda_arch(want.arch));
                let what = "update code";
                send(c, want, what, "UpdateFunctionCode", out, || {
                    req.clone().send()
                })
                .await?;
                "code update accepted".to_string()
            }
            Change::UpdateConfiguration { fields } => {
                let req = c
                    .lambda
                    .update_function_configuration()
                    .function_name(&want.name)
                    .runtime(lambda::types::Runtime::from(want.runtime))
                    .handler(want.handler)
                    .role(role_arn)
                    .memory_size(want.memory)
                    .timeout(want.timeout)
                    .environment(environment(want))
                    .vpc_config(vpc_config(want))
                    .logging_config(logging_config(&want.logging));
                let (what, api) = ("update configuration", "UpdateFunctionConfiguration");
                send(c, want, what, api, out, || req.clone().send()).await?;
                format!("configuration update accepted ({})", fields.join(", "))
            }
            _ => continue,
        };
        writeln!(out, "{done}")?;
        wait::ready(c, &want.name, out).await?;
    }
    Ok(created)
}

/// `CreateFunction`; a retried call whose first answer was lost finds the function there, made from
/// this request, and uses it.
async fn create(
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
        .description(want.description)
        .runtime(lambda::types::Runtime::from(want.runtime))
        .handler(want.handler)
        .role(role_arn)
        .architectures(lambda_arch(want.arch))
        .memory_size(want.memory)
        .timeout(want.timeout)
        .environment(environment(want))
        .vpc_config(vpc_config(want))
        .logging_config(logging_config(&want.logging))
        .code(
            lambda::types::FunctionCode::builder()
                .zip_file(lambda::primitives::Blob::new(zip))
                .build(),
        );
    let created = retry::lambda_call(
        &c.lambda,
        &c.policy,
        &want.name,
        "CreateFunction",
        out,
        || req.clone().send(),
    )
    .await
    .context("deploy: create function")?;
    let arn = match created {
        Ok(out) => out.function_arn,
        Err(e)
            if e.as_service_error().is_some_and(|e| {
                e.is_resource_conflict_exception()
                    && e.message().is_some_and(|m| m.contains("already exist"))
            }) =>
        {
            observe(c, &want.name).await?.and_then(|f| f.function_arn)
        }
        Err(e) => bail!(
            "deploy: create function (lambda CreateFunction): {}",
            describe(&e)
        ),
    };
    arn.context("deploy: no function ARN")
}

/// One Lambda write through the retry policy; its error says what deploy was doing.
async fn send<T, E, Fut>(
    c: &Clients,
    want: &FunctionSpec,
    what: &str,
    api: &str,
    out: &mut dyn std::io::Write,
    call: impl FnMut() -> Fut,
) -> anyhow::Result<T>
where
    Fut: Future<
        Output = Result<T, aws_sdk_lambda::error::SdkError<E, lambda::config::http::HttpResponse>>,
    >,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    retry::lambda_call(&c.lambda, &c.policy, &want.name, api, out, call)
        .await
        .with_context(|| format!("deploy: {what}"))?
        .map_err(|e| anyhow::anyhow!("deploy: {what} (lambda {api}): {}", describe(&e)))
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

fn environment(want: &FunctionSpec) -> lambda::types::Environment {
    let vars: HashMap<String, String> = want.env.clone().into_iter().collect();
    lambda::types::Environment::builder()
        .set_variables(Some(vars))
        .build()
}

/// The `LoggingConfig` of the request: the levels only under JSON (Lambda refuses them with Text).
fn logging_config(want: &LoggingSpec) -> lambda::types::LoggingConfig {
    use lambda::types::{ApplicationLogLevel, LogFormat, SystemLogLevel};
    lambda::types::LoggingConfig::builder()
        .log_format(LogFormat::from(want.format.as_str()))
        .set_application_log_level(
            want.application_level
                .map(|l| ApplicationLogLevel::from(l.as_str())),
        )
        .set_system_log_level(want.system_level.map(|l| SystemLogLevel::from(l.as_str())))
        .log_group(&want.log_group)
        .build()
}

/// Whether Lambda's `LoggingConfig` is the wanted one; under Text the levels Lambda keeps don't apply.
fn logging_is(cur: &lambda::types::LoggingConfig, want: &LoggingSpec) -> bool {
    let name = |l: Option<crate::aws::LogLevel>| l.map(|l| l.as_str());
    let json = want.application_level.is_some();
    cur.log_format().map(|f| f.as_str()) == Some(want.format.as_str())
        && cur.log_group() == Some(want.log_group.as_str())
        && (!json
            || (cur.application_log_level().map(|l| l.as_str()) == name(want.application_level)
                && cur.system_log_level().map(|l| l.as_str()) == name(want.system_level)))
}

fn vpc_config(want: &FunctionSpec) -> lambda::types::VpcConfig {
    lambda::types::VpcConfig::builder()
        .set_subnet_ids(Some(want.subnets.clone()))
        .set_security_group_ids(Some(want.security_groups.clone()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda::types::{
        ApplicationLogLevel, Architecture, FunctionConfiguration, LogFormat, Runtime,
        SystemLogLevel,
    };

    fn want() -> FunctionSpec {
        FunctionSpec {
            name: "f".into(),
            description: "d",
            runtime: "provided.al2023",
            handler: "bootstrap",
            arch: Arch::Arm64,
            memory: 128,
            timeout: 60,
            env: BTreeMap::from([("DB_HOST".into(), "db".into())]),
            subnets: vec!["subnet-b".into(), "subnet-a".into()],
            security_groups: vec!["sg-1".into()],
            code_sha256: "abc=".into(),
            logging: LoggingSpec {
                format: crate::aws::LogFormat::Json,
                application_level: Some(crate::aws::LogLevel::Info),
                system_level: Some(crate::aws::LogLevel::Warn),
                log_group: "/aws/lambda/f".into(),
            },
        }
    }

    fn logging(format: LogFormat, application: &str) -> lambda::types::LoggingConfig {
        lambda::types::LoggingConfig::builder()
            .log_format(format)
            .application_log_level(ApplicationLogLevel::from(application))
            .system_log_level(SystemLogLevel::Warn)
            .log_group("/aws/lambda/f")
            .build()
    }

    /// The function exactly as deploy wants it (subnets in another order).
    fn as_wanted() -> FunctionConfiguration {
        FunctionConfiguration::builder()
            .runtime(Runtime::Providedal2023)
            .handler("bootstrap")
            .architectures(Architecture::Arm64)
            .memory_size(128)
            .timeout(60)
            .role("arn:role")
            .code_sha256("abc=")
            .environment(
                lambda::types::EnvironmentResponse::builder()
                    .variables("DB_HOST", "db")
                    .build(),
            )
            .vpc_config(
                lambda::types::VpcConfigResponse::builder()
                    .subnet_ids("subnet-a")
                    .subnet_ids("subnet-b")
                    .security_group_ids("sg-1")
                    .build(),
            )
            .logging_config(logging(LogFormat::Json, "INFO"))
            .build()
    }

    #[test]
    fn a_missing_function_is_created() {
        assert_eq!(plan(&want(), None, None), vec![Change::CreateFunction]);
    }

    #[test]
    fn a_function_as_wanted_needs_nothing() {
        assert_eq!(plan(&want(), Some(&as_wanted()), Some("arn:role")), vec![]);
    }

    #[test]
    fn only_what_differs_is_updated() {
        let mut w = want();
        w.memory = 256;
        w.code_sha256 = "new=".into();
        w.env.insert("DB_PORT".into(), "5432".into());
        assert_eq!(
            plan(&w, Some(&as_wanted()), Some("arn:role")),
            vec![
                Change::UpdateCode {
                    from_sha256: "abc=".into()
                },
                Change::UpdateConfiguration {
                    fields: vec!["memory".into(), "environment".into()]
                },
            ]
        );
    }

    #[test]
    fn a_new_role_or_architecture_is_an_update() {
        let mut w = want();
        w.arch = Arch::X86_64;
        assert_eq!(
            plan(&w, Some(&as_wanted()), None),
            vec![
                Change::UpdateCode {
                    from_sha256: "abc=".into()
                },
                Change::UpdateConfiguration {
                    fields: vec!["role".into()]
                },
            ]
        );
    }

    #[test]
    fn a_differing_logging_config_is_an_update() {
        let update = vec![Change::UpdateConfiguration {
            fields: vec!["logging".into()],
        }];
        for cur in [
            logging(LogFormat::Json, "DEBUG"),
            logging(LogFormat::Text, "INFO"),
        ] {
            let mut f = as_wanted();
            f.logging_config = Some(cur);
            assert_eq!(plan(&want(), Some(&f), Some("arn:role")), update);
        }
        // Text: the levels Lambda still reports are not compared.
        let mut w = want();
        w.logging.format = crate::aws::LogFormat::Text;
        w.logging.application_level = None;
        w.logging.system_level = None;
        let mut f = as_wanted();
        f.logging_config = Some(logging(LogFormat::Text, "DEBUG"));
        assert_eq!(plan(&w, Some(&f), Some("arn:role")), vec![]);
        // An endpoint that reports no LoggingConfig at all (moto) is not compared.
        f.logging_config = None;
        assert_eq!(plan(&want(), Some(&f), Some("arn:role")), vec![]);
    }
}
