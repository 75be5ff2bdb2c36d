//! The seed's AWS account in a moto server: a VPC with two private subnets, the RDS instance in its
//! security group (tcp/5432 from itself), the secret, and optionally the Secrets Manager endpoint.

use xtask_aws::aws::{Clients, Settings, ec2};
use xtask_aws::deploy::{DeployReport, deploy};

pub const REGION: &str = "eu-west-3";

/// What was created.
pub struct Seeded {
    pub vpc: String,
    pub subnets: Vec<String>,
    pub sg: String,
    pub secret_arn: String,
    pub host: String,
}

/// The account as the seed leaves it; `sg_allows_itself` opens tcp/5432 within the instance's group.
pub async fn seed(c: &Clients, sg_allows_itself: bool) -> anyhow::Result<Seeded> {
    let vpc = c
        .ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await?
        .vpc
        .and_then(|v| v.vpc_id)
        .unwrap();
    let mut subnets = Vec::new();
    for (cidr, az) in [("10.0.1.0/24", "eu-west-3a"), ("10.0.2.0/24", "eu-west-3b")] {
        let s = c
            .ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(cidr)
            .availability_zone(az)
            .send()
            .await?;
        subnets.push(s.subnet.and_then(|s| s.subnet_id).unwrap());
    }
    let sg = c
        .ec2
        .create_security_group()
        .group_name("ca-a2a-rds")
        .description("ca-a2a postgres")
        .vpc_id(&vpc)
        .send()
        .await?
        .group_id
        .unwrap();
    if sg_allows_itself {
        allow_self(c, &sg).await?;
    }
    c.rds
        .create_db_subnet_group()
        .db_subnet_group_name("ca-a2a-db")
        .db_subnet_group_description("private")
        .set_subnet_ids(Some(subnets.clone()))
        .send()
        .await?;
    let db = c
        .rds
        .create_db_instance()
        .db_instance_identifier("ca-a2a-postgres")
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("postgres")
        .master_user_password("seed-password")
        .db_name("documents_db")
        .db_subnet_group_name("ca-a2a-db")
        .vpc_security_group_ids(&sg)
        .send()
        .await?;
    let host = db
        .db_instance
        .and_then(|d| d.endpoint)
        .and_then(|e| e.address)
        .unwrap();
    let secret_arn = c
        .secrets
        .create_secret()
        .name("ca-a2a/db-password")
        .secret_string("seed-password")
        .send()
        .await?
        .arn
        .unwrap();
    Ok(Seeded {
        vpc,
        subnets,
        sg,
        secret_arn,
        host,
    })
}

/// The instance's group admits tcp/5432 from itself (the function runs in the same group).
pub async fn allow_self(c: &Clients, sg: &str) -> anyhow::Result<()> {
    c.ec2
        .authorize_security_group_ingress()
        .group_id(sg)
        .ip_permissions(
            ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(5432)
                .to_port(5432)
                .user_id_group_pairs(ec2::types::UserIdGroupPair::builder().group_id(sg).build())
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

/// The interface endpoint that lets the function reach Secrets Manager from private subnets.
pub async fn add_secrets_manager_endpoint(c: &Clients, s: &Seeded) -> anyhow::Result<()> {
    c.ec2
        .create_vpc_endpoint()
        .vpc_id(&s.vpc)
        .vpc_endpoint_type(ec2::types::VpcEndpointType::Interface)
        .service_name(format!("com.amazonaws.{REGION}.secretsmanager"))
        .set_subnet_ids(Some(s.subnets.clone()))
        .security_group_ids(&s.sg)
        .private_dns_enabled(true)
        .send()
        .await?;
    Ok(())
}

/// The project's deploy settings (`[package.metadata.lambda.deploy]`), without overrides.
pub fn settings() -> Settings {
    Settings::from_manifest(&xtask::project_root().join("init-fn/Cargo.toml")).unwrap()
}

/// One `deploy` (or dry run) whose printed report is captured, echoed for the test log, and returned.
pub async fn run_deploy(
    c: &Clients,
    s: &Settings,
    zip: &[u8],
    dry_run: bool,
) -> (anyhow::Result<DeployReport>, String) {
    let mut out = Vec::new();
    let res = deploy(c, s, zip, dry_run, &mut out).await;
    let out = String::from_utf8(out).unwrap();
    println!("{out}");
    (res, out)
}
