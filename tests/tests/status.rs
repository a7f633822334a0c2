//! `moat status` against the real engine: containers moat left behind are named, a container of
//! an active run is not.

use moat::home::MoatHome;
use moat::run::{RunId, RunMetadata, RunState, RunStore};
use moat_tests::MoatEnv;
use moat_tests::docker::{self, TestLabel, docker};

#[test]
fn status_names_containers_no_active_run_owns() {
    if !docker::available("status_names_containers_no_active_run_owns") {
        return;
    }
    let image = docker::ensure_base_image();
    let env = MoatEnv::new();
    let store = RunStore::new(&MoatHome::at(env.home()));
    // A live moat process owns the active run (any moat process will do: the proxy waits).
    let owner = Owner(
        std::process::Command::new(moat_tests::moat_bin())
            .args(["proxy", "--listen", "127.0.0.1:0"])
            .envs(env.vars())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut active = RunMetadata::new(RunId::generate(), "live", "/work/space");
    active.owner_pid = Some(owner.0.id());
    store.create(&active).unwrap();
    for step in [RunState::Starting, RunState::Running] {
        store.set_state(&mut active, step).unwrap();
    }
    // One whose moat process is gone.
    let mut stale = RunMetadata::new(RunId::generate(), "stale", "/work/space");
    stale.owner_pid = Some(u32::MAX);
    store.create(&stale).unwrap();
    store.set_state(&mut stale, RunState::Starting).unwrap();
    let label = TestLabel::new("status");
    let (key, value) = label.pair();
    let test_label = format!("{key}={value}");
    let create = |name: &str, run: &str| {
        let out = docker(&[
            "create",
            "--name",
            name,
            "--label",
            &test_label,
            "--label",
            "moat.managed=true",
            "--label",
            &format!("moat.run={run}"),
            image,
            "true",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let owned = format!("{}-owned", label.id());
    let orphan = format!("{}-orphan", label.id());
    create(&owned, active.id.as_str());
    create(&orphan, "run_00000000dead");

    let out = env.cmd().args(["status", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["runtime"]["reachable"], true);
    assert_eq!(status["active_runs"].as_array().unwrap().len(), 2);
    assert_eq!(
        status["stale_runs"],
        serde_json::json!([stale.id.as_str()]),
        "the live run's owner is alive, the other's is gone"
    );
    let names: Vec<&str> = status["orphaned_containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&orphan.as_str()), "{names:?}");
    assert!(!names.contains(&owned.as_str()), "{names:?}");
    let found = status["orphaned_containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == orphan.as_str())
        .unwrap();
    assert_eq!(found["run"], "run_00000000dead");
    assert_eq!(found["state"], "created");

    let out = env.cmd().arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Runtime: docker at "), "{text}");
    assert!(text.contains("reachable"), "{text}");
    assert!(text.contains("Active runs: 2"), "{text}");
    assert!(text.contains("starting, moat process gone"), "{text}");
    assert!(text.contains("Remove them with: docker rm -f"), "{text}");
    assert!(text.contains(&orphan), "{text}");
    let remove_line = text
        .lines()
        .find(|l| l.starts_with("Remove them with"))
        .unwrap();
    assert!(!remove_line.contains(&owned), "{text}");
}

/// The owning moat process, killed when the test ends.
struct Owner(std::process::Child);

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
