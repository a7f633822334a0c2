//! `moat provider`: write and check declared (YAML) provider files.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use moat_plugin_sdk::{Credential, CredentialProvider, ProxyRule, validate_name};
use serde::Serialize;

use super::{CliError, CliResult, Context, code};
use crate::declared::{self, DeclaredProvider, PROVIDERS_DIR, ProviderFile};
use crate::provider::ProviderSource;

/// The token `moat provider check` builds rules with: obviously not a real one.
pub const DUMMY_TOKEN: &str = "moat-check-dummy-token";

const NEW_HELP: &str = "\
The file is $MOAT_HOME/providers/<name>.yaml (default ~/.moat/providers/), commented
field by field; it loads as written (header mode, 'Authorization: Bearer'). Edit the
hosts, header and variables, then check it:
  moat provider new acme
  moat provider check ~/.moat/providers/acme.yaml
  moat grant acme";

const CHECK_HELP: &str = "\
Reads the file the way moat does at start-up (an error names its line, column and key),
then shows what it would do: the rules the proxy would apply, built with a dummy token,
what the container would see, how 'moat grant' would get and check a token, and whether
another provider of the same name wins. Nothing is sent anywhere.

Exit status 0 when the file is valid, 1 otherwise.

Examples:
  moat provider check ~/.moat/providers/acme.yaml
  moat provider check ./acme.yaml --json";

const PROVIDER_HELP: &str = "\
A declared provider is a YAML file in $MOAT_HOME/providers/ (*.yaml or *.yml): the hosts,
the header (or a placeholder substituted into URLs), the variables a token is read from,
how it is checked. moat loads them at start-up like any provider: 'moat grant <name>',
'moat run --grant <name>'. When names clash: built-ins, then these files, then
moat-provider-* plugins, then the bundled catalogue; 'moat grant providers' warns about
each provider hidden and each file that does not load.

Examples:
  moat provider new acme
  moat provider check ~/.moat/providers/acme.yaml
  moat grant providers";

#[derive(Debug, Args)]
#[command(after_help = PROVIDER_HELP)]
pub struct ProviderArgs {
    #[command(subcommand)]
    command: ProviderCommand,
}

#[derive(Debug, Subcommand)]
enum ProviderCommand {
    /// Write a commented starter provider file into $MOAT_HOME/providers/.
    #[command(after_help = NEW_HELP)]
    New(NewArgs),
    /// Validate a provider file and show the rules it would produce (with a dummy token).
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
}

#[derive(Debug, Args)]
struct NewArgs {
    /// The provider's name (lowercase letters, digits and '-').
    name: String,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The provider file (.yaml or .yml).
    path: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(context: &Context, args: ProviderArgs) -> CliResult {
    match args.command {
        ProviderCommand::New(args) => new(context, &args.name),
        ProviderCommand::Check(args) => check(context, &args.path, args.json).await,
    }
}

fn new(context: &Context, name: &str) -> CliResult {
    validate_name(name).map_err(|err| {
        CliError::new(err)
            .hint("For example: moat provider new acme")
            .code(code::USAGE)
    })?;
    let dir = context.home.root().join(PROVIDERS_DIR);
    std::fs::create_dir_all(&dir)
        .map_err(|err| CliError::new(format!("cannot create {}: {err}", dir.display())))?;
    let path = dir.join(format!("{name}.yaml"));
    let created = crate::home::atomic_create_new(&path, declared::starter(name).as_bytes(), 0o644)
        .map_err(|err| CliError::new(format!("cannot write {}: {err}", path.display())))?;
    if !created {
        return Err(
            CliError::new(format!("{} already exists", path.display())).hint(format!(
                "Edit it, check it with 'moat provider check {}', or remove it to start over.",
                path.display()
            )),
        );
    }
    println!("Wrote {}", path.display());
    if let Some(entry) = context.registry.get(name) {
        let custom_elsewhere = matches!(&entry.source, ProviderSource::Custom { .. });
        if !matches!(entry.source, ProviderSource::Bundled) && !custom_elsewhere {
            anstream::eprintln!(
                "warning: the {} provider {} has this name and wins over a provider file; \
                 choose another name unless you only want to try the format",
                entry.source.kind(),
                entry.info.name
            );
        }
    }
    println!(
        "Edit it (hosts, header, variables), then: moat provider check {}",
        path.display()
    );
    Ok(())
}

/// What `moat provider check` reports.
#[derive(Serialize)]
struct Report {
    path: PathBuf,
    provider: String,
    description: String,
    aliases: Vec<String>,
    mode: &'static str,
    hosts: Vec<String>,
    source_env: Vec<String>,
    container_env: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    validate: Option<ValidateReport>,
    dummy_token: &'static str,
    rules: Vec<ProxyRule>,
    /// What this moat does with a provider of that name.
    status: String,
}

#[derive(Serialize)]
struct ValidateReport {
    method: &'static str,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<String>,
    expected: String,
    override_env: String,
}

async fn check(context: &Context, path: &Path, json: bool) -> CliResult {
    let file = declared::read_file(path).map_err(|reason| {
        CliError::new(declared::located(path, &reason)).hint(
            "Fix the line it names; every field is described in the README ('Declared \
             providers') and in schema/provider-file.schema.json.",
        )
    })?;
    let report = build_report(context, path, file).await?;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|err| CliError::new(format!("cannot write JSON: {err}")))?;
        println!("{text}");
        return Ok(());
    }
    print_report(&report);
    Ok(())
}

async fn build_report(
    context: &Context,
    path: &Path,
    file: ProviderFile,
) -> Result<Report, CliError> {
    let name = file.name.to_string();
    let validate = file.validate.as_ref().map(|validate| {
        let header = match (&validate.header, &file.inject) {
            (Some(header), _) => Some(format!(
                "{}: {}<token>",
                header,
                validate.prefix.as_ref().map(|p| p.as_str()).unwrap_or("")
            )),
            (None, _) if validate.url.has_token() => None,
            (None, Some(inject)) => Some(format!(
                "{}: {}<token>",
                inject.header,
                validate
                    .prefix
                    .as_ref()
                    .or(inject.prefix.as_ref())
                    .map(|p| p.as_str())
                    .unwrap_or("")
            )),
            (None, None) => None,
        };
        ValidateReport {
            method: validate.method.unwrap_or_default().as_str(),
            url: validate.url.to_string(),
            header,
            expected: validate
                .status
                .map_or_else(|| "any 2xx".to_string(), |s| s.get().to_string()),
            override_env: declared::api_url_env(&name),
        }
    });
    let status = match context.registry.get(&name) {
        Some(entry) if entry.info.name != name => format!(
            "hidden: {name} is an alias of the {} provider {}",
            entry.source.kind(),
            entry.info.name
        ),
        Some(entry) => match &entry.source {
            ProviderSource::Custom { path: loaded } if same_file(loaded, path) => {
                "loaded from this file".to_string()
            }
            ProviderSource::Bundled => format!(
                "would replace the bundled provider {name} once in {}",
                context.home.root().join(PROVIDERS_DIR).display()
            ),
            source => match source.path() {
                Some(other) => format!(
                    "hidden: the {} provider {name} ({}) wins",
                    source.kind(),
                    other.display()
                ),
                None => format!("hidden: the {} provider {name} wins", source.kind()),
            },
        },
        None => format!(
            "not loaded yet: put it in {} to use it",
            context.home.root().join(PROVIDERS_DIR).display()
        ),
    };
    let provider = DeclaredProvider::with_api_url(file.clone(), None);
    let credential = Credential::new(name.clone(), DUMMY_TOKEN);
    let rules = provider
        .configure_proxy(&credential)
        .await
        .map_err(CliError::from)?;
    let env = provider
        .container_env(&credential)
        .await
        .map_err(CliError::from)?;
    Ok(Report {
        path: path.to_path_buf(),
        provider: name,
        description: file.description.to_string(),
        aliases: file.aliases.iter().map(ToString::to_string).collect(),
        mode: if file.inject.is_some() {
            "header"
        } else {
            "substitution"
        },
        hosts: file.hosts.iter().map(ToString::to_string).collect(),
        source_env: file.source_env.iter().map(ToString::to_string).collect(),
        container_env: env.into_iter().map(|v| (v.name, v.value)).collect(),
        validate,
        dummy_token: DUMMY_TOKEN,
        rules: rules.rules,
        status,
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn print_report(report: &Report) {
    println!("{}: valid provider file", report.path.display());
    println!();
    let aliases = if report.aliases.is_empty() {
        String::new()
    } else {
        format!(" (aliases: {})", report.aliases.join(", "))
    };
    println!("Provider:       {}{aliases}", report.provider);
    println!("Description:    {}", report.description);
    println!("Mode:           {}", report.mode);
    println!("Hosts:          {}", report.hosts.join(", "));
    let mut from: Vec<String> = report.source_env.clone();
    from.push("a hidden prompt".into());
    println!("Token from:     {}", from.join(", then "));
    for (name, value) in &report.container_env {
        println!("Container env:  {name}={value}");
    }
    match &report.validate {
        Some(v) => {
            let header = v
                .header
                .as_ref()
                .map(|h| format!(" with {h}"))
                .unwrap_or_default();
            println!(
                "Validation:     {} {}{header}, valid on {} ({} overrides the host)",
                v.method, v.url, v.expected, v.override_env
            );
        }
        None => println!("Validation:     none (any non-empty token is stored)"),
    }
    println!("In this moat:   {}", report.status);
    println!();
    println!("Rules with the dummy token {:?}:", report.dummy_token);
    for rule in &report.rules {
        let line = match rule {
            ProxyRule::Credential {
                host,
                header,
                value,
                ..
            } => format!("{host}: set header {header}: {}", value.expose()),
            ProxyRule::TokenSubstitution {
                host,
                placeholder,
                real,
            } => format!(
                "{host}: replace {placeholder} with {} in the URL, Authorization and small bodies",
                real.expose()
            ),
            ProxyRule::ResponseTransform { host, kind } => format!(
                "{host}: response transform {}",
                serde_json::to_value(kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ),
            other => format!("{}: {other:?}", other.host()),
        };
        println!("  {line}");
    }
}
