//! The terminal side of a grant: answers a provider's questions from a terminal, a pipe, or not
//! at all (`--no-input`).

use std::io::{BufRead, IsTerminal, Write};

use moat_plugin_sdk::{Answer, ErrorKind, Prompt, PromptKind, ProviderError, Secret};

use crate::provider::Answerer;

/// Where answers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMode {
    /// A person at a terminal: hidden input for secrets, menus, confirmations.
    Terminal,
    /// stdin is a pipe: secrets and text are read one line each; confirmations and menus take
    /// their default (a piped token must never be mistaken for a "yes").
    Pipe,
    /// No one: secrets and text are errors naming the variable to set; defaults are taken.
    None,
}

impl InputMode {
    /// The mode for this process: `--no-input` wins, then whether stdin is a terminal.
    pub fn detect(no_input: bool) -> Self {
        if no_input {
            InputMode::None
        } else if std::io::stdin().is_terminal() {
            InputMode::Terminal
        } else {
            InputMode::Pipe
        }
    }
}

/// Answers prompts on stderr/stdin according to an [`InputMode`].
pub struct TerminalAnswerer {
    mode: InputMode,
    /// The provider's grant options, `(name, value name)`: a prompt of the same id can be
    /// answered on the command line instead, which the "needs input" hint says.
    options: Vec<(String, String)>,
}

impl TerminalAnswerer {
    /// An answerer in `mode`.
    pub fn new(mode: InputMode) -> Self {
        TerminalAnswerer {
            mode,
            options: Vec::new(),
        }
    }

    /// Names the provider's grant options (builder style).
    pub fn with_options(mut self, options: &[moat_plugin_sdk::GrantOption]) -> Self {
        self.options = options
            .iter()
            .map(|o| (o.name.clone(), o.value_name.clone()))
            .collect();
        self
    }

    fn read_line(
        &self,
        provider: &str,
        prompt: &Prompt,
        hidden: bool,
    ) -> Result<String, ProviderError> {
        let line = match self.mode {
            InputMode::None => None,
            InputMode::Terminal if hidden => {
                rpassword::prompt_password(format!("{}: ", prompt.message)).ok()
            }
            InputMode::Terminal => {
                eprint!("{}: ", prompt.message);
                let _ = std::io::stderr().flush();
                read_stdin_line()
            }
            InputMode::Pipe => read_stdin_line(),
        };
        line.map(|l| l.trim().to_string())
            .ok_or_else(|| self.needs_input(provider, prompt))
    }

    fn needs_input(&self, provider: &str, prompt: &Prompt) -> ProviderError {
        let why = match self.mode {
            InputMode::None => "input is disabled (--no-input)",
            _ => "stdin ended before it was answered",
        };
        let mut ways = Vec::new();
        if let Some((name, value)) = self.options.iter().find(|(name, _)| *name == prompt.id) {
            ways.push(format!("pass it: moat grant {provider} --{name} <{value}>"));
        }
        if let Some(env) = &prompt.env {
            ways.push(format!("set {env}"));
        }
        ways.push(format!("run 'moat grant {provider}' in a terminal"));
        if self.mode != InputMode::None {
            ways.push(format!("pipe the answer: ... | moat grant {provider}"));
        }
        ProviderError::new(
            ErrorKind::NeedsInput,
            format!("{provider} needs \"{}\", but {why}", prompt.message),
        )
        .with_hint(format!("To answer it: {}.", ways.join(", or ")))
    }

    fn show_default(&self, prompt: &Prompt, default: &str) {
        eprintln!("{} {default} (default; no terminal to ask)", prompt.message);
    }
}

impl Answerer for TerminalAnswerer {
    fn note(&mut self, text: &str) {
        eprintln!("{text}");
    }

    fn interactive(&self) -> bool {
        self.mode != InputMode::None
    }

    fn answer(&mut self, provider: &str, prompt: &Prompt) -> Result<Answer, ProviderError> {
        if let Some(help) = &prompt.help
            && self.mode == InputMode::Terminal
        {
            eprintln!("{help}\n");
        }
        match &prompt.kind {
            PromptKind::Secret => Ok(Answer::Secret(Secret::new(
                self.read_line(provider, prompt, true)?,
            ))),
            PromptKind::Text { default } => {
                let line = self.read_line(provider, prompt, false)?;
                Ok(Answer::Text(if line.is_empty() {
                    default.clone().unwrap_or_default()
                } else {
                    line
                }))
            }
            PromptKind::Confirm { default } => {
                if self.mode != InputMode::Terminal {
                    self.show_default(prompt, if *default { "yes" } else { "no" });
                    return Ok(Answer::Confirm(*default));
                }
                let shown = Prompt {
                    message: format!(
                        "{} {}",
                        prompt.message,
                        if *default { "[Y/n]" } else { "[y/N]" }
                    ),
                    ..prompt.clone()
                };
                loop {
                    let line = self
                        .read_line(provider, &shown, false)?
                        .to_ascii_lowercase();
                    match line.as_str() {
                        "" => return Ok(Answer::Confirm(*default)),
                        "y" | "yes" => return Ok(Answer::Confirm(true)),
                        "n" | "no" => return Ok(Answer::Confirm(false)),
                        _ => eprintln!("Please answer y or n."),
                    }
                }
            }
            PromptKind::Choice { options } => {
                let first = options.first().ok_or_else(|| {
                    ProviderError::new(
                        ErrorKind::Internal,
                        format!("provider {provider} offered an empty menu"),
                    )
                })?;
                if self.mode != InputMode::Terminal {
                    self.show_default(prompt, &first.label);
                    return Ok(Answer::Choice(first.value.clone()));
                }
                eprintln!("{}", prompt.message);
                for (i, option) in options.iter().enumerate() {
                    eprintln!("  {}. {}", i + 1, option.label);
                }
                let shown = Prompt {
                    message: "Enter choice".into(),
                    ..prompt.clone()
                };
                loop {
                    let line = self.read_line(provider, &shown, false)?;
                    if line.is_empty() {
                        return Ok(Answer::Choice(first.value.clone()));
                    }
                    match line.parse::<usize>() {
                        Ok(n) if (1..=options.len()).contains(&n) => {
                            return Ok(Answer::Choice(options[n - 1].value.clone()));
                        }
                        Ok(n) => eprintln!("choice {n} out of range [1-{}]", options.len()),
                        Err(_) => eprintln!("invalid choice"),
                    }
                }
            }
        }
    }
}

fn read_stdin_line() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line),
    }
}
