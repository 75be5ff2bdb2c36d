//! deploy, invoke and clean under the faults real AWS produces and moto never does, injected by a
//! proxy in front of moto with AWS's own error shapes: 409 "an update is in progress", a role IAM
//! has not propagated, throttling and 5xx, an update that ends `LastUpdateStatus=Failed`, a first
//! deploy interrupted after the role was created, a Pending or throttled function. Each test prints
//! the attempts made and the time it took to converge.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::fault_proxy::{AwsError, Fault, FaultProxy, moto_lambda_without_docker, raw_get};
use tests::iam::read_role;
use tests::moto::Moto;
use tests::seed::{REGION, Seeded, add_secrets_manager_endpoint, seed, settings};
use xtask_aws::aws::{Clients, Settings, lambda};
use xtask_aws::deploy::change::Change;
use xtask_aws::deploy::{DeployReport, function};
use xtask_aws::retry::Policy;

const FUNCTION_ARN: &str = "arn:aws:lambda:eu-west-3:123456789012:function:ca-a2a-db-init";

/// AWS's bounds scaled down so that each wait takes milliseconds, with the same logic.
fn fast() -> Policy {
    Policy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        poll: Duration::from_millis(50),
        progress_every: Duration::from_millis(200),
        ready: Duration::from_secs(10),
        conflict: Duration::from_secs(10),
        propagation: Duration::from_secs(10),
        command: Duration::from_secs(60),
        deadline: None,
    }
}

/// moto seeded with the account deploy expects, the proxy in front of it, and clients through the
/// proxy (`c`) and straight to moto (`direct`, for checks that must not count as attempts).
struct Env {
    moto: Moto,
    proxy: FaultProxy,
    c: Clients,
    direct: Clients,
    s: Settings,
    _seeded: Seeded,
}

impl Env {
    async fn start(policy: Policy) -> anyhow::Result<Env> {
        let moto = Moto::start()?;
        let direct = Clients::new(&moto.sdk_config().await);
        let seeded = seed(&direct, true).await?;
        add_secrets_manager_endpoint(&direct, &seeded).await?;
        let proxy = FaultProxy::start(&moto.endpoint).await?;
        let c = self::clients(&proxy, policy).await;
        Ok(Env {
            moto,
            proxy,
            c,
            direct,
            s: settings(),
            _seeded: seeded,
        })
    }

    async fn deploy(&self, s: &Settings, zip: &[u8]) -> Run<DeployReport> {
        self.deploy_with(&self.c, s, zip).await
    }

    async fn deploy_with(&self, c: &Clients, s: &Settings, zip: &[u8]) -> Run<DeployReport> {
        let started = Instant::now();
        let mut out = Vec::new();
        let res = xtask_aws::deploy::deploy(c, s, zip, false, &mut out).await;
        Run::new(res, out, started)
    }

    async fn clean(&self) -> Run<Vec<String>> {
        let started = Instant::now();
        let mut out = Vec::new();
        let res = xtask_aws::clean::clean(&self.c, &self.s, false, &mut out).await;
        Run::new(res, out, started)
    }

    async fn function(&self) -> Option<lambda::types::FunctionConfiguration> {
        function::observe(&self.direct, &self.s.function_name)
            .await
            .unwrap()
    }

    /// One line per fault for the record: the calls each operation got since `mark` and the time
    /// it took to converge (or to fail).
    fn record(&self, fault: &str, mark: usize, ops: &[&str], took: Duration) {
        let calls: Vec<String> = ops
            .iter()
            .map(|op| format!("{op} x{}", self.proxy.calls_since(mark, op)))
            .collect();
        println!(
            "FAULT {fault}: {} -> {:.2}s",
            calls.join(", "),
            took.as_secs_f64()
        );
    }
}

async fn clients(proxy: &FaultProxy, policy: Policy) -> Clients {
    let config = xtask_aws::aws::local_sdk_config(&proxy.endpoint, REGION).await;
    Clients::with_policy(&config, policy)
}

/// What one command returned, printed, and how long it took.
struct Run<T> {
    res: anyhow::Result<T>,
    out: String,
    took: Duration,
}

impl<T> Run<T> {
    fn new(res: anyhow::Result<T>, out: Vec<u8>, started: Instant) -> Run<T> {
        let out = String::from_utf8(out).unwrap();
        println!("{out}");
        if let Err(e) = &res {
            println!("Error: {e:#}");
        }
        Run {
            res,
            out,
            took: started.elapsed(),
        }
    }

    fn ok(self) -> (T, String, Duration) {
        match self.res {
            Ok(v) => (v, self.out, self.took),
            Err(e) => panic!("expected success: {e:#}\n{}", self.out),
        }
    }

    fn err(self) -> (String, String, Duration) {
        match self.res {
            Ok(_) => panic!("expected a failure\n{}", self.out),
            Err(e) => (format!("{e:#}"), self.out, self.took),
        }
    }
}

fn zip(content: &[u8]) -> Vec<u8> {
    xtask::build::zip_bytes(content).unwrap()
}

fn in_progress() -> [(&'static str, Value); 1] {
    [("/LastUpdateStatus", json!("InProgress"))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_in_progress_is_waited_out_by_deploy_and_clean() -> anyhow::Result<()> {
    let e = Env::start(fast()).await?;
    e.deploy(&e.s, &zip(b"\x7fELF v1")).await.ok();

    // New code and more memory while Lambda still applies an earlier update: both calls answer 409
    // twice, and the function reports InProgress for a while.
    let conflict = AwsError::update_in_progress(FUNCTION_ARN);
    e.proxy.fail("UpdateFunctionCode", 2, conflict.clone());
    e.proxy
        .fail("UpdateFunctionConfiguration", 2, conflict.clone());
    e.proxy
        .rewrite("GetFunctionConfiguration", Some(3), &in_progress());
    let mut s2 = e.s.clone();
    s2.memory = 256;
    let zip2 = zip(b"\x7fELF v2");
    let mark = e.proxy.mark();
    let (report, out, took) = e.deploy(&s2, &zip2).await.ok();
    e.record(
        "409 on UpdateFunctionCode and UpdateFunctionConfiguration (x2 each)",
        mark,
        &[
            "UpdateFunctionCode",
            "UpdateFunctionConfiguration",
            "GetFunctionConfiguration",
        ],
        took,
    );
    assert_eq!(report.changes.len(), 2, "{:?}", report.changes);
    assert_eq!(e.proxy.calls("UpdateFunctionCode"), 3);
    assert_eq!(e.proxy.calls("UpdateFunctionConfiguration"), 3);
    assert!(
        out.contains(
            "waiting for ca-a2a-db-init to settle (no creation or update in progress) before \
             UpdateFunctionCode: Lambda answers 409 ResourceConflictException"
        ),
        "{out}"
    );
    assert!(out.contains("LastUpdateStatus=InProgress"), "{out}");
    assert!(out.contains("deployed ca-a2a-db-init"), "{out}");
    let f = e.function().await.unwrap();
    assert_eq!(f.memory_size(), Some(256));
    assert_eq!(
        f.code_sha256(),
        Some(xtask_aws::deploy::desired::code_sha256(&zip2).as_str())
    );

    // clean while an update is in progress: DeleteFunction answers 409 twice, then everything goes.
    e.proxy.fail("DeleteFunction", 2, conflict);
    e.proxy
        .rewrite("GetFunctionConfiguration", Some(2), &in_progress());
    let mark = e.proxy.mark();
    let (removed, out, took) = e.clean().await.ok();
    e.record(
        "409 on DeleteFunction (x2)",
        mark,
        &["DeleteFunction", "DeleteRole"],
        took,
    );
    assert_eq!(e.proxy.calls("DeleteFunction"), 3);
    // The function, its log group, the role's two policies, the role.
    assert_eq!(removed.len(), 5, "{removed:?}");
    assert!(out.contains("before DeleteFunction"), "{out}");
    assert!(e.function().await.is_none());
    assert!(read_role(&e.direct, &e.s.role).await?.is_none());

    // Still idempotent.
    let (removed, out, _) = e.clean().await.ok();
    assert!(removed.is_empty());
    assert!(out.contains("nothing was left to clean"), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_not_yet_assumable_is_retried_within_its_bound() -> anyhow::Result<()> {
    let e = Env::start(fast()).await?;
    e.proxy
        .fail("CreateFunction", 3, AwsError::role_not_assumable());
    let mark = e.proxy.mark();
    let (_, out, took) = e.deploy(&e.s, &zip(b"\x7fELF")).await.ok();
    e.record(
        "role not assumable yet on CreateFunction (x3)",
        mark,
        &["CreateRole", "CreateFunction"],
        took,
    );
    assert_eq!(e.proxy.calls("CreateFunction"), 4);
    assert!(
        out.contains(
            "waiting for IAM to let Lambda assume the role (CreateFunction): the role is not \
             assumable by Lambda yet"
        ),
        "{out}"
    );
    assert!(e.function().await.is_some());

    // Past the bound: a clear error, and re-running is safe.
    e.clean().await.ok();
    let bound = Duration::from_secs(1);
    let short = clients(
        &e.proxy,
        Policy {
            propagation: bound,
            ..fast()
        },
    )
    .await;
    e.proxy
        .fail_always("CreateFunction", AwsError::role_not_assumable());
    let before = e.proxy.calls("CreateFunction");
    let mark = e.proxy.mark();
    let (err, out, took) = e.deploy_with(&short, &e.s, &zip(b"\x7fELF")).await.err();
    e.record(
        "role never assumable (bound 1 s)",
        mark,
        &["CreateFunction"],
        took,
    );
    assert!(err.contains("IAM has not propagated the role yet"), "{err}");
    assert!(
        err.contains("Re-running `cargo xtask deploy` is safe"),
        "{err}"
    );
    assert!(
        err.contains("The role defined for the function cannot be assumed by Lambda"),
        "{err}"
    );
    assert!(!out.contains("deployed"), "{out}");
    assert!(took >= bound && took < bound * 5, "{took:?}");
    assert!(e.proxy.calls("CreateFunction") - before > 2);
    assert!(e.function().await.is_none());

    e.proxy.clear();
    let (report, _, _) = e.deploy(&e.s, &zip(b"\x7fELF")).await.ok();
    assert_eq!(report.changes, vec![Change::CreateFunction]);
    assert!(e.function().await.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_5xx_are_retried_within_the_budget() -> anyhow::Result<()> {
    let e = Env::start(fast()).await?;
    let faults = [
        (
            "DescribeDBInstances",
            1,
            AwsError::internal("InternalFailure"),
        ),
        ("DescribeSubnets", 2, AwsError::ec2_throttled()),
        (
            "DescribeSecurityGroups",
            1,
            AwsError::internal("InternalError"),
        ),
        ("CreateRole", 1, AwsError::iam_throttled()),
        ("AttachRolePolicy", 2, AwsError::iam_throttled()),
        ("PutRolePolicy", 1, AwsError::internal("ServiceFailure")),
        ("GetFunction", 2, AwsError::lambda_throttled()),
        ("CreateFunction", 1, AwsError::internal("ServiceException")),
    ];
    for (op, n, err) in &faults {
        e.proxy.fail(op, *n, err.clone());
    }
    // And two 5xx that come after the call took effect: the retry finds the role and the function
    // already there.
    e.proxy.inject(
        "CreateRole",
        Some(1),
        Fault::Lost(AwsError::internal("ServiceFailure")),
    );
    e.proxy.inject(
        "CreateFunction",
        Some(1),
        Fault::Lost(AwsError::internal("ServiceException")),
    );
    let mark = e.proxy.mark();
    let (_, _, took) = e.deploy(&e.s, &zip(b"\x7fELF")).await.ok();
    let ops: Vec<&str> = faults.iter().map(|f| f.0).collect();
    e.record(
        "throttling and 5xx on RDS, EC2, IAM and Lambda (x1-x2 each), lost answers to CreateRole and CreateFunction",
        mark,
        &ops,
        took,
    );
    for (op, n, _) in &faults {
        assert!(
            e.proxy.calls(op) > *n,
            "{op}: {} calls, {n} faults",
            e.proxy.calls(op)
        );
    }
    // Throttled, lost, then EntityAlreadyExists: the role made by the lost call is used.
    assert_eq!(e.proxy.calls("CreateRole"), 3);
    assert_eq!(e.proxy.calls("CreateFunction"), 3);
    assert!(e.function().await.is_some());

    // Beyond the budget: a non-zero exit naming the API, after exactly the budget's attempts.
    e.proxy.fail_always("GetRole", AwsError::iam_throttled());
    let before = e.proxy.calls("GetRole");
    let mark = e.proxy.mark();
    let (err, out, took) = e.deploy(&e.s, &zip(b"\x7fELF")).await.err();
    e.record("IAM throttling that never stops", mark, &["GetRole"], took);
    assert!(err.contains("iam GetRole"), "{err}");
    assert!(err.contains("Throttling: Rate exceeded"), "{err}");
    assert!(err.contains("retry budget"), "{err}");
    assert!(!out.contains("deployed"), "{out}");
    assert_eq!(e.proxy.calls("GetRole") - before, 3);

    e.proxy.clear();
    e.proxy
        .fail_always("UpdateFunctionCode", AwsError::internal("ServiceException"));
    let mark = e.proxy.mark();
    let (err, _, took) = e.deploy(&e.s, &zip(b"\x7fELF v2")).await.err();
    e.record(
        "Lambda 500 that never stops",
        mark,
        &["UpdateFunctionCode"],
        took,
    );
    assert!(err.contains("lambda UpdateFunctionCode"), "{err}");
    assert!(err.contains("ServiceException"), "{err}");
    assert_eq!(e.proxy.calls("UpdateFunctionCode"), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_update_is_a_failure_with_its_reason() -> anyhow::Result<()> {
    let e = Env::start(fast()).await?;
    e.deploy(&e.s, &zip(b"\x7fELF")).await.ok();

    let reason = "Lambda was unable to create an ENI: the subnet has no free IP addresses.";
    e.proxy.rewrite(
        "GetFunctionConfiguration",
        None,
        &[
            ("/LastUpdateStatus", json!("Failed")),
            (
                "/LastUpdateStatusReasonCode",
                json!("SubnetOutOfIPAddresses"),
            ),
            ("/LastUpdateStatusReason", json!(reason)),
        ],
    );
    let mut s2 = e.s.clone();
    s2.memory = 256;
    let mark = e.proxy.mark();
    let (err, out, took) = e.deploy(&s2, &zip(b"\x7fELF")).await.err();
    e.record(
        "update ends LastUpdateStatus=Failed",
        mark,
        &["UpdateFunctionConfiguration", "GetFunctionConfiguration"],
        took,
    );
    assert!(err.contains("LastUpdateStatus=Failed"), "{err}");
    assert!(err.contains("SubnetOutOfIPAddresses"), "{err}");
    assert!(err.contains(reason), "{err}");
    assert!(err.contains("re-run `cargo xtask deploy`"), "{err}");
    assert!(!out.contains("deployed"), "{out}");
    assert!(!out.contains("ready:"), "{out}");

    // An update that never finishes: the wait is visible and ends with the command's budget.
    e.proxy.clear();
    e.proxy
        .rewrite("GetFunctionConfiguration", None, &in_progress());
    let budget = clients(
        &e.proxy,
        Policy {
            command: Duration::from_secs(1),
            ..fast()
        },
    )
    .await;
    let mark = e.proxy.mark();
    s2.memory = 512;
    let (err, out, took) = e.deploy_with(&budget, &s2, &zip(b"\x7fELF")).await.err();
    e.record(
        "update InProgress forever (command budget 1 s)",
        mark,
        &["UpdateFunctionConfiguration", "GetFunctionConfiguration"],
        took,
    );
    assert!(
        err.contains("gave up waiting for ca-a2a-db-init to be Active with its update applied"),
        "{err}"
    );
    assert!(err.contains("the command's budget of 1s is spent"), "{err}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Progress at least every `progress_every` (200 ms here, 5 s against AWS).
    let reports = out
        .matches("waiting for ca-a2a-db-init to be Active")
        .count();
    assert!(reports >= 3, "{out}");
    assert!(!out.contains("deployed"), "{out}");
    Ok(())
}

/// Everything about the function and its role that deploy decides; what AWS stamps on each write
/// (times, revision, role id) left out.
async fn deployed_state(e: &Env) -> anyhow::Result<Value> {
    let mut function = raw_get(
        &e.moto.endpoint,
        "lambda",
        "/2015-03-31/functions/ca-a2a-db-init/configuration",
    )
    .await?;
    for volatile in ["LastModified", "RevisionId"] {
        function.as_object_mut().unwrap().remove(volatile);
    }
    let role = read_role(&e.direct, &e.s.role).await?.unwrap();
    Ok(json!({"function": function, "role": role.to_json()}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_first_deploy_converges_to_an_uninterrupted_one() -> anyhow::Result<()> {
    let e = Env::start(fast()).await?;
    let zip = zip(b"\x7fELF");

    // Killed right after the role was created: the AttachRolePolicy call never completes.
    let mark = e.proxy.mark();
    e.proxy.inject("AttachRolePolicy", Some(1), Fault::Hang);
    {
        let mut out = Vec::new();
        tokio::select! {
            res = xtask_aws::deploy::deploy(&e.c, &e.s, &zip, false, &mut out) => {
                panic!("deploy was not interrupted: {:?}", res.map(|r| r.changes))
            }
            res = e.proxy.wait_for("AttachRolePolicy", 1) => res?,
        }
    }
    let role = read_role(&e.direct, &e.s.role).await?;
    assert!(
        role.is_some(),
        "the role was not created before the interruption"
    );
    assert!(e.function().await.is_none());

    let (report, out, took) = e.deploy(&e.s, &zip).await.ok();
    e.record(
        "first deploy interrupted after CreateRole, then deploy again",
        mark,
        &["CreateRole", "AttachRolePolicy", "CreateFunction"],
        took,
    );
    assert!(out.contains("deployed ca-a2a-db-init"), "{out}");
    assert!(
        !report
            .changes
            .iter()
            .any(|c| matches!(c, Change::CreateRole { .. })),
        "{:?}",
        report.changes
    );
    let converged = deployed_state(&e).await?;

    // The same account with no interruption.
    xtask_aws::clean::clean(&e.direct, &e.s, false, &mut Vec::new()).await?;
    e.deploy(&e.s, &zip).await.ok();
    let uninterrupted = deployed_state(&e).await?;
    assert_eq!(converged, uninterrupted);
    println!(
        "converged state:\n{}",
        serde_json::to_string_pretty(&converged)?
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_waits_for_a_pending_or_throttled_function() -> anyhow::Result<()> {
    let e = Env::start(fast()).await?;
    // moto answers Invoke itself (an echo of the event); the function's own errors are tested in
    // invoke.rs and invoke_local.rs.
    moto_lambda_without_docker(&e.moto.endpoint).await?;
    e.deploy(&e.s, &zip(b"\x7fELF")).await.ok();
    let name = &e.s.function_name;
    let event = br#"{"action":"status"}"#;

    // Still Pending: Invoke answers 409 and the function says State=Pending, then it is Active.
    e.proxy.fail("Invoke", 2, AwsError::function_pending());
    e.proxy.rewrite(
        "GetFunctionConfiguration",
        Some(3),
        &[("/State", json!("Pending"))],
    );
    let mark = e.proxy.mark();
    let started = Instant::now();
    let mut out = Vec::new();
    let res = xtask_aws::invoke::invoke(&e.c, name, event, &mut out).await?;
    let out = String::from_utf8(out)?;
    println!("{out}");
    e.record(
        "Invoke of a Pending function (409 x2)",
        mark,
        &["Invoke", "GetFunctionConfiguration"],
        started.elapsed(),
    );
    assert_eq!(res.status_code, 200);
    assert_eq!(res.function_error, None);
    assert_eq!(res.payload, event, "moto echoes the event");
    assert_eq!(e.proxy.calls("Invoke"), 3);
    assert!(out.contains("before Invoke: State=Pending"), "{out}");

    // Throttled twice: retried within the budget.
    e.proxy.fail("Invoke", 2, AwsError::lambda_throttled());
    let mark = e.proxy.mark();
    let started = Instant::now();
    let res = xtask_aws::invoke::invoke(&e.c, name, event, &mut Vec::new()).await?;
    e.record(
        "Invoke throttled (429 x2)",
        mark,
        &["Invoke"],
        started.elapsed(),
    );
    assert_eq!(res.status_code, 200);
    assert_eq!(e.proxy.calls("Invoke"), 6);

    // Throttled beyond the budget: says so.
    e.proxy.fail_always("Invoke", AwsError::lambda_throttled());
    let (mark, started) = (e.proxy.mark(), Instant::now());
    let err = xtask_aws::invoke::invoke(&e.c, name, event, &mut Vec::new())
        .await
        .unwrap_err();
    let err = format!("{err:#}");
    println!("Error: {err}");
    e.record(
        "Invoke throttled beyond the budget",
        mark,
        &["Invoke"],
        started.elapsed(),
    );
    assert!(err.contains("lambda Invoke"), "{err}");
    assert!(err.contains("TooManyRequestsException"), "{err}");
    assert!(err.contains("Lambda is throttling this function"), "{err}");
    assert_eq!(e.proxy.calls("Invoke"), 9);

    // Pending for longer than the bound: says what it waited for and for how long.
    e.proxy.clear();
    e.proxy.fail_always("Invoke", AwsError::function_pending());
    e.proxy.rewrite(
        "GetFunctionConfiguration",
        None,
        &[("/State", json!("Pending"))],
    );
    let short = clients(
        &e.proxy,
        Policy {
            conflict: Duration::from_millis(500),
            ..fast()
        },
    )
    .await;
    let (mark, started) = (e.proxy.mark(), Instant::now());
    let mut out = Vec::new();
    let err = xtask_aws::invoke::invoke(&short, name, event, &mut out)
        .await
        .unwrap_err();
    let err = format!("{err:#}");
    println!("{}Error: {err}", String::from_utf8(out)?);
    e.record(
        "Invoke of a function Pending beyond the bound (0.5 s)",
        mark,
        &["Invoke", "GetFunctionConfiguration"],
        started.elapsed(),
    );
    assert!(
        err.contains("gave up waiting for ca-a2a-db-init to settle"),
        "{err}"
    );
    assert!(err.contains("State=Pending"), "{err}");
    Ok(())
}
