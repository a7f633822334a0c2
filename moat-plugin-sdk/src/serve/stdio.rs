//! The process around the loop: the `--moat-plugin` check, logging to stderr, and taking the
//! real stdin/stdout away from provider code.

#![cfg_attr(
    unix,
    expect(unsafe_code, reason = "fcntl(2), dup2(2): guarding stdout")
)]

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::ProviderInfo;
use crate::protocol::{EXECUTABLE_PREFIX, LOG_ENV, LOG_LEVELS, PLUGIN_FLAG};

/// Log targets that are never enabled, because they would print secrets.
const SILENCED: &str = "jsonrpsee=off";

/// True when the process was started by moat (`--moat-plugin` among the arguments).
pub(crate) fn started_by_moat(args: impl IntoIterator<Item = OsString>) -> bool {
    args.into_iter().skip(1).any(|arg| arg == PLUGIN_FLAG)
}

/// What a person running the binary by hand reads.
pub(crate) fn explanation(argv0: Option<&OsString>, info: &ProviderInfo) -> String {
    let exe = argv0
        .and_then(|a| Path::new(a).file_name())
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("{EXECUTABLE_PREFIX}{}", info.name));
    format!(
        "{exe} is a moat provider plugin ({name}: {description}); moat runs it.\n\
         Try: moat grant {name}\n\
         (moat starts it with {PLUGIN_FLAG} and speaks JSON-RPC on its stdin/stdout.)\n",
        name = info.name,
        description = info.description,
    )
}

/// The filter directives for the plugin's log: the protocol's level in `MOAT_PLUGIN_LOG` (`error`
/// ... `trace`, any case); else, for Rust developers, `RUST_LOG` in `EnvFilter` syntax; else
/// `info`. A `MOAT_PLUGIN_LOG` that is not a level is read as `EnvFilter` directives too (an SDK
/// extension, not part of the protocol).
pub(crate) fn log_directives(plugin_log: Option<&str>, rust_log: Option<&str>) -> String {
    fn set(value: Option<&str>) -> Option<&str> {
        value.map(str::trim).filter(|v| !v.is_empty())
    }
    match (set(plugin_log), set(rust_log)) {
        (Some(level), _) => {
            let lower = level.to_ascii_lowercase();
            if LOG_LEVELS.contains(&lower.as_str()) {
                lower
            } else {
                level.to_string()
            }
        }
        (None, Some(directives)) => directives.to_string(),
        (None, None) => "info".to_string(),
    }
}

/// Installs a `tracing` subscriber writing JSON lines to stderr (`{"timestamp", "level",
/// "message", "target", ...}`), filtered as [`log_directives`] says. Does nothing when a global
/// subscriber is already set.
pub(crate) fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let var = |name: &str| std::env::var(name).ok();
    let directives = log_directives(var(LOG_ENV).as_deref(), var("RUST_LOG").as_deref());
    // jsonrpsee logs whole requests and responses at trace level, credentials included: it is
    // silenced whatever the user asked for.
    let directives: Vec<&str> = directives
        .split(',')
        .filter(|d| !d.trim_start().starts_with("jsonrpsee"))
        .chain([SILENCED])
        .collect();
    let filter = EnvFilter::try_new(directives.join(","))
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{SILENCED}")));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_ansi(false)
        .with_writer(io::stderr)
        .with_env_filter(filter)
        .try_init();
}

/// The protocol's own stdin and stdout, taken away from the rest of the process.
pub(crate) struct ProtocolStdio {
    pub(crate) input: File,
    pub(crate) output: File,
}

/// On Unix: duplicates fds 0 and 1 (close-on-exec, so children the provider spawns cannot hold
/// the protocol pipes open), then points fd 1 at stderr and fd 0 at `/dev/null`. A stray
/// `println!` in provider code, or a child process writing to its stdout, lands on stderr; a
/// child reading stdin reads nothing instead of protocol bytes.
#[cfg(unix)]
pub(crate) fn take_stdio() -> io::Result<ProtocolStdio> {
    use std::os::fd::{AsRawFd, FromRawFd};

    io::stdout().flush()?;
    let dup_cloexec = |fd: i32| -> io::Result<File> {
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor we do not own only creates a new
        // one; the returned descriptor is fresh and owned by the File from here on.
        let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if new < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `new` is a valid descriptor nothing else owns.
        Ok(unsafe { File::from_raw_fd(new) })
    };
    let input = dup_cloexec(libc::STDIN_FILENO)?;
    let output = dup_cloexec(libc::STDOUT_FILENO)?;
    // SAFETY: dup2 onto the standard descriptors; std's handles keep working, now on stderr
    // (fd 1) and /dev/null (fd 0).
    if unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let null = File::open("/dev/null")?;
    // SAFETY: dup2 of a descriptor we own onto fd 0; `null` is closed afterwards, fd 0 stays.
    if unsafe { libc::dup2(null.as_raw_fd(), libc::STDIN_FILENO) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ProtocolStdio { input, output })
}

/// Elsewhere the process's stdio is used as is: provider code must not print to stdout.
#[cfg(not(unix))]
pub(crate) fn take_stdio() -> io::Result<ProtocolStdio> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "no descriptor guard on this platform",
    ))
}

/// Boxed async halves.
pub(crate) type Reader = Pin<Box<dyn AsyncRead + Send>>;
/// Boxed async halves.
pub(crate) type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// Async handles on the protocol descriptors: epoll-driven when they are pipes (the normal
/// case), tokio's blocking-pool files otherwise (a file or a terminal when testing by hand).
/// Must run inside the runtime.
#[cfg(unix)]
pub(crate) fn async_stdio(stdio: ProtocolStdio) -> io::Result<(Reader, Writer)> {
    use tokio::net::unix::pipe;

    let reader: Reader = match is_fifo(&stdio.input) {
        true => Box::pin(pipe::Receiver::from_file(stdio.input)?),
        false => Box::pin(tokio::fs::File::from_std(stdio.input)),
    };
    let writer: Writer = match is_fifo(&stdio.output) {
        true => Box::pin(pipe::Sender::from_file(stdio.output)?),
        false => Box::pin(tokio::fs::File::from_std(stdio.output)),
    };
    Ok((reader, writer))
}

#[cfg(unix)]
fn is_fifo(file: &File) -> bool {
    use std::os::unix::fs::FileTypeExt;
    file.metadata().is_ok_and(|m| m.file_type().is_fifo())
}

/// The process's own stdin and stdout.
#[cfg(not(unix))]
pub(crate) fn async_stdio(_: ProtocolStdio) -> io::Result<(Reader, Writer)> {
    Ok((Box::pin(tokio::io::stdin()), Box::pin(tokio::io::stdout())))
}

/// The process's own stdin and stdout, when the guard could not be set up.
pub(crate) fn plain_stdio() -> (Reader, Writer) {
    (Box::pin(tokio::io::stdin()), Box::pin(tokio::io::stdout()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_level_is_the_protocols_then_rust_log_then_info() {
        assert_eq!(log_directives(Some("DEBUG"), Some("trace")), "debug");
        assert_eq!(log_directives(Some(" warn "), None), "warn");
        assert_eq!(log_directives(Some(""), Some("foo=trace")), "foo=trace");
        assert_eq!(log_directives(None, None), "info");
        // An EnvFilter in MOAT_PLUGIN_LOG still works in Rust plugins (not part of the protocol).
        assert_eq!(
            log_directives(Some("my_plugin=trace"), None),
            "my_plugin=trace"
        );
    }

    #[test]
    fn the_flag_is_looked_for_after_argv0() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(started_by_moat(args(&["moat-provider-x", "--moat-plugin"])));
        assert!(!started_by_moat(args(&["moat-provider-x"])));
        assert!(!started_by_moat(args(&["--moat-plugin"])));
        assert!(!started_by_moat(args(&["x", "--moat-plugin=1"])));
    }

    #[test]
    fn the_explanation_names_the_command_to_run() {
        let info = ProviderInfo::new("foo", "Foo token");
        let text = explanation(Some(&OsString::from("/usr/bin/moat-provider-foo")), &info);
        assert!(text.starts_with("moat-provider-foo is a moat provider plugin"));
        assert!(text.contains("Try: moat grant foo"));
        assert!(explanation(None, &info).starts_with("moat-provider-foo is"));
    }
}
