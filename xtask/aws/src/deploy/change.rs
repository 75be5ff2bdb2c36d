//! One change deploy makes to AWS (or would make, under `--dry-run`): what the plans produce, what
//! apply carries out, and how it reads in deploy's output.

use serde_json::Value;

/// One change deploy makes (or would make, under `--dry-run`).
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    CreateRole {
        name: String,
        trust_policy: Value,
    },
    UpdateTrustPolicy {
        trust_policy: Value,
    },
    AttachPolicy {
        arn: String,
    },
    DetachPolicy {
        arn: String,
    },
    PutInlinePolicy {
        name: String,
        document: Value,
    },
    DeleteInlinePolicy {
        name: String,
    },
    CreateLogGroup {
        name: String,
        retention_days: i32,
    },
    /// `from`: `None` when the group keeps events forever.
    SetRetention {
        days: i32,
        from: Option<i32>,
    },
    CreateFunction,
    UpdateCode {
        from_sha256: String,
    },
    UpdateConfiguration {
        fields: Vec<String>,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
        match self {
            Change::CreateRole { name, trust_policy } => {
                write!(
                    f,
                    "create role {name} with trust policy\n{}",
                    pretty(trust_policy)
                )
            }
            Change::UpdateTrustPolicy { trust_policy } => {
                write!(
                    f,
                    "update the role's trust policy to\n{}",
                    pretty(trust_policy)
                )
            }
            Change::AttachPolicy { arn } => write!(f, "attach managed policy {arn}"),
            Change::DetachPolicy { arn } => write!(f, "detach managed policy {arn} (not needed)"),
            Change::PutInlinePolicy { name, document } => {
                write!(f, "put inline policy {name}\n{}", pretty(document))
            }
            Change::DeleteInlinePolicy { name } => {
                write!(f, "delete inline policy {name} (not needed)")
            }
            Change::CreateLogGroup {
                name,
                retention_days,
            } => write!(
                f,
                "create log group {name} (retention {retention_days} days)"
            ),
            Change::SetRetention { days, from } => {
                let from = from.map_or("never expire".to_string(), |d| format!("{d} days"));
                write!(
                    f,
                    "set the log group's retention to {days} days (was {from})"
                )
            }
            Change::CreateFunction => write!(f, "create the function"),
            Change::UpdateCode { from_sha256 } => {
                write!(f, "update the function's code (was sha256 {from_sha256})")
            }
            Change::UpdateConfiguration { fields } => {
                write!(
                    f,
                    "update the function's configuration: {}",
                    fields.join(", ")
                )
            }
        }
    }
}
