//! A PostgreSQL that checks RDS IAM tokens the way RDS does, without AWS: a local cluster whose
//! `pg_hba.conf` sends `init_fn_migrator` to PAM, and a PAM service whose `pam_exec` (with
//! `expose_authtok`) runs a verifier that recomputes the token's SigV4 signature with the test
//! credentials and checks its user, host and port, region, service and age. The verifier writes one
//! verdict line per login (`accepted: ...` / `refused: REASON`), so a test sees why a token failed.
//! The tests (`tests::rds_iam`) and `cargo xtask bench --auth iam` both use it. Local cluster only:
//! it needs root (a service file in `/etc/pam.d`) and `pam_exec`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::local::postgres::{PgChoice, PgServer};
use crate::local::secrets_manager::SecretsManager;
use crate::test_local::{SECRET_ID, function_env};

/// The login role the token-checking rule covers (the function's default in `DB_AUTH=iam`).
pub const MIGRATOR: &str = "init_fn_migrator";
/// The region the tokens are signed for.
pub const REGION: &str = "eu-west-3";
/// The test credentials: what the local runtimes give the bootstrap (`bootstrap::lambda_env`).
pub const ACCESS_KEY_ID: &str = "AKIDLOCALEMULATOR";
pub const SECRET_ACCESS_KEY: &str = "local-emulator-secret";
pub const SESSION_TOKEN: &str = "local-emulator-session";
/// The interpreter `pam_exec` runs the verifier with.
const PYTHON: &str = "/usr/bin/python3";

/// The opt-in setup that creates the migration role (run as the master user).
pub fn setup_sql() -> anyhow::Result<String> {
    let path = crate::project_root().join("init-fn/setup/iam-migrator-role.sql");
    std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
}

/// What this machine must give the token-checking server, each missing piece one line in words.
pub fn check_host() -> anyhow::Result<()> {
    let uid = effective_uid()
        .context("token-checking server: read the effective uid from /proc/self/status")?;
    if uid != 0 {
        bail!(
            "token-checking server: needs root to install its PAM service in /etc/pam.d (running as uid {uid})"
        );
    }
    if !pam_exec_installed() {
        bail!("token-checking server: pam_exec.so is not installed (Debian: libpam-modules)");
    }
    if !Path::new(PYTHON).exists() {
        bail!(
            "token-checking server: {PYTHON} is missing (it runs the token verifier; Debian: python3)"
        );
    }
    Ok(())
}

/// The second field of `Uid:` in `/proc/self/status`.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

/// `security/pam_exec.so` under one of the library directories (or one multiarch level below).
fn pam_exec_installed() -> bool {
    ["/lib", "/usr/lib", "/lib64", "/usr/lib64"]
        .iter()
        .any(|base| {
            let base = Path::new(base);
            base.join("security/pam_exec.so").exists()
                || std::fs::read_dir(base)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|entry| entry.path().join("security/pam_exec.so").exists())
        })
}

/// The verifier `pam_exec` runs: python3's standard library only. argv[1] is its JSON settings;
/// the token arrives on stdin (NUL-terminated), the user in PAM_USER. Exit 0 accepts.
pub const VERIFIER: &str = r#"
import datetime, hashlib, hmac, json, os, sys, urllib.parse

cfg = json.load(open(sys.argv[1]))

def verdict(ok, why):
    with open(cfg["log"], "a") as log:
        log.write(("accepted: " if ok else "refused: ") + why + "\n")
    sys.exit(0 if ok else 1)

try:
    token = sys.stdin.buffer.read().split(b"\0")[0].decode("ascii").strip()
    user = os.environ.get("PAM_USER", "")
    where, sep, query = token.partition("/?")
    if not sep:
        verdict(False, "not a presigned URL")
    if where != "%s:%d" % (cfg["host"], cfg["port"]):
        verdict(False, "token for another host or port")
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    p = dict(pairs)
    if p.get("Action") != "connect":
        verdict(False, "not a connect token")
    if p.get("DBUser") != user:
        verdict(False, "token for another user")
    if p.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" or p.get("X-Amz-SignedHeaders") != "host":
        verdict(False, "not SigV4 over the host header")
    key_id, day, region, service, term = p["X-Amz-Credential"].split("/")
    if key_id != cfg["access_key_id"]:
        verdict(False, "unknown access key")
    if region != cfg["region"]:
        verdict(False, "signed for another region")
    if service != "rds-db" or term != "aws4_request":
        verdict(False, "signed for another service")
    if p.get("X-Amz-Security-Token", "") != cfg["session_token"]:
        verdict(False, "wrong session token")
    stamp = p["X-Amz-Date"]
    signed = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    if not stamp.startswith(day):
        verdict(False, "date and credential scope disagree")
    expires = int(p["X-Amz-Expires"])
    if expires > 900:
        verdict(False, "valid for more than 15 minutes")
    now = datetime.datetime.now(datetime.timezone.utc)
    if now > signed + datetime.timedelta(seconds=expires):
        verdict(False, "expired")
    if signed > now + datetime.timedelta(minutes=5):
        verdict(False, "signed in the future")
    enc = lambda s: urllib.parse.quote(s, safe="-_.~")
    canonical_query = "&".join(
        "%s=%s" % (enc(k), enc(v)) for k, v in sorted(pairs) if k != "X-Amz-Signature")
    canonical = "\n".join(["GET", "/", canonical_query, "host:" + where, "", "host",
                           hashlib.sha256(b"").hexdigest()])
    scope = "/".join([day, region, service, term])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    mac = lambda key, msg: hmac.new(key, msg.encode(), hashlib.sha256).digest()
    key = mac(mac(mac(mac(("AWS4" + cfg["secret_access_key"]).encode(), day), region), service), term)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, p.get("X-Amz-Signature", "")):
        verdict(False, "bad signature")
    verdict(True, "token for %s at %s" % (user, where))
except SystemExit:
    raise
except Exception as e:
    verdict(False, "malformed token (%s)" % type(e).__name__)
"#;

/// A second, independent signer in python's standard library, for clients that cannot sign (the
/// `psql` floor of `bench --auth iam`): argv[1] is the verifier's settings, argv[2] the user; the
/// token goes to stdout. The function's tokens come from its own signer, never from this one.
const SIGNER: &str = r#"
import datetime, hashlib, hmac, json, sys, urllib.parse

cfg = json.load(open(sys.argv[1]))
user = sys.argv[2]
stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
day = stamp[:8]
where = "%s:%d" % (cfg["host"], cfg["port"])
scope = "/".join([day, cfg["region"], "rds-db", "aws4_request"])
params = {
    "Action": "connect", "DBUser": user, "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
    "X-Amz-Credential": cfg["access_key_id"] + "/" + scope, "X-Amz-Date": stamp,
    "X-Amz-Expires": "900", "X-Amz-Security-Token": cfg["session_token"],
    "X-Amz-SignedHeaders": "host",
}
enc = lambda s: urllib.parse.quote(s, safe="-_.~")
query = "&".join("%s=%s" % (enc(k), enc(v)) for k, v in sorted(params.items()))
canonical = "\n".join(["GET", "/", query, "host:" + where, "", "host",
                       hashlib.sha256(b"").hexdigest()])
to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                     hashlib.sha256(canonical.encode()).hexdigest()])
mac = lambda key, msg: hmac.new(key, msg.encode(), hashlib.sha256).digest()
key = mac(mac(mac(mac(("AWS4" + cfg["secret_access_key"]).encode(), day), cfg["region"]),
                  "rds-db"), "aws4_request")
signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
sys.stdout.write("%s/?%s&X-Amz-Signature=%s" % (where, query, signature))
"#;

/// A local cluster that checks IAM tokens for [`MIGRATOR`]; `rds_iam` exists (NOLOGIN) as on RDS.
/// Dropping it removes the PAM service file; [`TokenCheckingServer::stop`] stops the cluster.
pub struct TokenCheckingServer {
    pub pg: PgServer,
    dir: tempfile::TempDir,
    _pam: PamService,
}

/// The installed PAM service file, removed on drop.
struct PamService(PathBuf);

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl TokenCheckingServer {
    /// Checks the host ([`check_host`]), starts a local cluster with TLS and installs the rule.
    pub async fn start() -> anyhow::Result<TokenCheckingServer> {
        check_host()?;
        let pg = PgServer::start(&PgChoice::Local).await?;
        pg.create_database("documents_db").await?;
        let admin = pg.client("postgres").await?;
        admin
            .batch_execute("CREATE ROLE rds_iam NOLOGIN")
            .await
            .context("create the rds_iam stand-in")?;

        let dir = tempfile::Builder::new().prefix("init-fn-iam-").tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let verifier = dir.path().join("verify.py");
        let settings = dir.path().join("settings.json");
        let log = dir.path().join("verdicts.log");
        std::fs::write(&verifier, VERIFIER)?;
        std::fs::write(
            &settings,
            serde_json::json!({
                "host": pg.host(), "port": pg.port(), "region": REGION,
                "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET_ACCESS_KEY,
                "session_token": SESSION_TOKEN, "log": log,
            })
            .to_string(),
        )?;
        std::fs::write(&log, "")?;
        for (path, mode) in [(&verifier, 0o755), (&settings, 0o644), (&log, 0o666)] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }

        // One service per server: tests in one binary run side by side.
        let service = format!("init-fn-iam-{}", pg.port());
        let pam_file = PathBuf::from("/etc/pam.d").join(&service);
        std::fs::write(
            &pam_file,
            format!(
                "# init-fn test: RDS IAM token check (removed when the test ends)\n\
                 auth required pam_exec.so expose_authtok quiet {PYTHON} {} {}\n\
                 account required pam_permit.so\n",
                verifier.display(),
                settings.display()
            ),
        )
        .with_context(|| format!("install {} (needs root)", pam_file.display()))?;
        let server = TokenCheckingServer {
            pg,
            dir,
            _pam: PamService(pam_file),
        };

        let hba: String = admin
            .query_one("SELECT current_setting('hba_file')", &[])
            .await?
            .get(0);
        let rules = std::fs::read_to_string(&hba).with_context(|| format!("read {hba}"))?;
        std::fs::write(
            &hba,
            format!("hostssl all {MIGRATOR} 127.0.0.1/32 pam pamservice={service}\n{rules}"),
        )?;
        admin.batch_execute("SELECT pg_reload_conf()").await?;
        let bad: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL",
                &[],
            )
            .await?
            .get(0);
        anyhow::ensure!(bad == 0, "pg_hba.conf has {bad} bad rules");
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(server)
    }

    /// Runs the opt-in setup in `db` as the master user.
    pub async fn setup_migrator(&self, db: &str) -> anyhow::Result<()> {
        self.pg
            .client(db)
            .await?
            .batch_execute(&setup_sql()?)
            .await
            .with_context(|| format!("iam-migrator-role.sql in {db}"))
    }

    /// The verifier's verdicts so far, one per login attempt.
    pub fn verdicts(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("verdicts.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The variables of a `DB_AUTH=iam` function on `db` of this server, logging in as
    /// [`MIGRATOR`]: test-local's, less the secret. The Secrets Manager endpoint stays set (and
    /// counted by `secrets`): iam mode must never call it.
    pub fn iam_env(&self, secrets: &SecretsManager, db: &str) -> Vec<(String, String)> {
        let mut env = function_env(&self.pg, secrets, db, SECRET_ID);
        env.retain(|(k, _)| k != "DB_SECRET_ID" && k != "DB_USER");
        env.push(("DB_AUTH".into(), "iam".into()));
        env.push(("DB_USER".into(), MIGRATOR.into()));
        env
    }

    /// The same function in `DB_AUTH=secret` (the default) as the master user; seeds `secrets`
    /// with the master password under test-local's `SECRET_ID`.
    pub fn secret_env(&self, secrets: &SecretsManager, db: &str) -> Vec<(String, String)> {
        secrets.put(SECRET_ID, self.pg.password());
        function_env(&self.pg, secrets, db, SECRET_ID)
    }

    /// A token for `user` from python's signer ([`SIGNER`]), for `psql`'s `PGPASSWORD`.
    pub async fn python_token(&self, user: &str) -> anyhow::Result<String> {
        let out = tokio::process::Command::new(PYTHON)
            .args(["-c", SIGNER])
            .arg(self.dir.path().join("settings.json"))
            .arg(user)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .context("run the python token signer")?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            let last = why.lines().last().unwrap_or("no output");
            bail!("the python token signer failed ({}): {last}", out.status);
        }
        String::from_utf8(out.stdout).context("the python token signer wrote non-UTF-8")
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        let TokenCheckingServer { pg, dir, _pam } = self;
        drop((dir, _pam));
        pg.stop().await
    }
}
