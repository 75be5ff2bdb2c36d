//! The Docker PostgreSQL provider (testcontainers-modules) against the real engine and the offline
//! `postgres:17` image: never pulled, published on 127.0.0.1 only, TLS files owned by `postgres` with
//! mode 0600, no secret in any process's arguments, `pg_dump` inside the container, the last log lines
//! when a start fails, and the container removed on drop, on a panicking test and on Ctrl-C of
//! `cargo xtask test-local`.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xtask::local::postgres::testcontainers_modules::testcontainers;
use xtask::local::postgres::{
    DEFAULT_IMAGE, LABEL_KEY, LABEL_VALUE, PgChoice, PgServer, docker_answers, start_docker_with,
    template_volume_name,
};

/// `docker <args>` (the real CLI); its stdout, or an error with its stderr.
fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run docker")?;
    if !out.status.success() {
        bail!(
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Containers of this provider, optionally narrowed by `filter` (`id=…`, `status=…`).
fn provider_containers(filter: &str) -> anyhow::Result<Vec<String>> {
    let label = format!("label={LABEL_KEY}={LABEL_VALUE}");
    let out = docker(&["ps", "-a", "-q", "--filter", &label, "--filter", filter])?;
    Ok(out.lines().map(str::to_string).collect())
}

/// The provider's container publishing host port `port` (`127.0.0.1:PORT->5432/tcp`), if any.
fn container_on_port(port: u16) -> anyhow::Result<Option<String>> {
    let label = format!("label={LABEL_KEY}={LABEL_VALUE}");
    let out = docker(&[
        "ps",
        "-a",
        "--filter",
        &label,
        "--format",
        "{{.ID}} {{.Ports}}",
    ])?;
    let needle = format!("127.0.0.1:{port}->5432/tcp");
    Ok(out
        .lines()
        .find(|l| l.contains(&needle))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string))
}

/// Docker must answer: these tests are about the Docker provider, so a machine without an engine
/// fails them (never a silent skip), like the Docker tests of `test_local.rs`.
async fn engine() -> anyhow::Result<bool> {
    if docker_answers().await {
        return Ok(true);
    }
    bail!(
        "no Docker engine answers `docker info`: the Docker provider's tests need one \
         (start it: ../shared/ci/ensure-docker.sh, or `cargo xtask doctor --fix`)"
    );
}

fn docker_choice() -> PgChoice {
    PgChoice::Docker {
        image: DEFAULT_IMAGE.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_container_takes_only_its_own_password_and_the_template_volume_is_labelled()
-> anyhow::Result<()> {
    if !engine().await? {
        return Ok(());
    }
    // The second container at the latest starts from the image's template cluster.
    super::local_provider::each_server_takes_only_its_own_password(&docker_choice()).await?;
    let volume = template_volume_of(DEFAULT_IMAGE)?;
    let labels = docker(&["volume", "inspect", "--format", "{{json .Labels}}", &volume])?;
    let labels: serde_json::Value = serde_json::from_str(labels.trim())?;
    assert_eq!(labels[LABEL_KEY], "postgres-template", "{labels}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_an_error_not_a_pull() -> anyhow::Result<()> {
    if !engine().await? {
        return Ok(());
    }
    let image = "postgres:0-init-fn-absent";
    let err = start_docker_with(image, &[]).await.unwrap_err().to_string();
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(
        err.contains("image postgres:0-init-fn-absent is not present"),
        "{err}"
    );
    assert!(
        err.contains("../shared/ci/offline-postgres-image.sh postgres:0-init-fn-absent"),
        "{err}"
    );
    assert!(
        docker(&["images", "-q", image])?.trim().is_empty(),
        "the image was pulled"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_is_loopback_only_with_private_tls_files_and_no_secret_in_argv()
-> anyhow::Result<()> {
    if !engine().await? {
        return Ok(());
    }
    let started = Instant::now();
    let server = PgServer::start(&docker_choice()).await?;
    eprintln!(
        "container started in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let id = server
        .container_id()
        .context("a docker server has an id")?
        .to_string();

    // Published on 127.0.0.1 only, as bollard's inspect sees it.
    let docker_api = xtask_docker_client().await.context("bollard client")?;
    let inspect = docker_api.inspect_container(&id, None).await?;
    let ports = inspect
        .network_settings
        .and_then(|n| n.ports)
        .context("no port map")?;
    let bindings = ports
        .get("5432/tcp")
        .cloned()
        .flatten()
        .context("5432 not published")?;
    assert!(!bindings.is_empty());
    for b in &bindings {
        assert_eq!(b.host_ip.as_deref(), Some("127.0.0.1"), "{bindings:?}");
        assert_eq!(
            b.host_port.as_deref(),
            Some(server.port().to_string().as_str())
        );
    }
    for (port, b) in &ports {
        assert!(
            port == "5432/tcp" || b.is_none(),
            "{port} published too: {b:?}"
        );
    }
    let labels = inspect.config.and_then(|c| c.labels).unwrap_or_default();
    assert_eq!(labels.get(LABEL_KEY).map(String::as_str), Some(LABEL_VALUE));

    // The server's certificate and key: owned by postgres, the key 0600; TLS on.
    let stat = docker(&[
        "exec",
        &id,
        "stat",
        "-c",
        "%U %a %n",
        "/etc/init-fn-tls/server.key",
        "/etc/init-fn-tls/server.crt",
    ])?;
    assert_eq!(
        stat.trim(),
        "postgres 600 /etc/init-fn-tls/server.key\npostgres 644 /etc/init-fn-tls/server.crt"
    );
    let client = server.client("postgres").await?;
    let ssl: String = client.query_one("SHOW ssl", &[]).await?.get(0);
    assert_eq!(ssl, "on");

    // Neither the password nor the key is in any process's arguments, in the container or here.
    let key_body = docker(&[
        "exec",
        &id,
        "sed",
        "-n",
        "2p",
        "/etc/init-fn-tls/server.key",
    ])?;
    let key_body = key_body.trim();
    assert!(key_body.len() > 20, "{key_body}");
    let container_argv = docker(&[
        "exec",
        &id,
        "sh",
        "-c",
        "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done",
    ])?;
    assert!(container_argv.contains("postgres"), "{container_argv}");
    let host_argv = host_cmdlines();
    for argv in [&container_argv, &host_argv] {
        assert!(
            !argv.contains(server.password()),
            "password in a process argv"
        );
        assert!(!argv.contains(key_body), "private key in a process argv");
    }

    // pg_dump runs inside the container over the local socket.
    client
        .batch_execute("CREATE TABLE public.dumped (id integer PRIMARY KEY)")
        .await?;
    let dump = server.dump_schema("postgres").await?;
    assert!(dump.contains("CREATE TABLE public.dumped"), "{dump}");

    // Removal on drop.
    drop(client);
    drop(server);
    wait_gone(&format!("id={id}"), Duration::from_secs(30))?;
    Ok(())
}

/// A bollard client through testcontainers' re-export (the one the provider uses).
async fn xtask_docker_client() -> anyhow::Result<testcontainers::bollard::Docker> {
    Ok(testcontainers::core::client::docker_client_instance().await?)
}

/// Every process's command line on this host, one per line.
fn host_cmdlines() -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            all.push_str(&String::from_utf8_lossy(&raw).replace('\0', " "));
            all.push('\n');
        }
    }
    all
}

/// Waits until no provider container matches `filter`.
fn wait_gone(filter: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let left = provider_containers(filter)?;
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("container(s) {left:?} ({filter}) still there after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_shows_the_servers_last_log_lines_and_leaves_nothing() -> anyhow::Result<()>
{
    if !engine().await? {
        return Ok(());
    }
    let before = provider_containers("status=exited")?;
    let args = ["-c".to_string(), "init_fn_no_such_setting=1".to_string()];
    let err = start_docker_with(DEFAULT_IMAGE, &args)
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(
        err.contains("postgres: container postgres:17 stopped while starting:"),
        "{err}"
    );
    assert!(
        err.contains("unrecognized configuration parameter \"init_fn_no_such_setting\""),
        "{err}"
    );
    // The failed container is removed with the rest.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let after = provider_containers("status=exited")?;
        let new: Vec<_> = after.iter().filter(|c| !before.contains(c)).collect();
        if new.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {new:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// The child test's name as libtest lists it in the one test binary (`<module>::<test>`).
const PANIC_CHILD: &str = "docker_provider::panicking_child_test";

/// The child of `a_panicking_test_removes_its_container`: starts a container, prints its id, panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_panicking_test_removes_its_container as a child process"]
async fn panicking_child_test() {
    let server = PgServer::start(&docker_choice()).await.expect("start");
    println!("CONTAINER {}", server.container_id().expect("docker id"));
    panic!("deliberate panic with a running container");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_test_removes_its_container() -> anyhow::Result<()> {
    if !engine().await? {
        return Ok(());
    }
    let out = Command::new(std::env::current_exe()?)
        .args([
            "--ignored",
            "--exact",
            PANIC_CHILD,
            "--nocapture",
            "--test-threads=1",
        ])
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the child test passed?\n{stdout}\n{stderr}"
    );
    assert!(stderr.contains("deliberate panic"), "{stderr}");
    let id = stdout
        .lines()
        .find_map(|l| l.split("CONTAINER ").nth(1)) // after libtest's `test … ` on the same line
        .map(str::trim)
        .with_context(|| format!("the child printed no container id:\n{stdout}\n{stderr}"))?;
    wait_gone(&format!("id={id}"), Duration::from_secs(30))
}

/// The child of `the_next_start_removes_the_container_of_a_killed_run`: starts a container, prints its
/// id, and waits to be killed.
const KILLED_CHILD: &str = "docker_provider::killed_child_test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the_next_start_removes_the_container_of_a_killed_run as a child process"]
async fn killed_child_test() {
    let server = PgServer::start(&docker_choice()).await.expect("start");
    println!("CONTAINER {}", server.container_id().expect("docker id"));
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_start_removes_the_container_of_a_killed_run() -> anyhow::Result<()> {
    if !engine().await? {
        return Ok(());
    }
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--ignored",
            "--exact",
            KILLED_CHILD,
            "--nocapture",
            "--test-threads=1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let id = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.split("CONTAINER ").nth(1).map(|id| id.trim().to_string()));
    let id = match id {
        Some(id) => id,
        None => {
            child.kill()?;
            child.wait()?;
            bail!("the child printed no container id");
        }
    };
    // A start while its owner lives leaves it alone.
    let meanwhile = PgServer::start(&docker_choice()).await?;
    let kept = provider_containers(&format!("id={id}"))?;
    meanwhile.stop().await?;
    // SIGKILL: no drop, no watchdog; the container outlives its run.
    child.kill()?;
    child.wait()?;
    assert_eq!(kept.len(), 1, "a start removed a live run's container");
    assert_eq!(
        provider_containers(&format!("id={id}"))?.len(),
        1,
        "the killed run's container should still be there before the next start"
    );

    let next = PgServer::start(&docker_choice()).await?;
    let swept = provider_containers(&format!("id={id}"))?;
    next.stop().await?;
    assert!(swept.is_empty(), "left after the next start: {swept:?}");
    Ok(())
}

#[test]
fn ctrl_c_of_test_local_removes_its_container() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    if !rt.block_on(engine())? {
        return Ok(());
    }
    // `cargo xtask test-local --postgres docker` in its own process group, as a terminal runs it;
    // SIGINT to the group is Ctrl-C.
    let mut cmd = Command::new(xtask::cargo());
    cmd.args(["xtask", "test-local", "--postgres", "docker"])
        .current_dir(xtask::project_root());
    // As `cargo xtask` from a shell: without the variables cargo sets for this test binary.
    for name in xtask::package_env_names() {
        cmd.env_remove(name);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()?;
    let pgid = child.id();
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // "[  1.23s] postgres: docker on localhost:PORT (…)"
    let deadline = Instant::now() + Duration::from_secs(900);
    let port = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .context("test-local never said its postgres is up")?;
        eprintln!("child: {line}");
        if let Some(rest) = line.split("postgres: docker on localhost:").nth(1) {
            break rest.split_whitespace().next().unwrap_or("").to_string();
        }
    };
    let port: u16 = port.parse().with_context(|| format!("port {port}"))?;
    let id = container_on_port(port)?.context("no provider container on that port")?;
    let kill = Command::new("kill")
        .args(["-INT", "--", &format!("-{pgid}")])
        .status()?;
    assert!(kill.success());
    let status = child.wait()?;
    assert!(
        !status.success(),
        "test-local ignored Ctrl-C (or finished first)"
    );
    wait_gone(&format!("id={id}"), Duration::from_secs(30))
}

/// A variant of the offline image with what the official image and Alpine's bring instead of
/// Debian's `setpriv` and GNU `mv`: Debian's real `gosu` and `busybox` copied in, `mv` busybox's
/// (first on PATH), `setpriv` removed, so the start script can drop root only through gosu.
const VARIANT: &str = "init-fn-test/postgres-gosu-busybox:17";

/// Builds [`VARIANT`] from the offline image without a registry (`create`, `cp`, `commit`) and
/// returns its template volume's name.
fn build_variant() -> anyhow::Result<String> {
    use xtask::doctor::{BUSYBOX, GOSU};
    for tool in [GOSU, BUSYBOX] {
        if !std::path::Path::new(tool).is_file() {
            bail!(
                "{tool} is missing: the variant image copies it (Debian: apt-get install gosu \
                 busybox, or `cargo xtask doctor --fix`)"
            );
        }
    }
    remove_variant()?;
    let name = format!("init-fn-variant-build-{}", std::process::id());
    let script = "rm -f /usr/bin/setpriv /bin/setpriv && ln -s busybox /usr/local/bin/mv";
    docker(&[
        "create",
        "--name",
        &name,
        "--entrypoint",
        "/bin/sh",
        DEFAULT_IMAGE,
        "-c",
        script,
    ])?;
    let built = (|| {
        docker(&["cp", "-L", GOSU, &format!("{name}:/usr/local/bin/gosu")])?;
        docker(&[
            "cp",
            "-L",
            BUSYBOX,
            &format!("{name}:/usr/local/bin/busybox"),
        ])?;
        docker(&["start", "-a", &name])?;
        docker(&[
            "commit",
            "--change",
            r#"ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]"#,
            "--change",
            r#"CMD ["postgres"]"#,
            &name,
            VARIANT,
        ])
    })();
    docker(&["rm", "-f", &name])?;
    built?;
    template_volume_of(VARIANT)
}

/// The provider's template volume for `image` (by the id the real CLI reports).
fn template_volume_of(image: &str) -> anyhow::Result<String> {
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", image])?;
    template_volume_name(id.trim()).with_context(|| format!("image id {id:?}"))
}

/// Removes [`VARIANT`] and its template volume, if there.
fn remove_variant() -> anyhow::Result<()> {
    if let Ok(volume) = template_volume_of(VARIANT) {
        let _ = docker(&["volume", "rm", "-f", &volume]);
        docker(&["rmi", "-f", VARIANT])?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_images_gosu_and_busybox_mv_start_the_server_and_keep_the_template()
-> anyhow::Result<()> {
    if !engine().await? {
        return Ok(());
    }
    let volume = build_variant()?;
    let variant = PgChoice::Docker {
        image: VARIANT.to_string(),
    };
    let result = async {
        let tools = docker(&[
            "run",
            "--rm",
            "--entrypoint",
            "/bin/sh",
            VARIANT,
            "-c",
            r#"command -v setpriv || echo no-setpriv; command -v gosu; readlink -f "$(command -v mv)""#,
        ])?;
        assert_eq!(
            tools.trim(),
            "no-setpriv\n/usr/local/bin/gosu\n/usr/local/bin/busybox",
            "the variant must leave the script gosu and busybox's mv only"
        );

        // The first start runs initdb and keeps the template (busybox's `mv -T`); the server runs as
        // postgres (gosu).
        let first = PgServer::start(&variant).await?;
        let id = first.container_id().context("docker id")?.to_string();
        let user = docker(&["exec", &id, "stat", "-c", "%U", "/proc/1"])?;
        assert_eq!(user.trim(), "postgres", "the server's user");
        first.stop().await?;
        let kept = docker(&[
            "run",
            "--rm",
            "--entrypoint",
            "/bin/sh",
            "-v",
            &format!("{volume}:/t"),
            VARIANT,
            "-c",
            "ls -A /t; test -f /t/data/PG_VERSION && echo whole",
        ])?;
        assert_eq!(
            kept.trim(),
            "data\nwhole",
            "the template volume holds one whole cluster, no staging copy"
        );

        // The next ones copy it, each with only its own password.
        super::local_provider::each_server_takes_only_its_own_password(&variant).await
    }
    .await;
    remove_variant()?;
    result
}
