//! The `moat run` benchmark: `cargo build --release -p moat && cargo bench -p moat-tests --bench run`.
//!
//! Everything against the same local image (`moat-base:bookworm`, built by
//! `scripts/base-image.sh` when missing) on this machine's engine, interleaved in rounds so that
//! load from elsewhere hits every case alike:
//!
//! 1. `moat run -- true` (the release binary, a temporary `MOAT_HOME`, no grant), and
//!    `moat run --grant github -- true` (a github grant stored against a local fake GitHub, as in
//!    `tests/tests/run.rs`), against `docker run --rm IMG true` (the CLI) and a bare bollard
//!    create, attach, start, wait, remove of the same image from this process;
//! 2. the time from spawning the command to the first byte of its output: `moat run -- echo x`
//!    against `docker run --rm IMG echo x` (and bollard from the create call);
//! 3. the phase split of `moat run -- true`, from `moat -v run`'s `run phase` debug lines;
//! 4. what single engine calls cost (the calls moat makes that `docker run` does not), and the
//!    CPU time of moat, the docker CLI and the engine (dockerd + containerd) per run.
//!
//! 5. what the shape of moat's container costs in the engine, one piece at a time, as bare
//!    bollard runs: the engine's init (`init: true`), the `moat` network, and moat's init step
//!    with its mounts (everything moat's container has, without moat around it).
//!
//! Knobs: `BENCH_ROUNDS` (default 15), `BENCH_ONLY=true|first|split|shape|calls`, and
//! `BENCH_MOAT_B=<path>`: another moat binary (a copy built before a change) run as one more case
//! in the same rounds, for before/after comparisons.

#![expect(
    unsafe_code,
    reason = "geteuid, getrusage and sysconf for the CPU figures; each call has a SAFETY line"
)]

use std::collections::BTreeMap;
use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, InspectContainerOptions, InspectNetworkOptions,
    ListNetworksOptions, RemoveContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt as _;
use moat_tests::docker::{self, docker};
use moat_tests::{MoatEnv, moat_bin};

const TOKEN: &str = "ghp_realSecretToken1234567890abcdefABCDEF";
const TARGET: f64 = 1.3;

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let only = std::env::var("BENCH_ONLY").ok();
    let wants = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let image = docker::ensure_base_image();
    let bin = moat_bin();
    println!(
        "moat: {} (build it with `cargo build --release -p moat`)",
        bin.display()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = rt.block_on(async {
        Docker::connect_with_defaults()
            .unwrap()
            .negotiate_version()
            .await
            .unwrap()
    });

    // A plain home, and one with a github grant against a fake GitHub.
    let mut plain = MoatEnv::new();
    plain.set("MOAT_BASE_IMAGE", image);
    let mut github = MoatEnv::new().with_github(TOKEN, "octocat");
    let out = github
        .cmd()
        .args(["grant", "github", "--no-input"])
        .env("GITHUB_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "moat grant github: {out:?}");
    github.set("MOAT_BASE_IMAGE", image);
    // As root, give the workspaces an ordinary owner, as a user's checkout has: the command then
    // runs as that user, which is the init step's usual path (root stays root and skips it).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        for env in [&plain, &github] {
            std::os::unix::fs::chown(env.work_dir(), Some(1000), Some(1000)).unwrap();
        }
    }

    // Warm-up: the shared network, the init script, the CA, page cache.
    for env in [&plain, &github] {
        let out = moat_cmd(env, &["run", "--", "true"]).output().unwrap();
        assert!(out.status.success(), "warm-up moat run: {out:?}");
    }
    let _ = docker_cmd(&["run", "--rm", image, "true"]).output();

    if wants("true") {
        println!("\n## `true`: whole run, {rounds} rounds, interleaved\n");
        let engine_pids = engine_pids();
        let shaped = shaped_docker_args(plain.home(), plain.work_dir(), image);
        let shaped: Vec<&str> = shaped.iter().map(String::as_str).collect();
        let mut cases: Vec<Case> = vec![
            Case::new("docker run --rm IMG true"),
            Case::new("bollard create/attach/start/wait/remove"),
            Case::new("moat run -- true"),
            Case::new("moat run --grant github -- true"),
        ];
        cases.push(Case::new(
            "docker run, moat's container shape (--init, --network moat, mounts, init step)",
        ));
        // A/B: another moat binary (a build from before a change) in the same rounds.
        let other = std::env::var_os("BENCH_MOAT_B");
        if other.is_some() {
            cases.push(Case::new("BENCH_MOAT_B run -- true"));
        }
        for round in 0..rounds {
            for k in 0..cases.len() {
                let i = (round + k) % cases.len();
                let engine_before = cpu_of(&engine_pids);
                let (wall, cpu) = match i {
                    0 => child_run(docker_cmd(&["run", "--rm", image, "true"])),
                    1 => self_run(|| {
                        rt.block_on(bollard_run(&engine, image, &["true"]));
                    }),
                    2 => child_run(moat_cmd(&plain, &["run", "--", "true"])),
                    3 => child_run(moat_cmd(
                        &github,
                        &["run", "--grant", "github", "--", "true"],
                    )),
                    4 => child_run(docker_cmd(&shaped)),
                    _ => {
                        let mut b = Command::new(other.as_ref().unwrap());
                        b.env_clear()
                            .envs(plain.vars())
                            .current_dir(plain.work_dir())
                            .args(["run", "--", "true"])
                            .stdin(Stdio::null());
                        child_run(b)
                    }
                };
                cases[i].wall.push(wall);
                cases[i].cpu.push(cpu);
                cases[i]
                    .engine_cpu
                    .push(cpu_of(&engine_pids) - engine_before);
            }
        }
        println!(
            "| case | p50 wall | min | max | spread (p90/p10) | CPU of the process | engine CPU |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        for case in &cases {
            case.row();
        }
        let base = median(&cases[0].wall);
        let bare = median(&cases[1].wall);
        let same_shape = median(&cases[4].wall);
        println!(
            "\nmoat run -- true against docker run of the same container shape: {:.2}x, added {} ms",
            median(&cases[2].wall).as_secs_f64() / same_shape.as_secs_f64(),
            ms(median(&cases[2].wall).saturating_sub(same_shape))
        );
        for case in cases[2..].iter().filter(|c| !c.name.starts_with("docker")) {
            let m = median(&case.wall);
            let ratio = m.as_secs_f64() / base.as_secs_f64();
            println!(
                "\n{}: {ratio:.2}x docker run (target <= {TARGET}: {}), {:.2}x bare bollard; \
                 added {} ms",
                case.name,
                if ratio <= TARGET { "PASS" } else { "FAIL" },
                m.as_secs_f64() / bare.as_secs_f64(),
                ms(m.saturating_sub(base)),
            );
            let per_round: Vec<f64> = case
                .wall
                .iter()
                .zip(&cases[0].wall)
                .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
                .collect();
            let mut sorted = per_round.clone();
            sorted.sort_by(f64::total_cmp);
            println!(
                "  ratio per round (same round's docker run): p10 {:.2}, p50 {:.2}, p90 {:.2}",
                sorted[sorted.len() / 10],
                sorted[sorted.len() / 2],
                sorted[sorted.len() * 9 / 10]
            );
        }
    }

    if wants("first") {
        println!("\n## time to the first output byte (`echo x`), {rounds} rounds\n");
        let mut docker_first = Vec::new();
        let mut moat_first = Vec::new();
        let mut bollard_first = Vec::new();
        for round in 0..rounds {
            for k in 0..3 {
                match (round + k) % 3 {
                    0 => docker_first
                        .push(first_byte(docker_cmd(&["run", "--rm", image, "echo", "x"]))),
                    1 => moat_first.push(first_byte(moat_cmd(&plain, &["run", "--", "echo", "x"]))),
                    _ => bollard_first.push(rt.block_on(bollard_first_byte(&engine, image))),
                }
            }
        }
        println!("| case | p50 first byte | min | max |");
        println!("| --- | ---: | ---: | ---: |");
        for (name, samples) in [
            ("docker run --rm IMG echo x", &docker_first),
            ("moat run -- echo x", &moat_first),
            ("bollard (from create)", &bollard_first),
        ] {
            println!(
                "| {name} | {} ms | {} | {} |",
                ms(median(samples)),
                ms(*samples.iter().min().unwrap()),
                ms(*samples.iter().max().unwrap())
            );
        }
        println!(
            "\nfirst byte: moat {:.2}x docker run, added {} ms",
            median(&moat_first).as_secs_f64() / median(&docker_first).as_secs_f64(),
            ms(median(&moat_first).saturating_sub(median(&docker_first)))
        );
    }

    if wants("split") {
        println!("\n## phase split of `moat -v run -- true` (p50 of {rounds} runs)\n");
        split(
            &plain,
            "moat run -- true",
            &["-v", "run", "--", "true"],
            rounds,
        );
        split(
            &github,
            "moat run --grant github -- true",
            &["-v", "run", "--grant", "github", "--", "true"],
            rounds,
        );
    }

    if wants("shape") {
        println!("\n## the container's shape, bare bollard runs of `true`, {rounds} rounds\n");
        shape(&rt, &engine, image, plain.home(), plain.work_dir(), rounds);
    }

    if wants("calls") {
        println!("\n## single engine calls, p50 of 20, in-process (bollard)\n");
        rt.block_on(engine_calls(&engine, image));
    }
}

/// One case's samples.
struct Case {
    name: &'static str,
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
    engine_cpu: Vec<Duration>,
}

impl Case {
    fn new(name: &'static str) -> Case {
        Case {
            name,
            wall: Vec::new(),
            cpu: Vec::new(),
            engine_cpu: Vec::new(),
        }
    }

    fn row(&self) {
        let mut sorted = self.wall.clone();
        sorted.sort();
        let p10 = sorted[sorted.len() / 10];
        let p90 = sorted[sorted.len() * 9 / 10];
        println!(
            "| {} | {} ms | {} | {} | {:.2} | {} ms | {} ms |",
            self.name,
            ms(median(&self.wall)),
            ms(sorted[0]),
            ms(*sorted.last().unwrap()),
            p90.as_secs_f64() / p10.as_secs_f64(),
            ms(median(&self.cpu)),
            ms(median(&self.engine_cpu)),
        );
    }
}

fn moat_cmd(env: &MoatEnv, args: &[&str]) -> Command {
    let mut cmd = Command::new(moat_bin());
    cmd.env_clear()
        .envs(env.vars())
        .current_dir(env.work_dir())
        .args(args)
        .stdin(Stdio::null());
    cmd
}

fn docker_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new("docker");
    cmd.args(args).stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to its end (output discarded); its wall time and its own CPU time (user + system,
/// from the kernel's accounting of reaped children).
fn child_run(mut cmd: Command) -> (Duration, Duration) {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let cpu_before = children_cpu();
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let wall = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (wall, children_cpu() - cpu_before)
}

/// Runs `f` in this process; its wall time and this process's CPU time.
fn self_run(f: impl FnOnce()) -> (Duration, Duration) {
    let cpu_before = self_cpu();
    let start = Instant::now();
    f();
    (start.elapsed(), self_cpu() - cpu_before)
}

/// From spawning `cmd` to the first byte on its stdout; then waits for it to end.
fn first_byte(mut cmd: Command) -> Duration {
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    let n = stdout.read(&mut byte).unwrap();
    let took = start.elapsed();
    assert_eq!(n, 1, "{cmd:?} printed nothing");
    let mut rest = Vec::new();
    let _ = stdout.read_to_end(&mut rest);
    assert!(child.wait().unwrap().success());
    took
}

/// What `docker run --rm` does, without the CLI: create, attach, start, wait, remove.
async fn bollard_run(engine: &Docker, image: &str, cmd: &[&str]) {
    let id = bollard_create(engine, image, cmd).await;
    let mut attached = engine
        .attach_container(&id, Some(attach_options()))
        .await
        .unwrap();
    engine.start_container(&id, None).await.unwrap();
    while attached.output.next().await.is_some() {}
    let mut wait = engine.wait_container(&id, Some(wait_options()));
    let _ = wait.next().await;
    bollard_remove(engine, &id).await;
}

/// From the create call to the first output chunk; the container is removed after.
async fn bollard_first_byte(engine: &Docker, image: &str) -> Duration {
    let start = Instant::now();
    let id = bollard_create(engine, image, &["echo", "x"]).await;
    let mut attached = engine
        .attach_container(&id, Some(attach_options()))
        .await
        .unwrap();
    engine.start_container(&id, None).await.unwrap();
    let first = attached.output.next().await;
    let took = start.elapsed();
    assert!(matches!(first, Some(Ok(_))), "{first:?}");
    while attached.output.next().await.is_some() {}
    let _ = engine
        .wait_container(&id, Some(wait_options()))
        .next()
        .await;
    bollard_remove(engine, &id).await;
    took
}

async fn bollard_create(engine: &Docker, image: &str, cmd: &[&str]) -> String {
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(cmd.iter().map(|s| (*s).to_owned()).collect()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    create_body(engine, body).await
}

async fn create_body(engine: &Docker, body: ContainerCreateBody) -> String {
    engine
        .create_container(None::<CreateContainerOptions>, body)
        .await
        .unwrap()
        .id
}

/// `docker run` arguments for a container shaped like moat's: the engine's init, the `moat`
/// network, the workspace, CA and init mounts, and moat's init step dropping to uid 1000.
fn shaped_docker_args(
    home: &std::path::Path,
    workspace: &std::path::Path,
    image: &str,
) -> Vec<String> {
    let init_dir = moat_init_dir(home);
    let ca_dir = home.join("proxy/ca/public");
    [
        "run",
        "--rm",
        "--init",
        "--network",
        "moat",
        "-u",
        "0:0",
        "-w",
        "/workspace",
        "-e",
        "MOAT_UID=1000",
        "-e",
        "MOAT_GID=1000",
        "--entrypoint",
        "/bin/sh",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([
        "-v".into(),
        format!("{}:/workspace", workspace.display()),
        "-v".into(),
        format!("{}:/etc/ssl/certs/moat-ca:ro", ca_dir.display()),
        "-v".into(),
        format!("{}:/moat/init:ro", init_dir.display()),
        image.into(),
        "/moat/init/moat-init.sh".into(),
        "true".into(),
    ])
    .collect()
}

/// The directory under `home` where moat installed this version's init script.
fn moat_init_dir(home: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(home.join("runtime"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read_to_string(p.join(moat::runtime::init::SCRIPT_NAME))
                .is_ok_and(|text| text == moat::runtime::init::SCRIPT)
        })
        .expect("moat's init directory (after a run)")
}

/// Bare runs of `true` with one more piece of moat's container each, interleaved.
fn shape(
    rt: &tokio::runtime::Runtime,
    engine: &Docker,
    image: &str,
    home: &std::path::Path,
    workspace: &std::path::Path,
    rounds: usize,
) {
    let init_dir = moat_init_dir(home);
    let ca_dir = home.join("proxy/ca/public");
    let bind = |source: &std::path::Path, target: &str, read_only: bool| Mount {
        target: Some(target.to_owned()),
        source: Some(source.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        ..Default::default()
    };
    let body = |init: bool, network: bool, mounts: bool, moat_init: bool| {
        let mut body = ContainerCreateBody {
            image: Some(image.to_owned()),
            cmd: Some(vec!["true".into()]),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            host_config: Some(HostConfig {
                init: Some(init),
                network_mode: network.then(|| "moat".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        };
        if mounts {
            let host = body.host_config.as_mut().unwrap();
            host.mounts = Some(vec![
                bind(workspace, "/workspace", false),
                bind(&ca_dir, "/etc/ssl/certs/moat-ca", true),
                bind(&init_dir, "/moat/init", true),
            ]);
        }
        if moat_init {
            body.entrypoint = Some(vec!["/bin/sh".into(), "/moat/init/moat-init.sh".into()]);
            body.user = Some("0:0".into());
            body.working_dir = Some("/workspace".into());
            body.env = Some(vec!["MOAT_UID=1000".into(), "MOAT_GID=1000".into()]);
        }
        body
    };
    let variants = [
        (
            "bare (default bridge, no init)",
            body(false, false, false, false),
        ),
        ("+ init: true", body(true, false, false, false)),
        ("+ the moat network", body(true, true, false, false)),
        ("+ moat's 3 bind mounts", body(true, true, true, false)),
        (
            "+ moat's init step (moat's container)",
            body(true, true, true, true),
        ),
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for k in 0..variants.len() {
            let i = (round + k) % variants.len();
            let start = Instant::now();
            rt.block_on(async {
                let id = create_body(engine, variants[i].1.clone()).await;
                let mut attached = engine
                    .attach_container(&id, Some(attach_options()))
                    .await
                    .unwrap();
                engine.start_container(&id, None).await.unwrap();
                while attached.output.next().await.is_some() {}
                let mut wait = engine.wait_container(&id, Some(wait_options()));
                let code = wait.next().await;
                assert!(matches!(code, Some(Ok(_))), "{}: {code:?}", variants[i].0);
                bollard_remove(engine, &id).await;
            });
            samples[i].push(start.elapsed());
        }
    }
    let base = median(&samples[0]);
    println!("| container | p50 | min | max | vs bare |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for ((name, _), v) in variants.iter().zip(&samples) {
        println!(
            "| {name} | {} ms | {} | {} | +{} ms |",
            ms(median(v)),
            ms(*v.iter().min().unwrap()),
            ms(*v.iter().max().unwrap()),
            ms(median(v).saturating_sub(base))
        );
    }
}

async fn bollard_remove(engine: &Docker, id: &str) {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        link: false,
    };
    engine.remove_container(id, Some(options)).await.unwrap();
}

fn attach_options() -> AttachContainerOptions {
    AttachContainerOptions {
        stream: true,
        stdin: false,
        stdout: true,
        stderr: true,
        logs: false,
        detach_keys: None,
    }
}

fn wait_options() -> WaitContainerOptions {
    WaitContainerOptions {
        condition: "not-running".into(),
    }
}

/// Runs `moat -v run ...` `rounds` times and prints the p50 of each `run phase` line, in order,
/// with the rest of the wall time (process start, plugins, config, exit) as `other`.
fn split(env: &MoatEnv, name: &str, args: &[&str], rounds: usize) {
    let mut order: Vec<String> = Vec::new();
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut walls = Vec::new();
    let mut first = Vec::new();
    for _ in 0..rounds {
        let mut cmd = moat_cmd(env, args);
        cmd.env("RUST_LOG", "moat=debug");
        let start = Instant::now();
        let out = cmd.output().unwrap();
        let wall = start.elapsed().as_secs_f64() * 1e3;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let mut sum = 0.0;
        for line in stderr.lines() {
            if let Some(first_output) = field(line, "first_output=Some(") {
                first.push(parse_debug_duration(first_output));
            }
            if !line.contains("run phase") {
                continue;
            }
            let (Some(phase), Some(took)) = (field(line, "phase=\""), field(line, "ms=")) else {
                continue;
            };
            let phase = phase.split('"').next().unwrap().to_owned();
            let took: f64 = took.split(' ').next().unwrap().parse().unwrap();
            sum += took;
            if !order.contains(&phase) {
                order.push(phase.clone());
            }
            samples.entry(phase).or_default().push(took);
        }
        samples.entry("other".into()).or_default().push(wall - sum);
        walls.push(wall);
    }
    order.push("other".into());
    let p50 = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("{name}: wall p50 {:.1} ms", p50(&walls));
    println!("| phase | p50 ms | min | max |");
    println!("| --- | ---: | ---: | ---: |");
    for phase in &order {
        let v = &samples[phase];
        println!(
            "| {phase} | {:.1} | {:.1} | {:.1} |",
            p50(v),
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(0.0, f64::max)
        );
    }
    if !first.is_empty() {
        println!(
            "(first output byte, from the manager's start: p50 {:.1} ms)",
            p50(&first)
        );
    }
    println!();
}

/// The text after `key` in `line`.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.find(key).map(|at| &line[at + key.len()..])
}

/// `12.3ms)` or `1.2s)` or `800µs)` (a `Duration`'s Debug) in milliseconds.
fn parse_debug_duration(text: &str) -> f64 {
    let text = text.split(')').next().unwrap();
    for (unit, scale) in [("ms", 1.0), ("µs", 1e-3), ("ns", 1e-6), ("s", 1e3)] {
        if let Some(number) = text.strip_suffix(unit) {
            return number.parse::<f64>().unwrap() * scale;
        }
    }
    panic!("not a duration: {text}")
}

/// What the engine calls moat makes on top of create/attach/start/wait/remove cost one by one.
async fn engine_calls(engine: &Docker, image: &str) {
    async fn time<F: std::future::Future>(f: impl Fn() -> F) -> Duration {
        let mut v = Vec::new();
        for _ in 0..20 {
            let start = Instant::now();
            f().await;
            v.push(start.elapsed());
        }
        median(&v)
    }
    let id = bollard_create(engine, image, &["true"]).await;
    let network_filter = ListNetworksOptions {
        filters: Some(std::collections::HashMap::from([(
            "name".to_owned(),
            vec!["moat".to_owned()],
        )])),
    };
    let rows = [
        (
            "ping (`/_ping`)",
            time(|| async {
                engine.ping().await.unwrap();
            })
            .await,
        ),
        (
            "version",
            time(|| async {
                engine.version().await.unwrap();
            })
            .await,
        ),
        (
            "inspect image",
            time(|| async {
                engine.inspect_image(image).await.unwrap();
            })
            .await,
        ),
        (
            "list networks (name filter)",
            time(|| async {
                engine
                    .list_networks(Some(network_filter.clone()))
                    .await
                    .unwrap();
            })
            .await,
        ),
        (
            "inspect network",
            time(|| async {
                engine
                    .inspect_network("moat", None::<InspectNetworkOptions>)
                    .await
                    .unwrap();
            })
            .await,
        ),
        (
            "inspect container",
            time(|| async {
                engine
                    .inspect_container(&id, None::<InspectContainerOptions>)
                    .await
                    .unwrap();
            })
            .await,
        ),
    ];
    bollard_remove(engine, &id).await;
    println!("| call | p50 |");
    println!("| --- | ---: |");
    for (name, took) in rows {
        println!("| {name} | {:.2} ms |", took.as_secs_f64() * 1e3);
    }
    // The same with a bare run for scale.
    let mut runs = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        bollard_run(engine, image, &["true"]).await;
        runs.push(start.elapsed());
    }
    println!(
        "| (a whole bare create/attach/start/wait/remove) | {} ms |",
        ms(median(&runs))
    );
    let _ = docker(&["ps"]);
}

/// The CPU time of reaped children so far.
fn children_cpu() -> Duration {
    rusage(libc::RUSAGE_CHILDREN)
}

fn self_cpu() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes into the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// dockerd's and containerd's process ids.
fn engine_pids() -> Vec<u32> {
    ["dockerd", "containerd"]
        .iter()
        .filter_map(|name| {
            let out = Command::new("pidof").arg(name).output().ok()?;
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// The CPU time (user + system) of `pids` so far, from `/proc/<pid>/stat`.
fn cpu_of(pids: &[u32]) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut total = 0.0;
    for pid in pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let after = stat.rsplit(')').next().unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        // utime and stime are fields 14 and 15; `after` starts at field 3.
        let utime: f64 = fields.get(11).and_then(|s| s.parse().ok()).unwrap_or(0.0);
        let stime: f64 = fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
        total += (utime + stime) / ticks;
    }
    Duration::from_secs_f64(total)
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e3)
}
