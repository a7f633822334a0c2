//! What the container gets: an AWS config whose `credential_process` is a small helper asking
//! moat's proxy, in a folder made on the host per run and mounted read-only at
//! [`super::CONTAINER_DIR`]. Neither file holds a secret.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use ring::rand::SecureRandom as _;

/// The config's file name.
pub(super) const CONFIG: &str = "config";
/// The helper's file name.
pub(super) const HELPER: &str = "credentials";
const PREFIX: &str = "moat-aws-";

/// The `credential_process` helper (POSIX sh + curl). It asks `$MOAT_ENDPOINT_URL` directly (not
/// through the proxy), with the run's token in a header read from stdin (never in argv), for at
/// most 10 s; on a 2xx it prints the body (the credential_process JSON), otherwise it prints the
/// body on stderr and fails.
pub(super) const HELPER_SCRIPT: &str = r#"#!/bin/sh
# moat: AWS credential_process helper. Prints temporary credentials of the role granted to this
# run, which moat's proxy obtains from AWS STS. The host's own AWS keys never enter the container.
set -u
if [ -z "${MOAT_ENDPOINT_URL:-}" ] || [ -z "${MOAT_ENDPOINT_TOKEN:-}" ]; then
    echo "moat: MOAT_ENDPOINT_URL and MOAT_ENDPOINT_TOKEN are not set; is this a moat run with the aws grant?" >&2
    exit 1
fi
out=$(printf 'Authorization: Bearer %s\n' "$MOAT_ENDPOINT_TOKEN" |
    curl --silent --show-error --noproxy '*' --max-time 10 -H @- \
        -w '\n%{http_code}' "$MOAT_ENDPOINT_URL/_aws/credentials") || {
    echo "moat: cannot reach moat's proxy for AWS credentials" >&2
    exit 1
}
status=${out##*
}
body=${out%
*}
case "$status" in
2??) printf '%s\n' "$body" ;;
*)
    printf '%s\n' "$body" >&2
    exit 1
    ;;
esac
"#;

/// The AWS config: the default profile gets its credentials from the helper. Run by `sh`, so
/// that a host temporary folder mounted `noexec` (bind mounts keep that flag) does not matter.
pub(super) fn config(region: &str) -> String {
    format!(
        "[default]\ncredential_process = sh {}/{HELPER}\nregion = {region}\n",
        super::CONTAINER_DIR
    )
}

/// Makes `<root>/moat-aws-<random>/` with the config and the helper (world-readable: the
/// container's user is not the host's, and nothing here is secret).
pub(super) fn stage(root: &Path, region: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| std::io::Error::other("no system randomness"))?;
    let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let dir = root.join(format!("{PREFIX}{name}"));
    std::fs::DirBuilder::new().mode(0o755).create(&dir)?;
    let write = |file: &str, content: &str, mode: u32| -> std::io::Result<()> {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(dir.join(file))?;
        out.write_all(content.as_bytes())
    };
    let written =
        write(CONFIG, &config(region), 0o644).and_then(|()| write(HELPER, HELPER_SCRIPT, 0o755));
    if let Err(err) = written {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(err);
    }
    Ok(dir)
}

/// Removes a folder [`stage`] made under `root`; any other path is left alone (the cleanup token
/// comes back from outside).
pub(super) fn remove(root: &Path, dir: &Path) {
    let ours = dir.parent() == Some(root)
        && dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(PREFIX));
    if ours && let Err(err) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), %err, "cannot remove the AWS config folder");
    }
}
