//! The upstream's half of a WebSocket on a host moat adds credentials to: frames read as they
//! pass, every payload masked with the host's [`SecretMask`].
//!
//! After a `101` the bytes are the application's, but a WebSocket's server-to-client frames are
//! simple: a header, then a payload of the length it states, never masked by the client's key
//! (RFC 6455 §5.1). The mask keeps lengths, so frames stay valid with their payloads masked in
//! place. A data message (text or binary, with its continuation frames) is one stream: a secret
//! cut across two fragments is found whole, and the header of the next fragment waits, in order,
//! behind the held-back bytes of the previous one. Control frames (close, ping, pong: at most 125
//! bytes) are masked whole, on their own.
//!
//! What it cannot read, it refuses to pass on: a masked frame from the server, or one with an
//! RSV bit set (an extension such as `permessage-deflate`, which the pipeline does not let the
//! client offer on these hosts) ends the connection.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::mask::{MaskStream, SecretMask};

/// Why the relay stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("the upstream sent a masked WebSocket frame")]
    Masked,
    #[error("the upstream sent a WebSocket frame with an extension bit set (compressed?)")]
    Extension,
    #[error("the upstream sent a control frame longer than 125 bytes")]
    LongControl,
}

/// Output waiting, in order: bytes as they are, or room for this many masked payload bytes of
/// the current data message.
enum Item {
    Literal(Vec<u8>),
    Payload(usize),
}

enum State {
    /// Reading a frame header (kept in `header`).
    Header,
    /// Inside a data frame's payload.
    Data { remaining: u64, fin: bool },
    /// Collecting a control frame's payload after its header.
    Control {
        header: Vec<u8>,
        payload: Vec<u8>,
        len: usize,
    },
}

/// Masks the server-to-client byte stream of a WebSocket. No `Debug`: a control frame's payload
/// waits here unmasked until it is whole.
pub(crate) struct FrameMasker {
    mask: Arc<SecretMask>,
    state: State,
    header: Vec<u8>,
    message: MaskStream,
    queue: VecDeque<Item>,
}

impl FrameMasker {
    pub fn new(mask: Arc<SecretMask>) -> FrameMasker {
        FrameMasker {
            message: MaskStream::new(Arc::clone(&mask)),
            mask,
            state: State::Header,
            header: Vec::new(),
            queue: VecDeque::new(),
        }
    }

    /// Bytes from the upstream; returns the bytes that can go to the client now.
    pub fn push(&mut self, mut input: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(input.len());
        while !input.is_empty() {
            match &mut self.state {
                State::Header => {
                    self.header.push(input[0]);
                    input = &input[1..];
                    if let Some(frame) = parse_header(&self.header)? {
                        let header = std::mem::take(&mut self.header);
                        self.start(frame, header, &mut out);
                    }
                }
                State::Data { remaining, fin } => {
                    let n = input
                        .len()
                        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    let (payload, rest) = input.split_at(n);
                    input = rest;
                    *remaining -= n as u64;
                    let ended = *remaining == 0;
                    let fin = *fin;
                    self.payload(payload, &mut out);
                    if ended {
                        self.state = State::Header;
                        if fin {
                            self.end_message(&mut out);
                        }
                    }
                }
                State::Control {
                    header,
                    payload,
                    len,
                } => {
                    let n = input.len().min(*len - payload.len());
                    payload.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if payload.len() == *len {
                        let mut frame = std::mem::take(header);
                        let payload = std::mem::take(payload);
                        frame.extend_from_slice(&self.mask.mask_whole(&payload));
                        self.state = State::Header;
                        self.queue.push_back(Item::Literal(frame));
                        self.drain(Bytes::new(), &mut out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The upstream has closed: whatever is held goes, masked where it owes.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let rest = self.message.finish();
        self.drain(rest, out);
        // A message cut short leaves room nobody fills; any header after it cannot follow.
        self.queue.clear();
    }

    fn start(&mut self, frame: FrameHead, header: Vec<u8>, out: &mut Vec<u8>) {
        if frame.control {
            if frame.len == 0 {
                self.queue.push_back(Item::Literal(header));
                self.drain(Bytes::new(), out);
            } else {
                self.state = State::Control {
                    header,
                    payload: Vec::new(),
                    len: frame.len as usize,
                };
            }
            return;
        }
        self.queue.push_back(Item::Literal(header));
        if frame.len == 0 {
            if frame.fin {
                self.end_message(out);
            } else {
                self.drain(Bytes::new(), out);
            }
        } else {
            self.state = State::Data {
                remaining: frame.len,
                fin: frame.fin,
            };
        }
    }

    fn payload(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        match self.queue.back_mut() {
            Some(Item::Payload(n)) => *n += payload.len(),
            _ => self.queue.push_back(Item::Payload(payload.len())),
        }
        let masked = self.message.push(Bytes::copy_from_slice(payload));
        self.drain(masked, out);
    }

    fn end_message(&mut self, out: &mut Vec<u8>) {
        let rest = self.message.finish();
        self.drain(rest, out);
    }

    /// Fills the waiting payload room with `masked` (the message's next bytes, in order) and
    /// writes out everything up to the first room still empty.
    fn drain(&mut self, masked: Bytes, out: &mut Vec<u8>) {
        let mut masked = &masked[..];
        while let Some(front) = self.queue.front_mut() {
            match front {
                Item::Literal(bytes) => out.append(bytes),
                Item::Payload(room) => {
                    let n = (*room).min(masked.len());
                    out.extend_from_slice(&masked[..n]);
                    masked = &masked[n..];
                    *room -= n;
                    if *room > 0 {
                        break;
                    }
                }
            }
            self.queue.pop_front();
        }
    }
}

struct FrameHead {
    fin: bool,
    control: bool,
    len: u64,
}

/// The frame header in `bytes`, once all of it is there.
fn parse_header(bytes: &[u8]) -> Result<Option<FrameHead>, FrameError> {
    let [first, second, ..] = bytes else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(FrameError::Extension);
    }
    if second & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let control = first & 0x08 != 0;
    let (extended, len) = match second & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    if bytes.len() < 2 + extended {
        return Ok(None);
    }
    let len = len.unwrap_or_else(|| {
        bytes[2..2 + extended]
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    });
    if control && len > 125 {
        return Err(FrameError::LongControl);
    }
    Ok(Some(FrameHead {
        fin: first & 0x80 != 0,
        control,
        len,
    }))
}

#[cfg(test)]
mod tests {
    use moat_plugin_sdk::{Secret, SecretSet};

    use super::*;

    /// An unmasked server frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n < 65536 => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    fn masker() -> FrameMasker {
        let set: SecretSet = [Secret::new("Bearer ghp_WebSocketEcho0123")]
            .into_iter()
            .collect();
        FrameMasker::new(SecretMask::new(&set).unwrap())
    }

    fn through(stream: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut masker = masker();
        let mut out = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain([&stream.len()]) {
            out.extend(masker.push(&stream[at..cut]).unwrap());
            at = cut;
        }
        masker.finish(&mut out);
        out
    }

    #[test]
    fn payloads_are_masked_in_place_across_fragments_and_every_read_split() {
        let token = "ghp_WebSocketEcho0123";
        let stars = "*".repeat(token.len());
        let long = format!("{}{token}", "x".repeat(300));
        let mut input = Vec::new();
        let mut expected = Vec::new();
        // A whole text message, a binary one whose extended length is 16 bits, a message in
        // three fragments cutting the token, with a ping (echoing it) between two of them,
        // and a close.
        for (fin, opcode, payload, masked) in [
            (
                true,
                1,
                format!("you sent {token}!"),
                format!("you sent {stars}!"),
            ),
            (true, 2, long.clone(), long.replace(token, &stars)),
            (false, 1, "a ghp_WebSo".to_owned(), "a *********".to_owned()),
            (true, 9, token.to_owned(), stars.clone()),
            (false, 0, "cketEch".to_owned(), "*******".to_owned()),
            (true, 0, "o0123 z".to_owned(), "***** z".to_owned()),
            (true, 8, "bye".to_owned(), "bye".to_owned()),
        ] {
            input.extend(frame(fin, opcode, payload.as_bytes()));
            expected.extend(frame(fin, opcode, masked.as_bytes()));
        }
        assert_eq!(input.len(), expected.len());
        assert_eq!(through(&input, &[]), expected);
        for cut in 0..=input.len() {
            assert_eq!(through(&input, &[cut]), expected, "cut at {cut}");
        }
        let every: Vec<usize> = (1..input.len()).collect();
        assert_eq!(through(&input, &every), expected);
    }

    #[test]
    fn a_finished_message_goes_out_at_once() {
        // The frame ends with the start of the token: held until the message ends, which it
        // does with this frame, so nothing waits for more bytes.
        let mut relay = masker();
        let message = frame(true, 1, b"ends with ghp_Web");
        assert_eq!(relay.push(&message).unwrap(), message);
        let fragment = frame(false, 1, b"ends with ghp_Web");
        assert_eq!(
            relay.push(&fragment).unwrap(),
            frame(false, 1, b"ends with ghp_Web")[..12],
            "the possible start waits for the next fragment"
        );
    }

    #[test]
    fn what_cannot_be_read_is_refused() {
        assert_eq!(masker().push(&[0x81, 0x80]), Err(FrameError::Masked));
        assert_eq!(masker().push(&[0xC1, 0x01]), Err(FrameError::Extension));
        assert_eq!(
            masker().push(&[0x89, 126, 0, 200]),
            Err(FrameError::LongControl)
        );
    }
}
