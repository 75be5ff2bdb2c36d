//! The S3 preflight: whether the function's subnets reach S3, where a CloudFormation custom
//! resource's answer goes (a PUT to a presigned S3 URL). Read-only, like deploy's other checks.

use std::io::Write;

use anyhow::bail;

use crate::aws::{Clients, Settings};
use crate::preflight::{self, Check, Network, Preflight};
use crate::routes;

/// `deploy --check-s3`: discovers the network, runs the S3 check and prints it like deploy's
/// preflight; an error when the subnets cannot reach S3 (before deploy changes anything).
pub async fn gate(c: &Clients, s: &Settings, out: &mut dyn Write) -> anyhow::Result<Check> {
    let c = &c.for_command();
    let network = preflight::discover(c, s).await?;
    let check = check(c, s, &network).await?;
    write!(
        out,
        "{}",
        Preflight {
            checks: vec![check.clone()]
        }
    )?;
    if !check.ok {
        bail!(
            "deploy: S3 preflight failed (--check-s3), nothing was changed (see above for what to create)"
        );
    }
    Ok(check)
}

/// Whether the function's subnets reach S3, where a CloudFormation custom resource's answer goes (a
/// presigned S3 URL): an S3 gateway endpoint on each subnet's route table, or a NAT route. Read-only;
/// run by `template` and `deploy --check-s3`.
pub async fn check(c: &Clients, s: &Settings, n: &Network) -> anyhow::Result<Check> {
    let service = format!("com.amazonaws.{}.s3", s.region);
    let endpoints = routes::endpoints(c, &n.vpc_id, &service).await?;
    let gateways: Vec<_> = endpoints
        .iter()
        .filter(|e| e.vpc_endpoint_type().map(|t| t.as_str()) == Some("Gateway"))
        .collect();
    let tables = routes::tables(c, &n.vpc_id).await?;
    let mut via_endpoint = Vec::new();
    let mut via_nat = Vec::new();
    let mut without = Vec::new();
    let mut tables_without = Vec::new();
    for subnet in &n.function_subnets {
        let table = routes::table_of(&tables, subnet);
        let table_id = table.and_then(|t| t.route_table_id()).unwrap_or_default();
        let endpoint = gateways
            .iter()
            .find(|e| !table_id.is_empty() && e.route_table_ids().iter().any(|id| id == table_id));
        let nat = routes::routes_to_nat(table);
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
