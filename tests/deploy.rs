//! What deploy/ promises about the proxy: every metric the Grafana dashboard and the Prometheus rules query is one
//! the proxy exports, and the manifests configure flags the binary has. (Their syntax is checked by the real tools
//! in scripts/check-deploy: kubernetes-validate and promtool.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::{collections::BTreeSet, path::PathBuf};

use bon_proxy::{config::Config, metrics::Metrics};
use clap::CommandFactory;

fn read(path: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// Every `bon_…` metric name in `text`, without the histogram series suffixes.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("bon_") {
        let start = i + at;
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end =
            text[start..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(text.len(), |e| start + e);
        if boundary {
            let name = &text[start..end];
            let base = ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
            names.insert(base.to_owned());
        }
        i = end;
    }
    names
}

#[test]
fn the_dashboard_and_rules_only_query_metrics_the_proxy_exports() {
    let metrics = Metrics::new().unwrap();
    let exported: BTreeSet<&String> = metrics.names().iter().collect();
    for path in ["deploy/grafana/dashboards/bon-proxy.json", "deploy/prometheus/rules.yaml", "deploy/k8s/hpa.yaml"] {
        let used = metric_names(&read(path));
        assert!(!used.is_empty(), "{path} queries no bon_ metric");
        let unknown: Vec<&String> = used.iter().filter(|n| !exported.contains(n)).collect();
        assert!(unknown.is_empty(), "{path} queries metrics the proxy does not export: {unknown:?}");
    }
    // The dashboard shows what the issue asked of it.
    let dashboard = metric_names(&read("deploy/grafana/dashboards/bon-proxy.json"));
    for needed in [
        "bon_request_duration_seconds",
        "bon_candidates_total",
        "bon_upstream_up",
        "bon_upstream_inflight",
        "bon_winner_score",
        "bon_score_margin",
        "bon_reward_batch_size",
        "bon_reward_duration_seconds",
    ] {
        assert!(dashboard.contains(needed), "the dashboard has no panel on {needed}");
    }
}

#[test]
fn the_manifests_only_set_variables_the_binary_reads() {
    let known: BTreeSet<String> = Config::command()
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    for path in ["deploy/k8s/deployment.yaml", "deploy/compose.yaml", "deploy/Dockerfile"] {
        let text = read(path);
        let used: BTreeSet<&str> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("BON_") && w.len() > 4)
            .collect();
        assert!(!used.is_empty(), "{path} sets no BON_ variable");
        let unknown: Vec<&&str> = used.iter().filter(|v| !known.contains(**v)).collect();
        assert!(unknown.is_empty(), "{path} sets variables bon-proxy does not read: {unknown:?}");
    }
}

#[test]
fn the_image_gets_every_file_scripts_setup_assembles_the_default_models_from() {
    let dockerfile = read("deploy/Dockerfile");
    let setup = read("scripts/setup");
    let assemble = read("models/assembly/assemble_default.py");
    // The `ort` stage copies models/assembly/; every file the assembly reads (`HERE / "NAME"`) must be in it, or the
    // image build fails where the host's does not (it once lacked the prefix head).
    let copy = "COPY models/assembly /src/models/assembly";
    assert!(dockerfile.contains(copy), "deploy/Dockerfile's ort stage no longer copies {copy:?}");
    let mut read_files: Vec<String> =
        assemble.split("HERE / \"").skip(1).filter_map(|rest| rest.split('"').next()).map(String::from).collect();
    // The heads: `Variant("name", "STEM", ...)` reads STEM.json and STEM.npz.
    for stem in assemble.split("Variant(\"").skip(1).filter_map(|rest| rest.split('"').nth(2)) {
        read_files.extend([format!("{stem}.json"), format!("{stem}.npz")]);
    }
    assert!(read_files.len() >= 8, "found only {read_files:?} in models/assembly/assemble_default.py");
    for file in &read_files {
        let path = std::path::Path::new("models/assembly").join(file);
        assert!(
            path.exists(),
            "models/assembly/assemble_default.py reads {file}, not in models/assembly/ (nor the image)"
        );
    }
    // Each directory scripts/setup assembles goes into the image.
    let mut assembled = 0;
    for line in setup.lines().filter(|l| l.contains("models/assembly/assemble_default.py .ort/dl")) {
        let dir = line.split_whitespace().find(|w| w.starts_with("models/default")).unwrap();
        assert!(dockerfile.contains(&format!("/src/{dir} /{dir}")), "the image lacks {dir}");
        assembled += 1;
    }
    assert_eq!(assembled, 2, "scripts/setup assembles the default model and the deep one");
}

#[test]
fn profiler_dumps_stay_out_of_the_repository_and_the_image() {
    // ONNX Runtime's profiler writes onnxruntime_profile_<time>.json files (tens of MB) into the working directory;
    // 70 MB of them were once committed at the root, and `COPY . .` would put them in the image.
    let lines = |path: &str| read(path).lines().map(str::trim).map(String::from).collect::<Vec<_>>();
    assert!(lines(".gitignore").iter().any(|l| l == "onnxruntime_profile_*.json"), ".gitignore");
    assert!(lines(".dockerignore").iter().any(|l| l == "**/onnxruntime_profile_*.json"), ".dockerignore");
}

#[test]
fn every_kubernetes_probe_sets_its_timeout() {
    // The kubelet's default timeoutSeconds is 1 s: a probe that takes longer counts as failed. /ready answers from
    // state (it never probes an upstream inline), but the timeout is written down, never left to the default.
    for path in ["deploy/k8s/deployment.yaml", "deploy/k8s/upstreams.yaml", "deploy/k8s/redis.yaml"] {
        let text = read(path);
        let lines: Vec<&str> = text.lines().collect();
        let probes: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].trim_end().ends_with("Probe:")).collect();
        assert!(!probes.is_empty(), "{path} has no probe");
        for &i in &probes {
            let indent = lines[i].len() - lines[i].trim_start().len();
            let body =
                lines[i + 1..].iter().take_while(|l| l.len() - l.trim_start().len() > indent || l.trim().is_empty());
            assert!(
                body.clone().any(|l| l.trim_start().starts_with("timeoutSeconds:")),
                "{path}: {} without timeoutSeconds",
                lines[i].trim()
            );
        }
    }
}
