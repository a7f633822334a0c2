//! Finding and masking the credentials moat injected for a host in the bytes that host sends back.
//!
//! A host that gets a credential header may echo it in its response body: httpbin-style
//! `/headers`, a debug endpoint, an error that quotes the request. [`SecretMask`] holds every form
//! the run's redactor knows for the host's credential values ([`SecretSet::forms`]: the header
//! value, the token after its scheme, a Basic pair and its password, percent-encoded, base64 at
//! every alignment), matched ignoring ASCII case, and [`MaskStream`] overwrites each occurrence in
//! a stream of chunks, across chunk boundaries.
//!
//! The mask keeps the length: every byte of an occurrence becomes [`MASK_BYTE`]. So a
//! `Content-Length` stays true, nothing is rebuffered to recount it, and length-prefixed binary
//! formats (protobuf, gRPC frames, msgpack) stay parseable; the price is that the length of the
//! hidden value shows, which a token's format tells anyway. Overlapping occurrences (the header
//! value and the token inside it, two forms sharing bytes) are masked as one span, so hiding one
//! never leaves a piece of the other.
//!
//! Not covered, by design of a fixed-needle scan: a form with only *some* of its bytes
//! percent-encoded (the redactor of the request log finds those in text it holds whole), and
//! anything compressed (the pipeline asks such hosts for `identity` and refuses anything else).

use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use bytes::Bytes;
use moat_plugin_sdk::SecretSet;
use zeroize::Zeroizing;

/// What each byte of a masked occurrence becomes: ASCII, valid inside JSON strings, URLs and
/// header values, and not a base64 or token character, so a mask never completes a secret.
pub(crate) const MASK_BYTE: u8 = b'*';

/// The forms of one host's credentials, compiled once per rule set (not per request).
pub(crate) struct SecretMask {
    /// Every form, all occurrences reported (overlapping ones too), ASCII case ignored.
    matcher: AhoCorasick,
    /// The same forms, lowercase, to tell whether a chunk's tail could start one.
    forms: Vec<Zeroizing<Vec<u8>>>,
    /// Which lowercase bytes start a form: most tails are ruled out by their first byte.
    starts: [bool; 256],
    /// The length of the longest form.
    longest: usize,
}

impl std::fmt::Debug for SecretMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretMask")
            .field("forms", &self.forms.len())
            .finish_non_exhaustive()
    }
}

impl SecretMask {
    /// The mask for every form of `secrets`; `None` when there is nothing to search for (every
    /// value shorter than [`SecretSet::MIN_LEN`]).
    pub fn new(secrets: &SecretSet) -> Option<Arc<SecretMask>> {
        let forms: Vec<Zeroizing<Vec<u8>>> = secrets
            .forms()
            .map(|form| Zeroizing::new(form.expose().as_bytes().to_ascii_lowercase()))
            .collect();
        if forms.is_empty() {
            return None;
        }
        let matcher = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(forms.iter().map(|form| form.as_slice()))
            // Only a pattern set too large for any automaton fails; a few short forms never do.
            .expect("the forms of a host's credentials build an automaton");
        let mut starts = [false; 256];
        for form in &forms {
            starts[usize::from(form[0])] = true;
        }
        let longest = forms.iter().map(|f| f.len()).max().unwrap_or(0);
        Some(Arc::new(SecretMask {
            matcher,
            forms,
            starts,
            longest,
        }))
    }

    /// The byte ranges of `bytes` that hold a form: sorted, overlapping ones merged.
    fn spans(&self, bytes: &[u8]) -> Vec<(usize, usize)> {
        let mut merged: Vec<(usize, usize)> = Vec::new();
        // Overlapping matches come in order of their end; sort by start to merge.
        let mut found: Vec<(usize, usize)> = self
            .matcher
            .find_overlapping_iter(bytes)
            .map(|m| (m.start(), m.end()))
            .collect();
        found.sort_unstable();
        for (start, end) in found {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }

    /// `bytes` arriving in one piece (a trailer's value, a WebSocket control frame) with every
    /// form masked.
    pub fn mask_whole(&self, bytes: &[u8]) -> Vec<u8> {
        let mut masked = bytes.to_vec();
        for (start, end) in self.spans(bytes) {
            masked[start..end].fill(MASK_BYTE);
        }
        masked
    }

    /// The length of the longest tail of `bytes` that is the start of a form but not all of it:
    /// what has to wait for the next chunk to tell whether it is a secret. A whole form at the
    /// end is held too when it starts a longer one (the token, then the rest of a longer form).
    fn held_back(&self, bytes: &[u8]) -> usize {
        let from = bytes.len().saturating_sub(self.longest.saturating_sub(1));
        (from..bytes.len())
            .find(|&at| {
                self.starts[usize::from(bytes[at].to_ascii_lowercase())] && {
                    let tail = &bytes[at..];
                    self.forms
                        .iter()
                        .any(|f| f.len() > tail.len() && f[..tail.len()].eq_ignore_ascii_case(tail))
                }
            })
            .map_or(0, |at| bytes.len() - at)
    }
}

/// Masks a stream of chunks with a [`SecretMask`]: [`push`](MaskStream::push) returns what can
/// go on now and keeps back only a tail that could be the start of a secret;
/// [`finish`](MaskStream::finish) returns the rest. Bytes are only ever delayed, never added or
/// removed. No `Debug`: the held-back tail can be the start of a secret.
pub(crate) struct MaskStream {
    mask: Arc<SecretMask>,
    /// The held-back tail, as received (unmasked, so a form that starts in it is still found).
    carry: Vec<u8>,
    /// Ranges of `carry` that belong to an occurrence already found: masked when they go.
    owed: Vec<(usize, usize)>,
}

impl MaskStream {
    pub fn new(mask: Arc<SecretMask>) -> MaskStream {
        MaskStream {
            mask,
            carry: Vec::new(),
            owed: Vec::new(),
        }
    }

    /// The next chunk; returns the masked bytes that can no longer be part of a secret (possibly
    /// none).
    pub fn push(&mut self, data: Bytes) -> Bytes {
        if self.carry.is_empty() {
            // The common case: nothing held, nothing found, nothing to hold: the chunk goes on
            // as it came, without a copy.
            let spans = self.mask.spans(&data);
            let hold = self.mask.held_back(&data);
            if spans.is_empty() && hold == 0 {
                return data;
            }
            return self.emit(data.to_vec(), &spans, hold);
        }
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(&data);
        let mut spans = self.mask.spans(&buf);
        spans.append(&mut self.owed);
        let hold = self.mask.held_back(&buf);
        self.emit(buf, &spans, hold)
    }

    /// Masks `spans` in `buf`, keeps its last `hold` bytes (as received, with what they owe) and
    /// returns the rest.
    fn emit(&mut self, mut buf: Vec<u8>, spans: &[(usize, usize)], hold: usize) -> Bytes {
        let cut = buf.len() - hold;
        for &(start, end) in spans {
            if start < cut {
                buf[start..end.min(cut)].fill(MASK_BYTE);
            }
            if end > cut {
                self.owed.push((start.max(cut) - cut, end - cut));
            }
        }
        self.carry = buf.split_off(cut);
        Bytes::from(buf)
    }

    /// The held-back tail, masked where it belongs to a secret: the stream has ended, so it can
    /// start no other.
    pub fn finish(&mut self) -> Bytes {
        let mut rest = std::mem::take(&mut self.carry);
        for (start, end) in self.owed.drain(..) {
            rest[start..end].fill(MASK_BYTE);
        }
        Bytes::from(rest)
    }

    /// How many bytes are held back.
    pub fn held(&self) -> usize {
        self.carry.len()
    }

    /// The mask it searches with.
    pub fn mask(&self) -> &SecretMask {
        &self.mask
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use moat_plugin_sdk::Secret;
    use proptest::strategy::Strategy as _;

    use super::*;

    fn mask(secrets: &[&str]) -> Arc<SecretMask> {
        let set: SecretSet = secrets.iter().map(|s| Secret::new(*s)).collect();
        SecretMask::new(&set).unwrap()
    }

    /// `text` through a [`MaskStream`] cut at every point in `cuts`.
    fn through(mask: &Arc<SecretMask>, text: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut stream = MaskStream::new(Arc::clone(mask));
        let mut out = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain([&text.len()]) {
            out.extend_from_slice(&stream.push(Bytes::copy_from_slice(&text[at..cut])));
            at = cut;
        }
        out.extend_from_slice(&stream.finish());
        out
    }

    /// What the stream must give for `text`: each of `hidden` masked byte for byte (found in
    /// the text ignoring case), everything else as it was.
    fn masked(text: &[u8], hidden: &[&[u8]]) -> Vec<u8> {
        let lower = text.to_ascii_lowercase();
        let mut out = text.to_vec();
        for needle in hidden {
            let needle = needle.to_ascii_lowercase();
            for start in 0..lower.len().saturating_sub(needle.len() - 1) {
                if lower[start..start + needle.len()] == needle[..] {
                    out[start..start + needle.len()].fill(MASK_BYTE);
                }
            }
        }
        out
    }

    #[test]
    fn every_form_is_masked_in_place_at_every_split_into_two_and_three_pieces() {
        let token = "ghp_EchoedToken0123456789";
        let basic = STANDARD.encode(format!("x-access-token:{token}"));
        let secrets = [
            format!("Bearer {token}"),
            format!("Basic {basic}"),
            "sk-other-credential-42".to_owned(),
        ];
        let mask = mask(&secrets.iter().map(String::as_str).collect::<Vec<_>>());
        let text = format!(
            "{{\"authorization\":\"Bearer {token}\",\"upper\":\"{}\",\"basic\":\"Basic {basic}\",\
             \"pair\":\"x-access-token:{token}\",\"url\":\"?t=sk-other-credential-42&u=%3F\",\
             \"b64\":\"{}\",\"end\":\"{token}",
            token.to_ascii_uppercase(),
            STANDARD.encode(token),
        );
        let text = text.as_bytes();
        let expected = masked(
            text,
            &[
                token.as_bytes(),
                format!("Bearer {token}").as_bytes(),
                format!("Basic {basic}").as_bytes(),
                format!("x-access-token:{token}").as_bytes(),
                b"sk-other-credential-42",
                STANDARD.encode(token).as_bytes(),
            ],
        );
        assert!(!String::from_utf8_lossy(&expected).contains("EchoedToken"));
        assert_eq!(expected.len(), text.len());
        assert_eq!(through(&mask, text, &[]), expected);
        for a in 0..=text.len() {
            assert_eq!(through(&mask, text, &[a]), expected, "cut at {a}");
        }
        // Three pieces, every pair of cuts 1 to 9 bytes apart.
        for a in 0..text.len() {
            for b in a + 1..(a + 10).min(text.len()) {
                assert_eq!(through(&mask, text, &[a, b]), expected, "cuts at {a}, {b}");
            }
        }
        // One byte at a time.
        let every: Vec<usize> = (1..text.len()).collect();
        assert_eq!(through(&mask, text, &every), expected);
    }

    #[test]
    fn a_form_that_starts_a_longer_one_is_masked_with_all_of_it() {
        // The token alone is a form and so is the whole header value; a body holding the token
        // followed by more of a longer form, cut right after the token, is masked whole.
        let mask = mask(&["abcdef123", "abcdef123XYZW"]);
        let text = b"<abcdef123XYZW> <abcdef123>";
        let expected = b"<*************> <*********>";
        for cut in 0..=text.len() {
            assert_eq!(through(&mask, text, &[cut]), expected, "cut at {cut}");
        }
    }

    #[test]
    fn only_possible_starts_are_held_and_clean_chunks_pass_without_a_copy() {
        let mask = mask(&["Bearer secret-token-1"]);
        let mut stream = MaskStream::new(Arc::clone(&mask));
        // SSE events end in a newline, which starts no secret: nothing is delayed.
        let event = Bytes::from_static(b"data: {\"n\":1}\n\n");
        let out = stream.push(event.clone());
        assert_eq!(out, event);
        assert_eq!(out.as_ptr(), event.as_ptr(), "passed on, not copied");
        assert_eq!(stream.held(), 0);
        // A tail that could start the token (in another case) waits for the next chunk.
        assert_eq!(stream.push(Bytes::from_static(b"x SECR")), &b"x "[..]);
        assert_eq!(stream.held(), 4);
        assert_eq!(
            stream.push(Bytes::from_static(b"eT-TOKEN-1 y\n")),
            &b"************** y\n"[..]
        );
        // A tail that turns out not to be one goes on as it was.
        assert_eq!(stream.push(Bytes::from_static(b"z secre")), &b"z "[..]);
        assert_eq!(
            stream.push(Bytes::from_static(b"tly\n")),
            &b"secretly\n"[..]
        );
        assert_eq!(stream.finish(), Bytes::new());
    }

    #[test]
    fn the_end_of_the_stream_releases_the_tail_masked_where_it_owes() {
        let mask = mask(&["abcdef123", "abcdef123XYZW"]);
        let mut stream = MaskStream::new(Arc::clone(&mask));
        // The short form is complete but could still grow into the long one: held, owed.
        assert_eq!(stream.push(Bytes::from_static(b"x abcdef123")), &b"x "[..]);
        assert_eq!(stream.finish(), &b"*********"[..]);
        // A cut-off start of a form is not a secret: it goes as it was.
        let mut stream = MaskStream::new(mask);
        assert_eq!(stream.push(Bytes::from_static(b"x abcd")), &b"x "[..]);
        assert_eq!(stream.finish(), &b"abcd"[..]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::proxy::test_cases(512)))]

        /// Text made of pieces of the secrets (so near-misses and overlaps abound) and whole ones,
        /// in any case, cut anywhere: the stream gives what one search of the whole text gives,
        /// as long as the input, with no form of a secret left in it.
        #[test]
        fn streamed_is_whole_and_no_form_survives(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![
                        "tok-A1b2C3", "tok-A1", "b2C3", "Bearer ", "Bearer tok-A1b2C3",
                        "dG9rLUExYjJDMw", "tok-A1b2C3d4E5", "d4E5", "%2D", "-",
                    ]).prop_map(str::to_owned),
                    "[a-zA-Z0-9 %*-]{0,6}",
                ],
                0..24,
            ),
            upper in proptest::collection::vec(proptest::bool::ANY, 24),
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            use proptest::{prop_assert, prop_assert_eq};
            let mask = mask(&["Bearer tok-A1b2C3", "tok-A1b2C3d4E5"]);
            let text: String = pieces
                .iter()
                .zip(&upper)
                .map(|(p, up)| if *up { p.to_ascii_uppercase() } else { p.clone() })
                .collect();
            let text = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c <= text.len()).collect();
            cuts.sort_unstable();
            let whole = through(&mask, text, &[]);
            prop_assert_eq!(whole.len(), text.len());
            prop_assert_eq!(through(&mask, text, &cuts), whole.clone());
            let lower = whole.to_ascii_lowercase();
            for form in &mask.forms {
                prop_assert!(
                    !lower.windows(form.len()).any(|w| w == form.as_slice()),
                    "{:?} left in {:?}",
                    String::from_utf8_lossy(form),
                    String::from_utf8_lossy(&whole)
                );
            }
            // Only masking: every byte is the input's or the mask.
            for (out, was) in whole.iter().zip(text) {
                prop_assert!(out == was || *out == MASK_BYTE);
            }
        }
    }

    #[test]
    fn values_too_short_to_search_make_no_mask() {
        let set: SecretSet = [Secret::new("abc")].into_iter().collect();
        assert!(SecretMask::new(&set).is_none());
        assert!(SecretMask::new(&SecretSet::new()).is_none());
    }
}
