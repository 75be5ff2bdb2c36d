//! The seed VPC's ways out, made in moto's EC2 for the network preflight tests: its main route table,
//! a NAT gateway with a default route to it, and an S3 gateway endpoint.

use xtask_aws::aws::{Clients, ec2};

use crate::seed::REGION;

/// The VPC's main route table (moto gives every VPC one).
pub async fn main_route_table(c: &Clients, vpc: &str) -> anyhow::Result<String> {
    let tables = c
        .ec2
        .describe_route_tables()
        .filters(
            ec2::types::Filter::builder()
                .name("vpc-id")
                .values(vpc)
                .build(),
        )
        .send()
        .await?;
    let main = tables
        .route_tables()
        .iter()
        .find(|t| t.associations().iter().any(|a| a.main() == Some(true)))
        .and_then(|t| t.route_table_id())
        .expect("moto gives a VPC its main route table");
    Ok(main.to_string())
}

/// A NAT gateway in `subnet` (with its elastic IP); its id.
pub async fn nat_gateway(c: &Clients, subnet: &str) -> anyhow::Result<String> {
    let eip = c
        .ec2
        .allocate_address()
        .domain(ec2::types::DomainType::Vpc)
        .send()
        .await?
        .allocation_id
        .expect("an allocation id");
    let nat = c
        .ec2
        .create_nat_gateway()
        .subnet_id(subnet)
        .allocation_id(eip)
        .send()
        .await?
        .nat_gateway
        .and_then(|g| g.nat_gateway_id)
        .expect("a NAT gateway id");
    Ok(nat)
}

/// Routes 0.0.0.0/0 from `table` to the NAT gateway `nat`.
pub async fn route_to_nat(c: &Clients, table: &str, nat: &str) -> anyhow::Result<()> {
    c.ec2
        .create_route()
        .route_table_id(table)
        .destination_cidr_block("0.0.0.0/0")
        .nat_gateway_id(nat)
        .send()
        .await?;
    Ok(())
}

/// An S3 gateway endpoint on `table`; its id.
pub async fn s3_gateway_endpoint(c: &Clients, vpc: &str, table: &str) -> anyhow::Result<String> {
    let id = c
        .ec2
        .create_vpc_endpoint()
        .vpc_id(vpc)
        .vpc_endpoint_type(ec2::types::VpcEndpointType::Gateway)
        .service_name(format!("com.amazonaws.{REGION}.s3"))
        .route_table_ids(table)
        .send()
        .await?
        .vpc_endpoint
        .and_then(|e| e.vpc_endpoint_id)
        .expect("an endpoint id");
    Ok(id)
}
