//! The bundled catalogue: every file loads, and each provider has the reference's hosts, header,
//! variables and validation endpoint (reference-providers.md §8).

use std::path::Path;

use moat::declared::{self, Bundled, ProviderFile};
use moat::provider::{ProviderSource, Registry};

fn catalogue() -> Vec<ProviderFile> {
    moat::providers::catalogue::FILES
        .iter()
        .map(|(file, text)| {
            let parsed = declared::parse(text, Path::new(file)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                format!("{}.yaml", parsed.name),
                *file,
                "a bundled file is named after its provider"
            );
            parsed
        })
        .collect()
}

fn find<'a>(files: &'a [ProviderFile], name: &str) -> &'a ProviderFile {
    files
        .iter()
        .find(|f| f.name.as_str() == name)
        .unwrap_or_else(|| panic!("{name} is not in the catalogue"))
}

fn strings<T: ToString>(values: &[T]) -> Vec<String> {
    values.iter().map(ToString::to_string).collect()
}

#[test]
fn the_catalogue_has_the_reference_providers() {
    let files = catalogue();
    // name, aliases, hosts, header (prefix), source_env, container_env, validation URL
    type Row<'a> = (
        &'a str,
        &'a [&'a str],
        &'a [&'a str],
        Option<(&'a str, &'a str)>,
        &'a [&'a str],
        &'a str,
        Option<&'a str>,
    );
    #[rustfmt::skip]
    let expected: &[Row] = &[
        ("brave-search", &["brave"], &["api.search.brave.com"], Some(("X-Subscription-Token", "")),
         &["BRAVE_API_KEY", "BRAVE_SEARCH_API_KEY"], "BRAVE_API_KEY",
         Some("https://api.search.brave.com/res/v1/web/search?q=test&count=1")),
        ("datadog", &[], &["*.datadoghq.com"], Some(("DD-API-KEY", "")),
         &["DD_API_KEY", "DATADOG_API_KEY"], "DD_API_KEY", None),
        ("elevenlabs", &[], &["api.elevenlabs.io"], Some(("xi-api-key", "")),
         &["ELEVENLABS_API_KEY"], "ELEVENLABS_API_KEY", None),
        ("gitlab", &["gl"], &["gitlab.com", "*.gitlab.com"], Some(("PRIVATE-TOKEN", "")),
         &["GITLAB_TOKEN", "GL_TOKEN"], "GITLAB_TOKEN", Some("https://gitlab.com/api/v4/user")),
        ("linear", &[], &["api.linear.app"], Some(("Authorization", "")),
         &["LINEAR_API_KEY"], "LINEAR_API_KEY", None),
        ("sentry", &[], &["sentry.io", "*.sentry.io"], Some(("Authorization", "Bearer ")),
         &["SENTRY_AUTH_TOKEN"], "SENTRY_AUTH_TOKEN", Some("https://sentry.io/api/0/auth/")),
        ("telegram", &["tg"], &["api.telegram.org"], None,
         &["TELEGRAM_BOT_TOKEN"], "TELEGRAM_BOT_TOKEN",
         Some("https://api.telegram.org/bot${token}/getMe")),
        ("vercel", &[], &["api.vercel.com", "*.vercel.com"], Some(("Authorization", "Bearer ")),
         &["VERCEL_TOKEN"], "VERCEL_TOKEN", Some("https://api.vercel.com/v2/user")),
    ];
    for (name, aliases, hosts, inject, source_env, container_env, url) in expected {
        let file = find(&files, name);
        assert_eq!(strings(&file.aliases), *aliases, "{name}");
        assert_eq!(strings(&file.hosts), *hosts, "{name}");
        let header = file.inject.as_ref().map(|i| {
            (
                i.header.to_string(),
                i.prefix
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            )
        });
        assert_eq!(
            header,
            inject.map(|(h, p)| (h.to_string(), p.to_string())),
            "{name}"
        );
        assert_eq!(strings(&file.source_env), *source_env, "{name}");
        assert_eq!(
            file.container_env
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some(*container_env),
            "{name}"
        );
        let validate = file.validate.as_ref().map(|v| v.url.to_string());
        assert_eq!(validate.as_deref(), *url, "{name}");
        assert!(file.prompt.is_some(), "{name}: says where to get a token");
    }
}

#[test]
fn the_whole_catalogue_registers_without_a_warning() {
    let bundled: Vec<Bundled> = moat::providers::catalogue::FILES
        .iter()
        .map(|&(file, text)| Bundled { file, text })
        .collect();
    let mut registry = Registry::new();
    let warnings = declared::register_bundled(&mut registry, &bundled);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(registry.names().len(), bundled.len());
    assert!(registry.all().all(|e| e.source == ProviderSource::Bundled));
    assert_eq!(registry.resolve_name("tg"), "telegram");
}
