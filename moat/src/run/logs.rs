//! `logs.jsonl`: the container's output, one JSON object per line, written as it arrives.
//!
//! ```json
//! {"ts":"2026-11-29T12:00:00.123Z","stream":"stdout","line":"hello"}
//! ```
//!
//! [`LogWriter`] takes raw chunks as the runtime hands them over (split anywhere, even inside a
//! UTF-8 character), cuts them into lines per stream (`\n`, with a `\r` before it dropped), and
//! appends every complete line at once; a line longer than [`MAX_LINE`] bytes is cut there. A
//! partial last line is written by [`LogWriter::close`]. Bytes that are not UTF-8 are replaced
//! (U+FFFD). The file is `0600`.
//!
//! [`LogReader`] reads it back: [`LogReader::tail`] for the last N lines, then
//! [`LogReader::read_new`] for lines appended since, and [`follow`] to keep reading until the run
//! has ended.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::home::open_private_append;

/// The longest line kept whole; longer output is cut into lines of this many bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output (and everything, for a run with a terminal).
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When it was complete, UTC.
    pub ts: DateTime<Utc>,
    /// Where it came from.
    pub stream: Stream,
    /// The text, without its line ending.
    pub line: String,
}

/// Appends a run's output to its `logs.jsonl`.
#[derive(Debug)]
pub struct LogWriter {
    file: File,
    path: PathBuf,
    /// The unfinished line of stdout and of stderr.
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens `path` for appending, creating it `0600`.
    pub fn open(path: &Path) -> io::Result<LogWriter> {
        let file = open_private_append(path)?;
        Ok(LogWriter {
            file,
            path: path.to_path_buf(),
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes a chunk of `stream`'s output and appends every line it completes, in one write.
    pub fn write(&mut self, stream: Stream, chunk: &[u8]) -> io::Result<()> {
        let now = Utc::now();
        let pending = &mut self.pending[stream as usize];
        let mut out = Vec::new();
        let mut rest = chunk;
        while !rest.is_empty() {
            let room = MAX_LINE - pending.len();
            match rest.iter().take(room + 1).position(|&b| b == b'\n') {
                Some(end) => {
                    pending.extend_from_slice(&rest[..end]);
                    encode(&mut out, now, stream, pending);
                    pending.clear();
                    rest = &rest[end + 1..];
                }
                None if rest.len() > room => {
                    // A line longer than MAX_LINE: cut it, keeping UTF-8 characters whole.
                    pending.extend_from_slice(&rest[..room]);
                    let cut = utf8_boundary(pending);
                    let carry = pending.split_off(cut);
                    encode(&mut out, now, stream, pending);
                    *pending = carry;
                    rest = &rest[room..];
                }
                None => {
                    pending.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
        if out.is_empty() {
            return Ok(());
        }
        self.file.write_all(&out)
    }

    /// Writes the partial last line of each stream (if any) and syncs the file.
    pub fn close(mut self) -> io::Result<()> {
        let now = Utc::now();
        let mut out = Vec::new();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let pending = std::mem::take(&mut self.pending[stream as usize]);
            if !pending.is_empty() {
                encode(&mut out, now, stream, &pending);
            }
        }
        self.file.write_all(&out)?;
        self.file.sync_data()
    }
}

/// Where to cut `bytes` (all of it, or before an incomplete UTF-8 character at its end).
fn utf8_boundary(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(err) if err.error_len().is_none() => err.valid_up_to(),
        Err(_) => {
            // Invalid bytes earlier on: only avoid splitting a character at the very end.
            let tail_start = bytes.len().saturating_sub(3);
            (tail_start..bytes.len())
                .rev()
                .find(|&i| bytes[i] >= 0xC0)
                .filter(|&i| std::str::from_utf8(&bytes[i..]).is_err())
                .unwrap_or(bytes.len())
        }
    }
}

fn encode(out: &mut Vec<u8>, ts: DateTime<Utc>, stream: Stream, line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    #[derive(Serialize)]
    struct Out<'a> {
        ts: String,
        stream: Stream,
        line: &'a str,
    }
    let value = Out {
        ts: ts.to_rfc3339_opts(SecondsFormat::Millis, true),
        stream,
        line: &String::from_utf8_lossy(line),
    };
    serde_json::to_writer(&mut *out, &value).expect("a log line serializes");
    out.push(b'\n');
}

/// Reads a `logs.jsonl`, from where it last stopped. The file need not exist yet.
#[derive(Debug)]
pub struct LogReader {
    path: PathBuf,
    /// The offset of the first byte not yet consumed.
    offset: u64,
    /// Lines that could not be parsed (skipped).
    skipped: usize,
}

impl LogReader {
    /// A reader at the start of `path`.
    pub fn new(path: &Path) -> LogReader {
        LogReader {
            path: path.to_path_buf(),
            offset: 0,
            skipped: 0,
        }
    }

    /// How many lines could not be parsed and were skipped so far.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The last `n` complete lines (all of them for `None`), and positions the reader after
    /// them. Reads backwards from the end, so a long log costs only what is shown.
    pub fn tail(&mut self, n: Option<usize>) -> io::Result<Vec<LogLine>> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let len = file.metadata()?.len();
        let Some(n) = n else {
            return self.read_new();
        };
        // Only complete lines count: ignore bytes after the last newline.
        const BLOCK: u64 = 64 * 1024;
        let mut start = len;
        let mut buf: Vec<u8> = Vec::new();
        let mut end = None;
        loop {
            let newlines = buf.iter().filter(|&&b| b == b'\n').count();
            if start == 0 || (end.is_some() && newlines > n) {
                break;
            }
            let from = start.saturating_sub(BLOCK);
            let mut block = vec![0; (start - from) as usize];
            file.seek(SeekFrom::Start(from))?;
            file.read_exact(&mut block)?;
            block.extend_from_slice(&buf);
            buf = block;
            start = from;
            if end.is_none() {
                end = buf
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map(|i| start + i as u64 + 1);
                if end.is_none() && start == 0 {
                    break;
                }
            }
        }
        let Some(end) = end else {
            return Ok(Vec::new());
        };
        buf.truncate((end - start) as usize);
        let mut lines = self.parse(&buf);
        if lines.len() > n {
            lines.drain(..lines.len() - n);
        }
        self.offset = end;
        Ok(lines)
    }

    /// The complete lines appended since the last call (or since [`tail`](Self::tail)).
    pub fn read_new(&mut self) -> io::Result<Vec<LogLine>> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        let Some(last) = buf.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        buf.truncate(last + 1);
        self.offset += buf.len() as u64;
        Ok(self.parse(&buf))
    }

    fn parse(&mut self, buf: &[u8]) -> Vec<LogLine> {
        let mut lines = Vec::new();
        for raw in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice(raw) {
                Ok(line) => lines.push(line),
                Err(_) => self.skipped += 1,
            }
        }
        lines
    }
}

/// Hands every line appended to `reader`'s file to `emit`, checking every `interval` whether
/// `ended()` says the run is over; once it does, reads what is left and returns. `emit` failing
/// (a closed pipe) stops it too.
pub fn follow(
    reader: &mut LogReader,
    interval: Duration,
    mut ended: impl FnMut() -> bool,
    mut emit: impl FnMut(&LogLine) -> io::Result<()>,
) -> io::Result<()> {
    loop {
        // Ask first, then read: a line written before the run ended is always read.
        let done = ended();
        for line in reader.read_new()? {
            emit(&line)?;
        }
        if done {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<(Stream, String)> {
        let mut reader = LogReader::new(path);
        let lines = reader.tail(None).unwrap();
        assert_eq!(reader.skipped(), 0);
        lines.into_iter().map(|l| (l.stream, l.line)).collect()
    }

    fn out(s: &str) -> (Stream, String) {
        (Stream::Stdout, s.to_owned())
    }

    #[test]
    fn chunks_split_anywhere_become_lines_as_they_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.jsonl");
        let mut writer = LogWriter::open(&path).unwrap();
        writer.write(Stream::Stdout, b"hel").unwrap();
        assert!(lines(&path).is_empty(), "nothing before a line ends");
        writer.write(Stream::Stderr, b"oops\r\nmore err").unwrap();
        writer.write(Stream::Stdout, b"lo\r\nw\xc3").unwrap();
        // Written at once, not at close.
        assert_eq!(
            lines(&path),
            [(Stream::Stderr, "oops".into()), out("hello")]
        );
        writer
            .write(Stream::Stdout, b"\xa9rld\n\nbad \xff byte\nlast")
            .unwrap();
        writer.close().unwrap();
        assert_eq!(
            lines(&path),
            [
                (Stream::Stderr, "oops".into()),
                out("hello"),
                out("wérld"),
                out(""),
                out("bad \u{fffd} byte"),
                out("last"),
                (Stream::Stderr, "more err".into()),
            ]
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let ts = first["ts"].as_str().unwrap();
        assert!(
            ts.ends_with('Z') && ts.len() == "2026-11-29T12:00:00.123Z".len(),
            "{ts}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn long_lines_are_cut_on_character_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.jsonl");
        let mut writer = LogWriter::open(&path).unwrap();
        let mut long = "a".repeat(MAX_LINE - 1).into_bytes();
        long.extend_from_slice("é".as_bytes()); // straddles the limit
        long.extend_from_slice(b"tail\n");
        for piece in long.chunks(1000) {
            writer.write(Stream::Stdout, piece).unwrap();
        }
        writer.close().unwrap();
        let got = lines(&path);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, "a".repeat(MAX_LINE - 1));
        assert_eq!(got[1].1, "étail");
    }

    #[test]
    fn tail_takes_the_last_lines_and_read_new_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.jsonl");
        let mut reader = LogReader::new(&path);
        assert!(reader.tail(Some(5)).unwrap().is_empty(), "no file yet");
        let mut writer = LogWriter::open(&path).unwrap();
        // Enough lines to span several 64 KiB blocks.
        let mut text = String::new();
        for i in 0..5000 {
            text.push_str(&format!("line {i:04} {}\n", "x".repeat(30)));
        }
        writer.write(Stream::Stdout, text.as_bytes()).unwrap();
        let mut reader = LogReader::new(&path);
        let tail = reader.tail(Some(3)).unwrap();
        let shown: Vec<&str> = tail.iter().map(|l| &l.line[..9]).collect();
        assert_eq!(shown, ["line 4997", "line 4998", "line 4999"]);
        assert!(reader.read_new().unwrap().is_empty());
        writer.write(Stream::Stdout, b"next\npart").unwrap();
        assert_eq!(reader.read_new().unwrap()[0].line, "next");
        writer.close().unwrap();
        assert_eq!(reader.read_new().unwrap()[0].line, "part");
        assert_eq!(LogReader::new(&path).tail(Some(0)).unwrap(), []);
        assert_eq!(
            LogReader::new(&path).tail(Some(100_000)).unwrap().len(),
            5002
        );
        assert_eq!(LogReader::new(&path).tail(None).unwrap().len(), 5002);
    }

    #[test]
    fn a_torn_last_line_waits_and_garbage_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.jsonl");
        std::fs::write(
            &path,
            "{\"ts\":\"2026-11-29T12:00:00.000Z\",\"stream\":\"stdout\",\"line\":\"a\"}\nnot json\n{\"ts\":\"2026",
        )
        .unwrap();
        let mut reader = LogReader::new(&path);
        let got = reader.tail(Some(10)).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(reader.skipped(), 1);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"-11-29T12:00:01.000Z\",\"stream\":\"stderr\",\"line\":\"b\"}\n")
            .unwrap();
        let got = reader.read_new().unwrap();
        assert_eq!((got[0].stream, got[0].line.as_str()), (Stream::Stderr, "b"));
    }

    #[test]
    fn follow_reads_until_the_run_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.jsonl");
        let mut writer = LogWriter::open(&path).unwrap();
        let mut reader = LogReader::new(&path);
        let mut polls = 0;
        let mut seen = Vec::new();
        follow(
            &mut reader,
            Duration::from_millis(1),
            || {
                polls += 1;
                writer
                    .write(Stream::Stdout, format!("poll {polls}\n").as_bytes())
                    .unwrap();
                polls == 3
            },
            |line| {
                seen.push(line.line.clone());
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, ["poll 1", "poll 2", "poll 3"]);
    }
}
