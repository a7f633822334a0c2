//! [`Plugins::load`]: discovery precedence, registration after the built-ins, the info cache, and
//! the warnings `moat grant providers` shows, against real plugin executables.

#[path = "fixtures/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moat::home::MoatHome;
use moat::plugin::{PluginConfig, PluginWarning, Plugins, Timeouts};
use moat::provider::{ProviderSource, Registry};
use moat_plugin_sdk::testkit::MockProvider;
use support::{assert_cut_after, assert_reaped, fast, install, starts};

struct Env {
    root: tempfile::TempDir,
    log: PathBuf,
}

impl Env {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let log = root.path().join("fake.log");
        for dir in ["a", "b", "home"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
        }
        Env { root, log }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn home(&self) -> MoatHome {
        MoatHome::at(self.dir("home"))
    }

    fn install(&self, dir: &str, name: &str, mode: &str, env: &[(&str, &str)]) -> PathBuf {
        let dir = self.dir(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut vars = vec![("FAKE_LOG", self.log.to_str().unwrap())];
        vars.extend_from_slice(env);
        install(&dir, name, mode, &vars)
    }

    fn config(&self, path: &[PathBuf]) -> PluginConfig {
        PluginConfig {
            path_var: Some(std::env::join_paths(path).unwrap()),
            home: Some(self.home()),
            timeouts: fast(),
        }
    }

    fn starts(&self) -> Vec<u32> {
        starts(&self.log)
    }
}

fn builtins() -> Registry {
    let mut registry = Registry::new();
    registry.register_builtin(Arc::new(MockProvider::new("github").alias("gh")));
    registry
}

fn source_path(registry: &Registry, name: &str) -> Option<PathBuf> {
    match &registry.get(name)?.source {
        ProviderSource::Plugin { path } => Some(path.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn first_on_path_wins_builtins_win_and_problems_are_reported() {
    let env = Env::new();
    let a_x = env.install("a", "x", "ok", &[("FAKE_DESC", "from a")]);
    let b_x = env.install("b", "x", "ok", &[("FAKE_DESC", "from b")]);
    let b_github = env.install("b", "github", "ok", &[]);
    let b_gh = env.install("b", "gh", "ok", &[]);
    let a_dead = env.install("a", "dead", "ok", &[]);
    support::write_executable(&a_dead, "#!/bin/sh\n", 0o644);
    let b_dead = env.install("b", "dead", "ok", &[("FAKE_DESC", "the live one")]);
    let home_y = env.install("home/plugins", "y", "ok", &[]);
    let b_liar = env.install("b", "liar", "bad_version", &[]);

    let mut registry = builtins();
    let plugins = Plugins::load(&mut registry, &env.config(&[env.dir("a"), env.dir("b")])).await;

    assert_eq!(source_path(&registry, "x"), Some(a_x.clone()));
    assert_eq!(registry.get("x").unwrap().info.description, "from a");
    assert_eq!(
        registry.get("dead").unwrap().info.description,
        "the live one"
    );
    assert_eq!(source_path(&registry, "dead"), Some(b_dead));
    assert_eq!(
        source_path(&registry, "y"),
        Some(home_y),
        "$MOAT_HOME/plugins is searched"
    );
    assert_eq!(
        registry.get("github").unwrap().source,
        ProviderSource::Builtin
    );
    assert!(registry.get("liar").is_none());
    let names: Vec<&str> = plugins.providers().iter().map(|p| p.name()).collect();
    assert_eq!(names, vec!["dead", "x", "y"]);

    let warnings = &plugins.report().warnings;
    let expect = [
        PluginWarning::NotExecutable {
            path: a_dead.clone(),
        },
        PluginWarning::Shadowed { path: b_x, by: a_x },
        PluginWarning::Hidden {
            path: b_github.clone(),
            by: "github".into(),
            source: "builtin".into(),
        },
        PluginWarning::Hidden {
            path: b_gh,
            by: "github".into(),
            source: "builtin".into(),
        },
    ];
    for warning in &expect {
        assert!(
            warnings.contains(warning),
            "missing {warning:?} in {warnings:#?}"
        );
    }
    let failed: Vec<&PluginWarning> = warnings
        .iter()
        .filter(|w| matches!(w, PluginWarning::HandshakeFailed { .. }))
        .collect();
    assert_eq!(failed.len(), 1, "{warnings:#?}");
    assert_eq!(failed[0].path(), b_liar);
    let text = failed[0].to_string();
    assert!(
        text.contains("failed its handshake: it answered with protocol version 99"),
        "{text}"
    );
    assert_eq!(warnings.len(), expect.len() + 1, "{warnings:#?}");

    // Only the new plugins were started (not the hidden ones), and all of them were stopped.
    let pids = env.starts();
    assert_eq!(pids.len(), 4, "x, dead, y and liar: {pids:?}");
    pids.into_iter().for_each(assert_reaped);
    plugins.shutdown().await;
}

/// `abs` as a path relative to the current directory (`../../tmp/...`).
fn relative_to_cwd(abs: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let mut rel = PathBuf::new();
    for _ in cwd.components().skip(1) {
        rel.push("..");
    }
    rel.join(abs.strip_prefix("/").unwrap())
}

#[tokio::test]
async fn relative_path_entries_are_never_searched() {
    let env = Env::new();
    env.install("a", "planted", "ok", &[]);
    let relative = relative_to_cwd(&env.dir("a"));
    assert!(relative.is_relative() && relative.join("moat-provider-planted").exists());
    let path_var = std::env::join_paths([
        relative,
        PathBuf::from("."),
        PathBuf::from(""),
        env.dir("b"),
    ])
    .unwrap();
    let config = PluginConfig {
        path_var: Some(path_var),
        ..env.config(&[])
    };
    let mut registry = builtins();
    let plugins = Plugins::load(&mut registry, &config).await;
    assert!(registry.get("planted").is_none());
    assert!(plugins.report().warnings.is_empty());
    assert!(env.starts().is_empty());

    // The same directory, absolute, is searched.
    let mut registry = builtins();
    Plugins::load(&mut registry, &env.config(&[env.dir("a")])).await;
    assert!(registry.get("planted").is_some());
}

#[tokio::test]
async fn the_cache_spares_unchanged_plugins_and_notices_changed_ones() {
    let env = Env::new();
    let path = env.install("a", "cached", "ok", &[("FAKE_DESC", "version one")]);
    let config = env.config(&[env.dir("a")]);

    let mut registry = builtins();
    Plugins::load(&mut registry, &config).await;
    assert_eq!(env.starts().len(), 1);
    let cache = env.dir("home").join("cache/plugins.json");
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(text.contains("version one"), "{text}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Unchanged: listed from the cache, not started.
    for _ in 0..3 {
        let mut registry = builtins();
        let plugins = Plugins::load(&mut registry, &config).await;
        assert_eq!(
            registry.get("cached").unwrap().info.description,
            "version one"
        );
        assert!(plugins.report().warnings.is_empty());
    }
    assert_eq!(env.starts().len(), 1, "a cached plugin was started");

    // Changed binary: asked again.
    std::thread::sleep(Duration::from_millis(20));
    env.install("a", "cached", "ok", &[("FAKE_DESC", "version two!")]);
    let mut registry = builtins();
    Plugins::load(&mut registry, &config).await;
    assert_eq!(
        registry.get("cached").unwrap().info.description,
        "version two!"
    );
    assert_eq!(env.starts().len(), 2);
    assert_eq!(source_path(&registry, "cached"), Some(path));
}

#[tokio::test]
async fn a_failed_handshake_is_a_warning_never_a_cached_success() {
    let env = Env::new();
    let path = env.install("a", "broken", "exit_at_start", &[]);
    env.install("a", "fine", "ok", &[]);
    let config = env.config(&[env.dir("a")]);

    for round in 0..2 {
        let mut registry = builtins();
        let plugins = Plugins::load(&mut registry, &config).await;
        assert!(registry.get("fine").is_some());
        assert!(registry.get("broken").is_none());
        let warnings = &plugins.report().warnings;
        assert_eq!(warnings.len(), 1, "round {round}: {warnings:#?}");
        assert_eq!(warnings[0].path(), path);
        let text = warnings[0].to_string();
        assert!(
            text.contains("failed its handshake: exited with status 1"),
            "{text}"
        );
        assert!(text.contains("fatal: missing configuration file"), "{text}");
    }
    // The failure is remembered (the broken plugin is not restarted on every command), and it is
    // not cached as good.
    assert_eq!(env.starts().len(), 2, "fine once, broken once");
    let cache = std::fs::read_to_string(env.dir("home").join("cache/plugins.json")).unwrap();
    let cache: serde_json::Value = serde_json::from_str(&cache).unwrap();
    let entries = cache["plugins"].as_object().unwrap();
    let broken = entries
        .iter()
        .find(|(key, _)| key.ends_with("moat-provider-broken"))
        .unwrap()
        .1;
    assert!(broken.get("initialize").is_none(), "{broken}");

    // Fixed: asked again at once.
    env.install("a", "broken", "ok", &[]);
    let mut registry = builtins();
    let plugins = Plugins::load(&mut registry, &config).await;
    assert!(registry.get("broken").is_some());
    assert!(plugins.report().warnings.is_empty());
}

#[tokio::test]
async fn uncached_plugins_are_asked_in_parallel() {
    let env = Env::new();
    // Each answers `initialize` only once all four have started: asked one after the other, the
    // first would wait for the others until its handshake timed out. Order, not a clock, is the
    // proof; the timeout is only long enough that a busy machine cannot fail the test.
    for name in ["p1", "p2", "p3", "p4"] {
        env.install("a", name, "ok", &[("FAKE_INIT_BARRIER", "4")]);
    }
    let config = PluginConfig {
        timeouts: Timeouts {
            initialize: Duration::from_secs(30),
            ..fast()
        },
        ..env.config(&[env.dir("a")])
    };
    let mut registry = builtins();
    let plugins = Plugins::load(&mut registry, &config).await;
    assert!(
        plugins.report().warnings.is_empty(),
        "{:?}",
        plugins.report().warnings
    );
    assert_eq!(plugins.providers().len(), 4);
    env.starts().into_iter().for_each(assert_reaped);
}

#[tokio::test]
async fn a_hanging_plugin_costs_one_initialize_timeout_and_leaves_nothing_behind() {
    let env = Env::new();
    env.install("a", "hangs", "hang_start", &[]);
    env.install("a", "fine", "ok", &[]);
    let config = PluginConfig {
        timeouts: Timeouts {
            initialize: Duration::from_millis(1500),
            ..fast()
        },
        ..env.config(&[env.dir("a")])
    };
    let started = Instant::now();
    let mut registry = builtins();
    let plugins = Plugins::load(&mut registry, &config).await;
    assert_cut_after(started, config.timeouts.initialize);
    // One timeout: the hanging plugin was started once, not retried.
    let log = std::fs::read_to_string(&env.log).unwrap();
    assert_eq!(
        log.lines()
            .filter(|l| l.starts_with("start ") && l.contains(" hangs "))
            .count(),
        1,
        "{log}"
    );
    assert!(registry.get("fine").is_some());
    let text = plugins.report().warnings[0].to_string();
    assert!(
        text.contains("failed its handshake: timed out after 1.5s"),
        "{text}"
    );
    env.starts().into_iter().for_each(assert_reaped);
}

#[tokio::test]
async fn without_a_home_only_path_is_searched_and_nothing_is_cached() {
    let env = Env::new();
    env.install("a", "nohome", "ok", &[]);
    let config = PluginConfig {
        home: None,
        ..env.config(&[env.dir("a")])
    };
    let mut registry = builtins();
    Plugins::load(&mut registry, &config).await;
    assert!(registry.get("nohome").is_some());
    assert!(!Path::new(&env.dir("home").join("cache")).exists());
}

#[tokio::test]
async fn a_listing_leaves_no_child_of_a_plugin_behind() {
    let env = Env::new();
    env.install("a", "parent", "leaves_child", &[]);
    let config = env.config(&[env.dir("a")]);
    let mut registry = builtins();
    let plugins = Plugins::load(&mut registry, &config).await;
    assert!(plugins.report().warnings.is_empty());
    assert!(registry.get("parent").is_some());
    let pids = env.starts();
    assert_eq!(pids.len(), 1);
    pids.into_iter().for_each(assert_reaped);
    let children = support::lines_with(&env.log, "child");
    assert_eq!(children.len(), 1, "the plugin logged no child");
    assert!(
        support::wait_dead(children[0], Duration::from_secs(10)),
        "child {} outlived the listing",
        children[0]
    );
}
