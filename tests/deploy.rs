//! Docker cannot run here, so the Dockerfile and compose file are checked by reading them: every
//! path the image copies exists, the binary it starts is the one cargo builds, and every setting
//! the compose file passes is one hexbroker reads and the README documents.

use std::collections::BTreeSet;
use std::path::Path;

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
    assert_eq!(service["build"].as_str(), Some("."));
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
fn every_setting_the_code_reads_is_documented() {
    let config = std::fs::read_to_string(root().join("src/config.rs")).unwrap();
    let read: BTreeSet<String> = config
        .split('"')
        .filter(|s| s.starts_with("HEXBROKER_") && s.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(str::to_owned)
        .collect();
    let telemetry = std::fs::read_to_string(root().join("src/telemetry.rs")).unwrap();
    let mut read = read;
    if telemetry.contains("\"HEXBROKER_LOG\"") {
        read.insert("HEXBROKER_LOG".into());
    }
    let documented = documented_settings();
    let missing: Vec<_> = read.difference(&documented).collect();
    assert!(missing.is_empty(), "settings read but not in the README: {missing:?}");
}
