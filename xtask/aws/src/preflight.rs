//! Deploy's discovery and preflight: the network of the RDS instance, whether the function's
//! security groups can reach it, and whether its subnets can reach Secrets Manager.

use std::fmt;

use anyhow::{Context, bail};

use crate::aws::{Clients, DbAuth, Settings, ec2};
use crate::aws_error::call_failed;
use crate::routes;

/// What the RDS instance says about where it lives, and where the function will run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    pub instance: String,
    pub host: String,
    pub port: i32,
    pub vpc_id: String,
    pub db_subnets: Vec<String>,
    pub db_security_groups: Vec<String>,
    pub function_subnets: Vec<String>,
    pub function_security_groups: Vec<String>,
    /// The instance's `DbiResourceId` (`db-…`): what an `rds-db:connect` ARN names.
    pub resource_id: String,
    /// The account in the instance's ARN.
    pub account: String,
    /// Whether IAM database authentication is enabled on the instance.
    pub iam_auth_enabled: bool,
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "rds {}: {}:{} in {}",
            self.instance, self.host, self.port, self.vpc_id
        )?;
        writeln!(
            f,
            "  instance security groups: {}",
            self.db_security_groups.join(", ")
        )?;
        writeln!(
            f,
            "  function subnets: {}",
            self.function_subnets.join(", ")
        )?;
        write!(
            f,
            "  function security groups: {}",
            self.function_security_groups.join(", ")
        )
    }
}

/// Reads host, port, VPC, subnets and security groups from the RDS instance; explicit subnets and
/// security groups in the settings win over the instance's.
pub async fn discover(c: &Clients, s: &Settings) -> anyhow::Result<Network> {
    let out = c
        .rds
        .describe_db_instances()
        .db_instance_identifier(&s.rds_instance)
        .send()
        .await
        .map_err(call_failed(format!(
            "deploy: describe RDS instance {} (rds DescribeDBInstances)",
            s.rds_instance
        )))?;
    let db = out
        .db_instances()
        .first()
        .with_context(|| format!("deploy: RDS instance {} not found", s.rds_instance))?;
    let endpoint = db.endpoint().with_context(|| {
        format!(
            "deploy: RDS instance {} has no endpoint yet",
            s.rds_instance
        )
    })?;
    let group = db
        .db_subnet_group()
        .context("deploy: the RDS instance has no DB subnet group")?;
    let db_subnets: Vec<String> = group
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_identifier().map(str::to_string))
        .collect();
    let db_security_groups: Vec<String> = db
        .vpc_security_groups()
        .iter()
        .filter_map(|g| g.vpc_security_group_id().map(str::to_string))
        .collect();
    let pick = |explicit: &[String], derived: &[String]| {
        if explicit.is_empty() {
            derived.to_vec()
        } else {
            explicit.to_vec()
        }
    };
    let network = Network {
        instance: s.rds_instance.clone(),
        host: endpoint.address().unwrap_or_default().to_string(),
        port: endpoint.port().unwrap_or(5432),
        vpc_id: group.vpc_id().unwrap_or_default().to_string(),
        function_subnets: pick(&s.subnets, &db_subnets),
        function_security_groups: pick(&s.security_groups, &db_security_groups),
        db_subnets,
        db_security_groups,
        resource_id: db.dbi_resource_id().unwrap_or_default().to_string(),
        account: db
            .db_instance_arn()
            .and_then(|arn| arn.split(':').nth(4))
            .unwrap_or_default()
            .to_string(),
        iam_auth_enabled: db.iam_database_authentication_enabled().unwrap_or(false),
    };
    if network.host.is_empty() || network.vpc_id.is_empty() {
        bail!(
            "deploy: RDS instance {} reports no address or VPC",
            s.rds_instance
        );
    }
    if network.function_subnets.is_empty() || network.function_security_groups.is_empty() {
        bail!(
            "deploy: no subnets or security groups for the function: set them in [package.metadata.lambda.deploy]"
        );
    }
    Ok(network)
}

/// One preflight check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    /// What to create or change when it failed.
    pub fix: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preflight {
    pub checks: Vec<Check>,
}

impl Preflight {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

impl fmt::Display for Preflight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "preflight:")?;
        for c in &self.checks {
            writeln!(
                f,
                "  [{}] {}: {}",
                if c.ok { "ok" } else { "FAIL" },
                c.name,
                c.detail
            )?;
            if let Some(fix) = &c.fix {
                writeln!(f, "        fix: {}", fix.replace('\n', "\n             "))?;
            }
        }
        Ok(())
    }
}

/// Runs the checks; read-only.
pub async fn check(c: &Clients, s: &Settings, n: &Network) -> anyhow::Result<Preflight> {
    Ok(Preflight {
        checks: vec![
            check_postgres_path(c, n).await?,
            match s.auth {
                DbAuth::Secret => check_secrets_manager_path(c, s, n).await?,
                DbAuth::Iam => check_iam_auth(s, n),
            },
        ],
    })
}

/// `auth = "iam"`: the instance must take IAM tokens. Deploy never changes the instance; the fix is
/// the exact command to run.
pub fn check_iam_auth(s: &Settings, n: &Network) -> Check {
    if n.iam_auth_enabled {
        return Check {
            name: "rds iam database authentication",
            ok: true,
            detail: format!(
                "enabled on {} ({}); the function connects as {}",
                n.instance,
                n.resource_id,
                s.function_db_user()
            ),
            fix: None,
        };
    }
    Check {
        name: "rds iam database authentication",
        ok: false,
        detail: format!(
            "not enabled on {}: it would refuse the function's token (deploy does not modify the instance)",
            n.instance
        ),
        fix: Some(format!(
            "aws rds modify-db-instance --db-instance-identifier {} --enable-iam-database-authentication --apply-immediately --region {}",
            n.instance, s.region
        )),
    }
}

/// An IPv4 CIDR as (network, prefix length).
fn parse_cidr(cidr: &str) -> Option<(u32, u32)> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: std::net::Ipv4Addr = addr.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    (len <= 32).then_some((u32::from(addr), len))
}

/// Whether `outer` contains every address of `inner`.
pub fn cidr_contains(outer: &str, inner: &str) -> bool {
    let (Some((o, ol)), Some((i, il))) = (parse_cidr(outer), parse_cidr(inner)) else {
        return false;
    };
    let mask = if ol == 0 { 0 } else { u32::MAX << (32 - ol) };
    ol <= il && (o & mask) == (i & mask)
}

fn allows_port(p: &ec2::types::IpPermission, port: i32) -> bool {
    match p.ip_protocol() {
        Some("-1") => true,
        Some("tcp") | Some("6") => {
            p.from_port().unwrap_or(0) <= port && port <= p.to_port().unwrap_or(65535)
        }
        _ => false,
    }
}

/// A permission lets the traffic through when it names one of `groups`, or a CIDR covering all of
/// `cidrs` (the other side's subnets).
fn permits(p: &ec2::types::IpPermission, port: i32, groups: &[String], cidrs: &[String]) -> bool {
    allows_port(p, port)
        && (p.user_id_group_pairs().iter().any(|g| {
            g.group_id()
                .is_some_and(|id| groups.iter().any(|x| x == id))
        }) || p.ip_ranges().iter().any(|r| {
            r.cidr_ip().is_some_and(|outer| {
                !cidrs.is_empty() && cidrs.iter().all(|c| cidr_contains(outer, c))
            })
        }))
}

async fn subnet_cidrs(c: &Clients, ids: &[String]) -> anyhow::Result<Vec<String>> {
    let out = c
        .ec2
        .describe_subnets()
        .set_subnet_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(call_failed(
            "preflight: describe subnets (ec2 DescribeSubnets)",
        ))?;
    Ok(out
        .subnets()
        .iter()
        .filter_map(|s| s.cidr_block().map(str::to_string))
        .collect())
}

async fn check_postgres_path(c: &Clients, n: &Network) -> anyhow::Result<Check> {
    let mut ids = n.function_security_groups.clone();
    ids.extend(n.db_security_groups.iter().cloned());
    ids.sort();
    ids.dedup();
    let out = c
        .ec2
        .describe_security_groups()
        .set_group_ids(Some(ids))
        .send()
        .await
        .map_err(call_failed(
            "preflight: describe security groups (ec2 DescribeSecurityGroups)",
        ))?;
    let groups = out.security_groups();
    let fn_cidrs = subnet_cidrs(c, &n.function_subnets).await?;
    let db_cidrs = subnet_cidrs(c, &n.db_subnets).await?;
    let by_id = |ids: &[String]| -> Vec<&ec2::types::SecurityGroup> {
        groups
            .iter()
            .filter(|g| g.group_id().is_some_and(|id| ids.iter().any(|x| x == id)))
            .collect()
    };
    let egress = by_id(&n.function_security_groups).iter().any(|g| {
        g.ip_permissions_egress()
            .iter()
            .any(|p| permits(p, n.port, &n.db_security_groups, &db_cidrs))
    });
    let ingress = by_id(&n.db_security_groups).iter().any(|g| {
        g.ip_permissions()
            .iter()
            .any(|p| permits(p, n.port, &n.function_security_groups, &fn_cidrs))
    });
    let fsg = n.function_security_groups.join(",");
    let port = n.port;
    let mut fixes = Vec::new();
    if !egress {
        fixes.push(format!(
            "aws ec2 authorize-security-group-egress --group-id {} --protocol tcp --port {port} --source-group {}",
            n.function_security_groups[0], n.db_security_groups.first().map(String::as_str).unwrap_or("<db-sg>")
        ));
    }
    if !ingress {
        fixes.push(format!(
            "aws ec2 authorize-security-group-ingress --group-id {} --protocol tcp --port {port} --source-group {}",
            n.db_security_groups.first().map(String::as_str).unwrap_or("<db-sg>"), n.function_security_groups[0]
        ));
    }
    Ok(Check {
        name: "function -> postgres",
        ok: egress && ingress,
        detail: match (egress, ingress) {
            (true, true) => format!(
                "security groups {fsg} may open tcp/{port} to the instance's {}",
                n.db_security_groups.join(",")
            ),
            (false, _) => format!("no egress rule of {fsg} allows tcp/{port} to the instance"),
            (true, false) => format!(
                "no ingress rule of {} allows tcp/{port} from {fsg} or the function's subnets",
                n.db_security_groups.join(",")
            ),
        },
        fix: (!fixes.is_empty()).then(|| fixes.join("\n")),
    })
}

async fn check_secrets_manager_path(
    c: &Clients,
    s: &Settings,
    n: &Network,
) -> anyhow::Result<Check> {
    let service = format!("com.amazonaws.{}.secretsmanager", s.region);
    let endpoints = routes::endpoints(c, &n.vpc_id, &service).await?;
    let usable = endpoints
        .iter()
        .find(|e| e.private_dns_enabled() == Some(true));
    if let Some(e) = usable {
        return Ok(Check {
            name: "function -> secrets manager",
            ok: true,
            detail: format!(
                "interface endpoint {} for {service} with private DNS in {}",
                e.vpc_endpoint_id().unwrap_or("?"),
                n.vpc_id
            ),
            fix: None,
        });
    }

    // Without an endpoint, every function subnet needs a default route to a NAT gateway.
    let tables = routes::tables(c, &n.vpc_id).await?;
    let without_nat: Vec<String> = n
        .function_subnets
        .iter()
        .filter(|subnet| !routes::routes_to_nat(routes::table_of(&tables, subnet)))
        .cloned()
        .collect();
    if without_nat.is_empty() {
        return Ok(Check {
            name: "function -> secrets manager",
            ok: true,
            detail: "every function subnet routes 0.0.0.0/0 to a NAT gateway".to_string(),
            fix: None,
        });
    }
    Ok(Check {
        name: "function -> secrets manager",
        ok: false,
        detail: format!(
            "no interface endpoint for {service} with private DNS in {}, and no NAT route from {}: \
             the function could not fetch its secret",
            n.vpc_id,
            without_nat.join(", ")
        ),
        fix: Some(format!(
            "aws ec2 create-vpc-endpoint --vpc-id {} --vpc-endpoint-type Interface --service-name {service} \
             --subnet-ids {} --security-group-ids {} --private-dns-enabled\n\
             (its security group must allow tcp/443 from {}), or route 0.0.0.0/0 from those subnets to a NAT gateway",
            n.vpc_id,
            n.function_subnets.join(" "),
            n.function_security_groups.join(" "),
            n.function_security_groups.join(",")
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_containment() {
        assert!(cidr_contains("0.0.0.0/0", "10.0.1.0/24"));
        assert!(cidr_contains("10.0.0.0/16", "10.0.1.0/24"));
        assert!(!cidr_contains("10.0.1.0/24", "10.0.0.0/16"));
        assert!(!cidr_contains("10.1.0.0/16", "10.0.1.0/24"));
        assert!(!cidr_contains("nonsense", "10.0.1.0/24"));
    }
}
