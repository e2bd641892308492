use super::*;
use clap::Parser;

fn cfg() -> Config {
    Config::try_parse_from(["bon-proxy", "--reward-model", "m"]).unwrap()
}

fn req(v: Value) -> ChatRequest {
    serde_json::from_value(v).unwrap()
}

fn base() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

fn with(extra: Value) -> ChatRequest {
    let mut b = base();
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    req(b)
}

fn headers(n: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(HEADER_N, n.parse().unwrap());
    h
}

#[test]
fn n_comes_from_header_then_body_then_default() {
    let c = cfg();
    assert_eq!(prepare(req(base()), &HeaderMap::new(), &c).unwrap().plan.n, 4);
    assert_eq!(prepare(with(json!({"bon": {"n": 6}})), &HeaderMap::new(), &c).unwrap().plan.n, 6);
    assert_eq!(prepare(with(json!({"bon": {"n": 6}})), &headers("3"), &c).unwrap().plan.n, 3);
}

#[test]
fn bad_n_names_the_value() {
    let c = cfg();
    for bad in ["0", "17", "abc", "2.5", "-1", ""] {
        let e = prepare(req(base()), &headers(bad), &c).unwrap_err();
        assert_eq!(e.status_code(), 400, "{bad}");
        assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
    }
    let e = prepare(with(json!({"bon": {"n": 2.5}})), &HeaderMap::new(), &c).unwrap_err();
    assert!(matches!(e, ApiError::InvalidRequest { ref param, .. } if param.as_deref() == Some("bon.n")));
    assert!(e.to_string().contains("2.5"));
}

#[test]
fn forwarded_body_drops_stream_and_n_and_sets_temperature() {
    let p = prepare(
        with(json!({"stream": true, "stream_options": {"include_usage": true}, "n": 2, "top_p": 0.5})),
        &HeaderMap::new(),
        &cfg(),
    )
    .unwrap();
    assert!(p.reply.stream && p.reply.include_usage);
    assert_eq!(p.reply.choices, 2);
    assert_eq!(p.plan.body["stream"], json!(false));
    assert!(!p.plan.body.contains_key("n") && !p.plan.body.contains_key("stream_options"));
    assert_eq!(p.plan.body["temperature"], json!(0.8));
    assert_eq!(p.plan.body["top_p"], json!(0.5));
    assert!(!p.plan.body.contains_key("bon"));
}

#[test]
fn temperature_zero_runs_one_candidate() {
    let p = prepare(with(json!({"temperature": 0.0})), &headers("8"), &cfg()).unwrap();
    assert_eq!(p.plan.n, 1);
    assert_eq!(p.plan.body["temperature"], json!(0.0));
}

#[test]
fn n_choices_raise_n() {
    let p = prepare(with(json!({"n": 5})), &headers("2"), &cfg()).unwrap();
    assert_eq!((p.plan.n, p.reply.choices), (5, 5));
    assert!(prepare(with(json!({"n": 17})), &HeaderMap::new(), &cfg()).is_err());
}

#[test]
fn client_seed_is_the_base_and_part_of_the_key() {
    let p = prepare(with(json!({"seed": 42})), &HeaderMap::new(), &cfg()).unwrap();
    assert_eq!(p.plan.base_seed, 42);
    assert_eq!(p.key_extra["seed"], json!(42));
    assert!(!p.plan.body.contains_key("seed"));
}

#[test]
fn guard_follows_the_flag_unless_the_request_says_and_splits_the_key() {
    let on = prepare(req(base()), &HeaderMap::new(), &cfg()).unwrap();
    assert!(on.plan.guard);
    assert!(!on.key_extra.contains_key("bon"), "default keys are unchanged");
    let off = prepare(with(json!({"bon": {"guard": false}})), &HeaderMap::new(), &cfg()).unwrap();
    assert!(!off.plan.guard);
    assert_ne!(on.key_extra, off.key_extra);
    assert!(!off.plan.body.contains_key("bon"), "never forwarded");
    let c = Config::try_parse_from(["bon-proxy", "--reward-model", "m", "--degenerate-guard", "off"]).unwrap();
    assert!(!prepare(req(base()), &HeaderMap::new(), &c).unwrap().plan.guard);
    assert!(prepare(with(json!({"bon": {"guard": true}})), &HeaderMap::new(), &c).unwrap().plan.guard);
}

#[test]
fn invalid_requests() {
    let c = cfg();
    let h = HeaderMap::new();
    assert!(prepare(req(json!({"model": "m", "messages": []})), &h, &c).is_err());
    assert!(prepare(req(json!({"model": "", "messages": [{"role": "user", "content": "x"}]})), &h, &c).is_err());
    let e = prepare(req(json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]})), &h, &c).unwrap_err();
    assert!(matches!(e, ApiError::InvalidRequest { ref param, .. } if param.as_deref() == Some("messages[0].role")));
    assert!(prepare(with(json!({"temperature": -1.0})), &h, &c).is_err());
    assert!(prepare(with(json!({"n": 0})), &h, &c).is_err());
}
