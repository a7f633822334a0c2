//! Plugin answers checked against protocol v1's JSON Schema (the files in `schema/v1/`, which
//! the SDK generates from its types), so a malformed answer is reported by field, in the same
//! terms a plugin author reads in the spec.

use std::collections::HashMap;
use std::sync::OnceLock;

use moat_plugin_sdk::protocol;
use serde_json::Value;

/// A message's validator, and for a tagged union (`{"step": "done", ...}` or `{"step": "ask",
/// ...}`) one validator per branch: a failed `oneOf` only says "matches no branch", while the
/// branch the tag names can say which field is wrong.
struct MessageValidator {
    whole: jsonschema::Validator,
    branches: Vec<(String, Value, jsonschema::Validator)>,
}

fn validators() -> &'static HashMap<&'static str, MessageValidator> {
    static VALIDATORS: OnceLock<HashMap<&'static str, MessageValidator>> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        protocol::schemas()
            .into_iter()
            .map(|message| {
                let root = message.schema.as_value();
                let compile = |schema: &Value| {
                    jsonschema::validator_for(schema).unwrap_or_else(|err| {
                        panic!("the SDK's schema {} does not compile: {err}", message.file)
                    })
                };
                let branches = root
                    .get("oneOf")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|branch| {
                        let (tag, value) = discriminant(branch)?;
                        let mut standalone = branch.clone();
                        standalone["$defs"] = root.get("$defs").cloned().unwrap_or(Value::Null);
                        if standalone["$defs"].is_null() {
                            standalone.as_object_mut()?.remove("$defs");
                        }
                        Some((tag, value, compile(&standalone)))
                    })
                    .collect();
                (
                    message.file,
                    MessageValidator {
                        whole: compile(root),
                        branches,
                    },
                )
            })
            .collect()
    })
}

/// The property a union branch is told apart by: the one with a `const` value.
fn discriminant(branch: &Value) -> Option<(String, Value)> {
    let properties = branch.get("properties")?.as_object()?;
    properties.iter().find_map(|(name, property)| {
        property
            .get("const")
            .map(|value| (name.clone(), value.clone()))
    })
}

/// Checks `value` against the schema file `file` (`grant.result.json`). The problems name the
/// offending field and the rule it breaks, never the value itself: a value may be a token.
pub fn validate(file: &str, value: &Value) -> Result<(), Vec<String>> {
    let Some(message) = validators().get(file) else {
        return Err(vec![format!("moat has no schema named {file}")]);
    };
    if message.whole.is_valid(value) {
        return Ok(());
    }
    let branch = message
        .branches
        .iter()
        .find(|(tag, expected, _)| value.get(tag) == Some(expected))
        .map(|(_, _, validator)| validator);
    let Some(validator) = branch else {
        if !message.branches.is_empty() {
            let tags: Vec<String> = message
                .branches
                .iter()
                .map(|(tag, v, _)| format!("{tag}={v}"))
                .collect();
            return Err(vec![format!(
                "at /: is none of the allowed kinds ({})",
                tags.join(", ")
            )]);
        }
        return Err(problems(&message.whole, value));
    };
    Err(problems(validator, value))
}

fn problems(validator: &jsonschema::Validator, value: &Value) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|error| {
            let at = error.instance_path().to_string();
            let at = if at.is_empty() { "/".to_string() } else { at };
            format!("at {at}: breaks the rule {}", error.schema_path())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_valid_grant_result_passes() {
        let done = json!({
            "step": "done",
            "credential": {"provider": "x", "token": "t", "created_at": "2026-01-01T00:00:00Z"},
            "notes": []
        });
        assert_eq!(validate("grant.result.json", &done), Ok(()));
    }

    #[test]
    fn problems_name_the_field_but_never_the_value() {
        let bad = json!({"step": "done", "credential": {"provider": "x", "token": 12345678, "created_at": "now-ish"}});
        let problems = validate("grant.result.json", &bad).unwrap_err();
        let text = problems.join("\n");
        assert!(text.contains("/credential/token"), "{text}");
        assert!(!text.contains("12345678"), "{text}");
    }

    #[test]
    fn an_unknown_union_tag_is_named() {
        let problems = validate("grant.result.json", &json!({"step": "maybe"})).unwrap_err();
        assert!(
            problems[0].contains("none of the allowed kinds"),
            "{problems:?}"
        );
        assert!(problems[0].contains("step=\"done\""), "{problems:?}");
    }

    #[test]
    fn every_sdk_schema_compiles() {
        for message in protocol::schemas() {
            assert!(validators().contains_key(message.file), "{}", message.file);
        }
    }
}
