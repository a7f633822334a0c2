//! The proxy knows no provider: nothing under `moat/src/proxy/` imports `provider/`, `plugin/`,
//! `providers/`, `credential/` or `cli/`. It gets rules as data (`moat_plugin_sdk::ProxyRules`)
//! and reports refusals as events; whoever embeds it does the rest.

#[test]
fn the_proxy_imports_no_provider_plugin_credential_or_cli_module() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proxy");
    let forbidden = ["provider", "providers", "plugin", "credential", "cli"];
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            for module in forbidden {
                for prefix in ["crate::", "moat::", "super::super::"] {
                    let needle = format!("{prefix}{module}");
                    let hit = line.match_indices(&needle).any(|(at, _)| {
                        let rest = &line[at + needle.len()..];
                        rest.starts_with("::")
                            || rest.starts_with(';')
                            || rest.starts_with(',')
                            || rest.starts_with('}')
                            || rest.is_empty()
                    });
                    if hit {
                        found.push(format!(
                            "{}:{}: {}",
                            path.display(),
                            number + 1,
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the proxy must not import these:\n{}",
        found.join("\n")
    );
}
