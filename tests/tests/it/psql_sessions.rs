//! Every migration starts from a fresh session, as `psql -f` of that file alone gives it (issue 24):
//! files that `SET search_path`, `session_replication_role`, `ROLE`, `TIME ZONE` and the timeouts,
//! transactional and `no-transaction`, applied through the engine on one database and with `psql -f`
//! (each file in its own session) on another: the same schema, the same relations with the same
//! owners, the same rows written by triggers and the same session each later file saw. The engine's
//! own bounds come back after each file and its advisory lock stays held throughout.

use init_fn::engine::run::{LOCK_KEY, Migration};
use serde_json::json;
use tests::{
    harness::{self, DB, Harness, states, with_extra},
    histories,
};

/// What each later file records first: the session it was handed.
const OBSERVE: &str = "INSERT INTO public.observed SELECT {v}, current_setting('search_path'), \
    current_setting('TimeZone'), current_user::text, current_setting('session_replication_role'), \
    current_setting('statement_timeout'), current_setting('lock_timeout'), \
    (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() \
       AND (classid::bigint << 32 | objid::bigint) = {key});";

fn files() -> Vec<(u32, &'static str, String)> {
    let observe = |v: u32| {
        OBSERVE
            .replace("{v}", &v.to_string())
            .replace("{key}", &LOCK_KEY.to_string())
    };
    vec![
        (
            2,
            "observations",
            "CREATE TABLE observed (version int, search_path text, time_zone text, who text, \
               replication_role text, statement_timeout text, lock_timeout text, advisory_locks bigint);\n\
             CREATE TABLE audited (id int);\n\
             CREATE TABLE audit_log (id int, note text);\n\
             CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$\n\
             BEGIN INSERT INTO public.audit_log VALUES (NEW.id, 'trigger fired'); RETURN NEW; END $$;\n\
             CREATE TRIGGER audited_insert AFTER INSERT ON audited FOR EACH ROW EXECUTE FUNCTION audit();\n\
             GRANT CREATE, USAGE ON SCHEMA public TO leak_owner;\n\
             GRANT INSERT ON observed TO leak_owner;\n"
                .to_string(),
        ),
        (
            3,
            "search_path",
            format!(
                "{}\nCREATE SCHEMA staging_area;\nSET search_path = staging_area, public;\n\
                 CREATE TABLE staged (id int);\n",
                observe(3)
            ),
        ),
        (
            4,
            "leak_probe",
            format!("{}\nCREATE TABLE leak_probe (id int);\n", observe(4)),
        ),
        (
            5,
            "replica_role",
            format!(
                "-- init-fn: no-transaction\n{}\nSET session_replication_role = replica;\n\
                 INSERT INTO audited VALUES (1);\nSET search_path = staging_area;\n\
                 CREATE TABLE staged_too (id int);\n",
                observe(5)
            ),
        ),
        (
            6,
            "trigger_fires",
            format!(
                "{}\nINSERT INTO audited VALUES (2);\nCREATE TABLE after_replica (id int);\n",
                observe(6)
            ),
        ),
        (
            7,
            "set_role",
            format!(
                "{}\nSET ROLE leak_owner;\nCREATE TABLE owned_by_role (id int);\n",
                observe(7)
            ),
        ),
        (
            8,
            "zone_and_timeouts",
            format!(
                "-- init-fn: no-transaction\n{}\nSET TIME ZONE 'Pacific/Chatham';\n\
                 SET lock_timeout = '3s';\nSET statement_timeout = '7min';\n\
                 SET ROLE leak_owner;\nCREATE TABLE owned_too (id int);\n\
                 CREATE TEMP TABLE scratch (id int);\nPREPARE probe AS SELECT 1;\n",
                observe(8)
            ),
        ),
        (
            9,
            "last_look",
            format!(
                "{}\nCREATE TABLE at_the_end (id int);\nINSERT INTO audited VALUES (3);\n\
                 PREPARE probe AS SELECT 2;\nCREATE TEMP TABLE scratch (id int);\n",
                observe(9)
            ),
        ),
    ]
}

type Observation = (i32, String, String, String, String, String, String, i64);

async fn observations(c: &tokio_postgres::Client) -> anyhow::Result<Vec<Observation>> {
    Ok(
        c.query("SELECT * FROM public.observed ORDER BY version", &[])
            .await?
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                    r.get(7),
                )
            })
            .collect(),
    )
}

async fn audit_rows(c: &tokio_postgres::Client) -> anyhow::Result<Vec<(i32, String)>> {
    Ok(
        c.query("SELECT id, note FROM public.audit_log ORDER BY id", &[])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
    )
}

#[tokio::test]
async fn no_setting_leaks_from_one_migration_into_the_next() -> anyhow::Result<()> {
    let h = Harness::from_env().await?;
    let admin = h.client("postgres").await?;
    admin.batch_execute("CREATE ROLE leak_owner").await?;
    let files = files();
    let extra: Vec<(u32, &str, &str)> =
        files.iter().map(|(v, n, s)| (*v, *n, s.as_str())).collect();
    let migrations: Vec<Migration> = with_extra(&extra);
    assert!(!migrations[4].transactional && !migrations[7].transactional);

    let report = harness::invoke(
        &h.state(&[("DB_STATEMENT_TIMEOUT_S", "45")], migrations.clone()),
        json!({}),
    )
    .await?;
    assert_eq!(report["status"], "ok", "{report:#}");
    assert!(states(&report).iter().all(|s| s == "applied"), "{report:#}");

    h.pg.create_database("psql_db").await?;
    histories::apply_with_psql(&h.pg, "psql_db", &migrations)?;

    let (ours, psqls) = (h.client(DB).await?, h.client("psql_db").await?);
    assert_eq!(
        h.pg.dump_schema(DB).await?,
        h.pg.dump_schema("psql_db").await?
    );
    let relations = histories::relations(&ours).await?;
    assert_eq!(relations, histories::relations(&psqls).await?);
    for expected in [
        "r public.leak_probe owner=",
        "r public.after_replica owner=",
        "r public.at_the_end owner=",
        "r public.owned_by_role owner=leak_owner",
        "r public.owned_too owner=leak_owner",
        "r staging_area.staged_too owner=",
    ] {
        assert!(
            relations.iter().any(|r| r.starts_with(expected)),
            "{expected} missing from {relations:#?}"
        );
    }
    // Rows 2 and 3 came after the file that made triggers quiet: their trigger fired.
    let audit = audit_rows(&ours).await?;
    assert_eq!(audit, audit_rows(&psqls).await?);
    assert_eq!(
        audit,
        [
            (2, "trigger fired".to_string()),
            (3, "trigger fired".to_string())
        ]
    );

    // The session each file was handed: psql's fresh one, bar the engine's own bounds and lock.
    let (seen, reference) = (observations(&ours).await?, observations(&psqls).await?);
    assert_eq!(seen.len(), 7);
    let without_bounds = |o: &[Observation]| {
        o.iter()
            .map(|(v, path, zone, who, role, ..)| {
                (*v, path.clone(), zone.clone(), who.clone(), role.clone())
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(without_bounds(&seen), without_bounds(&reference));
    for (v, .., statement_timeout, lock_timeout, advisory) in &seen {
        assert_eq!(
            statement_timeout, "45s",
            "migration {v}: the engine's statement timeout"
        );
        assert_eq!(lock_timeout, "5s", "migration {v}: DB_DDL_LOCK_TIMEOUT_S");
        assert_eq!(
            *advisory, 1,
            "migration {v}: the engine's advisory lock is held"
        );
    }
    assert!(reference.iter().all(|o| o.7 == 0));
    // A rerun applies nothing and finds the ledger rows written as the session's own user.
    let again = harness::invoke(&h.state(&[], migrations), json!({})).await?;
    assert!(
        states(&again).iter().all(|s| s == "already_applied"),
        "{again:#}"
    );
    Ok(())
}
