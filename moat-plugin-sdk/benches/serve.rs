//! How much the SDK's loop adds to a call: `cargo bench -p moat-plugin-sdk --bench serve`.
//!
//! In-process over `tokio::io::duplex` (no pipes, no processes): a warm `configure_proxy`
//! through `serve_io` against the same line echoed back by a bare task, on one runtime thread.
//! Prints p50/p99 in microseconds and the ratio. (Across a real process and pipe, see the
//! `moat` crate's plugin benchmark.)

use std::time::{Duration, Instant};

use moat_plugin_sdk::testkit::MockProvider;
use moat_plugin_sdk::{Credential, serve_io};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const CALLS: usize = 20_000;

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i].as_secs_f64() * 1e6
}

async fn measure<F, Fut>(line: &str, start: F) -> Vec<Duration>
where
    F: FnOnce(tokio::io::DuplexStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (host, plugin) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(start(plugin));
    let (read, mut write) = tokio::io::split(host);
    let mut lines = BufReader::new(read).lines();
    let init =
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocol_versions":[1]}}"#;
    write
        .write_all(format!("{init}\n").as_bytes())
        .await
        .unwrap();
    lines.next_line().await.unwrap().unwrap();
    let request = format!("{line}\n");
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        write.write_all(request.as_bytes()).await.unwrap();
        let answer = lines.next_line().await.unwrap().unwrap();
        samples.push(started.elapsed());
        assert!(answer.len() > 10);
    }
    write.shutdown().await.unwrap();
    drop(lines);
    server.await.unwrap();
    samples
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let credential = serde_json::to_string(&Credential::new("m", "tok")).unwrap();
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"configure_proxy","params":{{"credential":{credential}}}}}"#
    );
    let (mut echo, mut sdk) = runtime.block_on(async {
        let echo = measure(&line, |plugin| async move {
            let (read, mut write) = tokio::io::split(plugin);
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                write
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .unwrap();
            }
        })
        .await;
        let sdk = measure(&line, |plugin| async move {
            let (read, write) = tokio::io::split(plugin);
            serve_io(MockProvider::new("m"), read, write).await.unwrap();
        })
        .await;
        (echo, sdk)
    });
    let (e50, e99) = (percentile(&mut echo, 0.5), percentile(&mut echo, 0.99));
    let (s50, s99) = (percentile(&mut sdk, 0.5), percentile(&mut sdk, 0.99));
    println!("bare echo      p50 {e50:8.2} us   p99 {e99:8.2} us");
    println!("serve_io call  p50 {s50:8.2} us   p99 {s99:8.2} us");
    println!("ratio (p50)    {:.2}x", s50 / e50);
}
