//! The proxy's own HTTP headers, in one place, and what is forwarded from the client's.

use std::sync::Arc;

use axum::http::HeaderMap;

use crate::config::Config;

// Request headers.
/// Sets N.
pub const HEADER_N: &str = "x-bon-n";
/// Sets the pruning interval in content tokens (0: off).
pub const HEADER_PRUNE_EVERY: &str = "x-bon-prune-every";
/// Asks for every candidate in the response (`true`/`1`).
pub const HEADER_RETURN_CANDIDATES: &str = "x-bon-return-candidates";
/// Sets the strategy (`reward`, `vote`, `weighted-vote`, `judge`, `reward+judge`, `confidence`, `confidence-vote`);
/// also reported back.
pub const HEADER_STRATEGY: &str = "x-bon-strategy";

// Response headers (`HEADER_N` is reported back too).
pub const HEADER_WINNER: &str = "x-bon-winner";
pub const HEADER_SCORES: &str = "x-bon-scores";
pub const HEADER_CACHE: &str = "x-bon-cache";
pub const HEADER_REWARD_MODEL: &str = "x-bon-reward-model";
pub const HEADER_WINNER_TOKENS: &str = "x-bon-winner-completion-tokens";
pub const HEADER_SELECTION: &str = "x-bon-selection";
pub const HEADER_PRUNED: &str = "x-bon-pruned";
pub const HEADER_VOTES: &str = "x-bon-votes";
/// The winner's lowest group confidence (the confidence strategies).
pub const HEADER_CONFIDENCE: &str = "x-bon-confidence";

/// Every request header the proxy reads and what it does (the generated reference, `docs/reference/headers.md`).
pub const REQUEST_HEADERS: [(&str, &str); 5] = [
    (
        HEADER_N,
        "N for this request: an integer `1..=--max-n` (anything else is a 400 naming the value); overrides `bon.n` and `--default-n`",
    ),
    (
        HEADER_PRUNE_EVERY,
        "pruning interval in content tokens for this request (`0`: off); overrides `bon.prune_every` and `--prune-every`",
    ),
    (
        HEADER_STRATEGY,
        "selection strategy for this request: `reward`, `vote`, `weighted-vote`, `judge`, `reward+judge`, `confidence`, `confidence-vote`; overrides `bon.strategy` and `--strategy`",
    ),
    (
        HEADER_RETURN_CANDIDATES,
        "`true` or `1`: every candidate in the response's `bon` object (as `bon.return_candidates`)",
    ),
    ("cache-control", "`no-cache`: skip the cache read, store the fresh result; `no-store`: neither read nor store"),
];

/// Every response header the proxy writes and what it says.
pub const RESPONSE_HEADERS: [(&str, &str); 11] = [
    (HEADER_N, "N actually used"),
    (HEADER_WINNER, "index of the returned candidate"),
    (HEADER_SCORES, "rewards in candidate order, comma-separated; `-` for a failed or unscored candidate"),
    (HEADER_CACHE, "`hit`, `miss` or `bypass` (a request coalesced onto an identical one in flight reports `hit`)"),
    (HEADER_REWARD_MODEL, "reward model id (`--reward-model-id`, default the directory name)"),
    (
        HEADER_SELECTION,
        "what decided: `reward`, `vote`, `weighted-vote`, `judge`, `reward+judge`, `confidence`, `confidence-vote`, `single` (one survivor), `fallback`, `passthrough` (a Responses request that needs the upstream's stored state, sent there as one call); a strategy that could not decide says why (`; fallback=no-answers`, `judge-failed`, `no-logprobs`, `unscored`), a judge that could not rate every candidate `; unrated=K`",
    ),
    (HEADER_STRATEGY, "the strategy asked for"),
    (HEADER_VOTES, "vote strategies: voters for the winning answer / all voters, e.g. `5/8`"),
    (HEADER_CONFIDENCE, "confidence strategies: the winner's lowest group confidence, e.g. `6.125`"),
    (HEADER_WINNER_TOKENS, "the winner's own completion tokens (when the upstream reports usage)"),
    (HEADER_PRUNED, "indices of the candidates pruning stopped early, comma-separated (absent when none)"),
];

/// The client's bearer token, when `--forward-client-auth` says to pass it upstream.
pub fn forwarded_auth(headers: &HeaderMap, cfg: &Config) -> Option<Arc<str>> {
    if !cfg.upstream.forward_client_auth {
        return None;
    }
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(|t| Arc::from(t.trim()))
}
