//! Finding and loading ONNX Runtime, and opening a session on the requested execution provider.
//!
//! `ort` is built with `load-dynamic`: the program opens `libonnxruntime.so.1.31.1` itself, looking in order at
//! `ORT_DYLIB_PATH`, the binary's own folder (and `../lib`), and the project's `.ort/` folder (where
//! `scripts/setup` puts it), and otherwise fails with a message that says how to get it.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use ort::{
    environment::Environment,
    ep,
    session::{RunOptions, Session, builder::GraphOptimizationLevel},
};

use clap::ValueEnum;

use super::RewardError;

/// Where the reward model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// Try the CUDA execution provider, fall back to the CPU (the log and `bon_execution_provider` say which).
    Auto,
    /// CPU only.
    Cpu,
    /// CUDA only; failing to get it is a start-up error.
    Cuda,
}

/// What ONNX Runtime does with the memory a reward model run needed (its CPU arena).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Arena {
    /// Keep it: the fastest, but the process keeps the peak of the longest batch ever scored.
    Keep,
    /// Give back what a run grew the CPU arena by, after every run (a CUDA arena is left as it is).
    Shrink,
    /// No arena: every tensor is allocated and freed by the system allocator.
    Off,
}

/// The ONNX Runtime shared library this build is made for (ort rc.15, API 31).
pub const ORT_LIB: &str = "libonnxruntime.so.1.31.1";

/// How to get the library, for error messages.
const HOW_TO_GET: &str = "run `scripts/setup` (it downloads the PyPI wheel onnxruntime==1.31.1 and unpacks \
onnxruntime/capi/libonnxruntime.so.1.31.1 into .ort/), put the file next to the bon-proxy binary, or set \
ORT_DYLIB_PATH to its path";

/// Every place looked at, in order.
pub fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        out.push(dir.join(ORT_LIB));
        out.push(dir.join("../lib").join(ORT_LIB));
        // Test and bench binaries live in target/<profile>/deps.
        out.push(dir.join("..").join(ORT_LIB));
    }
    out.push(PathBuf::from(".ort").join(ORT_LIB));
    out.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ort").join(ORT_LIB));
    out
}

/// The first existing candidate, or an error listing where it looked.
pub fn find_dylib() -> Result<PathBuf, RewardError> {
    let looked = candidates();
    if let Some(explicit) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let explicit = PathBuf::from(explicit);
        if !explicit.is_file() {
            return Err(RewardError::Runtime(format!(
                "ORT_DYLIB_PATH={} does not exist; {HOW_TO_GET}",
                explicit.display()
            )));
        }
        return Ok(explicit);
    }
    looked.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let list = looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        RewardError::Runtime(format!("ONNX Runtime ({ORT_LIB}) not found (looked at: {list}); {HOW_TO_GET}"))
    })
}

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// The process-wide ONNX Runtime environment (the library is loaded once per process).
fn environment() -> Result<&'static Environment, RewardError> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = find_dylib().map_err(|e| e.to_string())?;
            let builder = ort::init_from(&path)
                .map_err(|e| format!("could not load ONNX Runtime from {}: {e}; {HOW_TO_GET}", path.display()))?;
            let env = builder.with_name("bon-proxy").build().map_err(|e| e.to_string())?;
            tracing::info!(path = %path.display(), "loaded ONNX Runtime");
            Ok(env)
        })
        .as_ref()
        .map_err(|e| RewardError::Runtime(e.clone()))
}

/// An open session, the execution provider it runs on (`"cuda"` or `"cpu"`), and the options every run takes.
pub struct Opened {
    pub session: Session,
    pub provider: &'static str,
    pub run_options: RunOptions,
}

/// Opens `model` on `device`. `Auto` tries CUDA and falls back to the CPU; `Cuda` fails if CUDA cannot be had.
pub fn open(model: &Path, device: Device, threads: Option<usize>, arena: Arena) -> Result<Opened, RewardError> {
    let env = environment()?;
    let cuda_error = match device {
        Device::Cpu => None,
        Device::Cuda | Device::Auto => match open_with(env, model, true, threads, arena) {
            Ok(session) => return Ok(Opened { session, provider: "cuda", run_options: run_options(arena)? }),
            Err(RewardError::Load(e)) if device == Device::Cuda => {
                return Err(RewardError::Load(format!(
                    "--device cuda: the CUDA execution provider is unavailable: {e}"
                )));
            }
            Err(e) if device == Device::Cuda => return Err(e),
            Err(e) => Some(e),
        },
    };
    let session = open_with(env, model, false, threads, arena)?;
    if let Some(e) = cuda_error {
        tracing::info!(detail = %e, "scoring on the CPU (no CUDA execution provider in this ONNX Runtime or machine)");
    }
    Ok(Opened { session, provider: "cpu", run_options: run_options(arena)? })
}

/// `Shrink`: every run hands back the CPU arena memory it grew (ONNX Runtime's
/// `memory.enable_memory_arena_shrinkage`). The CUDA arena is left as it is (not measured on a GPU yet).
fn run_options(arena: Arena) -> Result<RunOptions, RewardError> {
    let err = |e: ort::Error| RewardError::Load(format!("run options: {e}"));
    let mut options = RunOptions::new().map_err(err)?;
    if arena == Arena::Shrink {
        options.set("memory.enable_memory_arena_shrinkage", "cpu:0").map_err(err)?;
    }
    Ok(options)
}

fn open_with(
    env: &Environment,
    model: &Path,
    cuda: bool,
    threads: Option<usize>,
    arena: Arena,
) -> Result<Session, RewardError> {
    let load = |e: ort::Error| RewardError::Load(format!("{}: {e}", model.display()));
    let mut builder = Session::builder(env)
        .map_err(load)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| load(e.into()))?;
    if let Some(n) = threads {
        builder = builder.with_intra_threads(n).map_err(|e| load(e.into()))?;
    }
    let cpu = ep::CPU::default().with_arena_allocator(arena != Arena::Off).build();
    builder = if cuda {
        builder.with_execution_providers([ep::CUDA::default().build().error_on_failure(), cpu])
    } else {
        builder.with_execution_providers([cpu])
    }
    .map_err(|e| load(e.into()))?;
    builder.commit_from_file(model).map_err(load)
}
