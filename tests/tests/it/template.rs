//! `cargo xtask template` and the S3 preflight against moto on 127.0.0.1: the S3 path a custom
//! resource's answer needs (gateway endpoint or NAT, also `deploy --check-s3`), cfn-lint on both
//! generated templates, and a CloudFormation stack in moto whose role and function equal what
//! `deploy` creates from the same settings on a second moto server.

use std::process::Command;

use anyhow::Context;
use serde_json::{Value, json};
use tests::cloudformation::{create_stack, put_object, stack_resources};
use tests::iam::read_role;
use tests::log_groups::retention;
use tests::moto::Moto;
use tests::network::{main_route_table, nat_gateway, route_to_nat, s3_gateway_endpoint};
use tests::seed::{REGION, Seeded, add_secrets_manager_endpoint, seed, settings};
use xtask_aws::aws::{Clients, lambda};
use xtask_aws::deploy::desired::VPC_ACCESS_POLICY;
use xtask_aws::deploy::role::policy_json;
use xtask_aws::preflight::discover;
use xtask_aws::s3_preflight::{check as check_s3_path, gate};
use xtask_aws::template::{Format, template};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_preflight_needs_a_gateway_endpoint_or_nat() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let c = Clients::new(&moto.sdk_config().await);
    let seeded = seed(&c, true).await?;
    let s = settings();
    let n = discover(&c, &s).await?;
    let main = main_route_table(&c, &seeded.vpc).await?;

    // Neither: the check fails, naming the subnets and the endpoint that fixes it.
    let check = check_s3_path(&c, &s, &n).await?;
    assert!(!check.ok, "{check:?}");
    for subnet in &seeded.subnets {
        assert!(check.detail.contains(subnet), "{}", check.detail);
    }
    let fix = check.fix.unwrap();
    assert!(
        fix.starts_with(&format!(
            "aws ec2 create-vpc-endpoint --vpc-id {} --vpc-endpoint-type Gateway --service-name com.amazonaws.{REGION}.s3 --route-table-ids {main}",
            seeded.vpc
        )),
        "{fix}"
    );
    // `deploy --check-s3` stops there, printing the same check and its fix.
    let mut out = Vec::new();
    let err = gate(&c, &s, &mut out).await.unwrap_err().to_string();
    let out = String::from_utf8(out)?;
    assert!(err.contains("S3 preflight failed"), "{err}");
    assert!(
        out.contains("[FAIL] function -> s3 (custom resource answers)"),
        "{out}"
    );
    assert!(out.contains("fix: aws ec2 create-vpc-endpoint"), "{out}");

    // An S3 gateway endpoint on the subnets' route table is a path; removed, it is gone again.
    let gateway = s3_gateway_endpoint(&c, &seeded.vpc, &main).await?;
    let check = check_s3_path(&c, &s, &n).await?;
    assert!(check.ok, "{check:?}");
    assert!(check.detail.contains(&gateway), "{}", check.detail);
    let mut out = Vec::new();
    gate(&c, &s, &mut out).await?;
    assert!(String::from_utf8(out)?.contains("[ok] function -> s3"));

    c.ec2
        .delete_vpc_endpoints()
        .vpc_endpoint_ids(&gateway)
        .send()
        .await?;
    assert!(!check_s3_path(&c, &s, &n).await?.ok);

    // NAT instead: a default route to a NAT gateway.
    let nat = nat_gateway(&c, &seeded.subnets[0]).await?;
    route_to_nat(&c, &main, &nat).await?;
    let check = check_s3_path(&c, &s, &n).await?;
    assert!(check.ok, "{check:?}");
    assert!(check.detail.starts_with("NAT route: "), "{}", check.detail);
    Ok(())
}

/// The seed's account with the paths the function needs (Secrets Manager endpoint, S3 gateway).
async fn reachable_account(c: &Clients) -> anyhow::Result<Seeded> {
    let seeded = seed(c, true).await?;
    add_secrets_manager_endpoint(c, &seeded).await?;
    let main = main_route_table(c, &seeded.vpc).await?;
    s3_gateway_endpoint(c, &seeded.vpc, &main).await?;
    Ok(seeded)
}

async fn render(c: &Clients, format: Format, code_uri: &str) -> anyhow::Result<String> {
    let mut log = Vec::new();
    let text = template(c, &settings(), format, code_uri, &mut log).await;
    println!("{}", String::from_utf8(log)?);
    text
}

/// cfn-lint from the project's .venv (`cargo xtask doctor --fix`), else PATH; never skipped. One
/// process for every file: its start-up is most of its time.
fn cfn_lint(files: &[std::path::PathBuf]) -> anyhow::Result<(Option<i32>, String)> {
    let venv = xtask::project_root().join(".venv/bin/cfn-lint");
    let bin = if venv.exists() {
        venv
    } else {
        "cfn-lint".into()
    };
    let out = Command::new(&bin).args(files).output().with_context(|| {
        format!(
            "run {} (install it with `cargo xtask doctor --fix`)",
            bin.display()
        )
    })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.code(), text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_templates_pass_cfn_lint_without_errors_or_warnings() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let c = Clients::new(&moto.sdk_config().await);
    reachable_account(&c).await?;
    let dir = tempfile::tempdir()?;
    let mut files = Vec::new();
    let mut texts = String::new();
    for (format, code) in [(Format::Cloudformation, ""), (Format::Sam, "bootstrap.zip")] {
        let text = render(&c, format, code).await?;
        assert!(text.contains("Type: Custom::SchemaMigration"), "{text}");
        let file = dir.path().join(format!("{format}.yaml"));
        std::fs::write(&file, &text)?;
        files.push(file);
        texts.push_str(&text);
    }
    let (status, out) = cfn_lint(&files)?;
    // cfn-lint's exit code is a bit set: 2 errors, 4 warnings, 8 informational, 1 a failure.
    assert!(
        status.is_some_and(|s| s & 0b111 == 0),
        "cfn-lint {status:?}:\n{out}\n{texts}"
    );
    Ok(())
}

/// What the test compares of a role: the stack's from IAM's answers, the same fields as deploy's.
fn role_b_json(r: &tests::iam::Role) -> Value {
    json!({"arn": r.arn, "description": r.description, "trust": r.trust_policy, "inline": r.inline})
}

/// The stack's role. moto (5.2) keeps the inline policies of a CloudFormation role as Python's repr
/// of the document (single quotes), and GetRolePolicy returns that: Python's parser reads it back.
async fn stack_role(c: &Clients, name: &str) -> anyhow::Result<Value> {
    let role = c.iam.get_role().role_name(name).send().await?.role.unwrap();
    let trust = policy_json(role.assume_role_policy_document().unwrap_or_default());
    let mut inline = serde_json::Map::new();
    for policy in c
        .iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await?
        .policy_names()
    {
        let out = c
            .iam
            .get_role_policy()
            .role_name(name)
            .policy_name(policy)
            .send()
            .await?;
        let doc = out.policy_document();
        let value = match policy_json(doc) {
            Some(v) => v,
            None => python_literal(doc)?,
        };
        inline.insert(policy.clone(), value);
    }
    Ok(json!({"arn": role.arn, "description": role.description, "trust": trust, "inline": inline}))
}

fn python_literal(text: &str) -> anyhow::Result<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import ast, json, sys; print(json.dumps(ast.literal_eval(sys.argv[1])))",
            text,
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// What the tests compare of a function: its configuration, without AWS's stamps.
fn function_json(f: &lambda::types::FunctionConfiguration) -> Value {
    let vpc = f.vpc_config();
    json!({
        "name": f.function_name(),
        "description": f.description(),
        "runtime": f.runtime().map(|r| r.as_str()),
        "handler": f.handler(),
        "memory": f.memory_size(),
        "timeout": f.timeout(),
        "role": f.role(),
        "code_sha256": f.code_sha256(),
        "env": f.environment().and_then(|e| e.variables()),
        "subnets": vpc.map(|v| v.subnet_ids()),
        "security_groups": vpc.map(|v| v.security_group_ids()),
    })
}

async fn function_config(c: &Clients) -> anyhow::Result<lambda::types::FunctionConfiguration> {
    let s = settings();
    xtask_aws::deploy::function::observe(c, &s.function_name)
        .await?
        .context("no function")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_creates_what_deploy_creates() -> anyhow::Result<()> {
    let zip = xtask::build::zip_bytes(b"\x7fELF template")?;

    // Server A: the template, rendered from A's discovery, becomes a stack.
    let moto_a = Moto::start()?;
    let a = Clients::new(&moto_a.sdk_config().await);
    let seeded_a = reachable_account(&a).await?;
    let text = render(&a, Format::Cloudformation, "").await?;
    put_object(
        &moto_a.endpoint,
        "init-fn-code",
        "bootstrap.zip",
        zip.clone(),
    )
    .await?;
    let params = [
        ("CodeS3Bucket", "init-fn-code"),
        ("CodeS3Key", "bootstrap.zip"),
    ];
    create_stack(&moto_a.endpoint, "init-fn", &text, &params).await?;
    let resources = stack_resources(&moto_a.endpoint, "init-fn").await?;
    println!("{resources:?}");
    // moto reports the stack's status for each resource, and the stack waits for the custom
    // resource's answer (no function runs in moto): the role and the function are compared below.
    let kinds: Vec<(&str, &str)> = resources
        .iter()
        .map(|(id, (kind, _))| (id.as_str(), kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("Function", "AWS::Lambda::Function"),
            ("LogGroup", "AWS::Logs::LogGroup"),
            ("Role", "AWS::IAM::Role"),
            ("SchemaMigration", "Custom::SchemaMigration")
        ]
    );

    // Server B: deploy, from the same settings.
    let moto_b = Moto::start()?;
    let b = Clients::new(&moto_b.sdk_config().await);
    let seeded_b = reachable_account(&b).await?;
    let mut out = Vec::new();
    xtask_aws::deploy::deploy(&b, &settings(), &zip, false, &mut out).await?;

    // A's ids are B's under other names: map them before comparing.
    let ids = |s: &Seeded| {
        let mut v = vec![
            s.vpc.clone(),
            s.sg.clone(),
            s.secret_arn.clone(),
            s.host.clone(),
        ];
        v.extend(s.subnets.iter().cloned());
        v
    };
    let a_as_b = |v: Value| -> Value {
        let mut text = v.to_string();
        for (x, y) in ids(&seeded_a).iter().zip(ids(&seeded_b)) {
            text = text.replace(x.as_str(), &y);
        }
        serde_json::from_str(&text).unwrap()
    };
    let s = settings();
    let role_b = read_role(&b, &s.role).await?.unwrap();
    let role_a = stack_role(&a, &s.role).await?;
    assert_eq!(a_as_b(role_a), role_b_json(&role_b));
    let (fn_a, fn_b) = (function_config(&a).await?, function_config(&b).await?);
    assert_eq!(a_as_b(function_json(&fn_a)), function_json(&fn_b));
    println!(
        "role: {}\nfunction: {}",
        role_b_json(&role_b),
        function_json(&fn_b)
    );

    // The log group, with the same retention from the stack as from deploy.
    let group = xtask_aws::logs::group_name(&s.function_name);
    assert_eq!(retention(&a, &group).await?, retention(&b, &group).await?);
    assert_eq!(
        retention(&b, &group).await?,
        Some(Some(s.log_retention_days))
    );

    // moto's CloudFormation (5.2) drops a role's ManagedPolicyArns and a function's Architectures,
    // so for those two the template's own lines are held against what deploy made.
    assert_eq!(role_b.attached, [VPC_ACCESS_POLICY]);
    assert!(
        text.contains(&format!(
            "ManagedPolicyArns:\n        - {VPC_ACCESS_POLICY}\n"
        )),
        "{text}"
    );
    let arch = fn_b.architectures()[0].as_str();
    assert_eq!(arch, s.arch.as_str());
    assert!(
        text.contains(&format!("Architectures:\n        - {arch}\n")),
        "{text}"
    );
    Ok(())
}
