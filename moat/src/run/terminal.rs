//! The host side of `moat run -i`: the terminal in raw mode while the command runs, its size
//! for the container's TTY, and stdin read so that nothing outlives the run.
//!
//! - **Raw mode** ([`HostTerminal::raw`]): no echo, no line editing, no signals from keys: Ctrl-C
//!   is byte 3 on the container's TTY, whose line discipline turns it into SIGINT for the
//!   command (as `docker run -it` does). The saved settings come back when the [`RawMode`] guard
//!   drops (normal end, error, Ctrl-C from outside), and from a panic hook on any thread, so a
//!   panic cannot leave the user's shell raw.
//! - **Size**: read from the terminal, then again on every SIGWINCH
//!   ([`HostTerminal::resized`]); the manager passes each to [`crate::runtime::Runtime::resize`].
//! - **Stdin** ([`stdin_reader`]): tokio's stdin blocks a thread in `read(2)` that cannot be
//!   cancelled, so the runtime would wait at exit for one more key press. moat's reader polls
//!   stdin with a timeout on a thread of its own and stops when the run no longer wants it;
//!   end of file (a pipe that closes) reaches the container as the end of its stdin.

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::{Mutex, Once};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use rustix::termios::{OptionalActions, Termios};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

/// A TTY's size, in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtySize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// The terminal an interactive run is attached to.
pub trait HostTerminal: Send {
    /// Puts the terminal in raw mode until the guard drops.
    fn raw(&mut self) -> io::Result<RawMode>;
    /// The terminal's size now (`None` when it has none, e.g. a 0x0 pseudo-terminal).
    fn size(&self) -> Option<TtySize>;
    /// Waits for the next size change and returns the new size; `None` when there will be no
    /// more (the signal cannot be watched).
    fn resized(&mut self) -> Pin<Box<dyn Future<Output = Option<TtySize>> + Send + '_>>;
}

/// Restores the terminal's settings when dropped.
#[must_use = "the terminal is restored when this is dropped"]
pub struct RawMode {
    restore: Option<Box<dyn FnOnce() + Send>>,
}

impl RawMode {
    /// A guard that runs `restore` once, when dropped.
    pub fn new(restore: impl FnOnce() + Send + 'static) -> RawMode {
        RawMode {
            restore: Some(Box::new(restore)),
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(restore) = self.restore.take() {
            restore();
        }
    }
}

impl std::fmt::Debug for RawMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawMode").finish_non_exhaustive()
    }
}

/// Settings to put back if a panic happens while the terminal is raw (read by the panic hook).
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// Puts `SAVED` back on stdin, if set; returns whether it did.
fn restore_saved() -> bool {
    // A poisoned lock still holds the settings: restoring matters more than the poison.
    let saved = match SAVED.lock() {
        Ok(mut saved) => saved.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    match saved {
        Some(termios) => {
            let _ = rustix::termios::tcsetattr(io::stdin(), OptionalActions::Now, &termios);
            true
        }
        None => false,
    }
}

/// The process's own terminal: stdin (settings, size) and SIGWINCH.
pub struct StdinTerminal {
    winch: Option<tokio::signal::unix::Signal>,
}

impl StdinTerminal {
    /// Whether stdin and stdout are both terminals (the condition for a TTY run).
    pub fn available() -> bool {
        use std::io::IsTerminal;
        io::stdin().is_terminal() && io::stdout().is_terminal()
    }

    /// The terminal, watching its size from now on. Needs a tokio runtime.
    pub fn open() -> StdinTerminal {
        use tokio::signal::unix::{SignalKind, signal};
        StdinTerminal {
            winch: signal(SignalKind::window_change()).ok(),
        }
    }
}

impl HostTerminal for StdinTerminal {
    fn raw(&mut self) -> io::Result<RawMode> {
        let stdin = io::stdin();
        let saved = rustix::termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = Some(saved);
        install_panic_hook();
        if let Err(err) = rustix::termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw) {
            restore_saved();
            return Err(err.into());
        }
        Ok(RawMode::new(|| {
            restore_saved();
        }))
    }

    fn size(&self) -> Option<TtySize> {
        let size = rustix::termios::tcgetwinsize(io::stdin()).ok()?;
        (size.ws_row > 0 && size.ws_col > 0).then_some(TtySize {
            rows: size.ws_row,
            cols: size.ws_col,
        })
    }

    fn resized(&mut self) -> Pin<Box<dyn Future<Output = Option<TtySize>> + Send + '_>> {
        Box::pin(async move {
            loop {
                self.winch.as_mut()?.recv().await?;
                if let Some(size) = self.size() {
                    return Some(size);
                }
            }
        })
    }
}

/// Restores the terminal before the default hook prints the panic, on any thread.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_saved();
            previous(info);
        }));
    });
}

/// How long the stdin thread waits for input before checking whether the run still wants it.
const STDIN_POLL: Duration = Duration::from_millis(100);

/// This process's stdin as an [`AsyncRead`] fed by a thread of its own, which stops within
/// [`STDIN_POLL`] of the reader being dropped and never holds the process at exit. The thread
/// only reads when stdin has input, so after the run nothing typed is consumed.
pub fn stdin_reader() -> ChannelReader {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(16);
    let spawned = std::thread::Builder::new()
        .name("moat-stdin".into())
        .spawn(move || pump_stdin(&tx));
    if let Err(err) = spawned {
        tracing::warn!(%err, "cannot start the stdin thread; the command gets no input");
    }
    ChannelReader {
        rx,
        current: Bytes::new(),
    }
}

fn pump_stdin(tx: &mpsc::Sender<io::Result<Bytes>>) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let stdin = io::stdin();
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: i64::try_from(STDIN_POLL.as_nanos()).unwrap_or(100_000_000),
    };
    let mut buf = vec![0u8; 8192];
    loop {
        if tx.is_closed() {
            return;
        }
        let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(err) => {
                let _ = tx.blocking_send(Err(err.into()));
                return;
            }
        }
        match rustix::io::read(&stdin, &mut buf) {
            // End of file: dropping the sender ends the reader.
            Ok(0) => return,
            Ok(n) => {
                if tx
                    .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                    .is_err()
                {
                    return;
                }
            }
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(err) => {
                let _ = tx.blocking_send(Err(err.into()));
                return;
            }
        }
    }
}

/// Bytes from a channel as an [`AsyncRead`]; end of file when the sender is gone.
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.current.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(bytes))) => self.current = bytes,
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Err(err)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.current.len().min(buf.remaining());
        buf.put_slice(&self.current[..n]);
        self.current.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[test]
    fn the_guard_restores_once() {
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = std::sync::Arc::clone(&count);
        let guard = RawMode::new(move || {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        drop(guard);
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_channel_reader_delivers_chunks_then_end_of_file() {
        let (tx, rx) = mpsc::channel(4);
        let mut reader = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        tx.send(Ok(Bytes::from_static(b"hel"))).await.unwrap();
        tx.send(Ok(Bytes::from_static(b"lo\n"))).await.unwrap();
        drop(tx);
        let mut out = String::new();
        reader.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello\n");
    }
}
