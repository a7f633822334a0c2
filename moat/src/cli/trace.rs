//! `moat trace --network`: the requests a run made through the proxy.

use clap::Args;

use super::runs::{clock_millis, print_json, resolve, shorten, store};
use super::{CliError, CliResult, Context};
use crate::run::network::{self, NetworkRecord};

const HELP: &str = "\
One line per request: [HH:MM:SS.mmm] METHOD URL STATUS (Nms), with ERR and the
reason for a request that failed or was refused. With -v, the headers (those
moat injected show [REDACTED]; the proxy never logs a credential) and the bodies
the proxy kept (text types only, up to 8 KiB), cut to 500 characters here.

RUN is a run id, an id prefix (run_3f), or a name; without it, the newest run.
--network is the only kind of trace today, so it is also the default. -v (moat's
global flag) also turns on debug logging on stderr.

Examples:
  moat trace --network
  moat trace my-agent --network -v
  moat trace --network --json | jq '.[] | select(.status_code >= 400)'";

/// How much of a body or header value `-v` shows.
const SHOWN: usize = 500;

#[derive(Debug, Args)]
#[command(after_help = HELP)]
pub struct TraceArgs {
    /// The run: id, id prefix, or name [default: the newest run].
    #[arg(value_name = "RUN")]
    run: Option<String>,

    /// Show the network requests (the default).
    #[arg(long)]
    network: bool,

    /// Print the requests as a JSON array (headers and bodies included).
    #[arg(long)]
    json: bool,
    // `-v` (headers and bodies) is moat's global --verbose flag.
}

/// `verbose`: `-v` was given, show headers and bodies.
pub fn run(context: &Context, args: TraceArgs, verbose: bool) -> CliResult {
    let meta = resolve(context, args.run.as_deref())?;
    let path = store(context).paths(&meta.id).network;
    let log = network::read(&path)
        .map_err(|err| CliError::new(format!("cannot read {}: {err}", path.display())))?;
    if log.skipped > 0 {
        tracing::warn!(
            skipped = log.skipped,
            "some lines of {} could not be read",
            path.display()
        );
    }
    if args.json {
        return print_json(&log.records);
    }
    if log.records.is_empty() {
        println!(
            "No network requests recorded for run {} ({})",
            meta.id, meta.name
        );
        return Ok(());
    }
    for record in &log.records {
        println!("{}", line(record));
        if verbose {
            print!("{}", details(record));
        }
    }
    Ok(())
}

/// `[HH:MM:SS.mmm] METHOD URL STATUS (Nms)`, `… ERR (Nms): why` on failure.
fn line(record: &NetworkRecord) -> String {
    let status = match (&record.error, record.status_code) {
        (Some(_), 0) => "ERR".to_string(),
        (Some(_), code) => format!("{code} ERR"),
        (None, code) => code.to_string(),
    };
    let mut line = format!(
        "[{}] {} {} {} ({})",
        clock_millis(record.ts),
        record.method,
        record.url,
        status,
        duration(record.duration_ms)
    );
    if let Some(error) = &record.error {
        line.push_str(": ");
        line.push_str(&shorten(error, SHOWN));
    }
    line
}

fn duration(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.0}ms")
    }
}

/// Headers (sorted), then bodies, indented.
fn details(record: &NetworkRecord) -> String {
    let mut out = String::new();
    for (name, value) in &record.req_headers {
        out.push_str(&format!("    > {name}: {}\n", shorten(value, SHOWN)));
    }
    for (name, value) in &record.resp_headers {
        out.push_str(&format!("    < {name}: {}\n", shorten(value, SHOWN)));
    }
    for (label, body) in [
        ("request body", &record.req_body),
        ("response body", &record.resp_body),
    ] {
        if let Some(body) = body {
            out.push_str(&format!("    {label}: {}\n", shorten(body, SHOWN)));
        }
    }
    if record.truncated {
        out.push_str("    [Body truncated to 8KB in storage]\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: &str) -> NetworkRecord {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn lines_show_status_or_error_and_duration() {
        let ok = record(
            r#"{"ts":"2026-05-01T12:00:00.123Z","method":"GET","url":"https://h/x","status_code":200,"duration_ms":41.2,"req_headers":{"b":"2","a":"1"},"resp_headers":{"c":"3"},"resp_body":"hi","truncated":true}"#,
        );
        let shown = line(&ok);
        assert!(shown.ends_with("] GET https://h/x 200 (41ms)"), "{shown}");
        assert_eq!(
            details(&ok),
            "    > a: 1\n    > b: 2\n    < c: 3\n    response body: hi\n    [Body truncated to 8KB in storage]\n"
        );
        let refused = record(
            r#"{"ts":"2026-05-01T12:00:00.123Z","method":"CONNECT","url":"https://x:443","status_code":407,"duration_ms":0.04,"error":"not allowed"}"#,
        );
        assert!(
            line(&refused).ends_with("CONNECT https://x:443 407 ERR (0.0ms): not allowed"),
            "{}",
            line(&refused)
        );
        let failed = record(
            r#"{"ts":"2026-05-01T12:00:00.123Z","method":"GET","url":"https://x/","status_code":0,"duration_ms":3.26,"error":"dns"}"#,
        );
        assert!(
            line(&failed).ends_with("GET https://x/ ERR (3.3ms): dns"),
            "{}",
            line(&failed)
        );
        assert_eq!(shorten(&"é".repeat(600), SHOWN).chars().count(), SHOWN + 1);
    }
}
