//! The grant conversation: a provider asks, the host answers.
//!
//! A provider never touches the terminal. [`CredentialProvider::grant`](crate::CredentialProvider::grant)
//! returns either a finished credential or the questions it needs answered; moat asks the user (or
//! reads a piped stdin, or fails in `--no-input` mode naming the variable to set) and calls `grant`
//! again with every answer so far. Providers are therefore stateless between steps, and a plugin in
//! another process grants exactly like a built-in.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Credential, Secret};

/// Arguments of one grant step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GrantRequest {
    /// Answers to the prompts asked so far, by prompt id.
    #[serde(default)]
    pub answers: BTreeMap<String, Answer>,
    /// False when nobody can answer a question (`--no-input`, or CI): ask only what the host can
    /// answer from defaults, and prefer a clear error naming the variable to set.
    #[serde(default)]
    pub interactive: bool,
    /// The values of the provider's declared
    /// [`grant_options`](crate::ProviderInfo::grant_options) given on `moat grant`'s command line,
    /// by option name (`role` for `--role`). The same in every step of one grant.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

impl GrantRequest {
    /// The answer to prompt `id`, if given.
    pub fn answer(&self, id: &str) -> Option<&Answer> {
        self.answers.get(id)
    }

    /// The value of command-line option `name` (`role` for `--role`), if given and not empty.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Adds an answer (builder style).
    pub fn with_answer(mut self, id: impl Into<String>, answer: Answer) -> Self {
        self.answers.insert(id.into(), answer);
        self
    }
}

/// The user's answer to one [`Prompt`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(description = "The user's answer to one prompt, under the prompt's `id` in `answers`.")]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// Answer to a [`PromptKind::Secret`].
    #[schemars(description = "Answer to a `secret` prompt.")]
    Secret(Secret),
    /// Answer to a [`PromptKind::Text`].
    #[schemars(description = "Answer to a `text` prompt.")]
    Text(String),
    /// Answer to a [`PromptKind::Confirm`].
    #[schemars(description = "Answer to a `confirm` prompt.")]
    Confirm(bool),
    /// Answer to a [`PromptKind::Choice`]: the chosen option's `value`.
    #[schemars(description = "Answer to a `choice` prompt: the chosen option's `value`.")]
    Choice(String),
}

impl Answer {
    /// The answer as text, for secret, text and choice answers.
    pub fn as_secret(&self) -> Option<&Secret> {
        match self {
            Answer::Secret(s) => Some(s),
            _ => None,
        }
    }

    /// The answer as text (text and choice answers).
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Answer::Text(s) | Answer::Choice(s) => Some(s),
            _ => None,
        }
    }

    /// The answer as a yes/no.
    pub fn as_confirm(&self) -> Option<bool> {
        match self {
            Answer::Confirm(b) => Some(*b),
            _ => None,
        }
    }
}

/// The result of one grant step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum GrantStep {
    /// The credential, validated and ready to store.
    Done {
        /// The credential.
        credential: Credential,
        /// Lines to show the user (`Authenticated as: octocat`).
        #[serde(default)]
        notes: Vec<String>,
    },
    /// Questions for the user; moat calls `grant` again with their answers added.
    Ask {
        /// The questions, asked in order.
        prompts: Vec<Prompt>,
        /// Lines to show before asking (`Found gh CLI authentication`).
        #[serde(default)]
        notes: Vec<String>,
    },
}

/// One question for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Prompt {
    /// Identifies the answer in [`GrantRequest::answers`].
    #[schemars(
        description = "The key of this prompt's answer in the next `grant` call's `answers`."
    )]
    pub id: String,
    /// The question (`GitHub token`, `Use token from gh CLI?`).
    pub message: String,
    /// What kind of answer is wanted.
    pub kind: PromptKind,
    /// Longer guidance shown before the question (how to create a token, which scopes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// The environment variable that answers this question without a prompt; named in the error
    /// when no one can answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

impl Prompt {
    /// A hidden-input question.
    pub fn secret(id: impl Into<String>, message: impl Into<String>) -> Self {
        Prompt::of(id, message, PromptKind::Secret)
    }

    /// A yes/no question with a default (taken on Enter and in non-interactive use).
    pub fn confirm(id: impl Into<String>, message: impl Into<String>, default: bool) -> Self {
        Prompt::of(id, message, PromptKind::Confirm { default })
    }

    /// A free-text question.
    pub fn text(id: impl Into<String>, message: impl Into<String>) -> Self {
        Prompt::of(id, message, PromptKind::Text { default: None })
    }

    /// A numbered menu; the first option is the default.
    pub fn choice(
        id: impl Into<String>,
        message: impl Into<String>,
        options: Vec<ChoiceOption>,
    ) -> Self {
        Prompt::of(id, message, PromptKind::Choice { options })
    }

    fn of(id: impl Into<String>, message: impl Into<String>, kind: PromptKind) -> Self {
        Prompt {
            id: id.into(),
            message: message.into(),
            kind,
            help: None,
            env: None,
        }
    }

    /// Sets the guidance text (builder style).
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Names the environment variable that answers this prompt (builder style).
    pub fn with_env(mut self, env: impl Into<String>) -> Self {
        self.env = Some(env.into());
        self
    }
}

/// The kinds of question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PromptKind {
    /// Hidden input; answered with [`Answer::Secret`].
    #[schemars(description = "Hidden input; answered with `{\"secret\": ...}`.")]
    Secret,
    /// Visible input; answered with [`Answer::Text`].
    #[schemars(description = "Visible input; answered with `{\"text\": ...}`.")]
    Text {
        /// Taken on an empty answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default: Option<String>,
    },
    /// Yes or no; answered with [`Answer::Confirm`].
    #[schemars(description = "Yes or no; answered with `{\"confirm\": true}` or `false`.")]
    Confirm {
        /// Taken on an empty answer and when no one can answer.
        default: bool,
    },
    /// One of several options; answered with [`Answer::Choice`]. The first is the default.
    #[schemars(
        description = "One of several options; answered with `{\"choice\": value}`. The first is the default."
    )]
    Choice {
        /// The options, in display order.
        options: Vec<ChoiceOption>,
    },
}

/// One entry of a [`PromptKind::Choice`] menu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(description = "One entry of a `choice` prompt's menu.")]
pub struct ChoiceOption {
    /// What comes back in [`Answer::Choice`].
    #[schemars(description = "What comes back in the `choice` answer.")]
    pub value: String,
    /// What the user reads.
    pub label: String,
}
