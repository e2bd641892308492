//! `--reward-model ORG/NAME[@REVISION]`: a reward model directory from the Hugging Face hub (hf-hub crate).
//!
//! Files land in the standard cache (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`); the snapshot folder is
//! then an ordinary model directory. With `HF_HUB_OFFLINE=1` only the cache is used, and a model missing from it is
//! an error that says so. A progress bar is shown when stderr is a terminal.

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType, api::tokio::ApiBuilder};

use super::RewardError;

/// Files a reward model directory may have; the first two groups are required (one of each).
const GRAPHS: [&str; 2] = ["model.onnx", "onnx/model.onnx"];
const REQUIRED: [&str; 2] = ["tokenizer.json", "config.json"];
const OPTIONAL: [&str; 2] = ["tokenizer_config.json", "chat_template.jinja"];

/// A hub model reference: `org/name` or `org/name@revision`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubRef {
    pub repo: String,
    pub revision: String,
}

impl HubRef {
    /// Parses `org/name[@revision]`; anything that exists on disk, or is not of that shape, is not a hub reference.
    pub fn parse(spec: &str) -> Option<Self> {
        if Path::new(spec).exists() || spec.starts_with('.') || spec.starts_with('/') {
            return None;
        }
        let (repo, revision) = spec.split_once('@').unwrap_or((spec, "main"));
        let mut parts = repo.split('/');
        let ok = |p: Option<&str>| {
            p.is_some_and(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        };
        if !(ok(parts.next()) && ok(parts.next()) && parts.next().is_none()) || revision.is_empty() {
            return None;
        }
        Some(Self { repo: repo.to_owned(), revision: revision.to_owned() })
    }

    fn repo(&self) -> Repo {
        Repo::with_revision(self.repo.clone(), RepoType::Model, self.revision.clone())
    }
}

/// Where to look and whether the network may be used.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// The hub cache (`.../huggingface/hub`).
    pub cache_dir: PathBuf,
    /// `HF_HUB_OFFLINE=1`: cache only.
    pub offline: bool,
    /// `HF_ENDPOINT`, for mirrors.
    pub endpoint: Option<String>,
    pub progress: bool,
}

impl HubOptions {
    /// The standard environment: `HF_HOME`, `HF_HUB_OFFLINE`, `HF_ENDPOINT`; a progress bar on a terminal.
    pub fn from_env() -> Self {
        let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes"));
        Self {
            cache_dir: Cache::from_env().path().clone(),
            offline,
            endpoint: std::env::var("HF_ENDPOINT").ok(),
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }
}

/// The local snapshot directory holding the model's files, downloading what is missing unless offline.
pub async fn fetch(model: &HubRef, opts: &HubOptions) -> Result<PathBuf, RewardError> {
    let cached = Cache::new(opts.cache_dir.clone()).repo(model.repo());
    if let Some(dir) = complete_in_cache(&cached) {
        return Ok(dir);
    }
    if opts.offline {
        return Err(RewardError::Load(format!(
            "{}@{} is not in the Hugging Face cache at {} and HF_HUB_OFFLINE=1 forbids downloading it; download it \
             once with network access (or unset HF_HUB_OFFLINE), or pass a local --reward-model DIR",
            model.repo,
            model.revision,
            opts.cache_dir.display()
        )));
    }
    let hub_err = |e: hf_hub::api::tokio::ApiError| {
        RewardError::Load(format!("{}@{} from the Hugging Face hub: {e}", model.repo, model.revision))
    };
    let mut builder = ApiBuilder::from_cache(Cache::new(opts.cache_dir.clone())).with_progress(opts.progress);
    if let Some(endpoint) = &opts.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    let api = builder.build().map_err(hub_err)?.repo(model.repo());
    let info = api.info().await.map_err(hub_err)?;
    let present: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    let graph = GRAPHS.iter().find(|g| present.contains(g)).ok_or_else(|| {
        RewardError::Load(format!(
            "{} has no model.onnx or onnx/model.onnx: export it first with models/export/export.py",
            model.repo
        ))
    })?;
    let mut wanted = vec![graph.to_string()];
    // External-data files sit beside the graph (`model.onnx_data`, `model.onnx.data`, ...).
    let graph_dir = Path::new(graph).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    wanted.extend(present.iter().filter(|f| is_external_data(f, &graph_dir)).map(|f| f.to_string()));
    wanted.extend(REQUIRED.iter().map(|f| f.to_string()));
    wanted.extend(OPTIONAL.iter().filter(|f| present.contains(f)).map(|f| f.to_string()));
    let mut dir = None;
    for file in &wanted {
        let path = api.get(file).await.map_err(hub_err)?;
        dir.get_or_insert_with(|| snapshot_root(&path, file));
    }
    dir.ok_or_else(|| RewardError::Load(format!("{}: nothing downloaded", model.repo)))
}

fn is_external_data(file: &str, graph_dir: &str) -> bool {
    let (dir, name) = file.rsplit_once('/').unwrap_or(("", file));
    dir == graph_dir && name.starts_with("model.onnx") && name != "model.onnx"
}

/// The snapshot folder, from a file path inside it.
fn snapshot_root(path: &Path, file: &str) -> PathBuf {
    let depth = file.split('/').count();
    path.ancestors().nth(depth).map_or_else(|| path.to_path_buf(), Path::to_path_buf)
}

/// The snapshot folder if the cache has a graph and every required file for this revision.
fn complete_in_cache(cached: &hf_hub::CacheRepo) -> Option<PathBuf> {
    let (graph, path) = GRAPHS.iter().find_map(|g| cached.get(g).map(|p| (*g, p)))?;
    REQUIRED.iter().all(|f| cached.get(f).is_some()).then(|| snapshot_root(&path, graph))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hub_references() {
        assert_eq!(
            HubRef::parse("Skywork/Skywork-Reward-V2-Qwen3-0.6B"),
            Some(HubRef { repo: "Skywork/Skywork-Reward-V2-Qwen3-0.6B".into(), revision: "main".into() })
        );
        assert_eq!(HubRef::parse("org/name@v1.0").map(|r| r.revision), Some("v1.0".into()));
        for not_hub in
            ["models/fixtures/tiny-qwen3-chatml", "./x/y", "/abs/path", "single", "a/b/c", "org/name@", "o/n m"]
        {
            assert_eq!(HubRef::parse(not_hub), None, "{not_hub}");
        }
    }

    #[test]
    fn external_data_beside_the_graph() {
        assert!(is_external_data("model.onnx_data", ""));
        assert!(is_external_data("onnx/model.onnx.data", "onnx"));
        assert!(!is_external_data("model.onnx", ""));
        assert!(!is_external_data("onnx/model.onnx_data", ""));
    }
}
