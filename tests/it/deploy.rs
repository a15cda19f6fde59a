//! What a newcomer and an operator use: the README's walkthrough, run as written; and, as Docker
//! cannot run here, the Dockerfile and compose file checked by reading them: every path the image
//! copies exists, the binary it starts is the one cargo builds, and every setting the compose file
//! passes is one the README documents.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn documented_settings() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `HEXBROKER_"))
        .map(|rest| format!("HEXBROKER_{}", rest.split('`').next().unwrap()))
        .collect()
}

#[test]
fn the_dockerfile_copies_paths_that_exist_and_builds_the_binary() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let mut copies = 0;
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ") && !l.contains("--from=")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(
                root().join(source).exists(),
                "Dockerfile copies {source}, which is not in the repository"
            );
            copies += 1;
        }
    }
    assert!(copies >= 4);
    assert!(dockerfile.contains("cargo build --release --locked -p hexbroker --bin hexbroker"));
    assert!(dockerfile.contains("COPY --from=build /src/target/release/hexbroker /usr/local/bin/hexbroker"));
    assert!(dockerfile.contains("ENTRYPOINT [\"hexbroker\"]"));
    assert!(
        dockerfile.lines().any(|l| l.starts_with("USER ") && !l.contains("root")),
        "the service does not run as root"
    );
}

#[test]
fn the_compose_file_passes_only_settings_hexbroker_reads() {
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root().join("docker-compose.yml")).unwrap()).unwrap();
    let service = &compose["services"]["hexbroker"];
    assert_eq!(service["build"]["context"].as_str(), Some("."));
    assert_eq!(service["build"]["target"].as_str(), Some("hexbroker"));
    let env = service["environment"].as_mapping().expect("environment is a map");
    let documented = documented_settings();
    assert!(documented.contains("HEXBROKER_LISTEN") && documented.len() >= 10, "{documented:?}");
    for (name, _) in env {
        let name = name.as_str().unwrap();
        assert!(documented.contains(name), "compose sets {name}, which the README does not document");
    }
    let url = env[&serde_yaml::Value::from("HEXBROKER_DATABASE_URL")].as_str().unwrap();
    assert!(url.starts_with("postgres://") && url.contains("@db:5432/"), "{url}");
    assert!(compose["services"]["db"]["healthcheck"].is_mapping());
}

#[test]
fn the_image_builds_dependencies_first_checks_its_health_and_ships_no_local_files() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = dockerfile.lines().collect();
    let first_build = lines.iter().position(|l| l.contains("cargo build")).expect("a cargo build");
    let sources = lines.iter().position(|l| l.starts_with("COPY src")).expect("COPY src");
    assert!(first_build < sources, "dependencies are built before the sources are copied");
    assert!(
        dockerfile.contains("HEALTHCHECK") && dockerfile.contains(r#"CMD ["hexbroker", "healthcheck""#),
        "the image checks itself with hexbroker healthcheck"
    );
    for stage in ["AS hexbroker", "AS fake-hex"] {
        assert!(dockerfile.contains(stage), "a stage {stage}");
    }
    assert!(
        lines.iter().rev().find(|l| l.starts_with("FROM ")).unwrap().ends_with("AS hexbroker"),
        "the default target is the service"
    );

    // `.dockerignore` admits only what the image copies.
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    let admitted: Vec<&str> =
        ignore.lines().filter_map(|l| l.strip_prefix('!')).map(|l| l.trim_end_matches('/')).collect();
    assert!(ignore.lines().any(|l| l.trim() == "*"), "everything else is ignored");
    for line in lines.iter().filter(|l| l.starts_with("COPY ") && !l.contains("--from=")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(
                admitted.iter().any(|a| source.starts_with(a)),
                ".dockerignore keeps out {source}, which the image copies"
            );
        }
    }
}

#[test]
fn the_compose_file_keeps_ports_private_and_its_settings_in_an_ignored_env_file() {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let compose: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    for (name, service) in compose["services"].as_mapping().unwrap() {
        for port in service["ports"].as_sequence().into_iter().flatten() {
            let port = port.as_str().expect("ports are strings");
            assert!(
                port.starts_with("127.0.0.1:") || port.starts_with("${PUBLISH_ADDRESS:-127.0.0.1}:"),
                "{name:?} publishes {port} beyond loopback"
            );
        }
    }
    let hexbroker = &compose["services"]["hexbroker"];
    let metrics = hexbroker["environment"]["HEXBROKER_METRICS_LISTEN"]
        .as_str()
        .expect("metrics on a port of their own");
    let metrics_port = metrics.rsplit(':').next().unwrap();
    for port in hexbroker["ports"].as_sequence().unwrap() {
        assert!(!port.as_str().unwrap().ends_with(&format!(":{metrics_port}")), "/metrics is not published");
    }
    let fake = &compose["services"]["fake-hex"];
    assert_eq!(fake["profiles"][0].as_str(), Some("demo"));
    assert_eq!(fake["build"]["target"].as_str(), Some("fake-hex"));
    assert!(fake["ports"].is_null(), "the fake Hex is reached inside the compose network only");

    // Compose ends `${VAR:-default}` at the first `}`: a default holding braces is cut short.
    for rest in text.split("${").skip(1) {
        let expression = rest.split('}').next().unwrap();
        assert!(!expression.contains('{'), "`${{{expression}}}` is cut at its first `}}` by compose");
    }

    // Every variable the compose file reads is explained in .env.example; .env is never committed.
    let example = std::fs::read_to_string(root().join(".env.example")).unwrap();
    for var in text.split("${").skip(1).map(|rest| rest.split([':', '}']).next().unwrap()) {
        assert!(example.contains(&format!("{var}=")), ".env.example does not explain {var}");
    }
    let gitignore = std::fs::read_to_string(root().join(".gitignore")).unwrap();
    assert!(gitignore.lines().any(|l| l.trim() == ".env"), ".env is ignored by git");
}

#[test]
fn every_setting_the_code_reads_is_documented() {
    let config = ["src/config/mod.rs", "src/config/parse.rs"]
        .map(|file| std::fs::read_to_string(root().join(file)).unwrap())
        .concat();
    let read: BTreeSet<String> = config
        .split('"')
        .filter(|s| s.starts_with("HEXBROKER_") && s.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(str::to_owned)
        .collect();
    let telemetry = std::fs::read_to_string(root().join("src/telemetry/mod.rs")).unwrap();
    let mut read = read;
    if telemetry.contains("\"HEXBROKER_LOG\"") {
        read.insert("HEXBROKER_LOG".into());
    }
    let documented = documented_settings();
    let missing: Vec<_> = read.difference(&documented).collect();
    assert!(missing.is_empty(), "settings read but not in the README: {missing:?}");
}

/// The shell blocks of the README marked ```` ```sh walkthrough ````, in order.
fn walkthrough_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match current.as_mut() {
            None if line.trim() == "```sh walkthrough" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(current.is_none(), "a walkthrough block is not closed");
    blocks
}

/// A port that was free a moment ago: the walkthrough's servers bind the ports its variables
/// name, so one of them may be taken meanwhile; the run is then tried again with new ports.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether a server of the run could not bind its port because something took it first.
fn lost_a_port(logs: &str) -> bool {
    logs.contains("Address already in use") || logs.contains("address already in use")
}

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The README's walkthrough, pasted into bash as written (with `set -euo pipefail`, so a step that
/// fails stops it): `PATH` leads with the directory of the binaries cargo built, as the README's
/// build step does, and the two address variables of its first block are set to free ports.
#[test]
fn the_readme_walkthrough_runs_as_pasted() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let blocks = walkthrough_blocks(&readme);
    assert!(blocks.len() >= 8, "the walkthrough has {} blocks", blocks.len());
    let bin_dir: PathBuf = Path::new(env!("CARGO_BIN_EXE_hexbroker")).parent().unwrap().to_owned();
    if !bin_dir.join("fake-hex").exists() {
        common::skip(
            "the README walkthrough",
            "build the fake Hex first (`cargo build -p fake-hex`; `cargo test` does)",
        );
        return;
    }
    for program in ["curl", "jq", "timeout"] {
        if !on_path(program) {
            common::skip("the README walkthrough", &format!("install {program}"));
            return;
        }
    }

    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    for attempt in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("walkthrough.sh");
        std::fs::write(&script, format!("set -euo pipefail\n{}", blocks.join("\n"))).unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let out = Command::new("timeout")
            .args(["-k", "5", "120", "bash"])
            .arg(&script)
            .env_clear()
            .env("PATH", &path)
            .env("HOME", dir.path())
            .env("TMPDIR", dir.path())
            .env("HEXBROKER_LISTEN", &listen)
            .env("FAKE_HEX", format!("127.0.0.1:{}", free_port()))
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let logs = {
            let mut logs = String::new();
            for entry in walk(dir.path()) {
                if entry.extension().is_some_and(|e| e == "log") {
                    logs.push_str(&format!(
                        "--- {}\n{}\n",
                        entry.display(),
                        std::fs::read_to_string(&entry).unwrap_or_default()
                    ));
                }
            }
            logs
        };
        if !out.status.success() && attempt < 3 && lost_a_port(&logs) {
            eprintln!("the walkthrough lost a port to another process; again with new ports");
            continue;
        }
        assert!(
            out.status.success(),
            "the walkthrough failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}\n{logs}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(stdout.contains(&format!("hexbroker is ready at http://{listen}")), "{stdout}");
        assert!(stdout.contains("409 session_used") && stdout.contains("403 "), "{stdout}");
        return;
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}
