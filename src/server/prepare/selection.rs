//! A request's selection settings: `x-bon-strategy`, else `bon.strategy`, else `--strategy`; `bon.answer`,
//! `bon.shortlist` and `bon.stop_on_agreement` over their flags. Rules that tie them to the rest of the request
//! (stop on agreement needs `vote`, pruning a reward strategy) are checked here too, so a request that cannot mean
//! what it says is a 400.

use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::server::headers::HEADER_STRATEGY;
use crate::{
    config::Config,
    error::ApiError,
    openai::BonOptions,
    select::{Extractor, Select, Strategy},
};

const NAMES: &str = "reward, vote, weighted-vote, judge, reward+judge, confidence, confidence-vote";

/// The selection settings of a request.
pub fn options(headers: &HeaderMap, bon: &BonOptions, cfg: &Config) -> Result<Select, ApiError> {
    let defaults = cfg.select.defaults();
    let bad = |param: &str, message: String| ApiError::invalid(message, param.to_owned());
    let strategy = if let Some(v) = headers.get(HEADER_STRATEGY) {
        let text = v.to_str().unwrap_or("a non-ASCII value").trim();
        Strategy::parse(text)
            .ok_or_else(|| bad(HEADER_STRATEGY, format!("{HEADER_STRATEGY} must be one of {NAMES} (got {text:?})")))?
    } else if let Some(v) = &bon.strategy {
        v.as_str()
            .and_then(Strategy::parse)
            .ok_or_else(|| bad("bon.strategy", format!("bon.strategy must be one of {NAMES} (got {v})")))?
    } else {
        defaults.strategy
    };
    let answer = match &bon.answer {
        Some(Value::String(spec)) => {
            Extractor::parse(spec).map_err(|e| bad("bon.answer", format!("bon.answer: {e}")))?
        }
        Some(v) => return Err(bad("bon.answer", format!("bon.answer must be a string (got {v})"))),
        None => defaults.answer.clone(),
    };
    let shortlist =
        match &bon.shortlist {
            Some(v) => v.as_u64().filter(|k| *k >= 2).and_then(|k| usize::try_from(k).ok()).ok_or_else(|| {
                bad("bon.shortlist", format!("bon.shortlist must be an integer of at least 2 (got {v})"))
            })?,
            None => defaults.shortlist,
        };
    let stop_on_agreement = match bon.stop_on_agreement {
        Some(true) if !strategy.stops_on_agreement() => {
            return Err(bad(
                "bon.stop_on_agreement",
                format!(
                    "bon.stop_on_agreement needs the strategy `vote` (got `{}`): only a count vote is decided before \
                     every candidate has finished",
                    strategy.as_str()
                ),
            ));
        }
        Some(on) => on,
        None => defaults.stop_on_agreement,
    };
    let confidence_keep = match &bon.confidence_keep {
        Some(v) => v.as_f64().filter(|k| *k > 0.0 && *k <= 1.0).ok_or_else(|| {
            bad("bon.confidence_keep", format!("bon.confidence_keep must be a number within (0, 1] (got {v})"))
        })?,
        None => defaults.confidence_keep,
    };
    let confidence_stop = match bon.confidence_stop {
        Some(true) if !strategy.stops_on_confidence() => {
            return Err(bad(
                "bon.confidence_stop",
                format!(
                    "bon.confidence_stop needs the strategy `vote`, `confidence` or `confidence-vote` (got `{}`): \
                     the others rank whole answers by reward or a judge",
                    strategy.as_str()
                ),
            ));
        }
        Some(on) => on,
        None => defaults.confidence_stop && strategy.stops_on_confidence(),
    };
    Ok(Select { strategy, answer, shortlist, stop_on_agreement, confidence_keep, confidence_stop, ..defaults })
}

/// Pruning stops candidates by their reward-model prefix scores: it serves `reward` and `reward+judge`. For the
/// other strategies a pruning the request asked for is a 400; the server's default is simply not applied.
pub fn allows_pruning(strategy: Strategy, asked_explicitly: bool) -> Result<bool, ApiError> {
    let fits = strategy.prunes();
    if !fits && asked_explicitly {
        return Err(ApiError::invalid(
            format!(
                "pruning (x-bon-prune-every / bon.prune_every) ranks partial answers by reward and cannot serve the \
                 strategy `{}`; use `reward` or `reward+judge`, or set pruning to 0",
                strategy.as_str()
            ),
            "bon.prune_every".to_owned(),
        ));
    }
    Ok(fits)
}

/// What of the selection settings changes the result, for the cache key (None for `reward`, whose key is
/// unchanged). The judge's model is part of it: two judges pick differently.
pub fn key_part(select: &Select, judge_model: &str) -> Option<Value> {
    match select.strategy {
        Strategy::Reward => None,
        Strategy::Vote | Strategy::WeightedVote => Some(json!({
            "strategy": select.strategy.as_str(),
            "answer": select.answer.spec(),
            "temperature": select.vote_temperature,
            "stop_on_agreement": select.stop_on_agreement,
            "confidence_stop": select.confidence_stop,
        })),
        Strategy::Judge | Strategy::RewardJudge => Some(json!({
            "strategy": select.strategy.as_str(),
            "shortlist": select.shortlist,
            "judge_mode": select.judge_mode,
            "judge_model": judge_model,
        })),
        Strategy::Confidence | Strategy::ConfidenceVote => Some(json!({
            "strategy": select.strategy.as_str(),
            "answer": select.answer.spec(),
            "top_k": select.confidence_top_k,
            "window": select.confidence_window,
            "keep": select.confidence_keep,
            "confidence_stop": select.confidence_stop,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cfg(extra: &[&str]) -> Config {
        let mut args = vec!["bon-proxy", "--reward-model", "m"];
        args.extend_from_slice(extra);
        Config::try_parse_from(args).unwrap()
    }

    fn bon(v: Value) -> BonOptions {
        serde_json::from_value(v).unwrap()
    }

    fn header(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER_STRATEGY, value.parse().unwrap());
        h
    }

    #[test]
    fn header_then_body_then_flag() {
        let c = cfg(&["--strategy", "weighted-vote"]);
        assert_eq!(options(&HeaderMap::new(), &bon(json!({})), &c).unwrap().strategy, Strategy::WeightedVote);
        let body = bon(json!({"strategy": "judge"}));
        assert_eq!(options(&HeaderMap::new(), &body, &c).unwrap().strategy, Strategy::Judge);
        assert_eq!(options(&header("reward+judge"), &body, &c).unwrap().strategy, Strategy::RewardJudge);
    }

    #[test]
    fn bad_values_name_their_parameter() {
        let c = cfg(&[]);
        let param = |h: &HeaderMap, b: Value| match options(h, &bon(b), &c) {
            Err(ApiError::InvalidRequest { param, .. }) => param,
            other => panic!("{other:?}"),
        };
        assert_eq!(param(&header("majority"), json!({})).as_deref(), Some(HEADER_STRATEGY));
        assert_eq!(param(&HeaderMap::new(), json!({"strategy": 3})).as_deref(), Some("bon.strategy"));
        assert_eq!(param(&HeaderMap::new(), json!({"answer": "regex:("})).as_deref(), Some("bon.answer"));
        assert_eq!(param(&HeaderMap::new(), json!({"answer": 1})).as_deref(), Some("bon.answer"));
        assert_eq!(param(&HeaderMap::new(), json!({"shortlist": 1})).as_deref(), Some("bon.shortlist"));
        let stop = json!({"strategy": "weighted-vote", "stop_on_agreement": true});
        assert_eq!(param(&HeaderMap::new(), stop).as_deref(), Some("bon.stop_on_agreement"));
    }

    #[test]
    fn request_values_override_the_flags() {
        let c = cfg(&["--answer", "boxed", "--shortlist", "3", "--stop-on-agreement"]);
        let s = options(&header("vote"), &bon(json!({"answer": "json:/a", "stop_on_agreement": false})), &c).unwrap();
        assert_eq!(s.answer.spec(), "json:/a");
        assert!(!s.stop_on_agreement);
        assert_eq!(s.shortlist, 3);
        let s = options(&header("vote"), &bon(json!({})), &c).unwrap();
        assert_eq!(s.answer.spec(), "boxed");
        assert!(s.stop_on_agreement);
    }

    #[test]
    fn pruning_serves_the_reward_strategies_only() {
        assert!(allows_pruning(Strategy::Reward, true).unwrap());
        assert!(allows_pruning(Strategy::RewardJudge, false).unwrap());
        assert!(!allows_pruning(Strategy::Vote, false).unwrap());
        assert!(allows_pruning(Strategy::Judge, true).is_err());
    }

    #[test]
    fn key_parts_differ_by_what_changes_the_result() {
        let vote = Select { strategy: Strategy::Vote, ..Select::default() };
        assert_eq!(key_part(&Select::default(), "j"), None);
        let boxed = Select { answer: Extractor::Boxed, ..vote.clone() };
        assert_ne!(key_part(&vote, "j"), key_part(&boxed, "j"));
        let judge = Select { strategy: Strategy::Judge, ..Select::default() };
        assert_ne!(key_part(&judge, "a"), key_part(&judge, "b"));
    }
}
