//! Narrow entry points for the fuzz targets in `fuzz/` (not an API): each takes the bytes an
//! outsider controls and runs them through the parser moat uses, the way moat uses it. They
//! return nothing useful and must never panic, hang or leak, whatever the input.
//!
//! | entry | outside input |
//! | --- | --- |
//! | [`plugin_stdout`] | what a plugin writes on its stdout (line framing, JSON-RPC envelope, `$/log`) |
//! | [`network_rule`] | a network rule string (`api.example.com deny DELETE /**`) and a request it judges |
//! | [`credential_file`] | a damaged or hostile `.enc` credential file, and its decrypted JSON |
//! | [`moat_yaml`] | a workspace's `moat.yaml` |
//! | [`provider_file`] | a declared provider's YAML file (`$MOAT_HOME/providers/*.yaml`), and the rules it makes |
//! | [`upstream_websocket`] | what an upstream sends on a WebSocket of a host moat adds credentials to (frames, masked) |
//!
//! The proxy's front is fuzzed through [`crate::proxy::Proxy::into_stream_server`].

use moat_plugin_sdk::{Secret, SecretSet};
use std::path::Path;
use std::sync::Arc;

use crate::proxy::mask::SecretMask;
use crate::proxy::policy::CompiledPolicy;
use crate::proxy::wsmask::{FrameError, FrameMasker};
use crate::proxy::{NetworkPolicy, PolicyMode};

/// Feeds `data` to moat's reader of a plugin's stdout until it reports the end of output or a
/// protocol violation. The first byte picks the line limit (small limits reach the overlong-line
/// path), the rest is the stream; a known secret is remembered so redaction runs on what is
/// logged.
pub fn plugin_stdout(data: &[u8]) {
    let Some((&limit, stream)) = data.split_first() else {
        return;
    };
    let max_line = 16 + usize::from(limit) * 64;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    let secret = Secret::new("s3cret-fuzz-token");
    runtime.block_on(crate::plugin::transport::read_to_end(
        stream, max_line, &secret,
    ));
}

/// Parses `data`'s first line as a network rule (`HOST allow|deny METHOD|* /glob`, what `--rule`
/// and `moat.yaml` take); if it is valid, compiles it into a policy (strict when the rule text
/// says so) and judges the request whose host, method and path are the next three lines.
pub fn network_rule(data: &str) {
    let mut lines = data.split('\n');
    let rule = lines.next().unwrap_or_default();
    let Ok(entry) = crate::config::parse_rule(rule) else {
        return;
    };
    let host = lines.next().unwrap_or("api.example.com");
    let method = lines.next().unwrap_or("GET");
    let path = lines.next().unwrap_or("/");
    let port = if rule.len().is_multiple_of(2) {
        443
    } else {
        80
    };
    for mode in [PolicyMode::Permissive, PolicyMode::Strict] {
        let policy = NetworkPolicy {
            policy: mode,
            rules: vec![entry.clone()],
            ..NetworkPolicy::default()
        };
        if let Ok(compiled) = CompiledPolicy::compile(&policy, &["fuzz.test"]) {
            let _ = compiled.check(host, port, method, path);
        }
    }
}

/// Decodes `data` as the credential file of the store key `github`: as it is (a damaged or
/// hostile file) when the first byte is even; otherwise the rest, encrypted first with the
/// store's key, so the decrypted JSON is what is fuzzed.
pub fn credential_file(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    crate::credential::store::fuzz_decode(rest, mode % 2 == 1);
}

/// Parses `text` as a workspace's `moat.yaml`.
pub fn moat_yaml(text: &str) {
    let _ = crate::config::Config::parse(text, Path::new("/fuzz/workspace/moat.yaml"));
}

/// Parses `text` as a declared provider's file; when it is valid, builds the provider and asks it
/// for its rules and container variables with a dummy token, as `moat provider check` does.
pub fn provider_file(text: &str) {
    use moat_plugin_sdk::{Credential, CredentialProvider};
    let Ok(file) = crate::declared::parse(text, Path::new("/fuzz/providers/fuzz.yaml")) else {
        return;
    };
    let name = file.name.as_str().to_owned();
    let provider = crate::declared::DeclaredProvider::with_api_url(file, None);
    let credential = Credential::new(name, "fuzz-dummy-token-0123456789");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async {
        let _ = provider.info();
        let _ = provider.configure_proxy(&credential).await;
        let _ = provider.container_env(&credential).await;
    });
}

/// Feeds `data` (after its first byte) to the frame masker of a WebSocket on a credential host,
/// as the upstream's side after the `101`: once in one piece, once cut every 1 to 16 bytes (the
/// first byte says). How the bytes arrive must not matter: the same output, or the same refusal;
/// and the masker never sends more than it was given.
pub fn upstream_websocket(data: &[u8]) {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    // Built once: the automaton costs more than most inputs.
    static MASK: std::sync::OnceLock<Arc<SecretMask>> = std::sync::OnceLock::new();
    let mask = MASK.get_or_init(|| {
        let secrets: SecretSet = [Secret::new("Bearer ghp_fuzzWebSocket0123")]
            .into_iter()
            .collect();
        SecretMask::new(&secrets).expect("a secret long enough to search for")
    });
    let whole = relay(mask, stream, stream.len().max(1));
    let cut = relay(mask, stream, usize::from(step % 16) + 1);
    match (&whole, &cut) {
        (Ok(whole), Ok(cut)) => assert!(whole == cut, "the output depends on the cuts"),
        (Err(whole), Err(cut)) => assert_eq!(whole, cut, "the refusal depends on the cuts"),
        _ => panic!("refused one way and not the other: {whole:?} / {cut:?}"),
    }
}

/// `stream` through a masker `step` bytes at a time, then its end.
fn relay(mask: &Arc<SecretMask>, stream: &[u8], step: usize) -> Result<Vec<u8>, FrameError> {
    let mut masker = FrameMasker::new(Arc::clone(mask));
    let mut out = Vec::new();
    for piece in stream.chunks(step) {
        out.extend_from_slice(&masker.push(piece)?);
    }
    masker.finish(&mut out);
    assert!(
        out.len() <= stream.len(),
        "the masker sent more than it got"
    );
    Ok(out)
}
