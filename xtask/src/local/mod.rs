//! Local stand-ins for what Lambda gives the function in AWS: Postgres, Secrets Manager, the Runtime API.
