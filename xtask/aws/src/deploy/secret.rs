//! Deploy's discovery of the database secret: its ARN (the one resource the role may read) and the
//! KMS key that encrypts it, when that key is the customer's.

use std::fmt;

use anyhow::Context;

use crate::aws::{Clients, Settings};
use crate::aws_error::describe;

/// The secret holding the database password, as Secrets Manager describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secret {
    pub arn: String,
    /// A customer-managed key (which needs `kms:Decrypt`); `None` for the AWS-managed one.
    pub kms_key: Option<String>,
}

impl Secret {
    /// `DescribeSecret` of the configured secret (an id or an ARN).
    pub async fn discover(c: &Clients, s: &Settings) -> anyhow::Result<Secret> {
        let secret = c
            .secrets
            .describe_secret()
            .secret_id(&s.secret)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "deploy: describe secret {} (secretsmanager DescribeSecret): {}",
                    s.secret,
                    describe(&e)
                )
            })?;
        let arn = secret
            .arn()
            .context("deploy: the secret has no ARN")?
            .to_string();
        // The AWS-managed key needs no grant; any other key is the customer's and needs kms:Decrypt.
        let kms_key = secret
            .kms_key_id()
            .filter(|k| !k.ends_with("alias/aws/secretsmanager"))
            .map(str::to_string);
        Ok(Secret { arn, kms_key })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kms_key {
            Some(k) => write!(f, "secret: {} (customer key {k})", self.arn),
            None => write!(f, "secret: {} (AWS-managed key)", self.arn),
        }
    }
}
