//! A role as IAM has it, read for the tests' assertions: what deploy decides about it (trust
//! policy, attached and inline policies, documents decoded from IAM's URL-encoding), without what
//! AWS stamps on it (creation time, role id).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use xtask_aws::aws::Clients;
use xtask_aws::deploy::role::policy_json;

/// One role and its policies.
#[derive(Clone, Debug, PartialEq)]
pub struct Role {
    pub arn: String,
    pub path: String,
    pub description: Option<String>,
    pub max_session_duration: Option<i32>,
    pub trust_policy: Value,
    /// Attached managed policy ARNs, in IAM's order.
    pub attached: Vec<String>,
    /// Inline policies by name.
    pub inline: BTreeMap<String, Value>,
}

impl Role {
    pub fn to_json(&self) -> Value {
        json!({
            "arn": self.arn,
            "path": self.path,
            "description": self.description,
            "trust_policy": self.trust_policy,
            "max_session_duration": self.max_session_duration,
            "attached": self.attached,
            "inline": self.inline,
        })
    }
}

/// The role `name` with its policies; `None` when IAM has no such role.
pub async fn read_role(c: &Clients, name: &str) -> anyhow::Result<Option<Role>> {
    let role = match c.iam.get_role().role_name(name).send().await {
        Ok(out) => out.role.expect("GetRole answers a role"),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_no_such_entity_exception()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let attached = c
        .iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await?
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect();
    let mut inline = BTreeMap::new();
    let names = c.iam.list_role_policies().role_name(name).send().await?;
    for policy in names.policy_names() {
        let doc = c
            .iam
            .get_role_policy()
            .role_name(name)
            .policy_name(policy)
            .send()
            .await?;
        inline.insert(policy.clone(), decoded(doc.policy_document())?);
    }
    Ok(Some(Role {
        trust_policy: decoded(role.assume_role_policy_document().unwrap_or_default())?,
        description: role.description,
        max_session_duration: role.max_session_duration,
        arn: role.arn,
        path: role.path,
        attached,
        inline,
    }))
}

fn decoded(doc: &str) -> anyhow::Result<Value> {
    policy_json(doc).ok_or_else(|| anyhow::anyhow!("IAM policy document is not JSON: {doc}"))
}
