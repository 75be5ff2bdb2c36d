//! The invocation's event, parsed once into one [`Request`] whoever sent it: an action event (`{}`,
//! `null`, `{"action": …}`; a CDK Trigger's empty payload is `{}`), a Terraform `aws_lambda_invocation`
//! CRUD input (`"tf": {"action", "prev_input"}` beside those fields), or a CloudFormation custom-resource
//! request (`RequestType`, answered on its `ResponseURL`: see [`crate::invocation::custom_resource`]).

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{
    engine::report::Action,
    error::{InitError, one_line},
    invocation::custom_resource::Reply,
};

/// What one invocation is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub work: Work,
    /// `verify` with `"exact_counts": true`: `count(*)` every table whatever its size.
    pub exact_counts: bool,
    pub caller: Caller,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    Run(Action),
    /// A stack or Terraform deletion: the schema is never dropped, nothing is touched.
    Keep,
}

/// Who sent the event, as the logs and the skipped report name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// `cargo xtask invoke`, a CDK Trigger, any direct invoke.
    Direct,
    Terraform(TfAction),
    CloudFormation(RequestType),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TfAction {
    Create,
    Update,
    Delete,
}

impl Caller {
    /// `terraform delete`, `CloudFormation Update`, `direct`.
    pub fn describe(self) -> String {
        match self {
            Caller::Direct => "direct".to_string(),
            Caller::Terraform(a) => format!("terraform {}", format!("{a:?}").to_lowercase()),
            Caller::CloudFormation(t) => format!("CloudFormation {t:?}"),
        }
    }
}

impl Default for Request {
    /// `{}`: apply.
    fn default() -> Request {
        Request {
            work: Work::Run(Action::Apply),
            exact_counts: false,
            caller: Caller::Direct,
        }
    }
}

/// The parsed event. `reply` is known even when the request is bad, so a custom resource is always
/// answered.
#[derive(Debug)]
pub struct Event {
    pub request: Result<Request, InitError>,
    pub reply: Option<Reply>,
}

/// Parses the event; anything but the documented shapes is `InvalidEvent`.
pub fn parse(event: Value) -> Event {
    match event {
        Value::Null => Event {
            request: Ok(Request::default()),
            reply: None,
        },
        Value::Object(map) if map.contains_key("RequestType") => custom_resource(map),
        other => Event {
            request: direct(other),
            reply: None,
        },
    }
}

/// `{"action", "exact_counts", "tf"}`, all optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Direct {
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    exact_counts: bool,
    #[serde(default)]
    tf: Option<Tf>,
}

/// What Terraform adds with `lifecycle_scope = "CRUD"`; `prev_input` is accepted and ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tf {
    action: TfAction,
    #[serde(default, rename = "prev_input")]
    _prev_input: Option<Value>,
}

fn direct(event: Value) -> Result<Request, InitError> {
    let direct: Direct = serde_json::from_value(event).map_err(|e| {
        InitError::InvalidEvent(one_line(&format!(
            "{e}; expected {{}} or {{\"action\": \"apply\"|\"plan\"|\"status\"|\"verify\"}}, and from Terraform \"tf\": {{\"action\": \"create\"|\"update\"|\"delete\", \"prev_input\": …}}"
        )))
    })?;
    let action = direct.action.unwrap_or(Action::Apply);
    if direct.exact_counts && action != Action::Verify {
        return Err(InitError::InvalidEvent(
            "\"exact_counts\" is only accepted with {\"action\": \"verify\"}".to_string(),
        ));
    }
    let (work, caller) = match direct.tf.map(|tf| tf.action) {
        None => (Work::Run(action), Caller::Direct),
        Some(TfAction::Delete) => (Work::Keep, Caller::Terraform(TfAction::Delete)),
        Some(tf) => (Work::Run(action), Caller::Terraform(tf)),
    };
    Ok(Request {
        work,
        exact_counts: direct.exact_counts,
        caller,
    })
}

/// CloudFormation's request. Unknown top-level fields are CloudFormation's to add and are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CustomResourceEvent {
    request_type: RequestType,
    #[serde(rename = "ResponseURL")]
    _response_url: String,
    #[serde(rename = "StackId")]
    _stack_id: String,
    #[serde(rename = "RequestId")]
    _request_id: String,
    #[serde(rename = "LogicalResourceId")]
    _logical_resource_id: String,
    #[serde(default)]
    resource_properties: Properties,
}

/// `ResourceProperties`: `Action` is read; the rest (`ServiceToken`, the migrations' checksum, anything a
/// template adds to force an update) only tells CloudFormation when to send an Update.
#[derive(Default, Deserialize)]
struct Properties {
    #[serde(default, rename = "Action")]
    action: Option<Action>,
}

fn custom_resource(map: Map<String, Value>) -> Event {
    let reply = Reply::from_event(&map);
    let request = serde_json::from_value::<CustomResourceEvent>(Value::Object(map))
        .map_err(|e| {
            InitError::InvalidEvent(one_line(&format!(
                "custom resource request: {e}; expected RequestType Create|Update|Delete, ResponseURL, StackId, RequestId, LogicalResourceId and ResourceProperties.Action apply|plan|status|verify when set"
            )))
        })
        .and_then(|event| {
            if reply.is_none() {
                return Err(InitError::InvalidEvent(
                    "custom resource request: ResponseURL is not an http(s) URL; nothing can be answered".to_string(),
                ));
            }
            let work = match event.request_type {
                RequestType::Delete => Work::Keep,
                RequestType::Create | RequestType::Update => {
                    Work::Run(event.resource_properties.action.unwrap_or(Action::Apply))
                }
            };
            Ok(Request {
                work,
                exact_counts: false,
                caller: Caller::CloudFormation(event.request_type),
            })
        });
    Event { request, reply }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(event: Value) -> Result<Request, InitError> {
        parse(event).request
    }

    fn run(action: Action, caller: Caller) -> Request {
        Request {
            work: Work::Run(action),
            exact_counts: false,
            caller,
        }
    }

    fn cfn(request_type: &str, properties: Value) -> Value {
        json!({
            "RequestType": request_type,
            "ServiceToken": "arn:aws:lambda:eu-west-3:123456789012:function:ca-a2a-db-init",
            "ResponseURL": "https://cloudformation-custom-resource-response-euwest3.s3.eu-west-3.amazonaws.com/x?X-Amz-Signature=abc",
            "StackId": "arn:aws:cloudformation:eu-west-3:123456789012:stack/s/1",
            "RequestId": "r-1",
            "LogicalResourceId": "Schema",
            "ResourceType": "Custom::SchemaMigration",
            "ResourceProperties": properties,
        })
    }

    #[test]
    fn action_events() {
        let direct = |a| run(a, Caller::Direct);
        assert_eq!(request(json!({})).unwrap(), direct(Action::Apply));
        assert_eq!(request(json!(null)).unwrap(), direct(Action::Apply));
        assert_eq!(
            request(json!({"action": "plan"})).unwrap(),
            direct(Action::Plan)
        );
        assert_eq!(
            request(json!({"action": "status"})).unwrap(),
            direct(Action::Status)
        );
        assert!(
            request(json!({"action": "verify", "exact_counts": true}))
                .unwrap()
                .exact_counts
        );
        assert!(parse(json!({})).reply.is_none());
    }

    #[test]
    fn terraform_crud_input() {
        let tf = |action: &str| json!({"tf": {"action": action, "prev_input": {"tf": {"action": "create"}}}});
        assert_eq!(
            request(tf("create")).unwrap(),
            run(Action::Apply, Caller::Terraform(TfAction::Create))
        );
        assert_eq!(
            request(tf("update")).unwrap(),
            run(Action::Apply, Caller::Terraform(TfAction::Update))
        );
        assert_eq!(request(tf("delete")).unwrap().work, Work::Keep);
        assert_eq!(
            request(json!({"action": "plan", "tf": {"action": "create", "prev_input": null}}))
                .unwrap(),
            run(Action::Plan, Caller::Terraform(TfAction::Create))
        );
    }

    #[test]
    fn custom_resource_requests() {
        let event = parse(cfn(
            "Create",
            json!({"ServiceToken": "arn", "MigrationsChecksum": "sha256:1"}),
        ));
        assert_eq!(
            event.request.unwrap(),
            run(Action::Apply, Caller::CloudFormation(RequestType::Create))
        );
        assert!(event.reply.is_some());
        assert_eq!(
            request(cfn("Update", json!({"Action": "verify"}))).unwrap(),
            run(Action::Verify, Caller::CloudFormation(RequestType::Update))
        );
        assert_eq!(
            request(cfn("Delete", json!({"Action": "apply"})))
                .unwrap()
                .work,
            Work::Keep
        );
    }

    #[test]
    fn bad_events_are_invalid_event_and_a_custom_resource_still_gets_its_reply() {
        for bad in [
            json!({"action": "drop"}),
            json!({"action": "apply", "exact_counts": true}),
            json!({"exact_counts": true}),
            json!({"action": 5}),
            json!({"actoin": "apply"}),
            json!({"tf": {"action": "destroy"}}),
            json!({"tf": {"action": "create", "extra": 1}}),
            json!("apply"),
            json!([1, 2]),
        ] {
            let event = parse(bad.clone());
            let err = event.request.unwrap_err();
            assert_eq!(err.error_type(), "InvalidEvent", "{bad}");
            assert!(!err.one_line().contains('\n'));
            assert!(event.reply.is_none());
        }
        for bad in [
            cfn("Upgrade", json!({})),
            cfn("Create", json!({"Action": "drop"})),
        ] {
            let event = parse(bad.clone());
            assert_eq!(event.request.unwrap_err().error_type(), "InvalidEvent");
            assert!(event.reply.is_some(), "{bad}");
        }
        let mut no_url = cfn("Create", json!({}));
        no_url["ResponseURL"] = json!("ftp://x");
        let event = parse(no_url);
        let err = event.request.unwrap_err();
        assert_eq!(err.error_type(), "InvalidEvent");
        assert!(event.reply.is_none());
        assert!(!err.one_line().contains("ftp://x"));
    }
}
