//! What `--reward-model` names: a local directory, a preset, or a Hugging Face hub repository.

use std::path::{Path, PathBuf};

use super::{
    RewardError,
    hub::{self, HubOptions, HubRef},
};

/// A documented reward model, exported to ONNX by `models/export/export.py --preset NAME` into `models/exports/NAME`.
#[derive(Debug, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    /// The Hugging Face repository it is exported from.
    pub source: &'static str,
    pub note: &'static str,
}

/// Presets accepted by `--reward-model`.
pub const PRESETS: [Preset; 3] = [
    Preset {
        name: "skywork-v2-0.6b",
        source: "Skywork/Skywork-Reward-V2-Qwen3-0.6B",
        note: "Apache-2.0, RewardBench 85.2; the recommended default for a real deployment",
    },
    Preset { name: "skywork-v2-1.7b", source: "Skywork/Skywork-Reward-V2-Qwen3-1.7B", note: "Apache-2.0" },
    Preset {
        name: "skywork-v2-llama-8b",
        source: "Skywork/Skywork-Reward-V2-Llama-3.1-8B",
        note: "the strongest reward model at or under 8B; > 2 GB, exported with external data",
    },
];

/// Where exported presets live, in order.
fn export_roots() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        out.push(dir.join("models/exports"));
    }
    out.push(PathBuf::from("models/exports"));
    out.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/exports"));
    out
}

/// A model directory and the id it goes by when the spec named one (preset name, `org/name[@rev]`).
#[derive(Debug)]
pub struct Resolved {
    pub dir: PathBuf,
    pub id: Option<String>,
}

/// Resolves `--reward-model` to a local model directory (downloading from the hub when it names a repository).
pub async fn resolve(spec: &Path, hub: &HubOptions) -> Result<Resolved, RewardError> {
    if spec.exists() {
        return Ok(Resolved { dir: spec.to_path_buf(), id: None });
    }
    let text = spec.to_string_lossy();
    if let Some(preset) = PRESETS.iter().find(|p| p.name == text) {
        let dir = export_roots().into_iter().map(|r| r.join(preset.name)).find(|d| d.join("model.onnx").is_file());
        return dir.map(|dir| Resolved { dir, id: Some(preset.name.to_owned()) }).ok_or_else(|| {
            RewardError::Load(format!(
                "preset {} ({}) is not exported yet: run `python models/export/export.py --preset {}` (torch + \
                     transformers, network access to the hub), which writes models/exports/{}",
                preset.name, preset.source, preset.name, preset.name
            ))
        });
    }
    match HubRef::parse(&text) {
        Some(r) => {
            let id = if r.revision == "main" { r.repo.clone() } else { format!("{}@{}", r.repo, r.revision) };
            Ok(Resolved { dir: hub::fetch(&r, hub).await?, id: Some(id) })
        }
        None => Err(RewardError::Load(format!(
            "--reward-model {text}: no such directory, preset ({}) or hub repository (ORG/NAME[@REVISION])",
            PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
        ))),
    }
}
