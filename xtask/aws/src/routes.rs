//! What the VPC says about the function subnets' ways out, read once for every network check: the
//! live VPC endpoints of a service, the route tables, which table a subnet uses, and NAT routes.

use crate::aws::{Clients, ec2};
use crate::aws_error::call_failed;

fn filter(name: &str, value: &str) -> ec2::types::Filter {
    ec2::types::Filter::builder()
        .name(name)
        .values(value)
        .build()
}

/// The VPC endpoints of `service` (`com.amazonaws.<region>.<name>`) in the VPC that exist or are
/// being created (a deleted or failed endpoint carries no traffic).
pub async fn endpoints(
    c: &Clients,
    vpc_id: &str,
    service: &str,
) -> anyhow::Result<Vec<ec2::types::VpcEndpoint>> {
    let out = c
        .ec2
        .describe_vpc_endpoints()
        .filters(filter("vpc-id", vpc_id))
        .filters(filter("service-name", service))
        .send()
        .await
        .map_err(call_failed(
            "preflight: describe VPC endpoints (ec2 DescribeVpcEndpoints)",
        ))?;
    Ok(out
        .vpc_endpoints()
        .iter()
        .filter(|e| {
            e.service_name() == Some(service)
                && e.vpc_id() == Some(vpc_id)
                && !matches!(
                    e.state().map(|s| s.as_str()),
                    Some("deleted" | "deleting" | "failed" | "rejected" | "expired")
                )
        })
        .cloned()
        .collect())
}

/// Every route table of the VPC.
pub async fn tables(c: &Clients, vpc_id: &str) -> anyhow::Result<Vec<ec2::types::RouteTable>> {
    let out = c
        .ec2
        .describe_route_tables()
        .filters(filter("vpc-id", vpc_id))
        .send()
        .await
        .map_err(call_failed(
            "preflight: describe route tables (ec2 DescribeRouteTables)",
        ))?;
    Ok(out.route_tables().to_vec())
}

/// The route table a subnet uses: its explicit association, else the VPC's main table.
pub fn table_of<'a>(
    tables: &'a [ec2::types::RouteTable],
    subnet: &str,
) -> Option<&'a ec2::types::RouteTable> {
    tables
        .iter()
        .find(|t| {
            t.associations()
                .iter()
                .any(|a| a.subnet_id() == Some(subnet))
        })
        .or_else(|| {
            tables
                .iter()
                .find(|t| t.associations().iter().any(|a| a.main() == Some(true)))
        })
}

/// Whether the table sends 0.0.0.0/0 to a NAT gateway.
pub fn routes_to_nat(table: Option<&ec2::types::RouteTable>) -> bool {
    table.is_some_and(|t| {
        t.routes().iter().any(|r| {
            r.destination_cidr_block() == Some("0.0.0.0/0") && r.nat_gateway_id().is_some()
        })
    })
}
