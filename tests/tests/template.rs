//! The S3 preflight of `cargo xtask template` and `deploy --check-s3`, against moto's EC2: a function
//! in private subnets can answer a CloudFormation custom resource (a PUT to a presigned S3 URL) only
//! through an S3 gateway endpoint on its subnets' route tables, or NAT.

use tests::moto::Moto;
use tests::seed::{REGION, seed, settings};
use xtask_aws::aws::{Clients, ec2};
use xtask_aws::preflight::discover;
use xtask_aws::s3_preflight::check as check_s3_path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_preflight_needs_a_gateway_endpoint_or_nat() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let c = Clients::new(&moto.sdk_config().await);
    let seeded = seed(&c, true).await?;
    let s = settings();
    let n = discover(&c, &s).await?;
    let tables = c
        .ec2
        .describe_route_tables()
        .filters(
            ec2::types::Filter::builder()
                .name("vpc-id")
                .values(&seeded.vpc)
                .build(),
        )
        .send()
        .await?;
    let main = tables
        .route_tables()
        .iter()
        .find(|t| t.associations().iter().any(|a| a.main() == Some(true)))
        .and_then(|t| t.route_table_id())
        .expect("moto gives a VPC its main route table")
        .to_string();

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

    // An S3 gateway endpoint on the subnets' route table is a path; removed, it is gone again.
    let gateway = c
        .ec2
        .create_vpc_endpoint()
        .vpc_id(&seeded.vpc)
        .vpc_endpoint_type(ec2::types::VpcEndpointType::Gateway)
        .service_name(format!("com.amazonaws.{REGION}.s3"))
        .route_table_ids(&main)
        .send()
        .await?
        .vpc_endpoint
        .and_then(|e| e.vpc_endpoint_id)
        .unwrap();
    let check = check_s3_path(&c, &s, &n).await?;
    assert!(check.ok, "{check:?}");
    assert!(check.detail.contains(&gateway), "{}", check.detail);

    c.ec2
        .delete_vpc_endpoints()
        .vpc_endpoint_ids(&gateway)
        .send()
        .await?;
    assert!(!check_s3_path(&c, &s, &n).await?.ok);

    // NAT instead: a default route to a NAT gateway.
    let eip = c
        .ec2
        .allocate_address()
        .domain(ec2::types::DomainType::Vpc)
        .send()
        .await?
        .allocation_id
        .unwrap();
    let nat = c
        .ec2
        .create_nat_gateway()
        .subnet_id(&seeded.subnets[0])
        .allocation_id(eip)
        .send()
        .await?
        .nat_gateway
        .and_then(|g| g.nat_gateway_id)
        .unwrap();
    c.ec2
        .create_route()
        .route_table_id(&main)
        .destination_cidr_block("0.0.0.0/0")
        .nat_gateway_id(&nat)
        .send()
        .await?;
    let check = check_s3_path(&c, &s, &n).await?;
    assert!(check.ok, "{check:?}");
    assert!(check.detail.starts_with("NAT route: "), "{}", check.detail);
    Ok(())
}
