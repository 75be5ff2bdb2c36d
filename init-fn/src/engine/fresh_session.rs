//! Each migration starts from the session state `psql -f` of that file alone would give it: after a
//! migration, whatever session-level state its SQL could change is put back (settings, role, session
//! authorization, temporary tables, cursors, LISTENs, SQL-level prepared statements, sequence caches)
//! and the engine's own bounds are set again. The engine's session advisory lock stays held: no
//! `DISCARD ALL`, never `pg_advisory_unlock_all`.

use std::time::Duration;

use tokio_postgres::{Client, GenericClient};

use crate::error::{InitError, server_error};

/// What a fresh session would not have, undone. Role and session authorization are not covered by
/// `RESET ALL`; the connect-time values (application_name, the startup packet's) come back with it.
/// `DEALLOCATE ALL` would also drop the driver's own statements: SQL-level ones go one by one.
const RESET: &str = "RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; CLOSE ALL; UNLISTEN *; \
     DISCARD TEMP; DISCARD SEQUENCES; DISCARD PLANS";

/// The prepared statements a migration's own `PREPARE` made (not the driver's protocol-level ones).
const PREPARED_BY_SQL: &str = "SELECT name FROM pg_prepared_statements WHERE from_sql";

/// Inside a migration's transaction, before its ledger row: write the row as the session's own user
/// whatever `SET ROLE` the migration made (reverted with the transaction's end).
pub const LEDGER_IDENTITY: &str = "SET LOCAL SESSION AUTHORIZATION DEFAULT; SET LOCAL ROLE NONE";

/// Puts the session back as a fresh one plus the engine's bounds; the error is the server's.
pub async fn reset(
    client: &Client,
    statement_timeout: Duration,
) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(RESET).await?;
    let prepared = client.query(PREPARED_BY_SQL, &[]).await?;
    if !prepared.is_empty() {
        let deallocate: String = prepared
            .iter()
            .map(|r| format!("DEALLOCATE {};", quote_ident(r.get(0))))
            .collect();
        client.batch_execute(&deallocate).await?;
    }
    bounds(client, statement_timeout).await
}

/// [`reset`], its failure named like every other bookkeeping query's.
pub async fn restore(client: &Client, statement_timeout: Duration) -> Result<(), InitError> {
    reset(client, statement_timeout)
        .await
        .map_err(|e| server_error("resetting the session after a migration", &e))
}

/// The engine's bounds: the statement timeout; no session-level lock wait (each migration sets its
/// own, the advisory lock's wait is set on its own); backslashes read as the splitter reads them;
/// the notices that say what a migration found in place; and, as at connect (`session::connect`),
/// a server that abandons the session soon after the function dies.
pub async fn bounds(
    client: &impl GenericClient,
    statement_timeout: Duration,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "SET statement_timeout = {}; SET lock_timeout = 0; SET standard_conforming_strings = on; \
             SET client_min_messages = notice; SELECT {}",
            statement_timeout.as_millis(),
            crate::session::CLIENT_DEATH_SETTINGS
        ))
        .await
}

/// `"name"` with inner quotes doubled.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
