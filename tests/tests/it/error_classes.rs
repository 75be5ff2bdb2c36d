//! One way a server error becomes an `InitError` (issue 24): the table of SQLSTATE families in
//! `init-fn/README.md` checked against `init_fn::error::server_error` with real server errors — each
//! row's example SQLSTATE raised by PostgreSQL, and the errors that matter most produced for real:
//! a backend terminated by `pg_terminate_backend` (57P01), a statement timeout, a syntax error in a
//! catalog query, an identifier too long for a `name` parameter, a privilege the user lacks.

use init_fn::{
    InitError,
    error::{server_error, server_words},
};
use tests::harness::{DB, Harness};
use tokio_postgres::Client;

/// `(sqlstate example, errorType, retryable)` of each row of the README's table.
fn readme_rows() -> Vec<(String, String, bool)> {
    let readme = std::fs::read_to_string(tests::harness::root().join("init-fn/README.md")).unwrap();
    let start = readme
        .find("| SQLSTATE | example | errorType | retry? |")
        .expect("README: the SQLSTATE table");
    readme[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[2].to_string(),
                cells[3].trim_matches('`').to_string(),
                match cells[4] {
                    "yes" => true,
                    "no" => false,
                    other => panic!("README: retry? is {other:?}"),
                },
            )
        })
        .collect()
}

async fn fails(client: &Client, sql: &str) -> tokio_postgres::Error {
    client
        .batch_execute(sql)
        .await
        .expect_err(&format!("`{sql}` must fail"))
}

fn check(err: &InitError, error_type: &str, retryable: bool, words: &[&str]) {
    assert_eq!(err.error_type(), error_type, "{err}");
    assert_eq!(err.retryable(), retryable, "{err}");
    let line = err.to_string();
    assert!(!line.contains('\n'), "{line}");
    for w in words {
        assert!(line.contains(w), "{w:?} missing from {line}");
    }
}

#[tokio::test]
async fn every_sqlstate_family_gets_the_class_the_readme_says() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let client = h.client(DB).await?;
    let rows = readme_rows();
    assert!(rows.len() >= 10, "{rows:?}");
    for (code, error_type, retryable) in rows {
        let err = fails(
            &client,
            &format!(
                "DO $$ BEGIN RAISE EXCEPTION 'raised %', '{code}' USING ERRCODE = '{code}', DETAIL = 'the detail'; END $$"
            ),
        )
        .await;
        let init = server_error("checking the table", &err);
        check(
            &init,
            &error_type,
            retryable,
            &[
                "checking the table: raised ",
                ": the detail",
                &format!("(SQLSTATE {code})"),
            ],
        );
    }
    Ok(())
}

#[tokio::test]
async fn real_server_errors_keep_their_words_and_class() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let client = h.client(DB).await?;

    // A syntax error in a catalog query: the query is wrong, a retry gives the same answer.
    let err = fails(&client, "SELEC relname FROM pg_class").await;
    let init = server_error("reading the catalog (tables)", &err);
    check(
        &init,
        "Verify",
        false,
        &[
            "reading the catalog (tables): syntax error at or near \"SELEC\" (SQLSTATE 42601)",
            "not retryable",
        ],
    );

    // A 70-character name sent as a `name` parameter: what `plan` used to send.
    let long = "x".repeat(70);
    let err = client
        .query(
            "SELECT 1 FROM pg_class WHERE relname = $1",
            &[&long.as_str()],
        )
        .await
        .expect_err("a 70-byte name parameter");
    let init = server_error("plan: looking up locked tables", &err);
    check(
        &init,
        "Verify",
        false,
        &[
            "plan: looking up locked tables: identifier too long",
            "(SQLSTATE 42622)",
        ],
    );

    // The engine's statement timeout.
    let err = fails(&client, "SET statement_timeout = 50; SELECT pg_sleep(5)").await;
    client.batch_execute("RESET statement_timeout").await?;
    check(
        &server_error("counting rows", &err),
        "Timeout",
        true,
        &["canceling statement due to statement timeout (SQLSTATE 57014)"],
    );

    // A privilege the user lacks.
    client
        .batch_execute("CREATE ROLE no_rights; CREATE TABLE guarded (id int)")
        .await?;
    let err = fails(&client, "SET ROLE no_rights; SELECT * FROM guarded").await;
    client.batch_execute("RESET ROLE").await?;
    check(
        &server_error("reading the ledger", &err),
        "Auth",
        false,
        &["permission denied for table guarded (SQLSTATE 42501)"],
    );

    // The session terminated by an administrator (a failover looks the same): Connect, retry.
    let victim = h.client(DB).await?;
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    client
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await?;
    let err = victim
        .query_one("SELECT 1", &[])
        .await
        .expect_err("a terminated session");
    let init = server_error("reading the ledger", &err);
    assert_eq!(init.error_type(), "Connect", "{init}");
    assert!(init.retryable());
    let words = server_words(&err);
    assert!(
        words.contains("terminating connection due to administrator command (SQLSTATE 57P01)")
            || !words.contains("SQLSTATE"),
        "{words}"
    );
    assert!(
        init.to_string().starts_with("reading the ledger: "),
        "{init}"
    );
    Ok(())
}
