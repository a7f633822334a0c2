//! `moat grant`: store a credential, list providers, list and show stored credentials.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use moat_plugin_sdk::{Credential, looks_secret_key};
use serde::Serialize;

use super::prompt::{InputMode, TerminalAnswerer};
use super::{CliError, CliResult, Context, code, table};
use crate::declared::PROVIDERS_DIR;
use crate::provider::run_grant;

const GRANT_HELP: &str = "\
Each provider asks for what it needs. GitHub, for example, takes GITHUB_TOKEN
or GH_TOKEN, then the gh CLI (after asking), then a hidden prompt.

Without a terminal, secrets are read one line at a time from stdin:
  printf '%s\\n' \"$TOKEN\" | moat grant github
With --no-input nothing is read, and a missing answer fails with the name of
the variable to set.

Providers declared in YAML ($MOAT_HOME/providers/, and the bundled catalogue)
grant the same way: their variables, then a hidden prompt, then their check.
'moat provider new <name>' writes one.

Examples:
  moat grant github
  GITHUB_TOKEN=ghp_... moat grant github --no-input
  moat grant providers --json";

#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = GRANT_HELP
)]
pub struct GrantArgs {
    #[command(subcommand)]
    command: Option<GrantCommand>,

    /// The provider to grant (`moat grant providers` lists them).
    #[arg(required = true, value_name = "PROVIDER")]
    provider: Option<String>,

    /// Never prompt or read stdin: fail instead, naming what to set.
    #[arg(long, env = "MOAT_NO_INPUT", value_parser = clap::builder::FalseyValueParser::new())]
    no_input: bool,
}

#[derive(Debug, Subcommand)]
enum GrantCommand {
    /// List every provider and where it comes from (builtin, custom, plugin).
    Providers(JsonFlag),
    /// List stored credentials (never their tokens).
    List(JsonFlag),
    /// Show one stored credential, token masked.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// Provider name or alias.
    #[arg(value_name = "PROVIDER")]
    name: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl GrantArgs {
    /// The provider name granted, without a `:scope` (`None` for a subcommand).
    pub(super) fn target(&self) -> Option<String> {
        if self.command.is_some() {
            return None;
        }
        let name = self.provider.as_deref()?;
        let base = name.split_once(':').map_or(name, |(base, _)| base);
        Some(base.to_string())
    }
}

pub async fn run(context: &Context, args: GrantArgs) -> CliResult {
    match args.command {
        Some(GrantCommand::Providers(flag)) => providers(context, flag.json),
        Some(GrantCommand::List(flag)) => list(context, flag.json),
        Some(GrantCommand::Show(show_args)) => show(context, show_args),
        None => {
            let provider = args
                .provider
                .expect("clap requires PROVIDER without a subcommand");
            grant(context, &provider, args.no_input).await
        }
    }
}

async fn grant(context: &Context, name: &str, no_input: bool) -> CliResult {
    if let Some((base, _)) = name.split_once(':')
        && context.registry.get(base).is_some()
    {
        return Err(
            CliError::new(format!("scopes are not supported in grant names: {name}"))
                .hint(format!(
                    "Run 'moat grant {base}' and choose the token's scopes where you create it."
                ))
                .code(code::USAGE),
        );
    }
    let entry = match context.registry.get(name) {
        Some(entry) => entry,
        None => return Err(unknown_provider(context, name)),
    };
    let mut answerer = TerminalAnswerer::new(InputMode::detect(no_input));
    let credential = run_grant(entry, &mut answerer).await?;
    let path = context.store.save(entry.info.store_key(), &credential)?;
    tracing::info!(provider = %entry.info.name, path = %path.display(), "credential stored");
    println!(
        "Credential saved to {}{}",
        path.display(),
        context.profile_suffix()
    );
    Ok(())
}

/// Why `name` is not a provider: a plugin of that name that cannot be used says why and what to
/// do; otherwise the registry's "unknown provider". Exit code 3 either way.
fn unknown_provider(context: &Context, name: &str) -> CliError {
    let unusable = context
        .plugins
        .warnings
        .iter()
        .find(|warning| warning.makes_unusable() && warning.plugin_name() == Some(name));
    match unusable {
        Some(warning) => CliError::new(format!(
            "provider {name} is a plugin moat cannot use: {warning}"
        ))
        .hint(warning.advice())
        .code(code::NOT_FOUND),
        None => match context.registry.lookup(name) {
            Err(err) => err.into(),
            Ok(_) => CliError::new(format!("unknown provider: {name}")).code(code::NOT_FOUND),
        },
    }
}

#[derive(Serialize)]
struct ProviderRow<'a> {
    provider: &'a str,
    description: &'a str,
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    aliases: Vec<&'a str>,
}

fn providers(context: &Context, json: bool) -> CliResult {
    let rows: Vec<ProviderRow> = context
        .registry
        .all()
        .map(|entry| ProviderRow {
            provider: &entry.info.name,
            description: &entry.info.description,
            source: entry.source.kind().to_string(),
            path: entry.source.path().map(|path| path.display().to_string()),
            aliases: context.registry.aliases_of(&entry.info.name),
        })
        .collect();
    // Problems with provider files, then with plugins, kubectl-style: the listing still
    // succeeds. Each says what was not used and what won.
    fn with_message(warning: &(impl Serialize + std::fmt::Display)) -> serde_json::Value {
        let mut value = serde_json::to_value(warning).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("message".into(), warning.to_string().into());
        }
        value
    }
    let mut warnings: Vec<(String, serde_json::Value)> = Vec::new();
    for warning in &context.declared {
        warnings.push((warning.to_string(), with_message(warning)));
    }
    for warning in &context.plugins.warnings {
        warnings.push((warning.to_string(), with_message(warning)));
    }
    if json {
        let warnings: Vec<serde_json::Value> = warnings.into_iter().map(|(_, v)| v).collect();
        return print_json(&serde_json::json!({ "providers": rows, "warnings": warnings }));
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let source = match &row.path {
                Some(path) => format!("{} ({path})", row.source),
                None => row.source.clone(),
            };
            vec![
                row.provider.to_string(),
                row.description.to_string(),
                source,
            ]
        })
        .collect();
    table::print(&["PROVIDER", "DESCRIPTION", "SOURCE"], &cells, 3);
    println!(
        "\nCustom providers can be added at {} ('moat provider new <name>' writes a starter).",
        context.home.root().join(PROVIDERS_DIR).display()
    );
    for (warning, _) in warnings {
        anstream::eprintln!("warning: {warning}");
    }
    Ok(())
}

/// A stored credential as listings show it: facts, never the token.
#[derive(Serialize)]
struct CredentialSummary {
    provider: String,
    #[serde(rename = "type")]
    kind: String,
    source: Option<String>,
    granted_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    scopes: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, String>,
}

impl CredentialSummary {
    fn of(name: String, credential: &Credential) -> Self {
        let metadata = credential
            .metadata
            .iter()
            // Metadata should hold no secret, but a careless provider (or a store written by the
            // Go implementation) may have put OAuth material there, so anything named like a
            // secret is left out. `token_source` is shown as its own field.
            .filter(|(key, _)| !looks_secret_key(key));
        CredentialSummary {
            provider: name,
            kind: credential
                .metadata
                .get("auth_type")
                .cloned()
                .unwrap_or_else(|| "token".into()),
            source: credential.token_source().map(str::to_string),
            granted_at: credential.created_at,
            expires_at: credential.expires_at,
            scopes: credential.scopes.clone(),
            metadata: metadata.map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}

/// The provider name to show for a store key: the provider that stores under it, else the key.
fn display_name(context: &Context, key: &str) -> String {
    let owner = context
        .registry
        .all()
        .find(|entry| entry.info.store_key() == key);
    owner.map_or_else(|| key.to_string(), |entry| entry.info.name.clone())
}

fn list(context: &Context, json: bool) -> CliResult {
    let entries = context.store.list()?;
    let mut summaries = Vec::new();
    let mut broken = Vec::new();
    for entry in entries {
        match entry.credential {
            Ok(credential) => summaries.push(CredentialSummary::of(
                display_name(context, &entry.key),
                &credential,
            )),
            Err(err) => broken.push(err),
        }
    }
    for err in &broken {
        let hint = err.hint().map(|h| format!(" ({h})")).unwrap_or_default();
        anstream::eprintln!("warning: {err}{hint}");
    }
    if json {
        return print_json(&summaries);
    }
    if summaries.is_empty() {
        if broken.is_empty() {
            println!("No credentials found{}.", context.profile_suffix());
            println!(
                "Run 'moat grant <provider>' to store one; 'moat grant providers' lists the providers."
            );
        }
        return Ok(());
    }
    if let Some(profile) = &context.profile {
        println!("Profile: {profile}");
    }
    let now = Utc::now();
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            vec![
                s.provider.clone(),
                s.kind.clone(),
                table::relative(s.granted_at, now),
            ]
        })
        .collect();
    table::print(&["PROVIDER", "TYPE", "GRANTED"], &rows, 2);
    Ok(())
}

#[derive(Serialize)]
struct ShowJson {
    #[serde(flatten)]
    summary: CredentialSummary,
    token: String,
}

fn show(context: &Context, args: ShowArgs) -> CliResult {
    let key = context.store_key_for(&args.name);
    let credential = context.store.load(&key)?;
    let summary = CredentialSummary::of(display_name(context, &key), &credential);
    let token = credential.token.masked(4);
    if args.json {
        return print_json(&ShowJson { summary, token });
    }
    let now = Utc::now();
    println!("Provider: {}", summary.provider);
    println!("Type:     {}", summary.kind);
    println!(
        "Source:   {}",
        summary.source.as_deref().unwrap_or("unknown")
    );
    if !summary.scopes.is_empty() {
        println!("Scopes:   {}", summary.scopes.join(", "));
    }
    for (key, value) in &summary.metadata {
        println!("{:<9} {value}", format!("{}:", metadata_label(key)));
    }
    println!(
        "Granted:  {} ({})",
        summary.granted_at.to_rfc3339(),
        table::relative(summary.granted_at, now)
    );
    match summary.expires_at {
        Some(at) => println!(
            "Expires:  {} ({})",
            at.to_rfc3339(),
            table::relative(at, now)
        ),
        None => println!("Expires:  never"),
    }
    println!("Token:    {token}");
    Ok(())
}

/// How `moat grant show` labels a metadata key: a plain word capitalised (`Login`), a namespaced
/// key (`moat.plugin_sha256`) verbatim, since it is a name users look up.
fn metadata_label(key: &str) -> String {
    if key.contains('.') {
        key.to_string()
    } else {
        capitalize(key)
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn print_json(value: &impl Serialize) -> CliResult {
    let text = serde_json::to_string_pretty(value)
        .map_err(|err| CliError::new(format!("cannot write JSON: {err}")))?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_labels_keep_namespaced_keys_verbatim() {
        assert_eq!(metadata_label("login"), "Login");
        assert_eq!(metadata_label("moat.plugin_sha256"), "moat.plugin_sha256");
    }
}
