//! 20 MB up and 20 MB down through the proxy, then 60 MB each way, with the broker running as its
//! own process so its memory can be read: its peak resident set must not grow with the body size.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use fake_hex::{FakeHex, RateLimits};
use futures_util::StreamExt;
use serde_json::{json, Value};

const MB: usize = 1024 * 1024;

/// Peak and current resident memory of a process, in bytes (Linux).
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_megabytes_stream_both_ways_in_flat_memory() {
    if !std::path::Path::new("/proc/self/status").exists() {
        common::skip("/proc (to read the broker's memory)", "run it on Linux");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeHex::new();
    fake.set_rate_limits(RateLimits::unlimited());
    let fake_addr = fake.spawn().await.unwrap();
    let token = fake.add_personal_token("acme", "ada@example.com");
    let env = [
        ("HEXBROKER_DATABASE_URL", format!("sqlite://{}/hb.db", dir.path().display())),
        ("HEXBROKER_HEX_URL", FakeHex::url_template(fake_addr)),
        ("HEXBROKER_LISTEN", "127.0.0.1:0".into()),
        ("HEXBROKER_LOG_FORMAT", "json".into()),
    ];
    let bin = env!("CARGO_BIN_EXE_hexbroker");
    let key_out = Command::new(bin)
        .args(["keys", "create", "--name", "s", "--scopes", "connect,proxy"])
        .envs(env.clone())
        .output()
        .unwrap();
    let key = String::from_utf8(key_out.stdout).unwrap().trim().to_owned();
    let mut child = Command::new(bin).envs(env).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let broker = Broker(child);
    let mut lines = BufReader::new(stderr).lines();
    let address = loop {
        let line = lines.next().expect("the broker exited").unwrap();
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            if v["message"] == "hexbroker listening" {
                break v["address"].as_str().unwrap().to_owned();
            }
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let base = format!("http://{address}");
    let http = reqwest::Client::new();
    let connected: Value = http
        .post(format!("{base}/v1/connect"))
        .bearer_auth(&key)
        .json(&json!({"subdomain": "acme", "token": token, "end_user_id": "u"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = connected["id"].as_str().unwrap().to_owned();

    // Warm up: one small call each way, so the baseline includes pools and buffers.
    let small = http
        .get(format!("{base}/v1/proxy/__fake/bytes?n=1024"))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(small.bytes().await.unwrap().len(), 1024);
    let (baseline, _) = memory(broker.0.id());

    // The case: 20 MB down and 20 MB up.
    round_trip(&http, &base, &key, &id, 20 * MB).await;
    let (after_20, _) = memory(broker.0.id());
    // Three times the bytes: a proxy that buffered would need three times the memory.
    round_trip(&http, &base, &key, &id, 60 * MB).await;
    let (after_60, _) = memory(broker.0.id());

    let mb = |bytes: u64| bytes as f64 / MB as f64;
    eprintln!(
        "broker peak RSS: baseline {:.1} MB, after 20 MB each way {:.1} MB, after 60 MB each way {:.1} MB",
        mb(baseline),
        mb(after_20),
        mb(after_60)
    );
    // mimalloc keeps freed pages for reuse, so large transfers raise the peak by a few MB (seen:
    // 0 to 6 MB between the two rounds); a proxy that held the bodies would need 80 MB more for the
    // second round (40 MB more each way).
    assert!(
        after_60 <= after_20 + 16 * MB as u64,
        "peak memory grew with the body size: {:.1} MB after 20 MB, {:.1} MB after 60 MB",
        mb(after_20),
        mb(after_60)
    );
    assert!(after_60 < 64 * MB as u64, "peak RSS {:.1} MB is over the 64 MB target", mb(after_60));
}

/// Streams `size` bytes down from Hex and `size` bytes up and back, counting them as they pass.
async fn round_trip(http: &reqwest::Client, base: &str, key: &str, id: &str, size: usize) {
    let down = http
        .get(format!("{base}/v1/proxy/__fake/bytes?n={size}"))
        .bearer_auth(key)
        .header("connection-id", id)
        .send()
        .await
        .unwrap();
    assert_eq!(down.status(), 200);
    let mut received = 0;
    let mut stream = down.bytes_stream();
    while let Some(chunk) = stream.next().await {
        received += chunk.unwrap().len();
    }
    assert_eq!(received, size);

    let chunks = (size / (64 * 1024)) as u32;
    let pieces = (0..chunks).map(|i: u32| Ok::<_, std::io::Error>(vec![(i % 251) as u8; 64 * 1024]));
    let up = http
        .post(format!("{base}/v1/proxy/__fake/echo"))
        .bearer_auth(key)
        .header("connection-id", id)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 200);
    let mut echoed = 0;
    let mut stream = up.bytes_stream();
    while let Some(chunk) = stream.next().await {
        echoed += chunk.unwrap().len();
    }
    assert_eq!(echoed, size);
}
