//! `cargo xtask bench --auth iam`: a cold bootstrap spawn → report with `DB_AUTH=iam` vs
//! `DB_AUTH=secret` on one token-checking local server (`local::rds_iam`), beside the login floors:
//! `psql` logging in with the password and with a token. A token login costs the server its PAM
//! verifier (a python3 process per login), so the floors show that cost apart from the function's.

use std::path::Path;

use anyhow::bail;
use serde_json::json;

use super::psql;
use super::series::{Series, cold_run_with, ms, print_table};
use crate::local::postgres::PgChoice;
use crate::local::rds_iam::{MIGRATOR, TokenCheckingServer};
use crate::local::secrets_manager::SecretsManager;

/// The database every series runs on, brought up to date once before measuring.
const DB: &str = "documents_db";

/// The four series of `bench --auth iam`.
struct Results {
    /// Token checks the server's verifier made per `DB_AUTH=iam` cold start (the last run's).
    iam_logins: usize,
    secret: Series,
    iam: Series,
    psql_password: Series,
    psql_token: Series,
}

/// Refuses any server but a local cluster (the PAM rule needs one) and a machine that cannot run
/// the token-checking server, before anything is built.
pub fn check(choice: &PgChoice) -> anyhow::Result<()> {
    let other = match choice {
        PgChoice::Local | PgChoice::Auto => {
            return crate::local::rds_iam::check_host()
                .map_err(|e| anyhow::anyhow!("bench --auth iam: {e}"));
        }
        PgChoice::Docker { .. } => "--postgres docker",
        // Not echoed: a URL may hold a password.
        PgChoice::Url(_) => "a --postgres URL",
    };
    bail!(
        "bench --auth iam: runs on a local cluster only (it installs a PAM rule: root and pam_exec), \
         not {other}; pass --postgres local"
    )
}

pub fn run(runs: usize, bootstrap: &Path) -> anyhow::Result<()> {
    crate::runtime()?.block_on(async move {
        let server = TokenCheckingServer::start().await?;
        let version = server.pg.server_version().await.unwrap_or_default();
        println!(
            "bench --auth iam: {runs} runs each, local PostgreSQL {version}, sslmode={}, \
             tokens checked by PAM (pam_exec python3 SigV4 verifier), bootstrap {}",
            server.pg.sslmode(),
            crate::relative(bootstrap)
        );
        let results = measure(&server, bootstrap, runs).await;
        server.stop().await?;
        print_results(&results?);
        Ok(())
    })
}

/// Every series `runs` times, interleaved so drift affects all alike; an up-to-date `apply` each.
async fn measure(
    server: &TokenCheckingServer,
    bootstrap: &Path,
    runs: usize,
) -> anyhow::Result<Results> {
    server.setup_migrator(DB).await?;
    let secrets = SecretsManager::start().await?;
    let iam_env = server.iam_env(&secrets, DB);
    let secret_env = server.secret_env(&secrets, DB);
    let apply = || json!({"action": "apply"});
    // Unmeasured: the fresh apply, so every measured run finds the database up to date.
    cold_run_with(
        bootstrap,
        iam_env.clone(),
        apply(),
        "bench: first apply (iam)",
    )
    .await?;
    let mut r = Results {
        iam_logins: 0,
        secret: Series::new("init-fn apply, DB_AUTH=secret"),
        iam: Series::new("init-fn apply, DB_AUTH=iam"),
        psql_password: Series::new("psql login, password"),
        psql_token: Series::new("psql login, IAM token"),
    };
    let select = ["-c".as_ref(), "SELECT 1".as_ref()];
    for _ in 0..runs {
        let what = "bench: apply with DB_AUTH=secret failed";
        r.secret
            .push(cold_run_with(bootstrap, secret_env.clone(), apply(), what).await?);

        let (reads, verdicts) = (secrets.request_count(), server.verdicts().len());
        let what = "bench: apply with DB_AUTH=iam failed";
        r.iam
            .push(cold_run_with(bootstrap, iam_env.clone(), apply(), what).await?);
        r.iam_logins = server.verdicts().len() - verdicts;
        if secrets.request_count() != reads {
            bail!("bench: the DB_AUTH=iam function called Secrets Manager");
        }

        let (user, password) = (server.pg.user(), server.pg.password());
        r.psql_password
            .push(psql(&server.pg, user, password, DB, &select).await?);
        // Signed outside the timing: the floor is the login, not python's start.
        let token = server.python_token(MIGRATOR).await?;
        let verdicts = server.verdicts().len();
        r.psql_token
            .push(psql(&server.pg, MIGRATOR, &token, DB, &select).await?);
        let verdict = server.verdicts().get(verdicts).cloned().unwrap_or_default();
        if !verdict.starts_with("accepted") {
            bail!(
                "bench: the token psql logged in with was not checked by the verifier ({verdict})"
            );
        }
    }
    Ok(r)
}

fn print_results(r: &Results) {
    print_table(32, &[&r.secret, &r.iam, &r.psql_password, &r.psql_token]);
    let delta = |a: &Series, b: &Series| ms(a.median()) - ms(b.median());
    println!(
        "iam - secret: {:+.1} ms (function, {} token check(s) per cold start); token - password \
         login: {:+.1} ms (the server's PAM verifier; RDS checks tokens its own way); function \
         beyond that floor: {:+.1} ms",
        delta(&r.iam, &r.secret),
        r.iam_logins,
        delta(&r.psql_token, &r.psql_password),
        delta(&r.iam, &r.secret) - delta(&r.psql_token, &r.psql_password),
    );
}
