//! Driving a provider's grant to the end: call `grant`, answer what it asks, call again.
//!
//! The host side of the conversation described in the SDK's `grant` module. Where the answers come
//! from (a terminal, a pipe, nowhere) is the caller's [`Answerer`]; this module only enforces the
//! rules a provider must follow, the same for a built-in and a plugin.

use std::collections::BTreeMap;

use moat_plugin_sdk::{
    Answer, Credential, ErrorKind, GrantRequest, GrantStep, Prompt, ProviderError,
};

use super::Entry;

/// A provider that has not finished after this many steps is looping.
const MAX_STEPS: usize = 16;

/// Answers a provider's questions and shows its notes.
pub trait Answerer {
    /// Shows a line of information from the provider.
    fn note(&mut self, text: &str);

    /// Answers one question, or fails with [`ErrorKind::NeedsInput`] naming how else to answer it.
    fn answer(&mut self, provider: &str, prompt: &Prompt) -> Result<Answer, ProviderError>;

    /// Whether anyone can answer at all (false with `--no-input`).
    fn interactive(&self) -> bool;
}

/// Runs `entry`'s grant until it yields a credential, and checks that credential. `options` are
/// the values of the provider's declared grant options (`--role <arn>`), passed in every step.
pub async fn run_grant(
    entry: &Entry,
    options: BTreeMap<String, String>,
    answerer: &mut dyn Answerer,
) -> Result<Credential, ProviderError> {
    let name = &entry.info.name;
    let mut request = GrantRequest {
        answers: Default::default(),
        interactive: answerer.interactive(),
        options,
    };
    for _ in 0..MAX_STEPS {
        match entry.provider.grant(request.clone()).await? {
            GrantStep::Done { credential, notes } => {
                notes.iter().for_each(|note| answerer.note(note));
                check_credential(name, &credential)?;
                return Ok(credential);
            }
            GrantStep::Ask { prompts, notes } => {
                notes.iter().for_each(|note| answerer.note(note));
                if prompts.is_empty() {
                    return Err(misbehaved(name, "asked an empty list of questions"));
                }
                for prompt in &prompts {
                    if request.answers.contains_key(&prompt.id) {
                        return Err(misbehaved(
                            name,
                            &format!("asked {:?} again after it was answered", prompt.id),
                        ));
                    }
                    let answer = answerer.answer(name, prompt)?;
                    request.answers.insert(prompt.id.clone(), answer);
                }
            }
        }
    }
    Err(misbehaved(
        name,
        &format!("did not finish its grant in {MAX_STEPS} steps"),
    ))
}

fn check_credential(name: &str, credential: &Credential) -> Result<(), ProviderError> {
    if credential.provider != name {
        return Err(misbehaved(
            name,
            &format!("returned a credential for {:?}", credential.provider),
        ));
    }
    if credential.token.is_empty() {
        return Err(misbehaved(name, "returned an empty token"));
    }
    Ok(())
}

fn misbehaved(name: &str, what: &str) -> ProviderError {
    ProviderError::new(ErrorKind::Internal, format!("provider {name} {what}")).with_hint(format!(
        "This is a bug in the {name} provider; nothing was stored."
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use moat_plugin_sdk::testkit::MockProvider;
    use moat_plugin_sdk::{CredentialProvider, Secret};

    use super::*;
    use crate::provider::ProviderSource;

    struct Scripted(Vec<Answer>, Vec<String>);

    impl Answerer for Scripted {
        fn note(&mut self, text: &str) {
            self.1.push(text.to_string());
        }
        fn answer(&mut self, _: &str, prompt: &Prompt) -> Result<Answer, ProviderError> {
            if self.0.is_empty() {
                return Err(ProviderError::new(
                    ErrorKind::NeedsInput,
                    format!("no answer for {}", prompt.id),
                ));
            }
            Ok(self.0.remove(0))
        }
        fn interactive(&self) -> bool {
            true
        }
    }

    fn entry(mock: MockProvider) -> Entry {
        let info = mock.info();
        Entry {
            provider: Arc::new(mock),
            info,
            source: ProviderSource::Builtin,
        }
    }

    fn asking_for_token() -> MockProvider {
        MockProvider::new("m").grant_with(|req| {
            match req.answer("token").and_then(Answer::as_secret) {
                None => Ok(GrantStep::Ask {
                    prompts: vec![Prompt::secret("token", "Token")],
                    notes: vec!["hello".into()],
                }),
                Some(token) => Ok(GrantStep::Done {
                    credential: Credential::new("m", token.clone()),
                    notes: vec![],
                }),
            }
        })
    }

    #[tokio::test]
    async fn asks_then_completes() {
        let mut answerer = Scripted(vec![Answer::Secret(Secret::new("t0k"))], vec![]);
        let credential = run_grant(&entry(asking_for_token()), BTreeMap::new(), &mut answerer)
            .await
            .unwrap();
        assert_eq!(credential.token.expose(), "t0k");
        assert_eq!(answerer.1, vec!["hello"]);
    }

    #[tokio::test]
    async fn unanswerable_question_is_the_answerers_error() {
        let mut answerer = Scripted(vec![], vec![]);
        let err = run_grant(&entry(asking_for_token()), BTreeMap::new(), &mut answerer)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::NeedsInput);
    }

    #[tokio::test]
    async fn a_provider_that_asks_forever_is_stopped() {
        let looping = MockProvider::new("m").grant_with(|req| {
            let id = format!("q{}", req.answers.len());
            Ok(GrantStep::Ask {
                prompts: vec![Prompt::text(id, "again?")],
                notes: vec![],
            })
        });
        let mut answerer = Scripted((0..100).map(|_| Answer::Text("x".into())).collect(), vec![]);
        let err = run_grant(&entry(looping), BTreeMap::new(), &mut answerer)
            .await
            .unwrap_err();
        assert!(err.message.contains("did not finish"), "{err}");
    }

    #[tokio::test]
    async fn re_asking_an_answered_question_is_refused() {
        let stubborn = MockProvider::new("m").grant_with(|_| {
            Ok(GrantStep::Ask {
                prompts: vec![Prompt::text("q", "?")],
                notes: vec![],
            })
        });
        let mut answerer = Scripted(
            vec![Answer::Text("a".into()), Answer::Text("b".into())],
            vec![],
        );
        let err = run_grant(&entry(stubborn), BTreeMap::new(), &mut answerer)
            .await
            .unwrap_err();
        assert!(err.message.contains("asked \"q\" again"), "{err}");
    }

    #[tokio::test]
    async fn options_reach_every_step() {
        let echo = MockProvider::new("m").grant_with(|req| {
            let region = req.option("region").unwrap_or("none").to_string();
            match req.answer("token").and_then(Answer::as_secret) {
                None => Ok(GrantStep::Ask {
                    prompts: vec![Prompt::secret("token", "Token")],
                    notes: vec![format!("first step sees {region}")],
                }),
                Some(token) => Ok(GrantStep::Done {
                    credential: Credential::new("m", token.clone()).with_metadata("region", region),
                    notes: vec![],
                }),
            }
        });
        let options = BTreeMap::from([("region".to_string(), "eu-west-1".to_string())]);
        let mut answerer = Scripted(vec![Answer::Secret(Secret::new("t"))], vec![]);
        let credential = run_grant(&entry(echo), options, &mut answerer)
            .await
            .unwrap();
        assert_eq!(answerer.1, vec!["first step sees eu-west-1"]);
        assert_eq!(credential.metadata["region"], "eu-west-1");
    }

    #[tokio::test]
    async fn a_credential_for_another_provider_is_refused() {
        let liar = MockProvider::new("m").grant_with(|_| {
            Ok(GrantStep::Done {
                credential: Credential::new("other", "t"),
                notes: vec![],
            })
        });
        let err = run_grant(&entry(liar), BTreeMap::new(), &mut Scripted(vec![], vec![]))
            .await
            .unwrap_err();
        assert!(
            err.message.contains("returned a credential for \"other\""),
            "{err}"
        );
    }
}
