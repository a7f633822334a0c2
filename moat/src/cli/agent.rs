//! Agent commands: `moat <agent> [PATH] [OPTIONS] [-- ARGS]`, built from the registry.
//!
//! Every [`AgentCommand`] an agent provider declares (a built-in or a plugin, through its cached
//! `initialize` answer) becomes a subcommand. Nothing here knows an agent: the subcommand's
//! options, the container's command line, the image's dependencies, the hosts and the grants
//! all come from the declaration, and the run goes through `moat run`'s own path
//! ([`super::run::run_agent`]) and the one manager.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches};
use moat_plugin_sdk::{AgentCommand, AgentOption};

use super::run::{AgentLaunch, RunOptions};
use super::{CliError, Context, code};
use crate::credential::with_profile;
use crate::provider::Registry;
use crate::run::RunStore;

/// The placeholder an option's words carry for its value.
const VALUE: &str = "{value}";

/// Names every subcommand takes from the top level (global flags and clap's own).
const RESERVED_LONGS: &[&str] = &["help", "version", "profile", "verbose", "image"];
const RESERVED_SHORTS: &[char] = &['h', 'V', 'v'];

/// The agent commands of a registry, by name, as declared.
#[derive(Debug, Clone, Default)]
pub struct AgentCommands {
    commands: BTreeMap<String, AgentCommand>,
}

/// One `moat <agent>` as the user typed it, before anything is looked up.
#[derive(Debug, Clone)]
pub struct AgentInvocation {
    command: AgentCommand,
    path: Option<PathBuf>,
    image: Option<String>,
    options: RunOptions,
    /// The declared options given, in declaration order, with their values.
    given: Vec<(AgentOption, Option<String>)>,
    /// The words after `--`.
    args: Vec<String>,
}

impl AgentCommands {
    /// Every agent provider's commands. A command named like one of moat's own subcommands (or
    /// another agent's command) is skipped with a warning: moat's commands win, then the first
    /// provider by name.
    pub fn from_registry(registry: &Registry, taken: &BTreeSet<String>) -> AgentCommands {
        let mut commands = BTreeMap::new();
        for (entry, agent) in registry.agents() {
            for command in agent.commands() {
                if let Err(err) = moat_plugin_sdk::validate_name(&command.name) {
                    tracing::warn!(provider = %entry.info.name, "agent command skipped: {err}");
                    continue;
                }
                if taken.contains(&command.name) || commands.contains_key(&command.name) {
                    tracing::warn!(
                        provider = %entry.info.name,
                        "agent command {:?} skipped: the name is taken",
                        command.name
                    );
                    continue;
                }
                commands.insert(command.name.clone(), command);
            }
        }
        AgentCommands { commands }
    }

    /// The declared command called `name`.
    pub fn get(&self, name: &str) -> Option<&AgentCommand> {
        self.commands.get(name)
    }

    /// `cli` with one subcommand per agent command.
    pub fn augment(&self, mut cli: clap::Command) -> clap::Command {
        for command in self.commands.values() {
            cli = cli.subcommand(subcommand(command));
        }
        cli
    }

    /// The invocation of `name` from its subcommand's matches.
    pub fn invocation(
        &self,
        name: &str,
        matches: &ArgMatches,
    ) -> Result<AgentInvocation, clap::Error> {
        let Some(command) = self.commands.get(name) else {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::InvalidSubcommand,
                format!("unknown agent command {name}"),
            ));
        };
        let options = RunOptions::from_arg_matches(matches)?;
        let mut given = Vec::new();
        for option in usable_options(command) {
            let id = option_id(&option.long);
            if option.value_name.is_some() {
                if let Some(value) = matches.get_one::<String>(&id) {
                    given.push((option.clone(), Some(value.clone())));
                }
            } else if matches.get_flag(&id) {
                given.push((option.clone(), None));
            }
        }
        Ok(AgentInvocation {
            command: command.clone(),
            path: matches.get_one::<PathBuf>("path").cloned(),
            image: matches.get_one::<String>("image").cloned(),
            options,
            given,
            args: matches
                .get_many::<String>("args")
                .map(|args| args.cloned().collect())
                .unwrap_or_default(),
        })
    }
}

/// The help after an agent command's options.
fn after_help(command: &AgentCommand) -> String {
    let mut text = format!(
        "Runs `{}` in a container with the workspace (PATH, default: the current folder) at \
         /workspace, like `moat run`: the agent's credentials are added on the wire by moat's \
         proxy and never enter the container. Interactive on a terminal unless an option \
         says otherwise.",
        command.argv.join(" ")
    );
    if !command.grants.is_empty() {
        text.push_str(&format!(
            "\n\nGrants: without --grant naming one of {}, the first of them with a stored \
             credential is used.",
            command.grants.join(", ")
        ));
    }
    if !command.dependencies.is_empty() {
        text.push_str(&format!(
            "\nImage: the base image plus {} (built once), or --image IMAGE, used as is.",
            command.dependencies.join(", ")
        ));
    }
    if !command.hosts.is_empty() {
        text.push_str(&format!(
            "\nNetwork: {} reachable under --policy strict too.",
            command.hosts.join(", ")
        ));
    }
    let name = &command.name;
    text.push_str(&format!(
        "\n\nExamples:\n  moat {name}                 a session in the current folder"
    ));
    if let Some(batch) = command
        .options
        .iter()
        .find(|o| o.batch && o.value_name.is_some())
    {
        text.push_str(&format!(
            "\n  moat {name} ./project --{} \"...\"   one shot, no terminal needed",
            batch.long
        ));
    }
    text.push_str(&format!(
        "\n  moat {name} --policy strict   only the agent's and the grants' hosts\n  \
         moat logs; moat trace --network; moat list --json"
    ));
    text
}

fn option_id(long: &str) -> String {
    format!("agent-option:{long}")
}

/// The declared options that can become flags: a valid long name not taken by the shared run
/// flags. (A plugin's declaration must not be able to crash moat's parser.)
fn usable_options(command: &AgentCommand) -> impl Iterator<Item = &AgentOption> {
    let taken = shared_names();
    let mut seen = BTreeSet::new();
    command.options.iter().filter(move |option| {
        let valid = !option.long.is_empty()
            && option
                .long
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !option.long.starts_with('-');
        let usable = valid && !taken.0.contains(&option.long) && seen.insert(option.long.clone());
        if !usable {
            tracing::warn!(
                command = %command.name,
                "agent option {:?} skipped: invalid or taken name",
                option.long
            );
        }
        usable
    })
}

/// The long and short names the shared run flags and the top level use.
fn shared_names() -> (BTreeSet<String>, BTreeSet<char>) {
    let shared = RunOptions::augment_args(clap::Command::new("shared"));
    let mut longs: BTreeSet<String> = RESERVED_LONGS.iter().map(|s| (*s).to_owned()).collect();
    let mut shorts: BTreeSet<char> = RESERVED_SHORTS.iter().copied().collect();
    for arg in shared.get_arguments() {
        if let Some(long) = arg.get_long() {
            longs.insert(long.to_owned());
        }
        if let Some(short) = arg.get_short() {
            shorts.insert(short);
        }
    }
    (longs, shorts)
}

/// The clap subcommand for `command`.
fn subcommand(command: &AgentCommand) -> clap::Command {
    let name = command.name.clone();
    // The shared flags first: their struct's doc comment would replace the about.
    let mut sub = RunOptions::augment_args(clap::Command::new(name))
        .about(command.about.clone())
        .long_about(None)
        .after_help(after_help(command));
    sub = sub
        .arg(
            Arg::new("path")
                .value_name("PATH")
                .value_parser(clap::value_parser!(PathBuf))
                .help("The workspace, mounted at /workspace [default: .]"),
        )
        .arg(Arg::new("image").long("image").value_name("IMAGE").help(
            "An image that already holds the agent, used as is: neither the agent's \
                     dependencies nor any other are added (--policy strict still adds the \
                     firewall's iptables)",
        ))
        .arg(
            Arg::new("args")
                .last(true)
                .num_args(0..)
                .value_name("ARGS")
                .help("Arguments passed to the agent (after --)"),
        );
    let (_, mut shorts) = shared_names();
    let usable: Vec<&AgentOption> = usable_options(command).collect();
    let declared: BTreeSet<&str> = usable.iter().map(|o| o.long.as_str()).collect();
    for option in &usable {
        let mut arg = Arg::new(option_id(&option.long))
            .long(option.long.clone())
            .help(option.help.clone());
        if let Some(short) = option.short
            && short.is_ascii_alphabetic()
            && shorts.insert(short)
        {
            arg = arg.short(short);
        }
        arg = match &option.value_name {
            Some(value_name) => arg.value_name(value_name.clone()).action(ArgAction::Set),
            None => arg.action(ArgAction::SetTrue),
        };
        for other in &option.conflicts_with {
            if declared.contains(other.as_str()) && other != &option.long {
                arg = arg.conflicts_with(option_id(other));
            }
        }
        sub = sub.arg(arg);
    }
    sub
}

/// Runs an agent command: its launch decided from the declaration, then `moat run`'s path.
pub async fn run(context: &Context, invocation: AgentInvocation) -> Result<u8, CliError> {
    let runs = RunStore::new(&context.home);
    let launch = launch(&invocation, |run, key| {
        let meta = runs.resolve(run).map_err(super::runs::store_error)?;
        meta.provider_meta.get(key).cloned().ok_or_else(|| {
            CliError::new(format!(
                "run {} ({}) has no {key} recorded",
                meta.name, meta.id
            ))
            .hint(format!(
                "Only a run of `moat {}` that ended records it; see 'moat list'.",
                invocation.command.name
            ))
            .code(code::NOT_FOUND)
        })
    })?;
    super::run::run_agent(context, invocation.path, invocation.options, launch).await
}

/// What the run is, from the invocation: the container's command (the declared argv, each given
/// option's words with `{value}` replaced, the user's arguments), batch or interactive, and the
/// declaration's dependencies, hosts and grants. `run_meta` looks up a run's recorded value.
fn launch(
    invocation: &AgentInvocation,
    run_meta: impl Fn(&str, &str) -> Result<String, CliError>,
) -> Result<AgentLaunch, CliError> {
    let declared = &invocation.command;
    let mut command = declared.argv.clone();
    let mut batch = false;
    for (option, value) in &invocation.given {
        // clap enforces conflicts; checked again here for the declarations it could not take.
        if let Some((other, _)) = invocation
            .given
            .iter()
            .find(|(other, _)| option.conflicts_with.contains(&other.long))
        {
            return Err(CliError::new(format!(
                "--{} cannot be used with --{}",
                option.long, other.long
            ))
            .code(code::USAGE));
        }
        let value = match (value, &option.run_meta) {
            (Some(run), Some(key)) => Some(match run_meta(run, key) {
                Ok(recorded) => recorded,
                // No run of that name: the agent's own session id, copied from its output or an
                // earlier session outside moat, goes through as given.
                Err(err) if err.exit_code() == code::NOT_FOUND && is_session_id(run) => run.clone(),
                Err(err) => return Err(err),
            }),
            (value, _) => value.clone(),
        };
        for word in &option.argv {
            command.push(match &value {
                Some(value) => word.replace(VALUE, value),
                None => word.clone(),
            });
        }
        batch |= option.batch;
    }
    command.extend(invocation.args.iter().cloned());
    Ok(AgentLaunch {
        name: declared.name.clone(),
        command,
        batch,
        dependencies: declared.dependencies.clone(),
        hosts: declared.hosts.clone(),
        grants: declared.grants.clone(),
        image: invocation.image.clone(),
    })
}

/// A UUID (`8-4-4-4-12` hex digits), the shape of the session ids agents print: a value of a
/// `run_meta` option that names no run and has this shape is the session id itself.
fn is_session_id(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The run's grants: the user's (`--grant`, else moat.yaml's), plus, when none of them is one the
/// agent can use, the first of `preferred` with a stored credential. Deduplicated by provider.
pub(super) fn agent_grants(
    context: &Context,
    grants: Vec<String>,
    preferred: &[String],
) -> Result<Vec<String>, CliError> {
    pick_grants(
        &context.registry,
        grants,
        preferred,
        |name| {
            context
                .store
                .path_of(&context.store_key_for(name))
                .is_file()
        },
        context.profile.as_ref(),
    )
}

fn pick_grants(
    registry: &Registry,
    grants: Vec<String>,
    preferred: &[String],
    stored: impl Fn(&str) -> bool,
    profile: Option<&crate::home::Profile>,
) -> Result<Vec<String>, CliError> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<String> = Vec::new();
    for grant in grants {
        if seen.insert(registry.resolve_name(&grant).to_owned()) {
            out.push(grant);
        }
    }
    let covered = preferred
        .iter()
        .any(|name| seen.contains(registry.resolve_name(name)));
    if preferred.is_empty() || covered {
        return Ok(out);
    }
    match preferred.iter().find(|name| stored(name)) {
        Some(name) => {
            out.push(name.clone());
            Ok(out)
        }
        None => {
            let first = &preferred[0];
            let fix = with_profile(format!("moat grant {first}"), profile);
            let others = if preferred.len() > 1 {
                format!(" (or any of: {})", preferred[1..].join(", "))
            } else {
                String::new()
            };
            Err(CliError::new(format!(
                "no credential for the agent: none of {} is granted",
                preferred.join(", ")
            ))
            .hint(format!("Run '{fix}'{others}, then try again."))
            .code(code::NOT_FOUND))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use moat_plugin_sdk::testkit::MockProvider;

    use super::*;

    fn option(long: &str, short: Option<char>, value: Option<&str>, argv: &[&str]) -> AgentOption {
        let help = format!("the {long} option");
        match value {
            Some(value_name) => AgentOption::value(long, short, value_name, &help, argv),
            None => AgentOption::flag(long, short, &help, argv),
        }
    }

    fn declared() -> AgentCommand {
        let mut prompt = option("prompt", Some('p'), Some("PROMPT"), &["-p", "{value}"]);
        prompt.batch = true;
        let mut cont = option("continue", Some('c'), None, &["--continue"]);
        cont.conflicts_with = vec!["resume".into()];
        let mut resume = option("resume", Some('r'), Some("RUN"), &["--resume", "{value}"]);
        resume.run_meta = Some("session_id".into());
        resume.conflicts_with = vec!["continue".into()];
        // Taken by the shared flags: skipped, not a parser panic.
        let clash = option("grant", Some('g'), Some("X"), &["--x"]);
        AgentCommand {
            name: "bot".into(),
            about: "Run the bot".into(),
            argv: vec!["bot".into(), "--yes".into()],
            options: vec![prompt, cont, resume, clash],
            dependencies: vec!["node".into()],
            hosts: vec!["api.bot.test".into()],
            grants: vec!["bot".into(), "bot-key".into()],
        }
    }

    fn commands() -> AgentCommands {
        AgentCommands {
            commands: BTreeMap::from([("bot".to_owned(), declared())]),
        }
    }

    fn parse(words: &[&str]) -> Result<AgentInvocation, clap::Error> {
        let commands = commands();
        let cli = commands.augment(clap::Command::new("moat"));
        let mut argv = vec!["moat"];
        argv.extend_from_slice(words);
        let matches = cli.try_get_matches_from(argv)?;
        let (name, sub) = matches.subcommand().expect("a subcommand");
        commands.invocation(name, sub)
    }

    fn no_runs(_: &str, _: &str) -> Result<String, CliError> {
        panic!("no run lookup expected")
    }

    #[test]
    fn the_command_line_is_argv_then_options_then_args() {
        let invocation = parse(&[
            "bot", "work", "-p", "fix it", "-g", "other", "--", "--model", "x",
        ])
        .unwrap();
        assert_eq!(invocation.path, Some(PathBuf::from("work")));
        assert_eq!(invocation.options.grants, vec!["other".to_owned()]);
        let launch = launch(&invocation, no_runs).unwrap();
        assert_eq!(
            launch.command,
            vec!["bot", "--yes", "-p", "fix it", "--model", "x"]
        );
        assert!(launch.batch, "-p is a batch option");
        assert_eq!(launch.dependencies, vec!["node".to_owned()]);
        assert_eq!(launch.hosts, vec!["api.bot.test".to_owned()]);
        assert_eq!(launch.name, "bot");
        assert_eq!(launch.image, None);
    }

    #[test]
    fn without_a_batch_option_the_run_is_interactive() {
        let invocation = parse(&["bot", "--continue", "--image", "my/agent:1"]).unwrap();
        let launch = launch(&invocation, no_runs).unwrap();
        assert_eq!(launch.command, vec!["bot", "--yes", "--continue"]);
        assert!(!launch.batch);
        assert_eq!(launch.image.as_deref(), Some("my/agent:1"));
    }

    #[test]
    fn conflicting_options_are_refused_by_the_parser() {
        let err = parse(&["bot", "-c", "-r", "run-1"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn a_run_meta_option_becomes_the_runs_recorded_value() {
        let invocation = parse(&["bot", "--resume", "my-run"]).unwrap();
        let launch = launch(&invocation, |run, key| {
            assert_eq!((run, key), ("my-run", "session_id"));
            Ok("sess-42".into())
        })
        .unwrap();
        assert_eq!(launch.command, vec!["bot", "--yes", "--resume", "sess-42"]);
        let err = launch_err(&invocation);
        assert_eq!(err.exit_code(), code::NOT_FOUND);
        assert!(err.message().contains("no session_id"), "{}", err.message());
    }

    #[test]
    fn a_session_id_that_names_no_run_goes_through_as_given() {
        let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let invocation = parse(&["bot", "--resume", uuid]).unwrap();
        let given = launch(&invocation, |_, _| {
            Err(CliError::new("no run").code(code::NOT_FOUND))
        })
        .unwrap();
        assert_eq!(given.command, vec!["bot", "--yes", "--resume", uuid]);
        // A run of that name wins over the shape.
        let recorded = launch(&invocation, |_, _| Ok("sess-42".into())).unwrap();
        assert_eq!(
            recorded.command,
            vec!["bot", "--yes", "--resume", "sess-42"]
        );
        // Neither a run nor a session id: the lookup's error.
        let invocation = parse(&["bot", "--resume", "0f8fad5b-d9cb"]).unwrap();
        let err = launch_err(&invocation);
        assert_eq!(err.exit_code(), code::NOT_FOUND);
        // Other failures are not covered up by the shape.
        let invocation = parse(&["bot", "--resume", uuid]).unwrap();
        let err = launch(&invocation, |_, _| {
            Err(CliError::new("store unreadable").code(code::FAILURE))
        })
        .unwrap_err();
        assert_eq!(err.message(), "store unreadable");
    }

    #[test]
    fn session_ids_are_uuids() {
        assert!(is_session_id("0F8FAD5B-D9CB-469F-A165-70867728950E"));
        for not in [
            "",
            "my-run",
            "0f8fad5b-d9cb-469f-a165-70867728950",
            "0f8fad5b-d9cb-469f-a165-70867728950g",
            "0f8fad5bd9cb469fa16570867728950e",
        ] {
            assert!(!is_session_id(not), "{not}");
        }
    }

    fn launch_err(invocation: &AgentInvocation) -> CliError {
        launch(invocation, |_, key| {
            Err(CliError::new(format!("run x has no {key} recorded")).code(code::NOT_FOUND))
        })
        .unwrap_err()
    }

    #[test]
    fn an_option_taken_by_the_shared_flags_is_skipped() {
        // `-g` stays `--grant`.
        let invocation = parse(&["bot", "-g", "bot"]).unwrap();
        assert_eq!(invocation.options.grants, vec!["bot".to_owned()]);
        assert!(invocation.given.is_empty());
        let help = commands()
            .augment(clap::Command::new("moat"))
            .find_subcommand_mut("bot")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("--prompt <PROMPT>"), "{help}");
        assert!(help.contains("api.bot.test"), "{help}");
    }

    fn registry() -> Registry {
        let mut registry = Registry::new();
        registry.register_builtin(Arc::new(MockProvider::new("bot").agent()));
        registry.register_builtin(Arc::new(MockProvider::new("bot-key").alias("botkey")));
        registry.register_builtin(Arc::new(MockProvider::new("github")));
        registry
    }

    #[test]
    fn grants_add_the_first_stored_preferred_one_unless_one_is_given() {
        let registry = registry();
        let preferred = vec!["bot".to_owned(), "bot-key".to_owned()];
        let stored = |name: &str| name == "bot-key";
        // None given: the first stored one joins the user's.
        let grants =
            pick_grants(&registry, vec!["github".into()], &preferred, stored, None).unwrap();
        assert_eq!(grants, vec!["github", "bot-key"]);
        // One given (by alias): nothing added; duplicates removed.
        let grants = pick_grants(
            &registry,
            vec!["botkey".into(), "bot-key".into(), "github".into()],
            &preferred,
            |_| true,
            None,
        )
        .unwrap();
        assert_eq!(grants, vec!["botkey", "github"]);
        // Nothing stored: an error naming the first.
        let err = pick_grants(&registry, vec![], &preferred, |_| false, None).unwrap_err();
        assert_eq!(err.exit_code(), code::NOT_FOUND);
        assert!(
            err.hint_text().unwrap_or("").contains("moat grant bot'"),
            "{:?}",
            err.hint_text()
        );
    }

    #[test]
    fn commands_come_from_the_registry_and_never_shadow_moats_own() {
        let registry = registry();
        let taken = BTreeSet::from(["run".to_owned()]);
        let commands = AgentCommands::from_registry(&registry, &taken);
        // The mock agent declares one command named after itself.
        let names: Vec<&String> = commands.commands.keys().collect();
        assert_eq!(names, vec!["bot"]);
        let taken = BTreeSet::from(["bot".to_owned()]);
        assert!(
            AgentCommands::from_registry(&registry, &taken)
                .commands
                .is_empty()
        );
    }
}
