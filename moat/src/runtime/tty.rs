//! Attaching to a TTY container over a raw upgraded connection.
//!
//! bollard decodes every attach stream with one decoder that guesses per read whether bytes are
//! Docker's multiplexed frames (first byte 0, 1 or 2) or raw TTY output. Under a TTY the output
//! is always raw, so a read that happens to start with byte 0, 1 or 2 is taken for a frame
//! header: eight bytes vanish and the stream stalls waiting for a "payload" of whatever length
//! the next bytes spell. An interactive session cannot afford that, so for TTY containers moat
//! speaks the attach request itself (`POST /containers/{id}/attach` with `Upgrade: tcp`) and hands
//! the upgraded connection's bytes through untouched. Non-TTY attaches keep bollard's demuxer,
//! which is right for them.

use std::io;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of headers moat accepts in the engine's answer before giving up.
const MAX_HEAD: usize = 16 * 1024;

/// A connection to the engine, over either transport.
pub(crate) trait Conn: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Conn for T {}

/// What went wrong, for the caller to turn into a [`super::RuntimeError`].
#[derive(Debug)]
pub(crate) enum AttachFailure {
    /// Connecting or talking failed.
    Io(io::Error),
    /// The engine answered with this status and body.
    Status(u16, String),
}

impl From<io::Error> for AttachFailure {
    fn from(e: io::Error) -> Self {
        AttachFailure::Io(e)
    }
}

/// Connect to the engine at `host` (`unix:///path`, `tcp://h:p` or `http://h:p`).
pub(crate) async fn connect(host: &str) -> io::Result<Box<dyn Conn>> {
    if let Some(path) = host.strip_prefix("unix://") {
        return Ok(Box::new(tokio::net::UnixStream::connect(path).await?));
    }
    let addr = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, host.to_owned()))?;
    let addr = addr.trim_end_matches('/');
    Ok(Box::new(tokio::net::TcpStream::connect(addr).await?))
}

/// Send the attach request on `conn` and read the engine's answer up to the upgraded stream.
/// Returns the connection and any stream bytes that arrived with the headers.
pub(crate) async fn attach(
    mut conn: Box<dyn Conn>,
    api_version: &str,
    id: &str,
    stdin: bool,
) -> Result<(Box<dyn Conn>, Bytes), AttachFailure> {
    let request = format!(
        "POST /v{api_version}/containers/{id}/attach?stream=1&stdin={}&stdout=1&stderr=1 HTTP/1.1\r\n\
         Host: docker\r\n\
         Connection: Upgrade\r\n\
         Upgrade: tcp\r\n\
         Content-Length: 0\r\n\r\n",
        u8::from(stdin)
    );
    conn.write_all(request.as_bytes()).await?;
    conn.flush().await?;
    let mut buf = BytesMut::with_capacity(1024);
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(AttachFailure::Status(0, "oversized answer headers".into()));
        }
        if conn.read_buf(&mut buf).await? == 0 {
            return Err(AttachFailure::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the engine closed the connection before answering the attach",
            )));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let rest = buf.split_off(head_end).freeze();
    // 101 when the engine honours Upgrade; old engines answer 200 and hijack the connection.
    if status == 101 || status == 200 {
        return Ok((conn, rest));
    }
    // An error: the body (JSON `{"message": ...}`) says why; read what is there.
    let mut body = rest.to_vec();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        let mut chunk = [0u8; 4096];
        while body.len() < MAX_HEAD {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    body.extend_from_slice(&chunk[..n]);
                    if body.ends_with(b"}\n") || body.ends_with(b"}") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&body);
    let message = text
        .find('{')
        .and_then(|start| serde_json::from_str::<serde_json::Value>(text[start..].trim()).ok())
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| text.trim().to_owned());
    Err(AttachFailure::Status(status, message))
}

/// The raw bytes of a read half, as a stream of chunks (the `first` bytes before the rest).
pub(crate) fn byte_stream<R: AsyncRead + Send + Unpin + 'static>(
    first: Bytes,
    read: R,
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    futures_util::stream::unfold(
        (Some(first), read, false),
        |(first, mut read, done)| async move {
            if done {
                return None;
            }
            if let Some(first) = first.filter(|b| !b.is_empty()) {
                return Some((Ok(first), (None, read, false)));
            }
            let mut buf = BytesMut::with_capacity(8192);
            match read.read_buf(&mut buf).await {
                Ok(0) => None,
                Ok(_) => Some((Ok(buf.freeze()), (None, read, false))),
                // A reset after the container exited is the end of the output, not an error the
                // caller can act on; report it once and stop.
                Err(e) => Some((Err(e), (None, read, true))),
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use tokio::io::duplex;

    use super::*;

    /// A fake engine: reads the request, answers `answer` then `after`; returns the request and
    /// the bytes moat's side read after the upgrade.
    async fn engine(answer: &'static [u8], after: &'static [u8]) -> (String, Vec<u8>) {
        let (client, mut server) = duplex(64 * 1024);
        let task = tokio::spawn(async move {
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                server.read_exact(&mut byte).await.unwrap();
                request.push(byte[0]);
            }
            server.write_all(answer).await.unwrap();
            server.write_all(after).await.unwrap();
            String::from_utf8(request).unwrap()
        });
        let (conn, first) = attach(Box::new(client), "1.41", "abc", true)
            .await
            .unwrap_or_else(|e| panic!("attach failed: {e:?}"));
        let request = task.await.unwrap();
        // The fake engine's end is dropped: the stream ends after its bytes.
        let read: Vec<u8> = byte_stream(first, conn)
            .map(|chunk| chunk.unwrap().to_vec())
            .concat()
            .await;
        (request, read)
    }

    #[tokio::test]
    async fn bytes_after_the_upgrade_pass_through_untouched() {
        // Starts with 0x01 and 0x00: exactly what bollard's demuxer would take for a frame.
        let (request, read) = engine(
            b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
            b"\x01\x00\x00\x00\xff\xff\xff\xffhello\r\n",
        )
        .await;
        assert!(
            request.starts_with(
                "POST /v1.41/containers/abc/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n"
            ),
            "{request}"
        );
        assert!(request.contains("Upgrade: tcp\r\n"), "{request}");
        assert_eq!(read, b"\x01\x00\x00\x00\xff\xff\xff\xffhello\r\n");
    }

    #[tokio::test]
    async fn an_error_answer_gives_the_status_and_the_engine_message() {
        let (client, mut server) = duplex(64 * 1024);
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = server.read(&mut buf).await;
            server
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n{\"message\":\"No such container: abc\"}\n")
                .await
                .unwrap();
        });
        match attach(Box::new(client), "1.41", "abc", false).await {
            Err(AttachFailure::Status(404, message)) => {
                assert_eq!(message, "No such container: abc")
            }
            other => panic!("{:?}", other.map(|(_, b)| b)),
        }
    }
}
