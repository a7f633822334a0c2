//! `moat grant`: store a credential, list providers, list and show stored credentials.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use moat_plugin_sdk::{Credential, ProviderInfo, looks_secret_key};
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

A provider may take options of its own after its name; 'moat grant
<provider> --help' lists them.

Providers declared in YAML ($MOAT_HOME/providers/, and the bundled catalogue)
grant the same way: their variables, then a hidden prompt, then their check.
'moat provider new <name>' writes one.

Examples:
  moat grant github
  GITHUB_TOKEN=ghp_... moat grant github --no-input
  moat grant aws --role arn:aws:iam::123456789012:role/agent --region eu-west-1
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

    /// The provider to grant (`moat grant providers` lists them), then its own options
    /// (`--role <arn>`): `moat grant <provider> --help` lists them.
    #[arg(
        required = true,
        value_name = "PROVIDER [OPTIONS]",
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    provider: Vec<String>,

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
        let name = self.provider.first()?.as_str();
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
            let (provider, options) = args
                .provider
                .split_first()
                .expect("clap requires PROVIDER without a subcommand");
            grant(context, provider, options, args.no_input).await
        }
    }
}

async fn grant(context: &Context, name: &str, raw_options: &[String], no_input: bool) -> CliResult {
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
    let options = match parse_options(&entry.info, raw_options)? {
        Parsed::Help => {
            print!("{}", options_help(&entry.info));
            return Ok(());
        }
        Parsed::Options {
            values,
            no_input: trailing_no_input,
        } => (values, no_input || trailing_no_input),
    };
    let (options, no_input) = options;
    let mut answerer =
        TerminalAnswerer::new(InputMode::detect(no_input)).with_options(&entry.info.grant_options);
    let credential = run_grant(entry, options, &mut answerer).await?;
    let path = context.store.save(entry.info.store_key(), &credential)?;
    tracing::info!(provider = %entry.info.name, path = %path.display(), "credential stored");
    println!(
        "Credential saved to {}{}",
        path.display(),
        context.profile_suffix()
    );
    Ok(())
}

/// What follows the provider's name on the command line.
#[derive(Debug, PartialEq)]
enum Parsed {
    /// `--help` (or `-h`) among them: show the provider's options.
    Help,
    /// The declared options' values, and whether `--no-input` came after the name.
    Options {
        values: BTreeMap<String, String>,
        no_input: bool,
    },
}

/// Reads `--<name> <value>` and `--<name>=<value>` for the options `info` declares; anything
/// else is a usage error listing what the provider takes.
fn parse_options(info: &ProviderInfo, raw: &[String]) -> Result<Parsed, CliError> {
    let mut values = BTreeMap::new();
    let mut no_input = false;
    let mut words = raw.iter();
    while let Some(word) = words.next() {
        if word == "--help" || word == "-h" {
            return Ok(Parsed::Help);
        }
        if word == "--no-input" {
            no_input = true;
            continue;
        }
        let Some(flag) = word.strip_prefix("--") else {
            return Err(usage(info, &format!("unexpected argument {word:?}")));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (flag, None),
        };
        if !info.grant_options.iter().any(|option| option.name == name) {
            return Err(usage(
                info,
                &format!("moat grant {} takes no option --{name}", info.name),
            ));
        }
        let value = match inline {
            Some(value) => value,
            None => match words.next() {
                Some(value) => value.clone(),
                None => return Err(usage(info, &format!("--{name} needs a value"))),
            },
        };
        if values.insert(name.to_string(), value).is_some() {
            return Err(usage(info, &format!("--{name} is given twice")));
        }
    }
    Ok(Parsed::Options { values, no_input })
}

fn usage(info: &ProviderInfo, message: &str) -> CliError {
    let hint = if info.grant_options.is_empty() {
        format!(
            "moat grant {} takes no options of its own besides --no-input.",
            info.name
        )
    } else {
        options_help(info).trim_end().to_string()
    };
    CliError::new(message).hint(hint).code(code::USAGE)
}

/// `moat grant <provider> --help`: the provider's own options.
fn options_help(info: &ProviderInfo) -> String {
    let mut text = format!(
        "Usage: moat grant {} [--no-input]{}\n\n{}\n",
        info.name,
        if info.grant_options.is_empty() {
            ""
        } else {
            " [OPTIONS]"
        },
        info.description
    );
    if info.grant_options.is_empty() {
        return text;
    }
    text.push_str("\nOptions:\n");
    let flags: Vec<String> = info
        .grant_options
        .iter()
        .map(|option| format!("--{} <{}>", option.name, option.value_name))
        .collect();
    let width = flags.iter().map(String::len).max().unwrap_or(0);
    for (flag, option) in flags.iter().zip(&info.grant_options) {
        text.push_str(&format!("  {flag:<width$}  {}\n", option.help));
    }
    text
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

    fn info_with_options() -> ProviderInfo {
        let mut info = ProviderInfo::new("cloud", "Cloud role");
        info.grant_options = vec![
            moat_plugin_sdk::GrantOption::new("role", "ARN", "The role to assume"),
            moat_plugin_sdk::GrantOption::new("region", "REGION", "The region"),
        ];
        info
    }

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn declared_options_are_read_in_both_forms() {
        let parsed = parse_options(
            &info_with_options(),
            &words("--role arn:x --no-input --region=eu-west-1"),
        )
        .unwrap();
        let Parsed::Options { values, no_input } = parsed else {
            panic!("{parsed:?}")
        };
        assert!(no_input);
        assert_eq!(values["role"], "arn:x");
        assert_eq!(values["region"], "eu-west-1");
        assert_eq!(
            parse_options(&info_with_options(), &[]).unwrap(),
            Parsed::Options {
                values: BTreeMap::new(),
                no_input: false
            }
        );
    }

    #[test]
    fn undeclared_missing_or_repeated_options_are_usage_errors() {
        let info = info_with_options();
        for bad in [
            "--profile x",
            "--role",
            "--role a --role b",
            "stray",
            "-r x",
        ] {
            let err = parse_options(&info, &words(bad)).unwrap_err();
            assert_eq!(err.exit_code(), code::USAGE, "{bad}");
            assert!(format!("{err:?}").contains("--role <ARN>"), "{bad}");
        }
        let bare = ProviderInfo::new("plain", "Plain");
        let err = parse_options(&bare, &words("--role x")).unwrap_err();
        assert!(
            format!("{err:?}").contains("takes no option --role"),
            "{err:?}"
        );
    }

    #[test]
    fn help_lists_the_providers_options() {
        assert_eq!(
            parse_options(&info_with_options(), &words("--role x --help")).unwrap(),
            Parsed::Help
        );
        let help = options_help(&info_with_options());
        assert!(
            help.contains("Usage: moat grant cloud [--no-input] [OPTIONS]"),
            "{help}"
        );
        assert!(
            help.contains("  --role <ARN>       The role to assume"),
            "{help}"
        );
        assert!(help.contains("  --region <REGION>  The region"), "{help}");
    }

    #[test]
    fn metadata_labels_keep_namespaced_keys_verbatim() {
        assert_eq!(metadata_label("login"), "Login");
        assert_eq!(metadata_label("moat.plugin_sha256"), "moat.plugin_sha256");
    }
}
