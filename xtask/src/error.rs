//! How a failed command reads: `error: a: b: c`, one line, the `Display` of each cause once, exit 1.
//! anyhow's default (`Error: …` plus `Caused by:` and a Debug rendering) is for programmers.

use std::process::ExitCode;

/// The error and its causes in plain words, `a: b: c`: each source's `Display` in turn, skipping a
/// cause whose text the line already holds (wrappers that print their source, SDK errors).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut next = Some(err);
    while let Some(err) = next {
        let text = err
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !text.is_empty() && !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        next = err.source();
    }
    line
}

/// The exit of a command's `main`: success, or `error: <chain>` on stderr and exit code 1.
pub fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", chain(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn context_layers_and_sources_read_as_one_line() {
        let io = std::io::Error::other("connection refused");
        let err = Err::<(), _>(io)
            .context("docker: inspect postgres:17")
            .context("test: setup")
            .unwrap_err();
        assert_eq!(
            chain(err.as_ref()),
            "test: setup: docker: inspect postgres:17: connection refused"
        );
    }

    #[test]
    fn a_cause_already_in_the_line_is_not_repeated() {
        let io = std::io::Error::other("no such file");
        let err = anyhow::Error::new(io)
            .context("read sql/0001.sql: no such file")
            .context("lint");
        assert_eq!(chain(err.as_ref()), "lint: read sql/0001.sql: no such file");
    }
}
