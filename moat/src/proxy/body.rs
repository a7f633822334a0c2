//! Body types and streaming wrappers: nothing here holds a whole body.
//!
//! - [`ProxyBody`]: the one boxed body type that flows through the proxy, both ways.
//! - [`Tee`]: passes a request body through and keeps its first bytes for the log.
//! - [`Logged`]: passes a response body through, keeps its first bytes, and reports when it ends
//!   (or is dropped) so the request's log line is written then.
//! - [`Rewritten`]: a body streamed through a [`Rewrite`] that searches for a secret across chunk
//!   boundaries, holding back only the bytes that could be its start, trailers included:
//!   [`TokenSwap`] puts a real token back as its placeholder; [`MaskStream`] overwrites every
//!   form of a host's credentials byte for byte (same length, so the body's size stays what the
//!   upstream said).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::HeaderMap;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::HeaderValue;

use super::inject::replace_all;
use super::mask::MaskStream;

/// Any error a body can end with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request and response the proxy handles.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A complete body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub(crate) fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body received by hyper, streamed on.
pub(crate) fn incoming(body: Incoming) -> ProxyBody {
    body.map_err(BoxError::from).boxed_unsync()
}

/// The first bytes of a body, up to a limit.
#[derive(Debug, Default, Clone)]
pub(crate) struct Capture {
    pub bytes: Vec<u8>,
    pub limit: usize,
    /// More bytes went by than were kept.
    pub truncated: bool,
}

impl Capture {
    pub fn new(limit: usize) -> Capture {
        Capture {
            bytes: Vec::new(),
            limit,
            truncated: false,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        let room = self.limit.saturating_sub(self.bytes.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// A request body that keeps its first bytes in a shared [`Capture`].
pub(crate) struct Tee {
    inner: ProxyBody,
    capture: Arc<Mutex<Capture>>,
}

impl Tee {
    pub fn wrap(inner: ProxyBody, capture: Arc<Mutex<Capture>>) -> ProxyBody {
        Tee { inner, capture }.boxed_unsync()
    }
}

impl Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            self.capture
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(data);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Called once when a [`Logged`] body ends: what was captured (if capturing), and the error that
/// ended it early, if any.
pub(crate) type OnDone = Box<dyn FnOnce(Option<Capture>, Option<String>) + Send>;

/// A response body that reports its end.
pub(crate) struct Logged {
    inner: ProxyBody,
    capture: Option<Capture>,
    on_done: Option<OnDone>,
}

impl Logged {
    pub fn wrap(inner: ProxyBody, capture: Option<Capture>, on_done: OnDone) -> ProxyBody {
        Logged {
            inner,
            capture,
            on_done: Some(on_done),
        }
        .boxed_unsync()
    }

    fn finish(&mut self, error: Option<String>) {
        if let Some(on_done) = self.on_done.take() {
            on_done(self.capture.take(), error);
        }
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            None => self.finish(None),
            Some(Err(err)) => {
                let message = format!("response body failed: {err}");
                self.finish(Some(message));
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref()
                    && let Some(capture) = self.capture.as_mut()
                {
                    capture.push(data);
                }
                if self.inner.is_end_stream() {
                    self.finish(None);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if self.on_done.is_some() {
            let error = (!self.inner.is_end_stream())
                .then(|| "the response was not read to its end".to_owned());
            self.finish(error);
        }
    }
}

/// A streamed rewrite of a body's bytes that searches for a secret: each chunk gives what can go
/// on now and keeps back a tail that could be the start of one; the end gives the rest.
/// Trailers, which come whole, are rewritten value by value.
pub(crate) trait Rewrite: Send + Unpin + 'static {
    /// The next chunk in; what can go on now (possibly nothing) out.
    fn push(&mut self, data: Bytes) -> Bytes;
    /// The body has ended: the held-back tail, rewritten where it owes.
    fn finish(&mut self) -> Bytes;
    /// How many bytes are held back.
    fn held(&self) -> usize;
    /// A value that comes whole (a trailer's), rewritten; `None` when there is nothing in it.
    fn whole(&self, value: &[u8]) -> Option<Vec<u8>>;
    /// Whether the rewrite keeps the body's length, so its size is still the upstream's.
    fn keeps_length(&self) -> bool;
}

/// A body streamed through a [`Rewrite`]: [`TokenSwap`] on substitution hosts, the credential
/// mask ([`MaskStream`]) on hosts that get credentials.
pub(crate) struct Rewritten<R> {
    inner: ProxyBody,
    rewrite: R,
    trailers: Option<HeaderMap>,
    ended: bool,
}

impl<R: Rewrite> Rewritten<R> {
    pub fn wrap(inner: ProxyBody, rewrite: R) -> ProxyBody {
        Rewritten {
            inner,
            rewrite,
            trailers: None,
            ended: false,
        }
        .boxed_unsync()
    }
}

impl<R: Rewrite> Body for Rewritten<R> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.ended {
                if this.rewrite.held() > 0 {
                    return Poll::Ready(Some(Ok(Frame::data(this.rewrite.finish()))));
                }
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                None => this.ended = true,
                // Whatever is held back is dropped with the body: a secret's start never goes
                // out at a cut.
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let out = this.rewrite.push(data);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(frame) => {
                        // Trailers are headers sent last (gRPC's `grpc-message` is an error
                        // text that could quote the request): rewritten like the body.
                        this.trailers = frame.into_trailers().ok().map(|mut trailers| {
                            for value in trailers.values_mut() {
                                if let Some(rewritten) = this.rewrite.whole(value.as_bytes())
                                    && let Ok(rewritten) = HeaderValue::from_bytes(&rewritten)
                                {
                                    *value = rewritten;
                                }
                            }
                            trailers
                        });
                        this.ended = true;
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.rewrite.held() == 0 && self.trailers.is_none()
    }

    /// When the rewrite keeps the length, what is left is what the upstream has still to send
    /// plus what is held back.
    fn size_hint(&self) -> SizeHint {
        if !self.rewrite.keeps_length() {
            return SizeHint::default();
        }
        let inner = self.inner.size_hint();
        let held = self.rewrite.held() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + held);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

/// Every occurrence of `real` replaced by `placeholder` (a substituted token put back as the
/// placeholder the container knows).
pub(crate) struct TokenSwap {
    real: Vec<u8>,
    placeholder: Vec<u8>,
    /// A tail of the previous chunk that could be the start of `real`.
    carry: Vec<u8>,
}

impl TokenSwap {
    pub fn new(real: &[u8], placeholder: &[u8]) -> TokenSwap {
        TokenSwap {
            real: real.to_vec(),
            placeholder: placeholder.to_vec(),
            carry: Vec::new(),
        }
    }
}

/// The length of the longest suffix of `buf` that is a proper prefix of `needle`.
fn held_back(buf: &[u8], needle: &[u8]) -> usize {
    let max = buf.len().min(needle.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&k| buf[buf.len() - k..] == needle[..k])
        .unwrap_or(0)
}

impl Rewrite for TokenSwap {
    fn push(&mut self, data: Bytes) -> Bytes {
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(&data);
        let mut buf = replace_all(&buf, &self.real, &self.placeholder).unwrap_or(buf);
        let hold = held_back(&buf, &self.real);
        self.carry = buf.split_off(buf.len() - hold);
        Bytes::from(buf)
    }

    fn finish(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.carry))
    }

    fn held(&self) -> usize {
        self.carry.len()
    }

    fn whole(&self, value: &[u8]) -> Option<Vec<u8>> {
        replace_all(value, &self.real, &self.placeholder)
    }

    fn keeps_length(&self) -> bool {
        self.real.len() == self.placeholder.len()
    }
}

impl Rewrite for MaskStream {
    fn push(&mut self, data: Bytes) -> Bytes {
        MaskStream::push(self, data)
    }

    fn finish(&mut self) -> Bytes {
        MaskStream::finish(self)
    }

    fn held(&self) -> usize {
        MaskStream::held(self)
    }

    fn whole(&self, value: &[u8]) -> Option<Vec<u8>> {
        let masked = self.mask().mask_whole(value);
        (masked != value).then_some(masked)
    }

    /// Every byte of a secret becomes one `*`.
    fn keeps_length(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of fixed chunks, one frame each.
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }

    fn chunks(parts: &[&str]) -> ProxyBody {
        Chunks(
            parts
                .iter()
                .map(|p| Bytes::copy_from_slice(p.as_bytes()))
                .collect(),
        )
        .boxed_unsync()
    }

    async fn collect(body: ProxyBody) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut body = body;
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                frames.push(data.to_vec());
            }
        }
        let all = frames.concat();
        (frames, all)
    }

    #[tokio::test]
    async fn scrub_replaces_across_chunk_boundaries() {
        for split in [
            vec!["abc TOKEN123 def"],
            vec!["abc TOK", "EN123 def"],
            vec!["abc T", "O", "K", "EN12", "3 def TOKEN", "123"],
            vec!["TOKEN12", "x TOKEN123"],
            vec!["TOKTOKEN123"],
        ] {
            let (_, all) = collect(Rewritten::wrap(
                chunks(&split),
                TokenSwap::new(b"TOKEN123", b"[P]"),
            ))
            .await;
            let expected = split.concat().replace("TOKEN123", "[P]");
            assert_eq!(String::from_utf8(all).unwrap(), expected, "{split:?}");
        }
    }

    #[tokio::test]
    async fn scrub_puts_the_placeholder_back_in_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert(
            "x-debug",
            HeaderValue::from_static("url=/botTOKEN123/getMe"),
        );
        let inner = WithTrailers(chunks(&["ok"]), Some(trailers)).boxed_unsync();
        let mut body = Rewritten::wrap(inner, TokenSwap::new(b"TOKEN123", b"moat-0123"));
        let mut got = None;
        while let Some(frame) = body.frame().await {
            if let Ok(trailers) = frame.unwrap().into_trailers() {
                got = Some(trailers);
            }
        }
        assert_eq!(got.unwrap()["x-debug"], "url=/botmoat-0123/getMe");
    }

    #[tokio::test]
    async fn scrub_holds_back_only_possible_token_starts() {
        // SSE events end in newlines, which no token starts with: nothing is delayed.
        let (frames, _) = collect(Rewritten::wrap(
            chunks(&["data: 1\n\n", "data: 2\n\n"]),
            TokenSwap::new(b"TOKEN", b"P"),
        ))
        .await;
        assert_eq!(frames, [b"data: 1\n\n".to_vec(), b"data: 2\n\n".to_vec()]);
        assert_eq!(held_back(b"xxTOK", b"TOKEN"), 3);
        assert_eq!(
            held_back(b"xxTOKEN", b"TOKEN"),
            0,
            "a whole token is not held"
        );
        assert_eq!(held_back(b"", b"TOKEN"), 0);
    }

    /// Several credentials of one host, in several forms (raw, upper-cased, the token after its
    /// scheme, a Basic value and its decoded password, base64), through the body wrapper at every
    /// split into two frames: every form masked byte for byte, nothing else changed, the trailers
    /// kept, and the size hint the upstream's.
    #[tokio::test]
    async fn masked_hides_every_form_of_several_credentials_at_every_split() {
        use base64::Engine as _;
        use base64::engine::general_purpose::STANDARD;
        use moat_plugin_sdk::{Secret, SecretSet};

        let token = "ghp_MaskedBody0123456789";
        let password = "glpat-Secret-Pass-42";
        let basic = STANDARD.encode(format!("oauth2:{password}"));
        let set: SecretSet = [
            Secret::new(format!("Bearer {token}")),
            Secret::new(format!("Basic {basic}")),
        ]
        .into_iter()
        .collect();
        let mask = super::super::mask::SecretMask::new(&set).unwrap();
        let text = format!(
            "a={token};b=BEARER {upper};c=Basic {basic};d=oauth2:{password};e={b64};f=ok",
            upper = token.to_ascii_uppercase(),
            b64 = STANDARD.encode(token),
        );
        let hidden = [
            format!("a={}", "*".repeat(token.len())),
            format!("b={}", "*".repeat(7 + token.len())),
            format!("c={}", "*".repeat(6 + basic.len())),
            format!("d={}", "*".repeat(7 + password.len())),
            format!("e={}", "*".repeat(STANDARD.encode(token).len())),
            "f=ok".to_owned(),
        ]
        .join(";");
        assert_eq!(hidden.len(), text.len());
        for cut in 0..=text.len() {
            let (head, tail) = text.split_at(cut);
            let mut trailers = HeaderMap::new();
            trailers.insert("x-check", HeaderValue::from_static("1"));
            trailers.insert(
                "grpc-message",
                HeaderValue::from_str(&format!("bad credential Bearer {token}")).unwrap(),
            );
            let inner = Chunks(
                [head, tail]
                    .iter()
                    .map(|p| Bytes::copy_from_slice(p.as_bytes()))
                    .collect(),
            )
            .boxed_unsync();
            let inner = WithTrailers(inner, Some(trailers)).boxed_unsync();
            let mut body = Rewritten::wrap(inner, MaskStream::new(Arc::clone(&mask)));
            let mut out = Vec::new();
            let mut got_trailers = None;
            while let Some(frame) = body.frame().await {
                match frame.unwrap().into_data() {
                    Ok(data) => out.extend_from_slice(&data),
                    Err(frame) => got_trailers = frame.into_trailers().ok(),
                }
            }
            assert_eq!(String::from_utf8(out).unwrap(), hidden, "cut at {cut}");
            let got_trailers = got_trailers.unwrap();
            assert_eq!(got_trailers["x-check"], "1", "cut at {cut}");
            assert_eq!(
                got_trailers["grpc-message"],
                format!("bad credential {}", "*".repeat(7 + token.len())),
                "cut at {cut}"
            );
        }
        let sized = Rewritten::wrap(full(text.clone()), MaskStream::new(mask));
        assert_eq!(sized.size_hint().exact(), Some(text.len() as u64));
    }

    /// A body, then trailers.
    struct WithTrailers(ProxyBody, Option<HeaderMap>);

    impl Body for WithTrailers {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            match ready!(Pin::new(&mut self.0).poll_frame(cx)) {
                None => Poll::Ready(self.1.take().map(|t| Ok(Frame::trailers(t)))),
                other => Poll::Ready(other),
            }
        }
    }

    #[tokio::test]
    async fn tee_and_logged_capture_up_to_the_limit() {
        let capture = Arc::new(Mutex::new(Capture::new(5)));
        let (_, all) = collect(Tee::wrap(chunks(&["abc", "defg"]), Arc::clone(&capture))).await;
        assert_eq!(all, b"abcdefg");
        let c = capture.lock().unwrap().clone();
        assert_eq!((c.bytes.as_slice(), c.truncated), (&b"abcde"[..], true));

        let (tx, rx) = std::sync::mpsc::channel();
        let body = Logged::wrap(
            chunks(&["hello"]),
            Some(Capture::new(100)),
            Box::new(move |capture, error| tx.send((capture, error)).unwrap()),
        );
        collect(body).await;
        let (capture, error) = rx.recv().unwrap();
        assert_eq!(capture.unwrap().bytes, b"hello");
        assert_eq!(error, None);

        // Dropped half-way: reported once, with an error.
        let (tx, rx) = std::sync::mpsc::channel();
        let mut body = Logged::wrap(
            chunks(&["a", "b"]),
            None,
            Box::new(move |capture, error| tx.send((capture.is_none(), error)).unwrap()),
        );
        body.frame().await;
        drop(body);
        let (no_capture, error) = rx.recv().unwrap();
        assert!(no_capture);
        assert!(error.unwrap().contains("not read to its end"));
        assert!(rx.try_recv().is_err());
    }
}
