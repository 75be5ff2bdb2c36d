//! deploy / clean against a moto server on 127.0.0.1: discovery from RDS, least-privilege role,
//! preflight, dry-run, idempotent re-deploy, updates, and an idempotent clean. Never real AWS.

use serde_json::json;
use tests::iam::read_role;
use tests::moto::Moto;
use tests::network::{nat_gateway, route_to_nat};
use tests::seed::{add_secrets_manager_endpoint, allow_self, run_deploy, seed, settings};
use xtask_aws::aws::{Clients, lambda};
use xtask_aws::deploy::change::Change;
use xtask_aws::deploy::desired::{
    SECRET_POLICY_NAME, VPC_ACCESS_POLICY, code_sha256, trust_policy,
};

fn fake_zip(content: &[u8]) -> Vec<u8> {
    xtask::build::zip_bytes(content).unwrap()
}

async fn role_exists(c: &Clients, name: &str) -> bool {
    read_role(c, name).await.unwrap().is_some()
}

async fn function(c: &Clients, name: &str) -> Option<lambda::types::FunctionConfiguration> {
    xtask_aws::deploy::function::observe(c, name).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_redeploy_update_and_clean() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let c = Clients::new(&moto.sdk_config().await);
    let seeded = seed(&c, true).await?;
    let s = settings();
    let zip = fake_zip(b"\x7fELF v1");

    // No Secrets Manager endpoint and no NAT: preflight stops deploy before any change.
    let (res, out) = run_deploy(&c, &s, &zip, false).await;
    let err = format!("{:#}", res.unwrap_err());
    assert!(err.contains("preflight failed"), "{err}");
    assert!(out.contains("[FAIL] function -> secrets manager"), "{out}");
    assert!(out.contains("aws ec2 create-vpc-endpoint"), "{out}");
    assert!(out.contains("[ok] function -> postgres"), "{out}");
    assert!(!role_exists(&c, &s.role).await);
    assert!(function(&c, &s.function_name).await.is_none());

    add_secrets_manager_endpoint(&c, &seeded).await?;

    // Dry run: the full plan with the policy JSON, and nothing changes.
    let (res, out) = run_deploy(&c, &s, &zip, true).await;
    let report = res?;
    let expected_policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ReadDbSecret",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": seeded.secret_arn
        }]
    });
    assert_eq!(
        report.changes,
        vec![
            Change::CreateRole {
                name: "ca-a2a-lambda-db-init-role".into(),
                trust_policy: trust_policy()
            },
            Change::AttachPolicy {
                arn: VPC_ACCESS_POLICY.into()
            },
            Change::PutInlinePolicy {
                name: SECRET_POLICY_NAME.into(),
                document: expected_policy.clone()
            },
            Change::CreateLogGroup {
                name: "/aws/lambda/ca-a2a-db-init".into(),
                retention_days: 30
            },
            Change::CreateFunction,
        ]
    );
    assert!(out.contains("would change (dry run)"), "{out}");
    assert!(out.contains("\"secretsmanager:GetSecretValue\""), "{out}");
    assert!(
        out.contains("[ok] function -> secrets manager: interface endpoint"),
        "{out}"
    );
    assert!(!role_exists(&c, &s.role).await, "dry run created the role");
    assert!(
        function(&c, &s.function_name).await.is_none(),
        "dry run created the function"
    );

    // Deploy: exactly the role, its two policies and the function configuration.
    let (res, out) = run_deploy(&c, &s, &zip, false).await;
    res?;
    assert!(out.contains("ready: State=Active"), "{out}");
    let role = read_role(&c, &s.role).await?.unwrap();
    assert_eq!(role.trust_policy, trust_policy());
    assert_eq!(role.attached, vec![VPC_ACCESS_POLICY.to_string()]);
    assert_eq!(
        role.inline,
        [(SECRET_POLICY_NAME.to_string(), expected_policy.clone())].into()
    );

    let f = function(&c, &s.function_name).await.unwrap();
    assert_eq!(f.runtime(), Some(&lambda::types::Runtime::Providedal2023));
    assert_eq!(f.handler(), Some("bootstrap"));
    assert_eq!(f.role(), Some(role.arn.as_str()));
    assert_eq!(f.architectures(), [lambda::types::Architecture::Arm64]);
    assert_eq!((f.memory_size(), f.timeout()), (Some(128), Some(60)));
    assert_eq!(f.code_sha256(), Some(code_sha256(&zip).as_str()));
    let env = f.environment().and_then(|e| e.variables()).unwrap();
    let env: std::collections::BTreeMap<_, _> = env.iter().collect();
    let port = "5432".to_string();
    let expected_env: std::collections::BTreeMap<_, _> = [
        ("DB_HOST", &seeded.host),
        ("DB_PORT", &port),
        ("DB_NAME", &"documents_db".to_string()),
        ("DB_USER", &"postgres".to_string()),
        ("DB_SECRET_ID", &seeded.secret_arn),
        ("DB_SSLMODE", &"verify-full".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.clone()))
    .collect();
    assert_eq!(
        env.into_iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<std::collections::BTreeMap<_, _>>(),
        expected_env
    );
    let vpc = f.vpc_config().unwrap();
    let mut subnets = vpc.subnet_ids().to_vec();
    subnets.sort();
    let mut want_subnets = seeded.subnets.clone();
    want_subnets.sort();
    assert_eq!(subnets, want_subnets);
    assert_eq!(vpc.security_group_ids(), std::slice::from_ref(&seeded.sg));

    // Re-deploy with nothing changed changes nothing.
    let (res, out) = run_deploy(&c, &s, &zip, false).await;
    assert_eq!(res?.changes, vec![]);
    assert!(out.contains("up to date: nothing to change"), "{out}");

    // New code and more memory: one code update, one configuration update, both waited for.
    let zip2 = fake_zip(b"\x7fELF v2");
    let mut s2 = s.clone();
    s2.memory = 256;
    let (res, _) = run_deploy(&c, &s2, &zip2, false).await;
    let changes = res?.changes;
    assert!(
        matches!(changes[0], Change::UpdateCode { .. }),
        "{changes:?}"
    );
    assert_eq!(
        changes[1],
        Change::UpdateConfiguration {
            fields: vec!["memory".into()]
        }
    );
    let f = function(&c, &s.function_name).await.unwrap();
    assert_eq!(f.memory_size(), Some(256));
    assert_eq!(f.code_sha256(), Some(code_sha256(&zip2).as_str()));

    // Deploy created the log group (tests/logs.rs checks it); clean must remove it.
    let mut out = Vec::new();
    let removed = xtask_aws::clean::clean(&c, &s, false, &mut out).await?;
    println!("{}", String::from_utf8_lossy(&out));
    assert_eq!(
        removed,
        vec![
            "function ca-a2a-db-init".to_string(),
            "log group /aws/lambda/ca-a2a-db-init".to_string(),
            format!("inline policy {SECRET_POLICY_NAME} of role ca-a2a-lambda-db-init-role"),
            format!("attachment of {VPC_ACCESS_POLICY} to role ca-a2a-lambda-db-init-role"),
            "role ca-a2a-lambda-db-init-role".to_string(),
        ]
    );
    assert!(function(&c, &s.function_name).await.is_none());
    assert!(!role_exists(&c, &s.role).await);
    let groups = c
        .logs
        .describe_log_groups()
        .log_group_name_prefix("/aws/lambda/ca-a2a-db-init")
        .send()
        .await?;
    assert!(groups.log_groups().is_empty());

    // Idempotent: a second clean succeeds and says nothing was left.
    let mut out = Vec::new();
    let removed = xtask_aws::clean::clean(&c, &s, false, &mut out).await?;
    let out = String::from_utf8(out)?;
    println!("{out}");
    assert!(removed.is_empty());
    assert!(out.contains("nothing was left to clean"), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_security_groups_and_nat() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let c = Clients::new(&moto.sdk_config().await);
    let seeded = seed(&c, false).await?;
    let s = settings();
    let zip = fake_zip(b"\x7fELF");

    // The instance's group admits nothing: both paths fail, with the commands that fix them.
    let (res, out) = run_deploy(&c, &s, &zip, true).await;
    assert!(res.is_err());
    assert!(out.contains("[FAIL] function -> postgres"), "{out}");
    assert!(out.contains("authorize-security-group-ingress"), "{out}");
    assert!(out.contains("[FAIL] function -> secrets manager"), "{out}");

    // A NAT gateway route from every function subnet is the other way to Secrets Manager.
    let nat = nat_gateway(&c, &seeded.subnets[0]).await?;
    let table = c
        .ec2
        .create_route_table()
        .vpc_id(&seeded.vpc)
        .send()
        .await?
        .route_table
        .and_then(|t| t.route_table_id)
        .unwrap();
    route_to_nat(&c, &table, &nat).await?;
    // Only one subnet routed: still a failure naming the other.
    c.ec2
        .associate_route_table()
        .route_table_id(&table)
        .subnet_id(&seeded.subnets[0])
        .send()
        .await?;
    let (res, out) = run_deploy(&c, &s, &zip, true).await;
    assert!(res.is_err());
    assert!(
        out.contains(&format!("no NAT route from {}", seeded.subnets[1])),
        "{out}"
    );
    c.ec2
        .associate_route_table()
        .route_table_id(&table)
        .subnet_id(&seeded.subnets[1])
        .send()
        .await?;
    allow_self(&c, &seeded.sg).await?;
    let (res, out) = run_deploy(&c, &s, &zip, true).await;
    res?;
    assert!(out.contains("[ok] function -> postgres"), "{out}");
    assert!(out.contains("[ok] function -> secrets manager: every function subnet routes 0.0.0.0/0 to a NAT gateway"), "{out}");
    assert!(!role_exists(&c, &s.role).await, "dry run created the role");
    Ok(())
}

/// The seed's role (SecretsManagerReadWrite attached) is brought down to least privilege, and a
/// secret under a customer-managed key adds `kms:Decrypt` on that key only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_role_is_narrowed_and_customer_key_gets_decrypt() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let c = Clients::new(&moto.sdk_config().await);
    let seeded = seed(&c, true).await?;
    add_secrets_manager_endpoint(&c, &seeded).await?;
    let key = "arn:aws:kms:eu-west-3:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    c.secrets
        .create_secret()
        .name("ca-a2a/db-password-cmk")
        .secret_string("{\"password\": \"seed-password\"}")
        .kms_key_id(key)
        .send()
        .await?;
    let mut s = settings();
    s.secret = "ca-a2a/db-password-cmk".into();
    c.iam
        .create_role()
        .role_name(&s.role)
        .assume_role_policy_document(trust_policy().to_string())
        .send()
        .await?;
    let rw = "arn:aws:iam::aws:policy/SecretsManagerReadWrite";
    for arn in [VPC_ACCESS_POLICY, rw] {
        c.iam
            .attach_role_policy()
            .role_name(&s.role)
            .policy_arn(arn)
            .send()
            .await?;
    }

    let (res, _) = run_deploy(&c, &s, &fake_zip(b"\x7fELF"), false).await;
    let report = res?;
    assert!(
        report
            .changes
            .contains(&Change::DetachPolicy { arn: rw.into() })
    );
    let role = read_role(&c, &s.role).await?.unwrap();
    assert_eq!(role.attached, vec![VPC_ACCESS_POLICY.to_string()]);
    let doc = &role.inline[SECRET_POLICY_NAME];
    let statements = doc["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 2, "{doc}");
    assert_eq!(statements[0]["Action"], "secretsmanager:GetSecretValue");
    assert_eq!(
        statements[0]["Resource"],
        report.secret.as_ref().unwrap().arn
    );
    assert_eq!(statements[1]["Action"], "kms:Decrypt");
    assert_eq!(statements[1]["Resource"], key);

    // --keep-role: the function goes, the role and its policies stay.
    let mut out = Vec::new();
    let removed = xtask_aws::clean::clean(&c, &s, true, &mut out).await?;
    assert_eq!(
        removed,
        [
            "function ca-a2a-db-init",
            "log group /aws/lambda/ca-a2a-db-init"
        ]
    );
    assert!(function(&c, &s.function_name).await.is_none());
    assert!(role_exists(&c, &s.role).await);
    Ok(())
}
