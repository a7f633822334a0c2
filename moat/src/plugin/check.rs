//! `moat plugin check`: a conformance check for plugin authors.
//!
//! Runs an executable through everything moat will ask of it: the name, running it by hand, the
//! version negotiation, the handshake, every method it declares and one it cannot know. Each
//! answer is checked against protocol v1's schema, and a made-up token is watched for in every
//! place it must never reach (container environment, files, logs). The report says what is
//! wrong in plain words, so an author can fix a plugin without reading moat's source.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonrpsee::types::error::METHOD_NOT_FOUND_CODE;
use moat_plugin_sdk::protocol::{
    self, CleanupParams, CredentialParams, Empty, InitializeParams, InitializeResult, method,
};
use moat_plugin_sdk::{
    Capability, Credential, EndpointRequest, MountsRequest, PrepareOpts, RunStoppedContext, Secret,
    SecretSet, validate_name,
};
use serde::Serialize;
use serde_json::Value;

use super::process::{CallError, Connection, Timeouts};
use super::schema;

/// How long the executable may take to explain itself when run without `--moat-plugin`.
const BY_HAND_LIMIT: Duration = Duration::from_secs(3);

/// The result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// As the protocol wants.
    Pass,
    /// Wrong; the detail says how.
    Fail,
    /// Not checked (the capability is not declared, or an earlier failure made it pointless).
    Skip,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked (`handshake`, `configure_proxy`).
    pub name: String,
    /// Pass, fail or skip.
    pub outcome: Outcome,
    /// What was seen, in plain words.
    pub detail: String,
}

/// Everything checked about one executable.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The executable.
    pub path: PathBuf,
    /// The provider name, once known.
    pub provider: Option<String>,
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
}

impl CheckReport {
    /// How many checks failed.
    pub fn failed(&self) -> usize {
        self.checks
            .iter()
            .filter(|check| check.outcome == Outcome::Fail)
            .count()
    }

    fn record(&mut self, name: &str, outcome: Outcome, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            outcome,
            detail: detail.into(),
        });
    }

    fn pass(&mut self, name: &str, detail: impl Into<String>) {
        self.record(name, Outcome::Pass, detail);
    }

    fn fail(&mut self, name: &str, detail: impl Into<String>) {
        self.record(name, Outcome::Fail, detail);
    }
}

/// Checks the plugin at `path`. Never fails as a whole: every problem is a line of the report.
pub async fn check(path: &Path, timeouts: Timeouts) -> CheckReport {
    let mut report = CheckReport {
        path: path.to_path_buf(),
        provider: None,
        checks: Vec::new(),
    };
    let Some(name) = check_file(&mut report, path) else {
        return report;
    };
    report.provider = Some(name.clone());
    check_by_hand(&mut report, path).await;
    check_version_refusal(&mut report, path, &name, timeouts).await;
    check_session(&mut report, path, &name, timeouts).await;
    report
}

/// The name and the permission bits; `None` when nothing else can be checked.
fn check_file(report: &mut CheckReport, path: &Path) -> Option<String> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match file_name.strip_prefix(protocol::EXECUTABLE_PREFIX) {
        Some(name) if validate_name(name).is_ok() => {
            report.pass("name", format!("{file_name} provides \"{name}\""));
            name.to_string()
        }
        _ => {
            report.fail(
                "name",
                format!(
                    "{file_name:?} is not {}<name> with a name of lowercase letters, digits and '-'; \
                     moat only discovers executables named that way",
                    protocol::EXECUTABLE_PREFIX
                ),
            );
            return None;
        }
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => {
            report.pass("executable", "the file is executable");
            Some(name)
        }
        Ok(_) => {
            report.fail(
                "executable",
                format!("not an executable file: run 'chmod +x {}'", path.display()),
            );
            None
        }
        Err(err) => {
            report.fail(
                "executable",
                format!("cannot read {}: {err}", path.display()),
            );
            None
        }
    }
}

/// Run without `--moat-plugin`, a plugin must say what it is and exit, not wait on stdin.
async fn check_by_hand(report: &mut CheckReport, path: &Path) {
    let mut command = tokio::process::Command::new(path);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(err) => return report.fail("run by hand", format!("cannot start it: {err}")),
    };
    // stdin stays open (held by the child handle) so a plugin that reads it would block.
    match tokio::time::timeout(BY_HAND_LIMIT, child.wait_with_output()).await {
        Err(_) => report.fail(
            "run by hand",
            format!(
                "run without {} it was still running after {}s; it should print what it is and \
                 exit (the SDK's serve() does this)",
                protocol::PLUGIN_FLAG,
                BY_HAND_LIMIT.as_secs()
            ),
        ),
        Ok(Err(err)) => report.fail("run by hand", format!("cannot wait for it: {err}")),
        Ok(Ok(output)) if output.stdout.is_empty() && output.stderr.is_empty() => report.fail(
            "run by hand",
            "run without --moat-plugin it exited without a word; it should say it is a moat plugin",
        ),
        Ok(Ok(output)) => report.pass(
            "run by hand",
            format!(
                "without {} it explains itself and exits ({})",
                protocol::PLUGIN_FLAG,
                output.status
            ),
        ),
    }
}

/// Offered only a protocol it cannot speak, a plugin must refuse, not pretend.
async fn check_version_refusal(
    report: &mut CheckReport,
    path: &Path,
    name: &str,
    timeouts: Timeouts,
) {
    const LABEL: &str = "version refusal";
    let unknown = protocol::PROTOCOL_VERSION + 1000;
    let connection = match Connection::spawn(path, name, timeouts, false).await {
        Ok(connection) => connection,
        Err(fault) => return report.fail(LABEL, fault.reason()),
    };
    let params = InitializeParams {
        protocol_versions: vec![unknown],
        host_version: check_host(),
    };
    match connection.call::<_, Value>(method::INITIALIZE, &params, timeouts.initialize).await {
        Ok(answer) => report.fail(
            LABEL,
            format!(
                "offered only protocol {unknown}, it answered {} instead of an error: a plugin must \
                 refuse versions it does not speak (code {})",
                answer.get("protocol_version").map_or_else(|| "without a version".into(), Value::to_string),
                protocol::code::UNSUPPORTED_VERSION
            ),
        ),
        Err(CallError::Remote(error)) => report.pass(
            LABEL,
            format!("refuses protocol {unknown} with error {}: {}", error.code(), error.message()),
        ),
        Err(CallError::BadResult(detail)) => report.fail(LABEL, detail),
        Err(CallError::Fatal(fault)) => report.fail(LABEL, fault.reason()),
    }
    connection.shutdown().await;
}

/// The handshake and every method, on one running plugin.
async fn check_session(report: &mut CheckReport, path: &Path, name: &str, timeouts: Timeouts) {
    let connection = match Connection::spawn(path, name, timeouts, false).await {
        Ok(connection) => connection,
        Err(fault) => return report.fail("handshake", fault.reason()),
    };
    let mut session = Session {
        report,
        connection: &connection,
        timeouts,
        token: check_token(),
        alive: true,
    };
    session.run(name).await;
    connection.shutdown().await;
    let leaked = connection
        .stderr_tail()
        .iter()
        .any(|line| line.contains(&session.token));
    if leaked {
        report.fail(
            "logs",
            "the test token appeared in the plugin's stderr: never log credentials",
        );
    } else {
        report.pass(
            "logs",
            "the test token never appeared in the plugin's stderr",
        );
    }
}

struct Session<'a> {
    report: &'a mut CheckReport,
    connection: &'a Connection,
    timeouts: Timeouts,
    token: String,
    alive: bool,
}

impl Session<'_> {
    async fn run(&mut self, name: &str) {
        let Some(init) = self.handshake(name).await else {
            return;
        };
        let credential = Credential::new(name, self.token.clone());
        let by_credential = CredentialParams {
            credential: credential.clone(),
        };

        self.grant_conversation(name).await;
        if let Some(rules) = self
            .call(
                "configure_proxy",
                method::CONFIGURE_PROXY,
                &by_credential,
                true,
            )
            .await
        {
            match rules["rules"].as_array().map(Vec::len).unwrap_or(0) {
                0 => self.report.fail(
                    "configure_proxy",
                    "returned no rules: the credential would never be used",
                ),
                n => self.report.pass("configure_proxy", format!("{n} rule(s)")),
            }
        }
        if let Some(env) = self
            .call(
                "container_env",
                method::CONTAINER_ENV,
                &by_credential,
                false,
            )
            .await
        {
            self.no_token_in("container_env", &env, "container environment");
        }
        let mounts = MountsRequest {
            credential: credential.clone(),
            container_home: "/home/moatuser".into(),
        };
        if let Some(files) = self.call("mounts", method::MOUNTS, &mounts, false).await {
            self.no_token_in("mounts", &files, "container files");
            if let Some(token) = files.get("cleanup").and_then(Value::as_str) {
                let params = CleanupParams {
                    token: moat_plugin_sdk::CleanupToken(token.into()),
                };
                if self
                    .call("cleanup", method::CLEANUP, &params, false)
                    .await
                    .is_some()
                {
                    self.report
                        .pass("cleanup", "accepts the cleanup token from mounts");
                }
            }
        }
        self.capabilities(&init, &credential, &by_credential).await;
        self.unknown_method().await;
        if self.alive
            && self
                .call("shutdown", method::SHUTDOWN, &Empty {}, true)
                .await
                .is_some()
        {
            self.report.pass("shutdown", "answers shutdown");
        }
    }

    /// Drives the grant conversation as `moat grant` does, answering every question itself (a
    /// secret with the test token, the others with their defaults), and checks every step: each
    /// answer against the schema, the conversation's rules, and the credential it ends with.
    async fn grant_conversation(&mut self, name: &str) {
        const LABEL: &str = "grant";
        let mut answers = serde_json::Map::new();
        let mut asked = Vec::new();
        for _ in 0..MAX_GRANT_STEPS {
            let request = serde_json::json!({ "answers": answers, "interactive": true });
            let Some(answer) = self.call(LABEL, method::GRANT, &request, true).await else {
                // A schema or protocol failure is reported; a well-formed error (the test token
                // was rejected, say) is a fine end.
                return;
            };
            match answer.get("step").and_then(Value::as_str) {
                Some("ask") => {
                    let prompts = answer["prompts"].as_array().cloned().unwrap_or_default();
                    if prompts.is_empty() {
                        return self.report.fail(
                            LABEL,
                            "asked an empty list of questions: return `done` or an error instead",
                        );
                    }
                    for prompt in &prompts {
                        let id = prompt.get("id").and_then(Value::as_str).unwrap_or_default();
                        if id.is_empty() {
                            return self.report.fail(LABEL, "asked a question without an `id`");
                        }
                        if answers.contains_key(id) {
                            return self.report.fail(
                                LABEL,
                                format!(
                                    "asked {id:?} again after it was answered: the answers so far \
                                     are in every call's `answers`"
                                ),
                            );
                        }
                        match answer_for(prompt, &self.token) {
                            Ok(reply) => {
                                answers.insert(id.to_string(), reply);
                                asked.push(id.to_string());
                            }
                            Err(problem) => {
                                return self
                                    .report
                                    .fail(LABEL, format!("question {id:?}: {problem}"));
                            }
                        }
                    }
                }
                Some("done") => return self.granted(name, &answer["credential"], &asked),
                other => {
                    return self.report.fail(
                        LABEL,
                        format!("answered with step {other:?}: expected \"ask\" or \"done\""),
                    );
                }
            }
        }
        self.report.fail(
            LABEL,
            format!("did not finish its grant in {MAX_GRANT_STEPS} steps"),
        );
    }

    /// The credential a grant ended with, as moat would store it.
    fn granted(&mut self, name: &str, credential: &Value, asked: &[String]) {
        const LABEL: &str = "grant";
        let provider = credential.get("provider").and_then(Value::as_str);
        if provider != Some(name) {
            return self.report.fail(
                LABEL,
                format!(
                    "returned a credential for {}, not {name:?}: `credential.provider` must be \
                     `info.name`",
                    provider.map_or_else(|| "no provider".into(), |p| format!("{p:?}"))
                ),
            );
        }
        if credential
            .get("token")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return self
                .report
                .fail(LABEL, "returned a credential with an empty token");
        }
        if credential
            .get("created_at")
            .and_then(Value::as_str)
            .is_none()
        {
            return self.report.fail(
                LABEL,
                "returned a credential without `created_at` (an RFC 3339 time)",
            );
        }
        let how = if asked.is_empty() {
            "without asking".to_string()
        } else {
            format!(
                "after asking for {} (answered by the check)",
                asked.join(", ")
            )
        };
        self.report
            .pass(LABEL, format!("returns a credential for {name:?} {how}"));
    }

    async fn handshake(&mut self, name: &str) -> Option<InitializeResult> {
        let params = InitializeParams {
            protocol_versions: vec![protocol::PROTOCOL_VERSION],
            host_version: check_host(),
        };
        let answer = self
            .call("handshake", method::INITIALIZE, &params, true)
            .await?;
        let init: InitializeResult = serde_json::from_value(answer).ok()?;
        if init.protocol_version != protocol::PROTOCOL_VERSION {
            self.report.fail(
                "handshake",
                format!(
                    "offered protocol {}, it claims {}",
                    protocol::PROTOCOL_VERSION,
                    init.protocol_version
                ),
            );
            return None;
        }
        if init.info.name != name {
            self.report.fail(
                "handshake",
                format!(
                    "it calls itself {:?} but is named {}{name}",
                    init.info.name,
                    protocol::EXECUTABLE_PREFIX
                ),
            );
            return None;
        }
        let capabilities: Vec<String> = init
            .info
            .capabilities
            .iter()
            .map(|c| format!("{c:?}").to_lowercase())
            .collect();
        self.report.pass(
            "handshake",
            format!(
                "protocol {}, \"{}\" ({}), capabilities: {}",
                init.protocol_version,
                init.info.name,
                init.info.description,
                if capabilities.is_empty() {
                    "none".into()
                } else {
                    capabilities.join(", ")
                }
            ),
        );
        Some(init)
    }

    async fn capabilities(
        &mut self,
        init: &InitializeResult,
        credential: &Credential,
        by_credential: &CredentialParams,
    ) {
        let has = |capability| init.info.has(capability);
        if has(Capability::Refresh)
            && self
                .call("refresh", method::REFRESH, by_credential, true)
                .await
                .is_some()
        {
            self.report
                .pass("refresh", "returns a renewed credential and its rules");
        }
        if has(Capability::Agent) {
            let opts = PrepareOpts {
                credential: Some(credential.clone()),
                container_home: "/home/moatuser".into(),
                workspace: None,
                grants: vec![init.info.name.clone()],
                mcp_servers: Default::default(),
                runtime_context: None,
                options: Value::Null,
            };
            if let Some(config) = self
                .call("prepare_container", method::PREPARE_CONTAINER, &opts, true)
                .await
            {
                self.no_token_in("prepare_container", &config, "agent configuration");
            }
        }
        if has(Capability::Endpoint) {
            if init.endpoints.is_empty() {
                self.report.fail(
                    "endpoint",
                    "declares the endpoint capability but no endpoint paths",
                );
            }
            for declared in &init.endpoints {
                let request = EndpointRequest {
                    credential: credential.clone(),
                    run_id: "moat-plugin-check".into(),
                    method: "GET".into(),
                    path: declared.path.clone(),
                    headers: Default::default(),
                    body: String::new(),
                };
                if let Some(response) = self
                    .call("endpoint", method::ENDPOINT, &request, true)
                    .await
                {
                    self.report.pass(
                        "endpoint",
                        format!("GET {} answered {}", declared.path, response["status"]),
                    );
                }
            }
        }
        if has(Capability::RunStopped) {
            let context = RunStoppedContext {
                run_id: "check".into(),
                workspace: "/tmp".into(),
                started_at: chrono::Utc::now(),
                exit_code: Some(0),
            };
            if self
                .call("run_stopped", method::RUN_STOPPED, &context, true)
                .await
                .is_some()
            {
                self.report.pass("run_stopped", "answers with metadata");
            }
        }
    }

    async fn unknown_method(&mut self) {
        if !self.alive {
            return;
        }
        const LABEL: &str = "unknown method";
        let answer = self
            .connection
            .call::<_, Value>("moat/check-unknown-method", &Empty {}, self.timeouts.call)
            .await;
        match answer {
            Err(CallError::Remote(error)) if error.code() == METHOD_NOT_FOUND_CODE => self
                .report
                .pass(LABEL, "answers -32601, which moat reads as \"unsupported\""),
            Err(CallError::Remote(error)) => self.report.fail(
                LABEL,
                format!(
                    "answered error {} instead of -32601 (method not found)",
                    error.code()
                ),
            ),
            Ok(_) | Err(CallError::BadResult(_)) => self.report.fail(
                LABEL,
                "answered a result to a method it cannot know; it must answer -32601",
            ),
            Err(CallError::Fatal(fault)) => self.fatal(LABEL, &fault),
        }
    }

    /// Calls `method` and checks the answer against its schema. `required`: whether "method not
    /// found" is a failure (else the method is optional and the trait's default applies).
    async fn call(
        &mut self,
        label: &str,
        method: &str,
        params: &(impl Serialize + Sync),
        required: bool,
    ) -> Option<Value> {
        if !self.alive {
            self.report.record(
                label,
                Outcome::Skip,
                "skipped: the plugin is no longer running",
            );
            return None;
        }
        let limit = if method == protocol::method::INITIALIZE {
            self.timeouts.initialize
        } else {
            self.timeouts.call
        };
        match self
            .connection
            .call::<_, Value>(method, params, limit)
            .await
        {
            Ok(answer) => {
                let file = format!("{method}.result.json");
                match schema::validate(&file, &answer) {
                    Ok(()) => Some(answer),
                    Err(problems) => {
                        self.report.fail(
                            label,
                            format!(
                                "the answer breaks schema/v1/{file}: {}",
                                problems.join("; ")
                            ),
                        );
                        None
                    }
                }
            }
            Err(CallError::Remote(error)) if error.code() == METHOD_NOT_FOUND_CODE && !required => {
                self.report.pass(
                    label,
                    "not implemented (-32601): moat uses the default, nothing",
                );
                None
            }
            Err(CallError::Remote(error)) => {
                self.judge_error(label, &error, required);
                None
            }
            Err(CallError::BadResult(detail)) => {
                self.report.fail(label, detail);
                None
            }
            Err(CallError::Fatal(fault)) => {
                self.fatal(label, &fault);
                None
            }
        }
    }

    /// A provider error is a fine answer when it is well-formed (the grant may need a token the
    /// check does not have); a malformed one is not.
    fn judge_error(
        &mut self,
        label: &str,
        error: &jsonrpsee::types::ErrorObjectOwned,
        required: bool,
    ) {
        let data = error
            .data()
            .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok());
        let kind = data
            .as_ref()
            .and_then(|d| d.get("kind"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if error.code() == METHOD_NOT_FOUND_CODE && required {
            return self.report.fail(
                label,
                format!("answered -32601 (not found), but every provider must implement {label}"),
            );
        }
        if error.code() == protocol::code::PROVIDER_ERROR {
            let Some(data) = &data else {
                return self.report.fail(
                    label,
                    "a provider error (-32000) without data: add {\"kind\": ..., \"hint\": ...}",
                );
            };
            if let Err(problems) = schema::validate("error-data.json", data) {
                return self.report.fail(
                    label,
                    format!(
                        "its error data breaks schema/v1/error-data.json: {}",
                        problems.join("; ")
                    ),
                );
            }
        }
        let kind = kind.unwrap_or_else(|| "no kind".into());
        self.report.pass(
            label,
            format!(
                "answers a well-formed error ({}, {kind}): {}",
                error.code(),
                error.message()
            ),
        );
    }

    /// The plugin failed (and was stopped): nothing more can be checked on it.
    fn fatal(&mut self, label: &str, fault: &super::PluginFault) {
        self.alive = false;
        self.report.fail(label, fault.reason());
    }

    fn no_token_in(&mut self, label: &str, answer: &Value, place: &str) {
        let text = answer.to_string();
        if token_forms(&self.token).occurs_in(&text) {
            self.report.fail(
                label,
                format!("the real token reaches the {place}: give the container a placeholder"),
            );
        } else {
            self.report
                .pass(label, format!("no real token in the {place}"));
        }
    }
}

/// The token as it may hide in an answer: raw, percent-encoded, or base64-encoded inside a longer
/// value (a Basic `user:token`, a docker `auth`) whatever its offset (see [`SecretSet`]).
fn token_forms(token: &str) -> SecretSet {
    SecretSet::from_iter([Secret::new(token)])
}

/// How many `grant` calls a conversation may take (as in `moat grant`).
const MAX_GRANT_STEPS: usize = 16;

/// What the check answers to one prompt (already valid against the schema): the test token for
/// a secret, the default for the others. A prompt moat could not ask is an error.
fn answer_for(prompt: &Value, token: &str) -> Result<Value, String> {
    if prompt
        .get("message")
        .and_then(Value::as_str)
        .is_none_or(|m| m.trim().is_empty())
    {
        return Err("no `message` to show the user".into());
    }
    let kind = &prompt["kind"];
    match kind.get("type").and_then(Value::as_str) {
        Some("secret") => Ok(serde_json::json!({ "secret": token })),
        Some("text") => {
            let default = kind.get("default").and_then(Value::as_str);
            Ok(serde_json::json!({ "text": default.unwrap_or("moat-check") }))
        }
        Some("confirm") => {
            let default = kind
                .get("default")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Ok(serde_json::json!({ "confirm": default }))
        }
        Some("choice") => {
            let first = kind
                .get("options")
                .and_then(Value::as_array)
                .and_then(|options| options.first())
                .and_then(|option| option.get("value"))
                .and_then(Value::as_str)
                .ok_or("a choice with no options")?;
            Ok(serde_json::json!({ "choice": first }))
        }
        other => Err(format!("a prompt of kind {other:?}, which moat cannot ask")),
    }
}

fn check_host() -> String {
    format!("moat {} (plugin check)", env!("CARGO_PKG_VERSION"))
}

/// A token that is unique to this check, so its appearance anywhere is proof of a leak.
fn check_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("moat-check-token-{nanos:x}{:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    #[test]
    fn a_token_is_found_base64_encoded_at_any_offset() {
        let token = check_token();
        let forms = token_forms(&token);
        for user in ["", "x", "xy", "x-access-token", "someone"] {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
            let value = format!("Basic {basic}");
            assert!(forms.occurs_in(&value), "{user}: {value}");
        }
        assert!(!forms.occurs_in("Basic bW9hdC1wbGFjZWhvbGRlcg=="));
    }
}
