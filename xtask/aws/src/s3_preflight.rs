//! The S3 preflight: whether the function's subnets reach S3, where a CloudFormation custom
//! resource's answer goes (a PUT to a presigned S3 URL). Read-only, like deploy's other checks.

use crate::aws::{Clients, Settings, ec2};
use crate::aws_error::describe;
use crate::preflight::{Check, Network};

/// The route table a subnet uses: its explicit association, else the VPC's main table.
fn route_table_of<'a>(
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

/// Whether the function's subnets reach S3, where a CloudFormation custom resource's answer goes (a
/// presigned S3 URL): an S3 gateway endpoint on each subnet's route table, or a NAT route. Read-only;
/// run by `template` and `deploy --check-s3`.
pub async fn check(c: &Clients, s: &Settings, n: &Network) -> anyhow::Result<Check> {
    let service = format!("com.amazonaws.{}.s3", s.region);
    let filter = |name: &str, value: &str| {
        ec2::types::Filter::builder()
            .name(name)
            .values(value)
            .build()
    };
    let endpoints = c
        .ec2
        .describe_vpc_endpoints()
        .filters(filter("vpc-id", &n.vpc_id))
        .filters(filter("service-name", &service))
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "preflight: describe VPC endpoints (ec2 DescribeVpcEndpoints): {}",
                describe(&e)
            )
        })?;
    let gateways: Vec<&ec2::types::VpcEndpoint> = endpoints
        .vpc_endpoints()
        .iter()
        .filter(|e| {
            e.service_name() == Some(service.as_str())
                && e.vpc_id() == Some(n.vpc_id.as_str())
                && e.vpc_endpoint_type().map(|t| t.as_str()) == Some("Gateway")
                && !matches!(
                    e.state().map(|s| s.as_str()),
                    Some("deleted" | "deleting" | "failed" | "rejected" | "expired")
                )
        })
        .collect();
    let tables = c
        .ec2
        .describe_route_tables()
        .filters(filter("vpc-id", &n.vpc_id))
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "preflight: describe route tables (ec2 DescribeRouteTables): {}",
                describe(&e)
            )
        })?;
    let tables = tables.route_tables();
    let mut via_endpoint = Vec::new();
    let mut via_nat = Vec::new();
    let mut without = Vec::new();
    let mut tables_without = Vec::new();
    for subnet in &n.function_subnets {
        let table = route_table_of(tables, subnet);
        let table_id = table.and_then(|t| t.route_table_id()).unwrap_or_default();
        let endpoint = gateways
            .iter()
            .find(|e| !table_id.is_empty() && e.route_table_ids().iter().any(|id| id == table_id));
        let nat = table.is_some_and(|t| {
            t.routes().iter().any(|r| {
                r.destination_cidr_block() == Some("0.0.0.0/0") && r.nat_gateway_id().is_some()
            })
        });
        match (endpoint, nat) {
            (Some(e), _) => via_endpoint.push(format!(
                "{subnet} (endpoint {})",
                e.vpc_endpoint_id().unwrap_or("?")
            )),
            (None, true) => via_nat.push(subnet.clone()),
            (None, false) => {
                without.push(subnet.clone());
                if !table_id.is_empty() && !tables_without.iter().any(|t| t == table_id) {
                    tables_without.push(table_id.to_string());
                }
            }
        }
    }
    let name = "function -> s3 (custom resource answers)";
    if without.is_empty() {
        let mut paths = Vec::new();
        if !via_endpoint.is_empty() {
            paths.push(format!(
                "gateway endpoint for {service}: {}",
                via_endpoint.join(", ")
            ));
        }
        if !via_nat.is_empty() {
            paths.push(format!("NAT route: {}", via_nat.join(", ")));
        }
        return Ok(Check {
            name,
            ok: true,
            detail: paths.join("; "),
            fix: None,
        });
    }
    Ok(Check {
        name,
        ok: false,
        detail: format!(
            "no S3 gateway endpoint on the route tables of {} and no NAT route: a CloudFormation \
             custom resource's answer (a PUT to S3) could not leave the VPC",
            without.join(", ")
        ),
        fix: Some(format!(
            "aws ec2 create-vpc-endpoint --vpc-id {} --vpc-endpoint-type Gateway --service-name {service} \
             --route-table-ids {}\n(or route 0.0.0.0/0 from those subnets to a NAT gateway)",
            n.vpc_id,
            if tables_without.is_empty() {
                "<route-table-id>".to_string()
            } else {
                tables_without.join(" ")
            }
        )),
    })
}
