//! The database session. Its submodules: the TLS connector per `DB_SSLMODE` (`tls`) and the
//! password from Secrets Manager (`secret`). May use `config`, `error`; nothing above it.
//!
//! Opens the one database session a run uses: TLS per `DB_SSLMODE`, a bounded connect, errors
//! sorted into `Connect`, `Tls` and `Auth`, and a session the server abandons (locks released) soon
//! after the function dies: keepalives both ways and `client_connection_check_interval`.

pub mod iam;
pub mod secret;
pub mod tls;

use std::{
    error::Error as _,
    sync::{Arc, Mutex, Once},
    time::Duration,
};

use tokio_postgres::{AsyncMessage, CancelToken, Client, config::SslMode as PgSslMode};

use crate::{
    config::SslMode,
    error::{InitError, one_line},
    session::secret::Password,
    session::tls::{MakeTlsConnector, TlsError},
};

/// Where and how to connect, after the secret has filled what the environment left unset.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Password,
    pub sslmode: SslMode,
    pub connect_timeout: Duration,
}

/// A notice the server sent on the session (`relation "x" already exists, skipping`, SQLSTATE 42P07).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub code: String,
    pub message: String,
}

/// The session's notices in arrival order, collected by its connection task. The task handles a
/// notice before the replies that follow it, so a statement's notices are here once it returns.
#[derive(Debug, Clone, Default)]
pub struct Notices(Arc<Mutex<Vec<Notice>>>);

impl Notices {
    fn push(&self, notice: Notice) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(notice);
    }

    /// The notices since the last call.
    pub fn take(&self) -> Vec<Notice> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Connects and spawns the connection task; the session ends when the returned client drops.
pub async fn connect(
    target: &Target,
    tls: MakeTlsConnector,
) -> Result<(Client, Notices), InitError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&target.host)
        .port(target.port)
        .dbname(&target.dbname)
        .user(&target.user)
        .password(target.password.expose())
        .application_name("init-fn")
        .connect_timeout(target.connect_timeout)
        // A silently lost network (no FIN, no RST) ends the client side instead of hanging.
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3)
        .ssl_mode(match target.sslmode {
            SslMode::Disable => PgSslMode::Disable,
            _ => PgSslMode::Require,
        });
    let where_ = format!("{}:{}/{}", target.host, target.port, target.dbname);
    // The driver's own timeout covers each address; this bounds DNS and the whole handshake too.
    let attempt = tokio::time::timeout(target.connect_timeout, config.connect(tls)).await;
    let (client, mut connection) = match attempt {
        Err(_) => {
            return Err(InitError::Connect(format!(
                "{where_}: no answer within {} s (DB_CONNECT_TIMEOUT_S); check the security groups and the host",
                target.connect_timeout.as_secs()
            )));
        }
        Ok(Err(err)) => return Err(classify(&where_, target, &err)),
        Ok(Ok(pair)) => pair,
    };
    let notices = Notices::default();
    let sink = notices.clone();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notice(n))) => sink.push(Notice {
                    code: n.code().code().to_string(),
                    message: n.message().to_string(),
                }),
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    tracing::warn!(error = %one_line(&err.to_string()), "database connection closed with an error");
                    break;
                }
                None => break,
            }
        }
    });
    watch_for_client_death(&client).await.map_err(|e| {
        InitError::Connect(one_line(&format!("{where_}: preparing the session: {e}")))
    })?;
    Ok((client, notices))
}

/// The settings that make the server notice a dead client (keepalives; the connection check from 14 on), as
/// a select list: set at connect, and again by the engine after each migration's `RESET ALL`.
pub const CLIENT_DEATH_SETTINGS: &str = "CASE WHEN current_setting('server_version_num')::int >= 140000 \
     THEN set_config('client_connection_check_interval', '1000', false) END, \
     set_config('tcp_keepalives_idle', '10', false), set_config('tcp_keepalives_interval', '2', false), \
     set_config('tcp_keepalives_count', '3', false)";

/// First server version with `client_connection_check_interval`.
const CONNECTION_CHECK_SINCE: i32 = 140000;

/// Makes the server abort this session's work within about a second once the function's process is
/// gone (its socket closed), and probe a silent client with keepalives, so no lock outlives the function.
async fn watch_for_client_death(client: &Client) -> Result<(), tokio_postgres::Error> {
    let row = client
        .query_one(
            &format!("SELECT current_setting('server_version_num')::int, {CLIENT_DEATH_SETTINGS}"),
            &[],
        )
        .await?;
    let version: i32 = row.get(0);
    if version < CONNECTION_CHECK_SINCE {
        static OLD_SERVER: Once = Once::new();
        OLD_SERVER.call_once(|| {
            tracing::warn!(
                server_version_num = version,
                "server older than PostgreSQL 14: no client_connection_check_interval, so a killed function's \
                 statement runs to its end before its locks are released (keepalives still apply)"
            );
        });
    }
    Ok(())
}

/// Sends a cancel request for the session's running statement, over the same TLS settings.
#[derive(Clone)]
pub struct Canceller {
    token: CancelToken,
    tls: MakeTlsConnector,
}

impl std::fmt::Debug for Canceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Canceller")
    }
}

impl Canceller {
    pub fn new(client: &Client, tls: MakeTlsConnector) -> Canceller {
        Canceller {
            token: client.cancel_token(),
            tls,
        }
    }

    /// `true` when the server took the request within `within`.
    pub async fn cancel(&self, within: Duration) -> bool {
        match tokio::time::timeout(within, self.token.cancel_query(self.tls.clone())).await {
            Ok(Ok(())) => true,
            Ok(Err(err)) => {
                tracing::warn!(error = %one_line(&err.to_string()), "cancel request failed");
                false
            }
            Err(_) => {
                tracing::warn!("cancel request got no answer in time");
                false
            }
        }
    }
}

/// A failure of the session rather than of the SQL: connection exceptions (class 08), the server
/// shutting down or terminating the backend (57P01-57P03, 57P05), I/O errors, a closed connection.
/// The right move is to retry, never to edit the migration.
pub fn is_connection_level(err: &tokio_postgres::Error) -> bool {
    match err.as_db_error() {
        // The one SQLSTATE table (`error::class_of`, the README's error table).
        Some(db) => crate::error::class_of(db.code().code()) == crate::error::ServerClass::Connect,
        // Every non-server error of an established session is I/O, a closed socket or a broken protocol.
        None => true,
    }
}

/// Sorts a connect failure into `Auth`, `Tls` or `Connect` with a one-line reason.
fn classify(where_: &str, target: &Target, err: &tokio_postgres::Error) -> InitError {
    let user = &target.user;
    if let Some(db) = err.as_db_error() {
        let code = db.code().code();
        let message = one_line(db.message());
        // The one SQLSTATE table (`error::class_of`): class 28 and 42501 are the user or its rights;
        // any other refusal of a connection is retryable.
        if crate::error::class_of(code) == crate::error::ServerClass::Auth {
            // pg_hba.conf admits this client over TLS only (`hostssl`): the fix is DB_SSLMODE, not the password.
            if target.sslmode == SslMode::Disable
                && (message.contains("no encryption") || message.contains("SSL off"))
            {
                return InitError::Tls(format!(
                    "{where_}: {message} (SQLSTATE {code}): the server takes this connection over TLS only; \
                     set DB_SSLMODE=verify-full"
                ));
            }
            return InitError::Auth(format!(
                "{where_}: user {user}: {message} (SQLSTATE {code})"
            ));
        }
        return InitError::Connect(format!("{where_}: {message} (SQLSTATE {code})"));
    }
    let mut chain = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        // The handshake's own words already name the verdict and the roots: nothing to add.
        if let Some(tls) = s.downcast_ref::<TlsError>() {
            return InitError::Tls(format!("{where_}: {tls}"));
        }
        chain.push(s.to_string());
        source = s.source();
    }
    chain.dedup();
    let text = one_line(&chain.join(": "));
    let lower = text.to_lowercase();
    if lower.contains("tls") || lower.contains("ssl") || lower.contains("certificate") {
        InitError::Tls(format!("{where_}: {text}"))
    } else {
        InitError::Connect(format!("{where_}: {text}"))
    }
}
