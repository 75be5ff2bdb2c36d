//! Applies one migration under production faults: statements bounded by the invocation deadline
//! (cancelled and rolled back in time), table-lock waits bounded by `DB_DDL_LOCK_TIMEOUT_S` and
//! retried with backoff, serialization failures and deadlocks retried, lost connections as `Connect`.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use tokio_postgres::{Client, Transaction};

use crate::{
    engine::fresh_session,
    engine::ledger::record,
    engine::migration::{Migration, Options, split_statements, unsplittable},
    error::{InitError, one_line, server_words},
    session,
};

/// Attempts of one migration (the first included) when a lock wait, serialization failure or
/// deadlock rolls it back.
pub const MAX_ATTEMPTS: u32 = 4;
/// Pause after the first failed attempt; doubles after each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Why an attempt of a migration stopped.
enum Stop {
    /// A statement failed; `index` is its 0-based position.
    Sql {
        err: tokio_postgres::Error,
        index: usize,
    },
    /// The deadline came while statement `index` ran; it was cancelled.
    Expired { index: usize },
}

/// Runs `m` and writes its ledger row; in one transaction unless the file opted out. Returns its
/// duration in ms.
pub async fn migration(
    client: &mut Client,
    m: &Migration,
    options: &Options,
) -> Result<u64, InitError> {
    let statements = split_statements(&m.sql).map_err(|err| unsplittable(m, &err))?;
    let mut run = Progress {
        m,
        statements: &statements,
        options,
        started: Instant::now(),
        completed: 0,
        attempts: 0,
    };
    loop {
        if options.deadline.left() == Some(Duration::ZERO) {
            return Err(run.timeout(None));
        }
        run.attempts += 1;
        let attempt = if m.transactional {
            transactional(client, &run).await
        } else {
            one_by_one(client, &mut run).await
        };
        let (err, index) = match attempt {
            Ok(ms) => return Ok(ms),
            Err(Stop::Expired { index }) => return Err(run.timeout(Some(index))),
            Err(Stop::Sql { err, index }) => (err, index),
        };
        if session::is_connection_level(&err) {
            return Err(run.connection_lost(index, &err));
        }
        let code = err.code().map(|c| c.code()).unwrap_or_default();
        let lock_wait = code == "55P03";
        if !(lock_wait || code == "40001" || code == "40P01") {
            return Err(run.failed(index, &err));
        }
        let blocker = match lock_wait {
            true => blocking_session(client, &statements[index]).await,
            false => None,
        };
        let backoff = FIRST_BACKOFF * 2u32.pow(run.attempts - 1);
        // Another attempt only when it could wait its full lock timeout before the deadline.
        let time_for_more = options
            .deadline
            .left()
            .is_none_or(|left| left >= backoff + options.ddl_lock_timeout);
        if run.attempts >= MAX_ATTEMPTS || !time_for_more {
            return Err(match lock_wait {
                true => run.lock_timeout(index, blocker),
                false => run.failed(index, &err),
            });
        }
        tracing::warn!(
            version = m.version,
            sqlstate = code,
            attempt = run.attempts,
            backoff_ms = backoff.as_millis() as u64,
            "migration rolled back; retrying"
        );
        tokio::time::sleep(backoff).await;
    }
}

/// One migration's run so far: what its messages report.
struct Progress<'a> {
    m: &'a Migration,
    statements: &'a [String],
    options: &'a Options,
    started: Instant,
    /// No-transaction migrations keep the statements that completed; a retry resumes after them.
    completed: usize,
    attempts: u32,
}

/// One attempt in a transaction with the ledger row; on any stop the transaction is rolled back.
async fn transactional(client: &mut Client, run: &Progress<'_>) -> Result<u64, Stop> {
    let (m, statements, options) = (run.m, run.statements, run.options);
    let tx = client
        .transaction()
        .await
        .map_err(|err| Stop::Sql { err, index: 0 })?;
    if let Err(err) = tx
        .batch_execute(&format!(
            "SET LOCAL lock_timeout = {}",
            options.ddl_lock_timeout.as_millis()
        ))
        .await
    {
        return Err(Stop::Sql { err, index: 0 });
    }
    for (index, statement) in statements.iter().enumerate() {
        match bounded(tx.batch_execute(statement), options).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                rollback(tx, options).await;
                return Err(Stop::Sql { err, index });
            }
            Err(Expired { .. }) => {
                rollback(tx, options).await;
                return Err(Stop::Expired { index });
            }
        }
    }
    let ms = run.started.elapsed().as_millis() as u64;
    let last = statements.len().saturating_sub(1);
    if let Err(err) = tx.batch_execute(fresh_session::LEDGER_IDENTITY).await {
        rollback(tx, options).await;
        return Err(Stop::Sql { err, index: last });
    }
    match bounded(record(&tx, m, ms, options), options).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            rollback(tx, options).await;
            return Err(Stop::Sql { err, index: last });
        }
        Err(Expired { .. }) => {
            rollback(tx, options).await;
            return Err(Stop::Expired { index: last });
        }
    }
    // Not cancelled: once COMMIT is sent its outcome must be known, and it takes milliseconds.
    tx.commit()
        .await
        .map_err(|err| Stop::Sql { err, index: last })?;
    Ok(ms)
}

/// One attempt statement by statement (`-- init-fn: no-transaction`), resuming after `completed`.
async fn one_by_one(client: &mut Client, run: &mut Progress<'_>) -> Result<u64, Stop> {
    let (m, statements, options, started) = (run.m, run.statements, run.options, run.started);
    let completed = &mut run.completed;
    let set = format!(
        "SET lock_timeout = {}",
        options.ddl_lock_timeout.as_millis()
    );
    client.batch_execute(&set).await.map_err(|err| Stop::Sql {
        err,
        index: *completed,
    })?;
    let result = async {
        for (index, statement) in statements.iter().enumerate().skip(*completed) {
            match bounded(client.batch_execute(statement), options).await {
                Ok(Ok(())) => *completed = index + 1,
                Ok(Err(err)) => return Err(Stop::Sql { err, index }),
                Err(Expired { completed: done }) => {
                    if done {
                        *completed = index + 1;
                    }
                    return Err(Stop::Expired { index });
                }
            }
        }
        let ms = started.elapsed().as_millis() as u64;
        let last = statements.len().saturating_sub(1);
        // Its statements are done: the ledger row is written as the session's own user.
        fresh_session::reset(client, options.statement_timeout)
            .await
            .map_err(|err| Stop::Sql { err, index: last })?;
        match bounded(record(&*client, m, ms, options), options).await {
            Ok(Ok(_)) => Ok(ms),
            Ok(Err(err)) => Err(Stop::Sql { err, index: last }),
            Err(Expired { .. }) => Err(Stop::Expired { index: last }),
        }
    }
    .await;
    // Back to waiting as long as the session allows (the advisory lock's wait is set on its own).
    let _ = tokio::time::timeout(
        options.deadline.cleanup_left(),
        client.batch_execute("SET lock_timeout = 0"),
    )
    .await;
    result
}

/// The deadline came while a statement ran.
struct Expired {
    /// The statement finished anyway (the cancel came too late).
    completed: bool,
}

/// Runs `query` until the deadline; then cancels it on the server and waits (within the cleanup time)
/// for the session to answer, so that ROLLBACK and unlock can follow.
async fn bounded<T>(
    query: impl Future<Output = Result<T, tokio_postgres::Error>>,
    options: &Options,
) -> Result<Result<T, tokio_postgres::Error>, Expired> {
    let Some(expiry) = options.deadline.expiry() else {
        return Ok(query.await);
    };
    tokio::pin!(query);
    tokio::select! {
        biased;
        result = &mut query => Ok(result),
        _ = tokio::time::sleep_until(expiry) => {
            let half = options.deadline.cleanup_left() / 2;
            if let Some(cancel) = &options.cancel {
                cancel.cancel(half).await;
            }
            let after = tokio::time::timeout(options.deadline.cleanup_left(), &mut query).await;
            Err(Expired { completed: matches!(after, Ok(Ok(_))) })
        }
    }
}

async fn rollback(tx: Transaction<'_>, options: &Options) {
    if tokio::time::timeout(options.deadline.cleanup_left(), tx.rollback())
        .await
        .is_err()
    {
        tracing::warn!("rollback got no answer in time; closing the session ends the transaction");
    }
}

/// The session that holds a lock on a table `statement` names, longest in its transaction first:
/// pid, application_name, state and how long — never its query text.
async fn blocking_session(client: &Client, statement: &str) -> Option<Blocker> {
    let names: Vec<String> = statement
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '"' || c == '.'))
        .filter(|w| !w.is_empty())
        .map(|w| {
            let w = w.rsplit('.').next().unwrap_or(w);
            if w.starts_with('"') {
                w.trim_matches('"').to_string()
            } else {
                w.to_lowercase()
            }
        })
        .collect();
    let row = client
        .query_opt(
            "SELECT c.relname::text, l.pid, coalesce(a.application_name, ''), coalesce(a.state, '?'), \
                    extract(epoch FROM now() - coalesce(a.xact_start, a.query_start, a.backend_start))::float8 \
             FROM pg_locks l \
             JOIN pg_class c ON c.oid = l.relation \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid() \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND c.relname = ANY($1) \
             ORDER BY 5 DESC NULLS LAST LIMIT 1",
            &[&names],
        )
        .await;
    match row {
        Ok(Some(r)) => Some(Blocker {
            table: r.get(0),
            pid: r.get(1),
            application_name: r.get(2),
            state: r.get(3),
            held_s: r.get::<_, Option<f64>>(4).unwrap_or(0.0),
        }),
        Ok(None) => None,
        Err(err) => {
            tracing::warn!(error = %one_line(&err.to_string()), "looking up the blocking session failed");
            None
        }
    }
}

/// Who held the lock a migration statement waited for.
#[derive(Debug, Clone)]
struct Blocker {
    table: String,
    pid: i32,
    application_name: String,
    state: String,
    held_s: f64,
}

impl Progress<'_> {
    /// "statements 1-2 of 5 completed and stay; " for a no-transaction migration, else "".
    fn kept(&self) -> String {
        let (completed, total) = (self.completed, self.statements.len());
        if self.m.transactional {
            String::new()
        } else if completed == 0 {
            format!("none of its {total} statements completed; ")
        } else {
            format!(
                "statements 1-{completed} of {total} completed and stay (no-transaction; the next run resumes after them); "
            )
        }
    }

    fn nothing_applied(&self) -> &'static str {
        if self.m.transactional {
            "its transaction was rolled back, nothing of it was applied"
        } else {
            "it is not recorded as applied"
        }
    }

    /// "migration 2 (add_note)".
    fn which(&self) -> String {
        format!("migration {} ({})", self.m.version, self.m.name)
    }

    fn timeout(&self, running: Option<usize>) -> InitError {
        let at = match running {
            Some(i) => format!(" at statement {} of {}", i + 1, self.statements.len()),
            None => " before it could start".to_string(),
        };
        InitError::Timeout(format!(
            "{} was cancelled after {:.1} s{at}: the invocation's deadline was {} s away (DB_DEADLINE_MARGIN_S); {}{}; retry with a longer function timeout",
            self.which(),
            self.started.elapsed().as_secs_f64(),
            self.options.deadline.margin().as_secs(),
            self.kept(),
            self.nothing_applied(),
        ))
    }

    fn lock_timeout(&self, index: usize, blocker: Option<Blocker>) -> InitError {
        let held = match blocker {
            Some(b) => format!(
                "table {} is locked by pid {} (application_name {:?}, state {}, in its transaction for {:.1} s)",
                b.table, b.pid, b.application_name, b.state, b.held_s
            ),
            None => "the session that held the table lock was gone when looked up".to_string(),
        };
        InitError::LockTimeout(format!(
            "{} statement {} of {} could not get its table lock within {} s (DB_DDL_LOCK_TIMEOUT_S) in {} attempts over {:.1} s: {held}; {}{}",
            self.which(),
            index + 1,
            self.statements.len(),
            self.options.ddl_lock_timeout.as_secs(),
            self.attempts,
            self.started.elapsed().as_secs_f64(),
            self.kept(),
            self.nothing_applied(),
        ))
    }

    fn connection_lost(&self, index: usize, err: &tokio_postgres::Error) -> InitError {
        let reason = server_words(err);
        InitError::Connect(one_line(&format!(
            "connection lost during {} at statement {} of {}: {reason}; {}{}; retry",
            self.which(),
            index + 1,
            self.statements.len(),
            self.kept(),
            if self.m.transactional {
                "its transaction was not committed, nothing of it was applied"
            } else {
                "it is not recorded as applied"
            },
        )))
    }

    fn failed(&self, index: usize, err: &tokio_postgres::Error) -> InitError {
        match err.as_db_error() {
            Some(db) => InitError::MigrationFailed {
                version: self.m.version,
                name: self.m.name.clone(),
                sqlstate: db.code().code().to_string(),
                message: one_line(&format!(
                    "{} (statement {} of {}, attempt {})",
                    db.message(),
                    index + 1,
                    self.statements.len(),
                    self.attempts
                )),
            },
            None => self.connection_lost(index, err),
        }
    }
}
