//! `schema/provider-file.schema.json` is generated from the provider file's types and committed;
//! this test keeps the two in step. Regenerate with
//! `MOAT_BLESS=1 cargo test -p moat --test provider_schema`.

use std::path::PathBuf;

fn committed() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schema/provider-file.schema.json")
}

fn render() -> String {
    let mut text =
        serde_json::to_string_pretty(&moat::declared::json_schema()).expect("a schema is JSON");
    text.push('\n');
    text
}

#[test]
fn the_committed_provider_file_schema_matches_the_code() {
    let expected = render();
    let path = committed();
    if std::env::var_os("MOAT_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{} is out of date with moat::declared's types.\n\
         Regenerate with: MOAT_BLESS=1 cargo test -p moat --test provider_schema\n\
         (and review the diff: provider files written for the old schema must stay valid)",
        path.display()
    );
}

#[test]
fn the_bundled_catalogue_is_valid_against_the_committed_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(committed()).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for (file, text) in moat::providers::catalogue::FILES {
        let parsed = moat::declared::parse(text, std::path::Path::new(file)).unwrap();
        let value = serde_json::to_value(&parsed).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{file}: {errors:?}");
    }
    let starter = moat::declared::starter("acme");
    let parsed = moat::declared::parse(&starter, std::path::Path::new("acme.yaml")).unwrap();
    assert!(validator.is_valid(&serde_json::to_value(&parsed).unwrap()));
}
