//! What an AWS SDK error says: one line for the user, and the classes of error the retry policy
//! tells apart (throttling and 5xx, Lambda's 409 while an update runs, a role IAM has not
//! propagated yet). The lowest layer of the AWS commands: it knows no client and no command.

use aws_sdk_lambda::config::http::HttpResponse;
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};

/// The service error's code and message, or the transport error, in one line; a throttling or 5xx
/// answer says the retry budget is spent.
pub fn describe<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_lambda::operation::RequestId;
    let budget = if is_retryable(err) {
        " (still failing after every attempt of the retry budget)"
    } else {
        ""
    };
    let text = match err.as_service_error() {
        Some(e) => {
            let text = match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_string(),
                _ => xtask::error::chain(e),
            };
            match e.meta().request_id() {
                Some(id) => format!("{text} (request id {id})"),
                None => text,
            }
        }
        // The transport's causes in words (`dispatch failure: io error: ...`), no Debug tail.
        None => xtask::error::chain(err),
    };
    format!("{text}{budget}")
}

/// Lambda's 409 for an update or the creation of the function still being applied (the same code
/// also says "Function already exist", which waiting does not change).
pub fn is_conflict<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ResourceConflictException")
        && !e.message().is_some_and(|m| m.contains("already exist"))
}

/// Lambda cannot assume a role IAM has not propagated yet: "The role defined for the function cannot
/// be assumed by Lambda", or its VPC permissions not visible yet ("... does not have permissions to
/// call CreateNetworkInterface on EC2").
pub fn is_role_propagation<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("InvalidParameterValueException")
        && e.message().is_some_and(|m| {
            m.contains("cannot be assumed") || m.contains("does not have permissions to call")
        })
}

/// A throttling or 5xx answer: the SDK retried it until its attempt budget was spent.
pub fn is_retryable<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    const THROTTLING: &[&str] = &[
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "EC2ThrottledException",
        "SlowDown",
    ];
    let code = err.as_service_error().and_then(|e| e.code());
    code.is_some_and(|c| THROTTLING.contains(&c))
        || err
            .raw_response()
            .is_some_and(|r| r.status().as_u16() >= 500)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_lambda::error::ErrorMetadata;

    fn error(code: &str, message: &str) -> ErrorMetadata {
        ErrorMetadata::builder().code(code).message(message).build()
    }

    #[test]
    fn waitable_errors_are_told_apart_from_final_ones() {
        let in_progress = error(
            "ResourceConflictException",
            "The operation cannot be performed at this time. An update is in progress for resource: arn:aws:lambda:eu-west-3:1:function:f",
        );
        let exists = error("ResourceConflictException", "Function already exist: f");
        let role = error(
            "InvalidParameterValueException",
            "The role defined for the function cannot be assumed by Lambda.",
        );
        let bad = error("InvalidParameterValueException", "Unsupported runtime");
        assert!(is_conflict(&in_progress) && !is_role_propagation(&in_progress));
        assert!(!is_conflict(&exists));
        assert!(is_role_propagation(&role) && !is_conflict(&role));
        assert!(!is_role_propagation(&bad));
    }
}
