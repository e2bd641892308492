//! `bon::run` against a fake upstream and a fake scorer (no I/O; paused time makes the timeouts deterministic).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture};
use serde_json::{Map, Value, json};

use super::*;
use crate::{
    openai::{Choice, Content},
    reward::RewardError,
};

/// What the fake upstream does for the candidate with seed offset `i`.
#[derive(Clone)]
enum Act {
    Say(&'static str),
    Fail(UpstreamError),
    Hang,
}

struct FakeUpstream {
    base: i64,
    acts: Vec<Act>,
    seen: Mutex<Vec<Map<String, Value>>>,
}

impl Upstream for FakeUpstream {
    fn chat(&self, body: Map<String, Value>) -> BoxFuture<'_, Result<ChatCompletion, UpstreamError>> {
        let i = (body["seed"].as_i64().unwrap() - self.base) as usize;
        self.seen.lock().unwrap().push(body);
        let act = self.acts[i].clone();
        async move {
            match act {
                Act::Say(text) => Ok(completion(text)),
                Act::Fail(e) => Err(e),
                Act::Hang => futures::future::pending().await,
            }
        }
        .boxed()
    }

    fn models(&self) -> BoxFuture<'_, Result<Value, UpstreamError>> {
        async { Ok(json!({"data": []})) }.boxed()
    }
}

fn completion(text: &str) -> ChatCompletion {
    ChatCompletion {
        id: "same".into(),
        object: "chat.completion".into(),
        created: 1,
        model: "m".into(),
        choices: vec![Choice {
            index: 0,
            message: Message { role: "assistant".into(), content: Some(Content::Text(text.into())), extra: Map::new() },
            finish_reason: Some("stop".into()),
            extra: Map::new(),
        }],
        usage: Some(Usage {
            prompt_tokens: 7,
            completion_tokens: text.len() as u64,
            total_tokens: 7 + text.len() as u64,
        }),
        extra: Map::new(),
    }
}

/// Scores a candidate by the number of `!` in it; can be told to fail.
struct FakeScorer {
    fail: bool,
    calls: Mutex<Vec<usize>>,
}

impl Score for FakeScorer {
    fn score(&self, inputs: Vec<ScoreInput>) -> BoxFuture<'_, Result<Vec<f32>, RewardError>> {
        self.calls.lock().unwrap().push(inputs.len());
        let out = if self.fail {
            Err(RewardError::Runtime("boom".into()))
        } else {
            Ok(inputs.iter().map(|i| i.response.text().matches('!').count() as f32).collect())
        };
        async move { out }.boxed()
    }
}

fn scorer(fail: bool) -> FakeScorer {
    FakeScorer { fail, calls: Mutex::new(Vec::new()) }
}

fn plan(n: u32, base_seed: i64) -> Plan {
    let mut body = Map::new();
    body.insert("model".into(), json!("m"));
    Plan { body, n, base_seed, conversation: Arc::from(Vec::new()), tools: None }
}

fn upstream(base: i64, acts: Vec<Act>) -> FakeUpstream {
    FakeUpstream { base, acts, seen: Mutex::new(Vec::new()) }
}

const LIMIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn highest_score_wins_and_seeds_are_distinct() {
    let up = upstream(100, vec![Act::Say("a!"), Act::Say("b!!!"), Act::Say("c"), Act::Say("d!!")]);
    let sc = scorer(false);
    let m = Metrics::new().unwrap();
    let out = run(&up, &sc, &plan(4, 100), LIMIT, &m).await.unwrap();
    assert_eq!(out.ranked, vec![1, 3, 0, 2]);
    assert_eq!(out.winner().unwrap().0, 1);
    assert_eq!(out.scores(), vec![Some(1.0), Some(3.0), Some(0.0), Some(2.0)]);
    let mut seeds: Vec<i64> = up.seen.lock().unwrap().iter().map(|b| b["seed"].as_i64().unwrap()).collect();
    seeds.sort_unstable();
    assert_eq!(seeds, vec![100, 101, 102, 103]);
    assert_eq!(*sc.calls.lock().unwrap(), vec![4], "all candidates scored in one call");
    assert_eq!(out.usage.completion_tokens, 2 + 4 + 1 + 3);
    assert_eq!(out.usage.prompt_tokens, 4 * 7);
    assert!(out.id.starts_with("chatcmpl-bon-"));
}

#[tokio::test]
async fn failed_candidates_are_dropped() {
    let up = upstream(
        0,
        vec![
            Act::Fail(UpstreamError::Transport("reset".into())),
            Act::Say("ok!"),
            Act::Fail(UpstreamError::EmptyChoices),
            Act::Say("ok!!"),
        ],
    );
    let m = Metrics::new().unwrap();
    let out = run(&up, &scorer(false), &plan(4, 0), LIMIT, &m).await.unwrap();
    assert_eq!(out.ranked, vec![3, 1]);
    assert_eq!(out.scores(), vec![None, Some(1.0), None, Some(2.0)]);
    assert_eq!(m.candidates.with_label_values(&["transport"]).get(), 1);
    assert_eq!(m.candidates.with_label_values(&["empty"]).get(), 1);
    assert_eq!(m.candidates.with_label_values(&["ok"]).get(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_candidate_times_out_and_one_survivor_is_not_scored() {
    let up = upstream(0, vec![Act::Hang, Act::Say("only")]);
    let sc = scorer(false);
    let m = Metrics::new().unwrap();
    let out = run(&up, &sc, &plan(2, 0), Duration::from_secs(30), &m).await.unwrap();
    assert_eq!(out.ranked, vec![1]);
    assert_eq!(out.unscored, Some(Unscored::SingleSurvivor));
    assert!(matches!(out.candidates[0].result, Err(UpstreamError::Timeout(_))));
    assert!(sc.calls.lock().unwrap().is_empty(), "one survivor needs no scoring");
    assert_eq!(m.candidates.with_label_values(&["timeout"]).get(), 1);
}

#[tokio::test]
async fn scorer_failure_falls_back_to_the_first_success() {
    let up = upstream(0, vec![Act::Fail(UpstreamError::EmptyChoices), Act::Say("x"), Act::Say("y!!")]);
    let m = Metrics::new().unwrap();
    let out = run(&up, &scorer(true), &plan(3, 0), LIMIT, &m).await.unwrap();
    assert_eq!(out.winner().unwrap().0, 1);
    assert_eq!(out.unscored, Some(Unscored::ScorerFailed));
    assert_eq!(m.scorer_fallbacks.get(), 1);
}

#[tokio::test]
async fn all_failed_lists_every_cause() {
    let up = upstream(
        0,
        vec![
            Act::Fail(UpstreamError::Transport("refused".into())),
            Act::Fail(UpstreamError::Decode("bad json".into())),
        ],
    );
    let err = run(&up, &scorer(false), &plan(2, 0), LIMIT, &Metrics::new().unwrap()).await.unwrap_err();
    assert_eq!(err.status_code(), 502);
    let text = err.to_string();
    assert!(
        text.contains("[0] upstream connection failed: refused")
            && text.contains("[1] upstream sent an invalid response: bad json"),
        "{text}"
    );
}

fn status(code: u16, message: &str) -> UpstreamError {
    UpstreamError::Status {
        status: code,
        message: message.into(),
        kind: "invalid_request_error".into(),
        param: None,
        code: None,
    }
}

#[tokio::test]
async fn the_same_client_error_everywhere_is_passed_through() {
    let up = upstream(0, vec![Act::Fail(status(404, "model 'x' not found")); 3]);
    let err = run(&up, &scorer(false), &plan(3, 0), LIMIT, &Metrics::new().unwrap()).await.unwrap_err();
    assert_eq!(err.status_code(), 404);
    assert!(err.to_string().contains("model 'x' not found"));

    // Mixed causes, or a 429, are not the client's fault as such: 502.
    let up = upstream(0, vec![Act::Fail(status(404, "gone")), Act::Fail(status(500, "boom"))]);
    let err = run(&up, &scorer(false), &plan(2, 0), LIMIT, &Metrics::new().unwrap()).await.unwrap_err();
    assert_eq!(err.status_code(), 502);
    let up = upstream(0, vec![Act::Fail(status(429, "slow down")); 2]);
    let err = run(&up, &scorer(false), &plan(2, 0), LIMIT, &Metrics::new().unwrap()).await.unwrap_err();
    assert_eq!(err.status_code(), 502);
}

#[tokio::test]
async fn ties_go_to_the_lowest_index() {
    let up = upstream(0, vec![Act::Say("a"), Act::Say("b!"), Act::Say("c!")]);
    let out = run(&up, &scorer(false), &plan(3, 0), LIMIT, &Metrics::new().unwrap()).await.unwrap();
    assert_eq!(out.ranked, vec![1, 2, 0]);
}
