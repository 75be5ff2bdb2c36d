//! `auth = "iam"` through deploy, template and clean against moto (never real AWS): an instance
//! without IAM database authentication stops preflight with the exact command (and deploy never
//! changes it); then the role may `rds-db:connect` on exactly the one dbuser ARN and nothing of
//! Secrets Manager, the function gets `DB_AUTH=iam`, the template renders the same, and switching
//! secret ↔ iam converges in one deploy each way.

use tests::iam::read_role;
use tests::moto::Moto;
use tests::seed::{add_secrets_manager_endpoint, run_deploy, seed, settings};
use xtask_aws::aws::{Clients, DbAuth, Settings};
use xtask_aws::deploy::desired::{IAM_CONNECT_POLICY_NAME, SECRET_POLICY_NAME};

async fn env(c: &Clients, name: &str) -> std::collections::HashMap<String, String> {
    let f = xtask_aws::deploy::function::observe(c, name)
        .await
        .unwrap()
        .unwrap();
    f.environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_deploy_grants_one_dbuser_and_converges_both_ways() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let c = Clients::new(&moto.sdk_config().await);
    let seeded = seed(&c, true).await?;
    let zip = xtask::build::zip_bytes(b"\x7fELF iam").unwrap();
    let iam = Settings {
        auth: DbAuth::Iam,
        ..settings()
    };

    // IAM database authentication off: preflight stops (dry run too) with the exact command, and
    // no Secrets Manager endpoint is needed in this mode.
    for dry_run in [true, false] {
        let (res, out) = run_deploy(&c, &iam, &zip, dry_run).await;
        let err = format!("{:#}", res.unwrap_err());
        assert!(err.contains("preflight failed"), "{err}");
        assert!(
            out.contains("[FAIL] rds iam database authentication"),
            "{out}"
        );
        assert!(
            out.contains(
                "aws rds modify-db-instance --db-instance-identifier ca-a2a-postgres \
                 --enable-iam-database-authentication --apply-immediately --region eu-west-3"
            ),
            "{out}"
        );
        assert!(!out.contains("secrets manager"), "{out}");
    }
    assert!(read_role(&c, &iam.role).await?.is_none());
    let db = c
        .rds
        .describe_db_instances()
        .db_instance_identifier("ca-a2a-postgres")
        .send()
        .await?;
    let db = &db.db_instances()[0];
    assert_eq!(db.iam_database_authentication_enabled(), Some(false));
    let resource_id = db.dbi_resource_id().unwrap().to_string();
    let account = db
        .db_instance_arn()
        .unwrap()
        .split(':')
        .nth(4)
        .unwrap()
        .to_string();

    // The operator enables it (deploy never does).
    c.rds
        .modify_db_instance()
        .db_instance_identifier("ca-a2a-postgres")
        .enable_iam_database_authentication(true)
        .apply_immediately(true)
        .send()
        .await?;
    let dbuser =
        format!("arn:aws:rds-db:eu-west-3:{account}:dbuser:{resource_id}/init_fn_migrator");

    let (res, out) = run_deploy(&c, &iam, &zip, true).await;
    res?;
    assert!(
        out.contains("[ok] rds iam database authentication"),
        "{out}"
    );
    assert!(
        out.contains(&dbuser),
        "the dry run shows the policy:\n{out}"
    );
    let (res, _) = run_deploy(&c, &iam, &zip, false).await;
    res?;
    let role = read_role(&c, &iam.role).await?.unwrap();
    assert_eq!(
        role.inline.keys().collect::<Vec<_>>(),
        [IAM_CONNECT_POLICY_NAME]
    );
    let statements = role.inline[IAM_CONNECT_POLICY_NAME]["Statement"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(statements.len(), 1);
    assert_eq!(statements[0]["Action"], "rds-db:connect");
    assert_eq!(statements[0]["Resource"], dbuser.as_str());
    assert!(!serde_json::to_string(&role.inline)?.contains("secretsmanager"));
    let vars = env(&c, &iam.function_name).await;
    assert_eq!(vars["DB_AUTH"], "iam");
    assert_eq!(vars["DB_USER"], "init_fn_migrator");
    assert!(!vars.contains_key("DB_SECRET_ID"), "{vars:?}");
    let (res, out) = run_deploy(&c, &iam, &zip, false).await;
    assert!(res?.changes.is_empty(), "{out}");

    // The template renders the same role and environment (its custom resource needs the S3 path).
    let table = tests::network::main_route_table(&c, &seeded.vpc).await?;
    tests::network::s3_gateway_endpoint(&c, &seeded.vpc, &table).await?;
    let mut log = Vec::new();
    let yaml = xtask_aws::template::template(
        &c,
        &iam,
        xtask_aws::template::Format::Cloudformation,
        "",
        &mut log,
    )
    .await;
    let log = String::from_utf8(log)?;
    assert!(log.contains("auth: iam (no secret)"), "{log}");
    assert!(
        log.contains("[ok] rds iam database authentication"),
        "{log}"
    );
    let yaml = yaml.map_err(|e| anyhow::anyhow!("{e:#}\n{log}"))?;
    assert!(
        yaml.contains("rds-db:connect") && yaml.contains(&dbuser),
        "{yaml}"
    );
    assert!(yaml.contains("DB_AUTH: iam"), "{yaml}");
    assert!(!yaml.contains("secretsmanager"), "{yaml}");

    // Back to secret: one deploy converges (the secret policy replaces the IAM one, DB_AUTH goes).
    add_secrets_manager_endpoint(&c, &seeded).await?;
    let secret = settings();
    let (res, _) = run_deploy(&c, &secret, &zip, false).await;
    res?;
    let role = read_role(&c, &secret.role).await?.unwrap();
    assert_eq!(role.inline.keys().collect::<Vec<_>>(), [SECRET_POLICY_NAME]);
    let vars = env(&c, &secret.function_name).await;
    assert!(!vars.contains_key("DB_AUTH"), "{vars:?}");
    assert_eq!(vars["DB_SECRET_ID"], seeded.secret_arn);
    assert_eq!(vars["DB_USER"], "postgres");
    let (res, out) = run_deploy(&c, &secret, &zip, false).await;
    assert!(res?.changes.is_empty(), "{out}");

    // And to iam again, in one deploy.
    let (res, _) = run_deploy(&c, &iam, &zip, false).await;
    res?;
    let role = read_role(&c, &iam.role).await?.unwrap();
    assert_eq!(
        role.inline.keys().collect::<Vec<_>>(),
        [IAM_CONNECT_POLICY_NAME]
    );
    let (res, out) = run_deploy(&c, &iam, &zip, false).await;
    assert!(res?.changes.is_empty(), "{out}");

    // clean removes the role with its IAM policy.
    let mut out = Vec::new();
    xtask_aws::clean::clean(&c, &iam, false, &mut out).await?;
    assert!(read_role(&c, &iam.role).await?.is_none());
    Ok(())
}
