use super::*;

const FULL: &str = r#"
name: acme
description: Acme API token
aliases: [ac, acme-api]
hosts:
  - API.Acme.test
  - "*.acme.test"
inject:
  header: X-Acme-Key
  prefix: "Token "
source_env: [ACME_TOKEN, ACME_KEY]
container_env: ACME_TOKEN
validate:
  url: https://api.acme.test/v1/me?x=1
  method: POST
  header: Authorization
  prefix: "Bearer "
  status: 204
prompt: |
  Create a token at https://acme.test/tokens.
"#;

fn ok(text: &str) -> ProviderFile {
    parse(text, Path::new("/p/acme.yaml")).unwrap_or_else(|err| panic!("{err}"))
}

fn err(text: &str) -> FileError {
    parse(text, Path::new("/p/acme.yaml")).expect_err("refused")
}

#[test]
fn every_field_is_read() {
    let file = ok(FULL);
    assert_eq!(file.name.as_str(), "acme");
    assert_eq!(file.description.as_str(), "Acme API token");
    let aliases: Vec<&str> = file.aliases.iter().map(Name::as_str).collect();
    assert_eq!(aliases, ["ac", "acme-api"]);
    let hosts: Vec<&str> = file.hosts.iter().map(Host::as_str).collect();
    assert_eq!(
        hosts,
        ["api.acme.test", "*.acme.test"],
        "hosts are lowercased"
    );
    assert!(file.hosts[1].is_wildcard() && !file.hosts[0].is_wildcard());
    let inject = file.inject.as_ref().unwrap();
    assert_eq!(inject.header.as_str(), "X-Acme-Key");
    assert_eq!(inject.prefix.as_ref().unwrap().as_str(), "Token ");
    let vars: Vec<&str> = file.source_env.iter().map(EnvName::as_str).collect();
    assert_eq!(vars, ["ACME_TOKEN", "ACME_KEY"]);
    assert_eq!(file.container_env.as_ref().unwrap().as_str(), "ACME_TOKEN");
    let validate = file.validate.as_ref().unwrap();
    assert_eq!(validate.url.as_str(), "https://api.acme.test/v1/me?x=1");
    assert_eq!(validate.method, Some(Method::Post));
    assert_eq!(validate.header.as_ref().unwrap().as_str(), "Authorization");
    assert_eq!(validate.prefix.as_ref().unwrap().as_str(), "Bearer ");
    assert_eq!(validate.status.unwrap().get(), 204);
    assert_eq!(
        file.prompt.as_deref(),
        Some("Create a token at https://acme.test/tokens.\n")
    );
}

#[test]
fn the_smallest_files_of_each_mode() {
    let header = ok("name: a\ndescription: A\nhosts: [a.test]\ninject: {header: X-Key}\n");
    assert!(header.inject.as_ref().unwrap().prefix.is_none());
    assert!(header.validate.is_none() && header.container_env.is_none());
    let substitution = ok("name: a\ndescription: A\nhosts: [a.test]\ncontainer_env: A_TOKEN\n");
    assert!(substitution.inject.is_none());
}

#[test]
fn bad_yaml_names_file_and_line() {
    let e = err("name: acme\ndescription: [unclosed\nhosts: [a.test]\n");
    assert_eq!(e.file, Path::new("/p/acme.yaml"));
    assert!(e.line >= 2, "{e:?}");
    assert!(e.to_string().starts_with("/p/acme.yaml:"), "{e}");
}

#[test]
fn a_wrong_type_names_the_key_and_what_was_expected() {
    let e = err("name: acme\ndescription: A\nhosts: api.acme.test\ninject: {header: X}\n");
    assert_eq!((e.line, e.column), (3, 8), "{e}");
    assert_eq!(e.key, "hosts");
    assert!(e.message.contains("sequence"), "{e}");

    let e = err(
        "name: acme\ndescription: A\nhosts: [a.test]\ninject: {header: X}\nvalidate: {url: https://a.test/, status: ok}\n",
    );
    assert_eq!(e.key, "validate.status", "{e}");
    assert_eq!(e.line, 5, "{e}");
}

#[test]
fn an_unknown_field_is_named_with_the_fields_that_exist() {
    let e = err("name: acme\ndescription: A\nhosts: [a.test]\ninject: {header: X}\nheaders: []\n");
    assert_eq!((e.line, e.column, e.key.as_str()), (5, 1, "headers"), "{e}");
    assert!(e.message.contains("unknown field `headers`"), "{e}");
    assert!(e.message.contains("hosts"), "lists the fields: {e}");
    // Nested too.
    let e = err("name: acme\ndescription: A\nhosts: [a.test]\ninject: {header: X, prefx: 'B '}\n");
    assert_eq!(e.key, "inject.prefx", "{e}");
    assert_eq!(e.line, 4, "{e}");
}

#[test]
fn missing_or_empty_hosts_are_refused() {
    let e = err("name: acme\ndescription: A\ninject: {header: X}\n");
    assert!(e.message.contains("missing field `hosts`"), "{e}");
    let e = err("name: acme\ndescription: A\nhosts: []\ninject: {header: X}\n");
    assert_eq!((e.key.as_str(), e.line), ("hosts", 3), "{e}");
    assert!(e.message.contains("at least one host"), "{e}");
}

#[test]
fn each_value_is_checked_where_it_is() {
    let cases: &[(&str, &str, &str)] = &[
        ("name: Acme\n", "name", "lowercase"),
        ("aliases: [ok, 'B A']\n", "aliases[1]", "lowercase"),
        ("hosts: [https://a.test]\n", "hosts[0]", "without scheme"),
        ("hosts: [a.test:443]\n", "hosts[0]", "host name"),
        ("hosts: ['*.com']\n", "hosts[0]", "two labels"),
        ("hosts: [a..test]\n", "hosts[0]", "host name"),
        (
            "inject: {header: 'X Key'}\n",
            "inject.header",
            "header name",
        ),
        ("inject: {header: Host}\n", "inject.header", "proxy owns"),
        (
            "inject: {header: X, prefix: \"B\\n\"}\n",
            "inject.prefix",
            "visible ASCII",
        ),
        ("source_env: [1TOKEN]\n", "source_env[0]", "variable name"),
        ("container_env: A-B\n", "container_env", "variable name"),
        (
            "validate: {url: http://a.test/}\n",
            "validate.url",
            "https://",
        ),
        (
            "validate: {url: 'https://a.test/${key}'}\n",
            "validate.url",
            "only variable",
        ),
        (
            "validate: {url: 'https://${token}.a.test/'}\n",
            "validate.url",
            "host",
        ),
        (
            "validate: {url: https://a.test/, method: PUT}\n",
            "validate.method",
            "GET",
        ),
        (
            "validate: {url: https://a.test/, status: 99}\n",
            "validate.status",
            "100 to 599",
        ),
        ("description: ''\n", "description", "not empty"),
    ];
    let base = [
        ("name", "name: acme\n"),
        ("description", "description: A\n"),
        ("hosts", "hosts: [a.test]\n"),
        ("inject", "inject: {header: X}\n"),
    ];
    for (line, key, expected) in cases {
        let field = line.split(':').next().unwrap();
        let mut text: String = base
            .iter()
            .filter(|(name, _)| *name != field)
            .map(|(_, l)| *l)
            .collect();
        text.push_str(line);
        let e = err(&text);
        assert_eq!(e.key, *key, "{line}: {e}");
        assert!(e.message.contains(expected), "{line}: {e}");
        assert!(e.line > 0 && e.column > 0, "{line}: {e:?}");
    }
}

#[test]
fn rules_across_fields_name_the_field() {
    // Substitution mode needs a variable to hand the placeholder over.
    let e = err("name: a\ndescription: A\nhosts: [a.test]\n");
    assert_eq!(e.key, "container_env", "{e}");
    assert!(e.message.contains("without a header"), "{e}");
    // ...and a way to send the token when validating.
    let e = err(
        "name: a\ndescription: A\nhosts: [a.test]\ncontainer_env: A\nvalidate:\n  url: https://a.test/me\n",
    );
    assert_eq!((e.key.as_str(), e.line), ("validate", 5), "{e}");
    ok(
        "name: a\ndescription: A\nhosts: [a.test]\ncontainer_env: A\nvalidate:\n  url: https://a.test/bot${token}/me\n",
    );
    ok(
        "name: a\ndescription: A\nhosts: [a.test]\ncontainer_env: A\nvalidate:\n  url: https://a.test/me\n  header: X\n",
    );
    let e = err("name: a\ndescription: A\naliases: [a]\nhosts: [a.test]\ninject: {header: X}\n");
    assert_eq!(e.key, "aliases", "{e}");
}

#[test]
fn validate_urls_take_the_token_and_the_override() {
    let url =
        ValidateUrl::try_from("https://api.t.test/bot${token}/getMe?x=1".to_string()).unwrap();
    assert!(url.has_token());
    assert_eq!(
        url.resolve(None, "123:AB/c d"),
        "https://api.t.test/bot123:AB%2Fc%20d/getMe?x=1"
    );
    assert_eq!(
        url.resolve(Some("https://127.0.0.1:8443/"), "t"),
        "https://127.0.0.1:8443/bott/getMe?x=1"
    );
    assert_eq!(
        url.resolve(Some("https://127.0.0.1:8443/prefix"), "t"),
        "https://127.0.0.1:8443/prefix/bott/getMe?x=1"
    );
    let bare = ValidateUrl::try_from("https://a.test".to_string()).unwrap();
    assert_eq!(
        bare.resolve(Some("https://b.test:1"), "t"),
        "https://b.test:1"
    );
    assert!(!bare.has_token());
}

#[test]
fn blank_and_non_mapping_documents_are_refused() {
    let e = err("");
    assert!(e.message.contains("missing field"), "{e}");
    let e = err("- a\n- b\n");
    assert!(e.to_string().starts_with("/p/acme.yaml:1:1"), "{e}");
}

#[test]
fn a_file_round_trips_through_serde() {
    let file = ok(FULL);
    let json = serde_json::to_value(&file).unwrap();
    assert_eq!(json["hosts"][0], "api.acme.test");
    assert_eq!(json["validate"]["method"], "POST");
    assert_eq!(json["validate"]["status"], 204);
    let back: ProviderFile = serde_json::from_value(json).unwrap();
    assert_eq!(back, file);
}

#[test]
fn the_schema_accepts_the_full_example_and_refuses_what_parse_refuses() {
    let schema = json_schema();
    let value = schema.as_value();
    assert_eq!(value["additionalProperties"], false, "{value}");
    let validator = jsonschema::validator_for(value).unwrap();
    let full = serde_json::to_value(ok(FULL)).unwrap();
    assert!(validator.is_valid(&full));
    for (key, bad) in [
        ("hosts", serde_json::json!(["https://x"])),
        ("name", serde_json::json!("Acme")),
        ("headers", serde_json::json!([])),
        ("container_env", serde_json::json!("A-B")),
    ] {
        let mut wrong = full.clone();
        wrong[key] = bad;
        assert!(!validator.is_valid(&wrong), "{key}");
    }
    let mut no_hosts = full.clone();
    no_hosts.as_object_mut().unwrap().remove("hosts");
    assert!(!validator.is_valid(&no_hosts));
}
