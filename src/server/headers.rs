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

/// The client's bearer token, when `--forward-client-auth` says to pass it upstream.
pub fn forwarded_auth(headers: &HeaderMap, cfg: &Config) -> Option<Arc<str>> {
    if !cfg.upstream.forward_client_auth {
        return None;
    }
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(|t| Arc::from(t.trim()))
}
