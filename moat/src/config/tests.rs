use super::*;

const FILE: &str = "/ws/moat.yaml";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new(FILE))
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn good_files() {
    let full = "\
name: my-agent
grants: [github, claude]
dependencies:
  - python3
  - git
env:
  LOG_LEVEL: debug
  RETRIES: 3
  VERBOSE: true
command: [python3, main.py]
base_image: debian:bookworm-slim
interactive: true
network:
  policy: strict
  allow: [pypi.org, \"*.pythonhosted.org\"]
  rules:
    - \"api.github.com allow GET /repos/**\"
    - api.github.com:
        - deny * /**
    - \"example.com:8443 deny POST /admin\"
  host_ports: [8080, 5432]
mounts:
  - ./data:/data:ro
  - /abs/cache:/cache
  - {source: ../up, target: /up, read_only: true}
  - source: rw
    target: /rw
";
    let cases: Vec<(&str, Config)> = vec![
        ("", Config::default()),
        ("# nothing but a comment\n", Config::default()),
        ("{}", Config::default()),
        (
            "command: make test && make lint\n",
            Config {
                command: Some(Command::Shell("make test && make lint".into())),
                ..Config::default()
            },
        ),
        (
            "network:\n  policy: strict\n",
            Config {
                network: NetworkPolicy {
                    policy: PolicyMode::Strict,
                    ..NetworkPolicy::default()
                },
                ..Config::default()
            },
        ),
        (
            full,
            Config {
                name: Some("my-agent".into()),
                grants: strings(&["github", "claude"]),
                dependencies: strings(&["python3", "git"]),
                env: [
                    ("LOG_LEVEL", "debug"),
                    ("RETRIES", "3"),
                    ("VERBOSE", "true"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
                command: Some(Command::Exec(strings(&["python3", "main.py"]))),
                base_image: Some("debian:bookworm-slim".into()),
                interactive: true,
                network: NetworkPolicy {
                    policy: PolicyMode::Strict,
                    allow: strings(&["pypi.org", "*.pythonhosted.org"]),
                    rules: vec![
                        HostRules {
                            host: "api.github.com".into(),
                            rules: strings(&["allow GET /repos/**", "deny * /**"]),
                        },
                        HostRules {
                            host: "example.com:8443".into(),
                            rules: strings(&["deny POST /admin"]),
                        },
                    ],
                    host_ports: vec![8080, 5432],
                },
                mounts: vec![
                    Mount {
                        source: "/ws/./data".into(),
                        target: "/data".into(),
                        read_only: true,
                    },
                    Mount {
                        source: "/abs/cache".into(),
                        target: "/cache".into(),
                        read_only: false,
                    },
                    Mount {
                        source: "/ws/../up".into(),
                        target: "/up".into(),
                        read_only: true,
                    },
                    Mount {
                        source: "/ws/rw".into(),
                        target: "/rw".into(),
                        read_only: false,
                    },
                ],
            },
        ),
    ];
    for (text, want) in cases {
        let got = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(got, want, "{text}");
    }
}

#[test]
fn bad_files_say_where_and_what() {
    // (text, line, column, key, words the message must contain)
    let cases: &[(&str, u64, u64, &str, &[&str])] = &[
        (
            "name: x\nbogus: 1\n",
            2,
            1,
            "bogus",
            &["unknown field `bogus`", "grants"],
        ),
        (
            "network:\n  hostports: [1]\n",
            2,
            3,
            "network.hostports",
            &["unknown field", "host_ports"],
        ),
        (
            "grants: github\n",
            1,
            9,
            "grants",
            &["`grants` takes a list of grant names"],
        ),
        (
            "grants:\n  - a\n  - [b]\n",
            3,
            5,
            "grants[1]",
            &["`grants` takes a list of grant names"],
        ),
        ("grants: [\"\"]\n", 1, 0, "grants", &["an entry is empty"]),
        (
            "interactive: maybe\n",
            1,
            14,
            "interactive",
            &["true or false"],
        ),
        (
            "network:\n  host_ports: [80, 70000]\n",
            2,
            0,
            "network.host_ports[1]",
            &["port numbers"],
        ),
        (
            "network:\n  host_ports: [0]\n",
            2,
            0,
            "network.host_ports",
            &["port 0"],
        ),
        (
            "network:\n  policy: open\n",
            2,
            0,
            "network.policy",
            &["permissive or strict"],
        ),
        (
            "network:\n  rules:\n    - \"api.github.com allow GET\"\n",
            3,
            0,
            "network.rules[0]",
            &["invalid network rule"],
        ),
        (
            "network:\n  rules:\n    - \"api.github.com\"\n",
            3,
            0,
            "network.rules[0]",
            &["want \"HOST allow|deny METHOD /glob\""],
        ),
        (
            "network:\n  rules:\n    - api.github.com: [\"permit GET /x\"]\n",
            3,
            0,
            "network.rules[0]",
            &["invalid network rule"],
        ),
        (
            "network:\n  rules:\n    - {a.com: [\"allow * /**\"], b.com: [\"allow * /**\"]}\n",
            3,
            0,
            "network.rules[0]",
            &["one host per entry"],
        ),
        (
            "network:\n  rules:\n    - 5\n",
            3,
            0,
            "network.rules[0]",
            &["HOST allow|deny METHOD /glob"],
        ),
        (
            "network:\n  allow: [ok.com, \"a b\"]\n",
            2,
            0,
            "network.allow[1]",
            &[
                "invalid host pattern \"a b\"",
                "`network.allow` takes a list of host patterns",
            ],
        ),
        (
            "network: strict\n",
            1,
            0,
            "network",
            &["a mapping with policy"],
        ),
        (
            "env:\n  A: [1]\n",
            2,
            6,
            "env.A",
            &["a mapping of variable names"],
        ),
        (
            "env:\n  1A: x\n",
            2,
            0,
            "env",
            &["invalid variable name \"1A\""],
        ),
        ("command: []\n", 1, 0, "command", &["the command is empty"]),
        (
            "command: {a: 1}\n",
            1,
            0,
            "command",
            &["a list of strings, or one string"],
        ),
        ("command: [ls, [x]]\n", 1, 0, "command[1]", &[]),
        (
            "mounts:\n  - data\n",
            2,
            0,
            "mounts[0]",
            &["want \"source:target\""],
        ),
        (
            "mounts:\n  - a:rel\n",
            2,
            0,
            "mounts[0]",
            &["not an absolute path"],
        ),
        (
            "mounts:\n  - a:/b:xx\n",
            2,
            0,
            "mounts[0]",
            &["not ro or rw"],
        ),
        (
            "mounts:\n  - {source: a, target: /b, ro: true}\n",
            2,
            0,
            "mounts[0].ro",
            &["unknown field `ro`"],
        ),
        (
            "mounts:\n  - {target: /b}\n",
            2,
            0,
            "mounts[0]",
            &["source"],
        ),
        (
            "name: \"-bad\"\n",
            1,
            0,
            "name",
            &["invalid run name", "start with a letter"],
        ),
        ("name: run_123\n", 1, 0, "name", &["looks like a run id"]),
        (
            "base_image: \"\"\n",
            1,
            0,
            "base_image",
            &["must not be empty"],
        ),
        ("- a\n- b\n", 1, 1, "", &[]),
        ("name: [\n", 1, 7, "name", &["`name` takes a run name"]),
    ];
    for (text, line, column, key, words) in cases {
        let err = match parse(text) {
            Err(ConfigError::Invalid(err)) => err,
            other => panic!("{text:?}: want an error, got {other:?}"),
        };
        let shown = err.to_string();
        assert_eq!(err.file, Path::new(FILE), "{text:?}");
        if *line > 0 {
            assert_eq!(err.line, *line, "{text:?}: {shown}");
        }
        if *column > 0 {
            assert_eq!(err.column, *column, "{text:?}: {shown}");
        }
        assert_eq!(err.key, *key, "{text:?}: {shown}");
        assert!(shown.starts_with(FILE), "{shown}");
        if !key.is_empty() {
            assert!(shown.contains(&format!("key `{key}`")), "{shown}");
        }
        for word in *words {
            assert!(shown.contains(word), "{text:?}: {shown:?} lacks {word:?}");
        }
    }
}

#[test]
fn load_reads_the_workspace_file_or_defaults() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(Config::load(dir.path()).unwrap(), Config::default());
    std::fs::write(
        dir.path().join(FILE_NAME),
        "grants: [github]\nmounts: [\"d:/d\"]\n",
    )
    .unwrap();
    let config = Config::load(dir.path()).unwrap();
    assert_eq!(config.grants, vec!["github"]);
    assert_eq!(config.mounts[0].source, dir.path().join("d"));
    std::fs::write(dir.path().join(FILE_NAME), "grants: github\n").unwrap();
    let err = Config::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}:1:9: key `grants`",
            dir.path().join(FILE_NAME).display()
        )),
        "{err}"
    );
    // A directory where the file should be cannot be read.
    std::fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
    std::fs::create_dir(dir.path().join(FILE_NAME)).unwrap();
    assert!(matches!(
        Config::load(dir.path()),
        Err(ConfigError::Read { .. })
    ));
}

#[test]
fn rule_flags_parse_and_merge_in_order() {
    let mut rules = Vec::new();
    for rule in [
        "a.com allow GET /x/**",
        "b.com deny * /**",
        "a.com deny * /**",
    ] {
        merge_rules(&mut rules, parse_rule(rule).unwrap());
    }
    assert_eq!(
        rules,
        vec![
            HostRules {
                host: "a.com".into(),
                rules: strings(&["allow GET /x/**", "deny * /**"])
            },
            HostRules {
                host: "b.com".into(),
                rules: strings(&["deny * /**"])
            },
        ]
    );
    for bad in [
        "a.com",
        "a.com allow",
        "a.com maybe GET /",
        "",
        "a.com allow GET nopath",
    ] {
        assert!(parse_rule(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn shell_commands_run_through_sh() {
    assert_eq!(
        Command::Shell("a && b".into()).argv(),
        strings(&["/bin/sh", "-c", "a && b"])
    );
    assert_eq!(
        Command::Exec(strings(&["ls", "-l"])).argv(),
        strings(&["ls", "-l"])
    );
}

#[test]
fn npm_dependencies_are_read_as_written() {
    let config = parse("dependencies: [node, \"npm:@scope/agent-cli\"]\n").unwrap();
    assert_eq!(
        config.dependencies,
        strings(&["node", "npm:@scope/agent-cli"])
    );
}
