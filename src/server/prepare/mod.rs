//! Turning a client's chat request into a Best-of-N plan: validation, N, sampling defaults, the forwarded body.

mod ranges;
mod selection;

use std::{sync::Arc, time::Duration};

use axum::http::HeaderMap;
use serde_json::{Map, Value, json};

use super::headers::{HEADER_N, HEADER_PRUNE_EVERY, HEADER_RETURN_CANDIDATES, forwarded_auth};
use crate::{
    bon::{Plan, Prune, PruneAt, Switch, args::valid_confidence},
    config::Config,
    error::ApiError,
    openai::{BonOptions, ChatRequest, ROLES},
    select::Select,
};

/// A validated request, ready to run.
#[derive(Debug)]
pub struct Prepared {
    /// What to generate and how to pick; moved into the work, never copied.
    pub plan: Plan,
    /// What identifies the result in the cache besides the forwarded body (`plan.body`): the client's own seed, if
    /// any, and the Best-of-N options that change the result.
    pub key_extra: Map<String, Value>,
    /// How the answer goes back.
    pub reply: Reply,
}

/// How the answer goes back to the client.
#[derive(Debug)]
pub struct Reply {
    /// OpenAI `n`: how many ranked candidates go back as `choices`.
    pub choices: u32,
    pub stream: bool,
    pub include_usage: bool,
    /// Whether the response lists every candidate (`bon.return_candidates` or `x-bon-return-candidates`).
    pub return_candidates: bool,
    /// The client's `model`, used when an upstream answer does not name one.
    pub model: String,
    /// What of the winner's `logprobs` the client gets.
    pub logprobs: Logprobs,
}

/// What of the winner's `logprobs` goes back: the client's own ask, whatever the proxy asked candidates for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logprobs {
    /// As the upstream returned them (the proxy asked for what the client asked).
    AsReturned,
    /// None: the client did not ask, the proxy did (a confidence strategy).
    Drop,
    /// The client asked for fewer top log-probabilities than the proxy did: each position's first `k`.
    Top(usize),
}

/// Validates `req` and works out N, seeds and the body every candidate is sent.
pub fn prepare(req: ChatRequest, headers: &HeaderMap, cfg: &Config) -> Result<Prepared, ApiError> {
    check_messages(&req)?;
    ranges::check(&req.extra)?;
    // In range after `check`: integers where they must be.
    let temperature = req.extra.get("temperature").and_then(Value::as_f64);
    let seed = req.extra.get("seed").and_then(Value::as_i64);
    let (n, choices) = counts(&req, headers, cfg, temperature)?;

    let include_usage =
        req.extra.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    let stream = req.stream.unwrap_or(false);
    let return_candidates = match headers.get(HEADER_RETURN_CANDIDATES) {
        Some(v) => matches!(v.to_str().map(str::trim), Ok("true" | "1")),
        None => req.bon.as_ref().and_then(|b| b.return_candidates).unwrap_or(false),
    };
    let guard = req.bon.as_ref().and_then(|b| b.guard).unwrap_or(cfg.bon.degenerate_guard == Switch::On);
    let tools = req.extra.get("tools").filter(|t| !t.is_null()).cloned().map(Arc::new);
    let bon = req.bon.clone().unwrap_or_default();
    let (prune, straggler_wait) = speed_options(headers, &bon, cfg)?;
    let select = selection::options(headers, &bon, cfg)?;
    let prune_asked = prune.is_some() && (headers.contains_key(HEADER_PRUNE_EVERY) || bon.prune_every.is_some());
    let prune = match prune {
        Some(p) if selection::allows_pruning(select.strategy, prune_asked)? => Some(p),
        _ => None,
    };
    // Pruning works down to the choices returned; with nothing to prune it is off.
    let prune = prune.filter(|_| n > choices);

    let mut body = req.extra;
    let logprobs = confidence_logprobs(&mut body, &select);
    // Per-candidate requests are never streamed upstream, and never ask for several choices; seeds are per candidate.
    body.remove("stream_options");
    body.remove("n");
    body.remove("seed");
    body.insert("model".into(), json!(req.model));
    body.insert("messages".into(), serde_json::to_value(&req.messages).map_err(|e| ApiError::Internal(e.to_string()))?);
    body.insert("stream".into(), json!(false));
    // Upstreams differ in their default (Ollama: 1.0); candidates must differ, so set one.
    if temperature.is_none() && n > 1 {
        body.insert("temperature".into(), json!(cfg.bon.temperature));
    }

    let judge_model = cfg.select.judge_model.as_deref().unwrap_or(&req.model);
    let key_extra = key_extra(seed, guard, prune, straggler_wait, &select, judge_model);
    // Without a client seed, candidates still get distinct seeds; 31 bits suit every upstream's seed type.
    let base_seed = seed.unwrap_or_else(|| i64::from(rand::random::<u32>() >> 1));

    Ok(Prepared {
        plan: Plan {
            body: Arc::new(body),
            n,
            base_seed,
            conversation: Arc::from(req.messages),
            tools,
            upstream_auth: forwarded_auth(headers, cfg),
            guard,
            prune,
            keep_at_least: choices,
            straggler_wait,
            select,
        },
        key_extra,
        reply: Reply { choices, stream, include_usage, return_candidates, model: req.model, logprobs },
    })
}

/// The model is named and every message has a known role.
fn check_messages(req: &ChatRequest) -> Result<(), ApiError> {
    if req.model.trim().is_empty() {
        return Err(ApiError::invalid("`model` must be a non-empty string", "model".to_owned()));
    }
    if req.messages.is_empty() {
        return Err(ApiError::invalid("`messages` must contain at least one message", "messages".to_owned()));
    }
    for (i, m) in req.messages.iter().enumerate() {
        if !ROLES.contains(&m.role.as_str()) {
            return Err(ApiError::invalid(
                format!("messages[{i}].role {:?} is not one of {}", m.role, ROLES.join(", ")),
                format!("messages[{i}].role"),
            ));
        }
    }
    Ok(())
}

/// N (candidates generated) and the OpenAI `n` (choices returned).
fn counts(
    req: &ChatRequest,
    headers: &HeaderMap,
    cfg: &Config,
    temperature: Option<f64>,
) -> Result<(u32, u32), ApiError> {
    let choices = match req.extra.get("n").and_then(Value::as_u64) {
        Some(n) if n > u64::from(cfg.bon.max_n) => {
            return Err(ApiError::invalid(
                format!("`n` = {n} is more than this proxy's --max-n ({})", cfg.bon.max_n),
                "n".to_owned(),
            ));
        }
        Some(n) => n as u32,
        None => 1,
    };
    let mut n = requested_n(headers, req, cfg)?;
    // Returning the top `n` needs at least `n` candidates.
    n = n.max(choices);
    // Greedy decoding makes every candidate identical: generate only what is returned.
    if temperature == Some(0.0) {
        n = choices;
    }
    Ok((n, choices))
}

/// What decides the result besides the forwarded body: the client's seed and the Best-of-N options. The cache key
/// hashes the two together (no second copy of the body).
fn key_extra(
    seed: Option<i64>,
    guard: bool,
    prune: Option<Prune>,
    straggler_wait: Option<Duration>,
    select: &Select,
    judge_model: &str,
) -> Map<String, Value> {
    let mut key_extra = Map::new();
    if let Some(seed) = seed {
        key_extra.insert("seed".into(), json!(seed));
    }
    // The guard decides the ranking a cached result holds. ("bon" is never forwarded, so it cannot collide.)
    let mut bon_key = Map::new();
    if !guard {
        bon_key.insert("guard".into(), json!(false));
    }
    if let Some(p) = prune {
        bon_key.insert("prune".into(), json!([p.every, p.keep, p.confidence, p.sentences]));
    }
    if let Some(wait) = straggler_wait {
        bon_key.insert("straggler_wait_ms".into(), json!(wait.as_millis() as u64));
    }
    if let Some(part) = selection::key_part(select, judge_model) {
        bon_key.insert("select".into(), part);
    }
    if !bon_key.is_empty() {
        key_extra.insert("bon".into(), Value::Object(bon_key));
    }
    key_extra
}

/// A confidence strategy (or the online confidence stop) reads every candidate's token log-probabilities: ask for them (`logprobs`, `top_logprobs`
/// at least `--confidence-top-k`), and say what of them the client itself asked for.
fn confidence_logprobs(body: &mut Map<String, Value>, select: &Select) -> Logprobs {
    if !select.strategy.reads_confidence() && !select.confidence_stop {
        return Logprobs::AsReturned;
    }
    let asked = body.get("logprobs").and_then(Value::as_bool).unwrap_or(false);
    let client_top = body.get("top_logprobs").and_then(Value::as_u64).unwrap_or(0);
    let top = client_top.max(u64::from(select.confidence_top_k));
    body.insert("logprobs".into(), json!(true));
    body.insert("top_logprobs".into(), json!(top));
    match (asked, client_top < top) {
        (false, _) => Logprobs::Drop,
        (true, true) => Logprobs::Top(client_top as usize),
        (true, false) => Logprobs::AsReturned,
    }
}

/// Pruning (`x-bon-prune-every`, else `bon.prune_every`, else `--prune-every`; `bon.prune_keep`, else
/// `--prune-keep`; `bon.prune_confidence`, else `--prune-confidence`) and the straggler wait (`bon.straggler_wait_ms`, else `--straggler-wait`; 0 waits for all).
fn speed_options(
    headers: &HeaderMap,
    bon: &BonOptions,
    cfg: &Config,
) -> Result<(Option<Prune>, Option<Duration>), ApiError> {
    let bad = |param: &str, what: &str, got: String| {
        ApiError::invalid(format!("{param} must be {what} (got {got})"), param.to_owned())
    };
    let every = if let Some(value) = headers.get(HEADER_PRUNE_EVERY) {
        let text = value.to_str().unwrap_or("a non-ASCII value");
        text.trim().parse::<u32>().map_err(|_| bad(HEADER_PRUNE_EVERY, "an integer >= 0", format!("{text:?}")))?
    } else if let Some(v) = &bon.prune_every {
        v.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| bad("bon.prune_every", "an integer >= 0", v.to_string()))?
    } else {
        cfg.bon.prune_every
    };
    let keep = match &bon.prune_keep {
        Some(v) => v
            .as_f64()
            .filter(|k| *k > 0.0 && *k < 1.0)
            .ok_or_else(|| bad("bon.prune_keep", "a number strictly between 0 and 1", v.to_string()))?,
        None => cfg.bon.prune_keep,
    };
    let confidence = match &bon.prune_confidence {
        Some(Value::Bool(false)) => None,
        Some(v) => Some(v.as_f64().filter(|p| valid_confidence(*p)).ok_or_else(|| {
            bad("bon.prune_confidence", "a number strictly between 0.5 and 1, or false", v.to_string())
        })?),
        None => cfg.bon.prune_confidence,
    };
    let sentences = match &bon.prune_at {
        Some(Value::String(s)) if s == "sentence" => true,
        Some(Value::String(s)) if s == "tokens" => false,
        Some(v) => return Err(bad("bon.prune_at", "\"tokens\" or \"sentence\"", v.to_string())),
        None => cfg.bon.prune_at == PruneAt::Sentence,
    };
    let wait = match &bon.straggler_wait_ms {
        Some(v) => {
            let ms = v.as_u64().ok_or_else(|| bad("bon.straggler_wait_ms", "an integer >= 0", v.to_string()))?;
            (ms > 0).then(|| Duration::from_millis(ms))
        }
        None => cfg.bon.straggler_wait,
    };
    Ok(((every > 0).then_some(Prune { every, keep, confidence, sentences }), wait))
}

/// N from the `x-bon-n` header, else the body's `bon.n`, else `--default-n`; must be an integer in 1..=max_n.
fn requested_n(headers: &HeaderMap, req: &ChatRequest, cfg: &Config) -> Result<u32, ApiError> {
    let range = 1..=u64::from(cfg.bon.max_n);
    let bad = |shown: String, param: &str| ApiError::InvalidRequest {
        message: format!("{param} must be an integer from 1 to {} (got {shown})", cfg.bon.max_n),
        param: Some(param.to_owned()),
        code: Some("invalid_bon_n"),
    };
    if let Some(value) = headers.get(HEADER_N) {
        let text = value.to_str().map_err(|_| bad("a non-ASCII value".into(), HEADER_N))?;
        return match text.trim().parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(n as u32),
            _ => Err(bad(format!("{text:?}"), HEADER_N)),
        };
    }
    if let Some(v) = req.bon.as_ref().and_then(|b| b.n.as_ref()) {
        return match v.as_u64() {
            Some(n) if range.contains(&n) => Ok(n as u32),
            _ => Err(bad(v.to_string(), "bon.n")),
        };
    }
    Ok(cfg.bon.default_n)
}

#[cfg(test)]
mod tests;
