use super::*;

use moat_plugin_sdk::testkit::MockProvider;
use moat_plugin_sdk::{
    Answer, Credential, CredentialProvider, GrantRequest, GrantStep, PromptKind, ProxyRule, Secret,
    TransformKind,
};

fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

fn header_file(name: &str, extra: &str) -> String {
    format!(
        "name: {name}\ndescription: {name} token\nhosts: [api.{name}.test]\ninject: {{header: X-Key}}\n{extra}"
    )
}

fn registry_with_builtin() -> Registry {
    let mut registry = Registry::new();
    registry.register_builtin(Arc::new(MockProvider::new("core").alias("co")));
    registry
}

fn provider(text: &str) -> DeclaredProvider {
    DeclaredProvider::with_api_url(parse(text, Path::new("x.yaml")).unwrap(), None)
}

#[test]
fn user_files_load_in_name_order_and_a_broken_one_stops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a-broken.yaml", "name: [\n");
    let good = write(dir.path(), "b.yml", &header_file("bee", ""));
    write(dir.path(), "c.yaml", &header_file("sea", "aliases: [cc]\n"));
    write(dir.path(), "notes.txt", &header_file("txt", ""));
    write(dir.path(), ".hidden.yaml", &header_file("dot", ""));
    std::fs::create_dir(dir.path().join("folder.yaml")).unwrap();
    let mut registry = registry_with_builtin();
    let warnings = register_user_files(&mut registry, dir.path());

    assert_eq!(registry.names(), ["bee", "core", "sea"]);
    let entry = registry.get("cc").unwrap();
    assert_eq!(entry.info.name, "sea");
    assert_eq!(
        registry.get("bee").unwrap().source,
        ProviderSource::Custom { path: good }
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let text = warnings[0].to_string();
    assert!(warnings[0].is_broken());
    assert!(text.contains("a-broken.yaml:"), "{text}");
    assert!(text.contains("moat provider check"), "{text}");
}

#[test]
fn a_missing_folder_is_no_provider_and_no_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::new();
    assert!(register_user_files(&mut registry, &dir.path().join("none")).is_empty());
    assert!(registry.names().is_empty());
}

#[test]
fn two_files_with_one_name_say_which_won() {
    let dir = tempfile::tempdir().unwrap();
    let first = write(dir.path(), "1.yaml", &header_file("acme", ""));
    let second = write(dir.path(), "2.yaml", &header_file("acme", ""));
    let mut registry = Registry::new();
    let warnings = register_user_files(&mut registry, dir.path());
    assert_eq!(
        registry.get("acme").unwrap().source,
        ProviderSource::Custom {
            path: first.clone()
        }
    );
    assert_eq!(
        warnings,
        [DeclaredWarning::Duplicate {
            path: second.clone(),
            name: "acme".into(),
            winner: first.clone(),
        }]
    );
    let text = warnings[0].to_string();
    assert!(text.starts_with(&second.display().to_string()), "{text}");
    assert!(
        text.contains(&format!("{}, which wins", first.display())),
        "{text}"
    );
}

#[test]
fn an_alias_clash_keeps_the_provider_without_the_alias() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "a.yaml",
        &header_file("acme", "aliases: [core, co, ac]\n"),
    );
    let mut registry = registry_with_builtin();
    let warnings = register_user_files(&mut registry, dir.path());
    assert_eq!(registry.get("ac").unwrap().info.name, "acme");
    assert_eq!(registry.get("core").unwrap().info.name, "core");
    assert_eq!(registry.get("co").unwrap().info.name, "core");
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(
        warnings[0],
        DeclaredWarning::AliasSkipped {
            path: Some(path),
            name: "acme".into(),
            alias: "core".into(),
            by: "core".into(),
            source: "builtin".into(),
        }
    );
    let text = warnings[1].to_string();
    assert!(
        text.contains("alias co of provider acme is not used"),
        "{text}"
    );
    assert!(text.contains("builtin provider core"), "{text}");
}

#[test]
fn precedence_builtin_then_user_then_plugin_then_bundled() {
    let dir = tempfile::tempdir().unwrap();
    let custom_core = write(dir.path(), "core.yaml", &header_file("core", ""));
    let custom_both = write(dir.path(), "both.yaml", &header_file("both", ""));
    let mut registry = registry_with_builtin();

    // 1. Built-ins beat user files.
    let warnings = register_user_files(&mut registry, dir.path());
    assert_eq!(
        registry.get("core").unwrap().source,
        ProviderSource::Builtin
    );
    assert_eq!(
        warnings,
        [DeclaredWarning::Hidden {
            path: Some(custom_core),
            name: "core".into(),
            by: "core".into(),
            source: "builtin".into(),
            by_path: None,
        }]
    );
    assert!(
        warnings[0]
            .to_string()
            .contains("the builtin provider core wins")
    );

    // 2. User files beat plugins (as `Plugins::load` registers them, after the user files).
    let plugin = ProviderSource::Plugin {
        path: "/bin/moat-provider-both".into(),
    };
    assert!(
        registry
            .register(Arc::new(MockProvider::new("both")), plugin.clone())
            .is_err()
    );
    assert_eq!(
        registry.get("both").unwrap().source,
        ProviderSource::Custom {
            path: custom_both.clone()
        }
    );
    let plugin_only = ProviderSource::Plugin {
        path: "/bin/moat-provider-plug".into(),
    };
    registry
        .register(Arc::new(MockProvider::new("plug")), plugin_only)
        .unwrap();

    // 3. Plugins and user files beat the bundled catalogue; the rest of it loads.
    // `Bundled` holds 'static text, as `include_str!` gives: leak three small strings.
    let leak = |text: String| -> &'static str { Box::leak(text.into_boxed_str()) };
    let bundled = [
        Bundled {
            file: "plug.yaml",
            text: leak(header_file("plug", "")),
        },
        Bundled {
            file: "both.yaml",
            text: leak(header_file("both", "")),
        },
        Bundled {
            file: "extra.yaml",
            text: leak(header_file("extra", "aliases: [plug-x]\n")),
        },
    ];
    let warnings = register_bundled(&mut registry, &bundled);
    assert_eq!(
        registry.get("extra").unwrap().source,
        ProviderSource::Bundled
    );
    assert_eq!(registry.get("plug-x").unwrap().info.name, "extra");
    assert!(matches!(
        registry.get("plug").unwrap().source,
        ProviderSource::Plugin { .. }
    ));
    let texts: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 2, "{texts:?}");
    assert_eq!(
        texts[0],
        "bundled catalogue: provider plug is hidden: the plugin provider plug (/bin/moat-provider-plug) wins"
    );
    assert_eq!(
        texts[1],
        format!(
            "bundled catalogue: provider both is hidden: the custom provider both ({}) wins",
            custom_both.display()
        )
    );
}

#[test]
fn a_name_taken_as_an_alias_says_so() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "co.yaml", &header_file("co", ""));
    let mut registry = registry_with_builtin();
    let warnings = register_user_files(&mut registry, dir.path());
    let text = warnings[0].to_string();
    assert!(
        text.contains("co is an alias of the builtin provider core"),
        "{text}"
    );
}

#[test]
fn header_mode_sets_the_header_on_every_host_and_gives_the_container_a_placeholder() {
    let p = provider(
        "name: acme\ndescription: A\nhosts: [a.test, '*.b.test']\ninject: {header: Authorization, prefix: 'Bearer '}\ncontainer_env: ACME_TOKEN\n",
    );
    let credential = Credential::new("acme", "real-token-1");
    let rules = tokio_block(p.configure_proxy(&credential)).unwrap();
    let seen: Vec<(String, String, String, String)> = rules
        .rules
        .iter()
        .map(|rule| match rule {
            ProxyRule::Credential {
                host,
                header,
                value,
                grant,
            } => (
                host.clone(),
                header.clone(),
                value.expose().to_string(),
                grant.clone(),
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    let expected = |host: &str| {
        (
            host.to_string(),
            "Authorization".to_string(),
            "Bearer real-token-1".to_string(),
            "acme".to_string(),
        )
    };
    assert_eq!(seen, [expected("a.test"), expected("*.b.test")]);
    let env = tokio_block(p.container_env(&credential)).unwrap();
    assert_eq!(env.len(), 1);
    assert_eq!(
        (env[0].name.as_str(), env[0].value.as_str()),
        ("ACME_TOKEN", HEADER_PLACEHOLDER)
    );
    // No container_env: nothing in the container.
    let bare = provider(&header_file("bare", ""));
    assert!(
        tokio_block(bare.container_env(&credential))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn substitution_mode_swaps_a_hashed_placeholder_and_scrubs_responses() {
    let p = provider(
        "name: tele\ndescription: T\nhosts: [api.t.test, '*.t.test']\ncontainer_env: TELE_TOKEN\n",
    );
    let credential = Credential::new("tele", "123456:ABC-real");
    let placeholder = substitution_placeholder(&credential.token);
    assert!(
        placeholder.starts_with("moat-") && placeholder.len() == 5 + 16,
        "{placeholder}"
    );
    assert!(!placeholder.contains("123456"));
    assert_ne!(placeholder, substitution_placeholder(&Secret::new("other")));
    // The reference's derivation: the first 8 bytes of SHA-256("moat-token-sub:" + token).
    let digest = <sha2::Sha256 as sha2::Digest>::digest(b"moat-token-sub:123456:ABC-real");
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(placeholder, format!("moat-{hex}"));

    let rules = tokio_block(p.configure_proxy(&credential)).unwrap();
    assert_eq!(rules.rules.len(), 4);
    for (pair, host) in rules.rules.chunks(2).zip(["api.t.test", "*.t.test"]) {
        match &pair[0] {
            ProxyRule::TokenSubstitution {
                host: h,
                placeholder: ph,
                real,
            } => {
                assert_eq!(
                    (h.as_str(), ph.as_str(), real.expose()),
                    (host, placeholder.as_str(), "123456:ABC-real")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            pair[1],
            ProxyRule::ResponseTransform {
                host: host.into(),
                kind: TransformKind::ResponseScrub
            }
        );
    }
    let env = tokio_block(p.container_env(&credential)).unwrap();
    assert_eq!(
        (env[0].name.as_str(), env[0].value.as_str()),
        ("TELE_TOKEN", placeholder.as_str())
    );
}

#[test]
fn the_grant_asks_a_hidden_question_with_the_declared_text_and_variables() {
    let p = provider(&header_file(
        "acme",
        "source_env: [ACME_UNSET_VAR_1, ACME_UNSET_VAR_2]\nprompt: Make one at https://acme.test/t\n",
    ));
    let step = tokio_block(p.grant(GrantRequest {
        answers: Default::default(),
        interactive: true,
        options: Default::default(),
    }))
    .unwrap();
    let GrantStep::Ask { prompts, .. } = step else {
        panic!("{step:?}")
    };
    assert_eq!(prompts.len(), 1);
    let prompt = &prompts[0];
    assert_eq!(prompt.kind, PromptKind::Secret);
    assert_eq!(prompt.message, "acme token");
    assert_eq!(prompt.env.as_deref(), Some("ACME_UNSET_VAR_1"));
    let help = prompt.help.as_deref().unwrap();
    assert!(
        help.starts_with("Make one at https://acme.test/t"),
        "{help}"
    );
    assert!(
        help.contains("ACME_UNSET_VAR_1 or ACME_UNSET_VAR_2"),
        "{help}"
    );

    // The answer, without validation, is the credential.
    let request =
        GrantRequest::default().with_answer("token", Answer::Secret(Secret::new(" tok-1 \n")));
    let GrantStep::Done { credential, .. } = tokio_block(p.grant(request)).unwrap() else {
        panic!()
    };
    assert_eq!(credential.provider, "acme");
    assert_eq!(credential.token.expose(), "tok-1");
    assert_eq!(credential.token_source(), Some("prompt"));
    // An empty answer is an error, not an empty credential.
    let request = GrantRequest::default().with_answer("token", Answer::Secret(Secret::new("  ")));
    let err = tokio_block(p.grant(request)).unwrap_err();
    assert_eq!(err.kind, moat_plugin_sdk::ErrorKind::InvalidInput);
    // A token with a space inside is a copy mistake, refused before anything is sent.
    let request =
        GrantRequest::default().with_answer("token", Answer::Secret(Secret::new("tok 1")));
    let err = tokio_block(p.grant(request)).unwrap_err();
    assert_eq!(err.kind, moat_plugin_sdk::ErrorKind::InvalidInput);
    assert!(!err.to_string().contains("tok 1"), "{err}");
    // Without a declared prompt, a default that names the description.
    let plain = provider(&header_file("plain", ""));
    let GrantStep::Ask { prompts, .. } = tokio_block(plain.grant(GrantRequest::default())).unwrap()
    else {
        panic!()
    };
    assert_eq!(prompts[0].help.as_deref(), Some("Paste your plain token."));
    assert_eq!(prompts[0].env, None);
}

#[test]
fn info_is_the_declared_name_description_and_aliases() {
    let p = provider(&header_file("acme", "aliases: [ac]\n"));
    let info = p.info();
    assert_eq!(
        (info.name.as_str(), info.description.as_str()),
        ("acme", "acme token")
    );
    assert_eq!(info.aliases, ["ac"]);
    assert!(info.capabilities.is_empty() && info.store_key.is_none());
}

#[test]
fn the_override_variable_is_named_after_the_provider() {
    assert_eq!(api_url_env("brave-search"), "MOAT_BRAVE_SEARCH_API_URL");
    assert_eq!(api_url_env("acme"), "MOAT_ACME_API_URL");
}

#[test]
fn the_starter_file_loads_as_written() {
    let text = starter("my-service");
    let file = parse(&text, Path::new("my-service.yaml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(file.name.as_str(), "my-service");
    assert_eq!(file.container_env.unwrap().as_str(), "MY_SERVICE_TOKEN");
    assert!(text.contains("MOAT_MY_SERVICE_API_URL"), "{text}");
}

fn tokio_block<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn an_oversized_or_unreadable_file_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut big = header_file("big", "");
    big.push_str(&format!("# {}\n", "x".repeat(MAX_FILE_BYTES as usize)));
    write(dir.path(), "big.yaml", &big);
    std::os::unix::fs::symlink(dir.path().join("gone.yaml"), dir.path().join("link.yaml")).unwrap();
    write(dir.path(), "ok.yaml", &header_file("ok", ""));
    let mut registry = Registry::new();
    let warnings = register_user_files(&mut registry, dir.path());
    assert_eq!(registry.names(), ["ok"]);
    let texts: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].contains("big.yaml: ") && texts[0].contains("too large"),
        "{texts:?}"
    );
    assert!(texts[1].contains("link.yaml: cannot read it"), "{texts:?}");
}
