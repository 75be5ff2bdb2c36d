//! `cargo xtask logs`: reads the function's log group with FilterLogEvents (every page), groups the
//! lines by invocation and renders them (`log_view`); `--follow` polls until Ctrl-C.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use xshell::Shell;

use crate::aws::{self, Clients, Settings, SettingsArgs};
use crate::aws_error::describe;
use crate::log_view::{Event, Filter, Level, View, grouped};

/// Show the function's log lines, grouped by invocation (START … REPORT), failures marked
#[derive(clap::Args, Default)]
pub struct Logs {
    /// How far back: 30s, 30m, 1h, 2d, or a time such as 2026-12-01T10:00:00Z
    #[arg(long, default_value = "1h")]
    pub since: String,
    /// Keep printing new lines (polling every 2 s) until Ctrl-C
    #[arg(long)]
    pub follow: bool,
    /// Only this invocation (its request id, or the first characters the output shows)
    #[arg(long)]
    pub request_id: Option<String>,
    /// Only init-fn lines at this level or above (Lambda's START/END/REPORT are always shown)
    #[arg(long, value_enum)]
    pub level: Option<Level>,
    /// Print each event's message as it is stored (JSON lines stay JSON)
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

impl Logs {
    pub fn run(self, _sh: &Shell) -> anyhow::Result<()> {
        let settings = Settings::load(&self.settings)?;
        let start = since(&self.since, SystemTime::now())?;
        let filter = Filter {
            request_id: self.request_id.clone(),
            level: self.level,
        };
        aws::runtime()?.block_on(async {
            let clients = Clients::new(&settings.sdk_config().await);
            let group = group_name(&settings.function_name);
            let mut view = View::new(filter, self.json);
            let out = &mut std::io::stdout();
            if self.follow {
                let stop = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                follow(&clients, &group, start, &mut view, out, stop).await
            } else {
                show(&clients, &group, start, &mut view, out)
                    .await
                    .map(drop)
            }
        })
    }
}

/// Where Lambda writes a function's logs.
pub fn group_name(function: &str) -> String {
    format!("/aws/lambda/{function}")
}

/// `--since`: a duration back from `now` (`30s`, `30m`, `1h`, `2d`) or an RFC 3339 time; epoch ms.
pub fn since(text: &str, now: SystemTime) -> anyhow::Result<i64> {
    let now_ms = now.duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let t = text.trim();
    if let Some(unit) = t.chars().last().filter(|c| c.is_ascii_alphabetic())
        && let Ok(n) = t[..t.len() - 1].parse::<i64>()
    {
        let secs = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => bail!("--since {t:?}: the unit is s, m, h or d (30m, 1h, 2d)"),
        };
        return Ok(now_ms - n * secs * 1000);
    }
    rfc3339_ms(t).with_context(|| {
        format!("--since {t:?}: expected 30s, 30m, 1h, 2d or a time such as 2026-12-01T10:00:00Z")
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` as epoch milliseconds.
fn rfc3339_ms(t: &str) -> anyhow::Result<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        bail!("not an RFC 3339 time");
    }
    let num = |r: std::ops::Range<usize>| -> anyhow::Result<i64> {
        Ok(t.get(r).context("truncated")?.parse::<i64>()?)
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &t[19..];
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.chars().take_while(char::is_ascii_digit).count();
        ms = format!("{:0<3}", &frac[..digits.min(3)]).parse()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>()? * 60 + o[4..6].parse::<i64>()?)
        }
        _ => bail!("no time zone (Z or ±HH:MM)"),
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        bail!("a field is out of range");
    }
    let days = days_from_civil(y, mo, d);
    Ok(((days * 86_400 + h * 3600 + mi * 60 + s) - offset_min * 60) * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    // Years counted from March, so February's leap day ends the year; 146097 days = 400 years.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Every event of `group` since `start` (epoch ms), all pages; `page` caps each page (tests).
pub async fn fetch(
    c: &Clients,
    group: &str,
    start: i64,
    page: Option<i32>,
) -> anyhow::Result<Vec<Event>> {
    let mut events = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let answer = c
            .logs
            .filter_log_events()
            .log_group_name(group)
            .start_time(start)
            .set_limit(page)
            .set_next_token(token.clone())
            .send()
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                bail!(
                    "logs: there is no log group {group}: the function was never deployed \
                     (`cargo xtask deploy`), or was deployed without one and never invoked"
                )
            }
            Err(e) => bail!(
                "logs: read {group} (logs FilterLogEvents): {}",
                describe(&e)
            ),
        };
        events.extend(answer.events().iter().map(|e| Event {
            id: e.event_id().unwrap_or_default().to_string(),
            timestamp: e.timestamp().unwrap_or_default(),
            stream: e.log_stream_name().unwrap_or_default().to_string(),
            message: e.message().unwrap_or_default().to_string(),
        }));
        // The same token back means the last page (CloudWatch may answer one page past the end).
        match answer.next_token() {
            Some(next) if token.as_deref() != Some(next) && !answer.events().is_empty() => {
                token = Some(next.to_string());
            }
            _ => return Ok(events),
        }
    }
}

/// Prints every event since `start`, grouped by invocation; returns how many lines were printed.
pub async fn show(
    c: &Clients,
    group: &str,
    start: i64,
    view: &mut View,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<usize> {
    let events = grouped(fetch(c, group, start, None).await?);
    let mut printed = 0;
    for e in &events {
        for line in view.event(e) {
            writeln!(out, "{line}")?;
            printed += 1;
        }
    }
    if printed == 0 {
        writeln!(
            out,
            "no log lines in {group} in the --since window ({} events read, none shown)",
            events.len()
        )?;
    }
    Ok(printed)
}

/// Prints the events since `start`, then new ones every poll interval (each once, by event id),
/// until `stop` resolves (Ctrl-C): then returns Ok.
pub async fn follow(
    c: &Clients,
    group: &str,
    mut start: i64,
    view: &mut View,
    out: &mut dyn std::io::Write,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(stop);
    // Ids already printed, with their time: the next poll starts at the newest, which may repeat it.
    let mut seen: HashMap<String, i64> = HashMap::new();
    loop {
        let events = grouped(fetch(c, group, start, None).await?);
        for e in events {
            if seen.contains_key(&e.id) {
                continue;
            }
            start = start.max(e.timestamp);
            for line in view.event(&e) {
                writeln!(out, "{line}")?;
            }
            seen.insert(e.id, e.timestamp);
        }
        out.flush()?;
        seen.retain(|_, t| *t >= start);
        tokio::select! {
            () = tokio::time::sleep(c.policy.poll.max(Duration::from_millis(100))) => {}
            () = &mut stop => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_119_200);
        let now_ms = 1_796_119_200_000;
        assert_eq!(since("30m", now).unwrap(), now_ms - 1_800_000);
        assert_eq!(since("1h", now).unwrap(), now_ms - 3_600_000);
        assert_eq!(since("2d", now).unwrap(), now_ms - 172_800_000);
        assert_eq!(since("2026-12-01T10:00:00Z", now).unwrap(), now_ms);
        assert_eq!(
            since("2026-12-01T11:00:00.5+01:00", now).unwrap(),
            now_ms + 500
        );
        assert_eq!(since("1970-01-01T00:00:00Z", now).unwrap(), 0);
        assert_eq!(since("2000-03-01T00:00:00Z", now).unwrap(), 951_868_800_000);
        for bad in [
            "1w",
            "yesterday",
            "2026-12-01T10:00:00",
            "2026-13-01T10:00:00Z",
        ] {
            let err = format!("{:#}", since(bad, now).unwrap_err());
            assert!(err.contains("--since"), "{err}");
        }
    }
}
