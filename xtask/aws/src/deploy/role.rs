//! The function's IAM role, reconciled: read what IAM has (`observe`), compare it with the desired
//! role (`plan`, pure), and make the difference (`apply`, the only code here that writes to IAM).

use std::collections::BTreeMap;

use anyhow::Context;
use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use serde_json::Value;

use super::change::Change;
use super::desired::RoleSpec;
use crate::aws::Clients;
use crate::aws_error::describe;

/// The role as IAM has it; policy documents decoded (`None`: IAM's text did not parse).
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedRole {
    pub arn: String,
    pub trust_policy: Option<Value>,
    /// ARNs of the attached managed policies, in IAM's order.
    pub managed_policies: Vec<String>,
    /// Inline policies by name, with their documents.
    pub inline_policies: BTreeMap<String, Option<Value>>,
}

/// Reads the role, its attached and its inline policies; `None` when there is no such role.
pub async fn observe(c: &Clients, name: &str) -> anyhow::Result<Option<ObservedRole>> {
    let role = match c.iam.get_role().role_name(name).send().await {
        Ok(out) => out.role,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_no_such_entity_exception()) =>
        {
            None
        }
        Err(e) => anyhow::bail!("deploy: get role {name} (iam GetRole): {}", describe(&e)),
    };
    let Some(role) = role else {
        return Ok(None);
    };
    let attached = send(
        "list attached policies",
        c.iam.list_attached_role_policies().role_name(name).send(),
    )
    .await?;
    let managed_policies = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect();
    let listed = send(
        "list inline policies",
        c.iam.list_role_policies().role_name(name).send(),
    )
    .await?;
    let mut inline_policies = BTreeMap::new();
    for policy in listed.policy_names() {
        let got = send(
            "get inline policy",
            c.iam
                .get_role_policy()
                .role_name(name)
                .policy_name(policy)
                .send(),
        )
        .await?;
        inline_policies.insert(policy.clone(), policy_json(got.policy_document()));
    }
    Ok(Some(ObservedRole {
        trust_policy: role.assume_role_policy_document().and_then(policy_json),
        arn: role.arn,
        managed_policies,
        inline_policies,
    }))
}

/// The changes that make `observed` the desired role: create it whole, or correct its trust policy,
/// attach and detach managed policies, put and delete inline ones.
pub fn plan(want: &RoleSpec, observed: Option<&ObservedRole>) -> Vec<Change> {
    let put = |(name, document): (&String, &Value)| Change::PutInlinePolicy {
        name: name.clone(),
        document: document.clone(),
    };
    let attach = |arn: &String| Change::AttachPolicy { arn: arn.clone() };
    let Some(cur) = observed else {
        let create = Change::CreateRole {
            name: want.name.clone(),
            trust_policy: want.trust_policy.clone(),
        };
        return std::iter::once(create)
            .chain(want.managed_policies.iter().map(attach))
            .chain(want.inline_policies.iter().map(put))
            .collect();
    };
    let mut changes = Vec::new();
    if cur.trust_policy.as_ref() != Some(&want.trust_policy) {
        changes.push(Change::UpdateTrustPolicy {
            trust_policy: want.trust_policy.clone(),
        });
    }
    let detach = cur
        .managed_policies
        .iter()
        .filter(|arn| !want.managed_policies.contains(arn))
        .map(|arn| Change::DetachPolicy { arn: arn.clone() });
    changes.extend(detach);
    let missing = want
        .managed_policies
        .iter()
        .filter(|arn| !cur.managed_policies.contains(arn));
    changes.extend(missing.map(attach));
    let delete = cur
        .inline_policies
        .keys()
        .filter(|name| !want.inline_policies.contains_key(*name))
        .map(|name| Change::DeleteInlinePolicy { name: name.clone() });
    changes.extend(delete);
    let differ = want
        .inline_policies
        .iter()
        .filter(|(name, doc)| cur.inline_policies.get(*name) != Some(&Some((*doc).clone())));
    changes.extend(differ.map(put));
    changes
}

/// Makes the role changes among `changes`; returns the role's ARN (the observed one, or the one
/// created).
pub async fn apply(
    c: &Clients,
    want: &RoleSpec,
    changes: &[Change],
    mut role_arn: Option<String>,
) -> anyhow::Result<String> {
    let role = want.name.as_str();
    for ch in changes {
        match ch {
            Change::CreateRole { name, trust_policy } => {
                role_arn = create(c, want, name, trust_policy).await?;
            }
            Change::UpdateTrustPolicy { trust_policy } => {
                let req = c
                    .iam
                    .update_assume_role_policy()
                    .role_name(role)
                    .policy_document(trust_policy.to_string());
                send("update trust policy", req.send()).await?;
            }
            Change::AttachPolicy { arn } => {
                let req = c.iam.attach_role_policy().role_name(role).policy_arn(arn);
                send("attach policy (iam AttachRolePolicy)", req.send()).await?;
            }
            Change::DetachPolicy { arn } => {
                let req = c.iam.detach_role_policy().role_name(role).policy_arn(arn);
                send("detach policy", req.send()).await?;
            }
            Change::PutInlinePolicy { name, document } => {
                let req = c
                    .iam
                    .put_role_policy()
                    .role_name(role)
                    .policy_name(name)
                    .policy_document(document.to_string());
                send("put inline policy (iam PutRolePolicy)", req.send()).await?;
            }
            Change::DeleteInlinePolicy { name } => {
                let req = c.iam.delete_role_policy().role_name(role).policy_name(name);
                send("delete inline policy", req.send()).await?;
            }
            _ => {}
        }
    }
    role_arn.context("deploy: the role has no ARN")
}

/// `CreateRole`; a retried call whose first answer was lost finds the role there and uses it.
async fn create(
    c: &Clients,
    want: &RoleSpec,
    name: &str,
    trust_policy: &Value,
) -> anyhow::Result<Option<String>> {
    let created = c
        .iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust_policy.to_string())
        .description(want.description)
        .send()
        .await;
    match created {
        Ok(out) => Ok(out.role.map(|r| r.arn)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_entity_already_exists_exception()) =>
        {
            let got = send(
                "get role (iam GetRole)",
                c.iam.get_role().role_name(name).send(),
            )
            .await?;
            Ok(got.role.map(|r| r.arn))
        }
        Err(e) => Err(anyhow::anyhow!(
            "deploy: create role (iam CreateRole): {}",
            describe(&e)
        )),
    }
}

/// Awaits one IAM call; its error says what deploy was doing.
async fn send<T, E>(
    what: &str,
    call: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
) -> anyhow::Result<T>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    call.await
        .map_err(|e| anyhow::anyhow!("deploy: {what}: {}", describe(&e)))
}

/// IAM returns policy documents URL-encoded; compare them as JSON.
pub fn policy_json(doc: &str) -> Option<Value> {
    serde_json::from_str(doc)
        .ok()
        .or_else(|| serde_json::from_str(&percent_decode(doc)).ok())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::desired::{SECRET_POLICY_NAME, VPC_ACCESS_POLICY, trust_policy};
    use serde_json::json;

    fn want() -> RoleSpec {
        RoleSpec {
            name: "r".into(),
            description: "d",
            trust_policy: trust_policy(),
            managed_policies: vec![VPC_ACCESS_POLICY.into()],
            inline_policies: BTreeMap::from([(SECRET_POLICY_NAME.into(), json!({"v": 1}))]),
        }
    }

    /// The role exactly as deploy wants it.
    fn as_wanted() -> ObservedRole {
        ObservedRole {
            arn: "arn:aws:iam::1:role/r".into(),
            trust_policy: Some(trust_policy()),
            managed_policies: vec![VPC_ACCESS_POLICY.into()],
            inline_policies: BTreeMap::from([(SECRET_POLICY_NAME.into(), Some(json!({"v": 1})))]),
        }
    }

    #[test]
    fn a_missing_role_is_created_whole() {
        assert_eq!(
            plan(&want(), None),
            vec![
                Change::CreateRole {
                    name: "r".into(),
                    trust_policy: trust_policy()
                },
                Change::AttachPolicy {
                    arn: VPC_ACCESS_POLICY.into()
                },
                Change::PutInlinePolicy {
                    name: SECRET_POLICY_NAME.into(),
                    document: json!({"v": 1})
                },
            ]
        );
    }

    #[test]
    fn a_role_as_wanted_needs_nothing() {
        assert_eq!(plan(&want(), Some(&as_wanted())), vec![]);
    }

    #[test]
    fn the_seed_role_is_narrowed_to_least_privilege() {
        let rw = "arn:aws:iam::aws:policy/SecretsManagerReadWrite";
        let seed = ObservedRole {
            trust_policy: Some(json!({"Statement": []})),
            managed_policies: vec![rw.into()],
            inline_policies: BTreeMap::from([
                ("extra".into(), Some(json!({}))),
                (SECRET_POLICY_NAME.into(), None),
            ]),
            ..as_wanted()
        };
        assert_eq!(
            plan(&want(), Some(&seed)),
            vec![
                Change::UpdateTrustPolicy {
                    trust_policy: trust_policy()
                },
                Change::DetachPolicy { arn: rw.into() },
                Change::AttachPolicy {
                    arn: VPC_ACCESS_POLICY.into()
                },
                Change::DeleteInlinePolicy {
                    name: "extra".into()
                },
                Change::PutInlinePolicy {
                    name: SECRET_POLICY_NAME.into(),
                    document: json!({"v": 1})
                },
            ]
        );
    }

    #[test]
    fn a_changed_inline_document_is_put_again() {
        let mut cur = as_wanted();
        cur.inline_policies
            .insert(SECRET_POLICY_NAME.into(), Some(json!({"v": 2})));
        assert_eq!(
            plan(&want(), Some(&cur)),
            vec![Change::PutInlinePolicy {
                name: SECRET_POLICY_NAME.into(),
                document: json!({"v": 1})
            }]
        );
    }

    #[test]
    fn iam_documents_are_compared_decoded() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            policy_json(encoded),
            Some(json!({"Version": "2012-10-17", "Statement": []}))
        );
        assert_eq!(policy_json("{\"a\": 1}"), Some(json!({"a": 1})));
    }
}
