//! What Claude Code finds in the container (reference-runtime §12.1): its login with a
//! placeholder token, its onboarding done, `/workspace` trusted, the run's MCP servers, the
//! permission prompts off, the run's context as `CLAUDE.md`, and, with both Anthropic grants, the
//! API key for shell commands only. Everything is an init file under the container's home: no
//! real secret is ever written.

use std::path::{Path, PathBuf};

use moat_plugin_sdk::{
    ContainerConfig, ContainerFiles, Credential, EnvVar, InitFile, Mount, PrepareOpts,
    ProviderResult,
};
use serde_json::{Map, Value, json};

use super::session::{CONTAINER_PROJECT, host_project_dir};

/// The access token Claude Code finds in `.credentials.json`: its `sk-ant-oat01-` prefix makes
/// Claude Code take its OAuth (subscription) code paths; the proxy puts the real token on the wire.
pub const TOKEN_PLACEHOLDER: &str = "sk-ant-oat01-moat-proxy-injected-placeholder-not-a-real-token";

/// Scopes written when the grant has none (a pasted setup-token).
pub const DEFAULT_SCOPES: &[&str] = &[
    "user:file_upload",
    "user:inference",
    "user:mcp_servers",
    "user:profile",
    "user:sessions:claude_code",
];

/// The subscription type written when the grant does not say.
pub const DEFAULT_SUBSCRIPTION: &str = "max";

/// Metadata keys of a claude credential.
pub const META_SUBSCRIPTION: &str = "claude_subscription_type";
/// See [`META_SUBSCRIPTION`].
pub const META_RATE_LIMIT_TIER: &str = "claude_rate_limit_tier";

/// Keys of the host's `~/.claude.json` copied into the container's (account identity and
/// migration state; never projects, history or MCP servers of the host).
pub const ALLOWED_HOST_KEYS: &[&str] = &[
    "oauthAccount",
    "userID",
    "anonymousId",
    "installMethod",
    "lastOnboardingVersion",
    "lastReleaseNotesSeen",
    "numStartups",
    "autoUpdaterMigrationComplete",
    "bypassPermissionsModeAccepted",
    "sonnet45MigrationComplete",
    "opus45MigrationComplete",
    "thinkingMigrationComplete",
    "clientDataCache",
    "cachedGrowthBookFeatures",
    "firstStartTime",
];

/// The file that gives shell commands the API key when both Anthropic grants are present.
pub const ANTHROPIC_ENV_FILE: &str = ".claude/anthropic-env.sh";

/// Far enough that Claude Code never tries to refresh the placeholder (it has no refresh token).
const FAR_EXPIRY_DAYS: i64 = 365;

/// The container's Claude Code configuration for `opts`. `credential` is the claude grant's
/// (`None`: staged for an API key, without a login file); `host_home` the host user's home (its
/// `~/.claude.json` keys and `~/.claude/projects`).
pub fn stage(
    opts: &PrepareOpts,
    credential: Option<&Credential>,
    host_home: Option<&Path>,
) -> ProviderResult<ContainerConfig> {
    let home = &opts.container_home;
    let mut files = Vec::new();
    let mut env = Vec::new();
    let mut withhold_env = Vec::new();
    if let Some(credential) = credential {
        files.push(init_file(
            home,
            ".claude/.credentials.json",
            &credentials_json(credential),
        ));
    }
    let host_config = host_home.and_then(|h| read_json(&h.join(".claude.json")));
    files.push(init_file(
        home,
        ".claude.json",
        &claude_json(opts, host_config.as_ref()),
    ));
    files.push(init_file(home, ".claude/settings.json", &settings_json()));
    files.extend(opts.context_file(home.join(".claude/CLAUDE.md")));
    let both = ["claude", "anthropic"]
        .iter()
        .all(|name| opts.grants.iter().any(|g| g == name));
    if both {
        // The key would override Claude Code's subscription login (API billing): out of the
        // container's environment, into shell commands only (bash reads BASH_ENV when it runs
        // a script or `bash -c`; the `claude` function keeps it from Claude Code itself).
        withhold_env.push(super::super::anthropic::KEY_ENV.to_owned());
        files.push(InitFile {
            path: home.join(ANTHROPIC_ENV_FILE),
            content: anthropic_env_sh(),
        });
        env.push(EnvVar::new(
            "BASH_ENV",
            home.join(ANTHROPIC_ENV_FILE).display().to_string(),
        ));
    }
    let mut mounts = Vec::new();
    if let (Some(host_home), Some(workspace)) = (host_home, opts.workspace.as_deref()) {
        // Claude Code's sessions of this workspace, kept on the host (`--resume` across runs,
        // and the session id `run_stopped` records).
        let dir = host_project_dir(host_home, workspace);
        if std::fs::create_dir_all(&dir).is_ok() {
            mounts.push(Mount {
                source: dir,
                target: home.join(CONTAINER_PROJECT),
                read_only: false,
            });
        } else {
            tracing::warn!(
                "cannot create {}; Claude sessions will not be kept",
                dir.display()
            );
        }
    }
    Ok(ContainerConfig {
        env,
        files: ContainerFiles {
            mounts,
            init_files: files,
            cleanup: None,
        },
        withhold_env,
    })
}

fn init_file(home: &Path, relative: &str, value: &Value) -> InitFile {
    InitFile {
        path: home.join(relative),
        content: serde_json::to_string_pretty(value).unwrap_or_default() + "\n",
    }
}

fn read_json(path: &PathBuf) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// `~/.claude/.credentials.json`: the placeholder token with the grant's expiry (or a far one),
/// scopes and subscription.
pub fn credentials_json(credential: &Credential) -> Value {
    let expires_at = credential
        .expires_at
        .unwrap_or_else(|| chrono::Utc::now() + chrono::Duration::days(FAR_EXPIRY_DAYS));
    let scopes: Vec<String> = if credential.scopes.is_empty() {
        DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect()
    } else {
        credential.scopes.clone()
    };
    let subscription = credential
        .metadata
        .get(META_SUBSCRIPTION)
        .map_or(DEFAULT_SUBSCRIPTION, String::as_str);
    let mut oauth = json!({
        "accessToken": TOKEN_PLACEHOLDER,
        "expiresAt": expires_at.timestamp_millis(),
        "scopes": scopes,
        "subscriptionType": subscription,
    });
    if let Some(tier) = credential.metadata.get(META_RATE_LIMIT_TIER) {
        oauth["rateLimitTier"] = json!(tier);
    }
    json!({ "claudeAiOauth": oauth })
}

/// `~/.claude.json`: the host's allow-listed keys, onboarding done, `/workspace` trusted, the
/// run's MCP servers.
pub fn claude_json(opts: &PrepareOpts, host: Option<&Value>) -> Value {
    let mut config = Map::new();
    if let Some(Value::Object(host)) = host {
        for key in ALLOWED_HOST_KEYS {
            if let Some(value) = host.get(*key) {
                config.insert((*key).to_owned(), value.clone());
            }
        }
    }
    config.insert("hasCompletedOnboarding".into(), json!(true));
    config.insert("theme".into(), json!("dark"));
    config.insert("bypassPermissionsModeAccepted".into(), json!(true));
    config.insert(
        "projects".into(),
        json!({ "/workspace": {
            "hasTrustDialogAccepted": true,
            "hasCompletedProjectOnboarding": true,
            "allowedTools": [],
        }}),
    );
    let servers: Map<String, Value> = opts
        .mcp_servers
        .iter()
        .map(|(name, server)| {
            (
                name.clone(),
                json!({"type": "http", "url": server.url, "headers": server.headers}),
            )
        })
        .collect();
    config.insert("mcpServers".into(), Value::Object(servers));
    Value::Object(config)
}

/// `~/.claude/settings.json`: no permission prompts (the container is the sandbox).
pub fn settings_json() -> Value {
    json!({
        "permissions": { "defaultMode": "bypassPermissions" },
        "skipDangerousModePermissionPrompt": true,
    })
}

/// `~/.claude/anthropic-env.sh`, read by non-interactive bash through `BASH_ENV`.
pub fn anthropic_env_sh() -> String {
    format!(
        "# Generated by moat. With both the claude and anthropic grants, the API key is kept out\n\
         # of the container's environment (it would override Claude Code's subscription login)\n\
         # and given to shell commands here; the proxy puts the real key on the wire.\n\
         export {key}={placeholder}\n\
         claude() {{ env -u {key} -u BASH_ENV claude \"$@\"; }}\n",
        key = super::super::anthropic::KEY_ENV,
        placeholder = super::super::anthropic::KEY_PLACEHOLDER,
    )
}
