//! The pool against fake upstreams (no I/O; paused time makes back-off and deadlines deterministic).

use std::sync::atomic::AtomicBool;

use serde_json::json;

use super::*;
use crate::upstream::health::State;

/// What a fake upstream does with every request.
#[derive(Clone, Copy, PartialEq)]
enum Does {
    Answer,
    Fail(u16),
    Refuse,
    Hang,
}

struct Fake {
    does: Mutex<Does>,
    /// Seeds of the chat requests it got, in order.
    seeds: Mutex<Vec<i64>>,
    /// Most requests it had at once.
    peak: AtomicUsize,
    now: AtomicUsize,
    probes: AtomicUsize,
    probe_ok: AtomicBool,
    /// `/v1/models` takes this long (a busy llama-server answers it late).
    probe_delay: Mutex<Duration>,
    /// `/v1/models` answers with this HTTP status.
    probe_status: Mutex<Option<u16>>,
    /// Answers a request for `n` choices with `n` (llama.cpp's server); else with one (Ollama).
    honours_n: AtomicBool,
}

impl Fake {
    fn new(does: Does) -> Arc<Self> {
        Arc::new(Self {
            does: Mutex::new(does),
            seeds: Mutex::default(),
            peak: AtomicUsize::new(0),
            now: AtomicUsize::new(0),
            probes: AtomicUsize::new(0),
            probe_ok: AtomicBool::new(true),
            probe_delay: Mutex::new(Duration::ZERO),
            probe_status: Mutex::new(None),
            honours_n: AtomicBool::new(true),
        })
    }
    fn set(&self, does: Does) {
        *self.does.lock().unwrap() = does;
    }
    fn seeds(&self) -> Vec<i64> {
        self.seeds.lock().unwrap().clone()
    }
}

fn completion() -> ChatCompletion {
    serde_json::from_value(json!({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}))
    .unwrap()
}

impl Upstream for Fake {
    fn chat(&self, req: UpstreamRequest, _: Option<Arc<str>>) -> BoxFuture<'_, Result<ChatCompletion, UpstreamError>> {
        async move {
            self.seeds.lock().unwrap().push(req.get("seed").and_then(|s| s.as_i64()).unwrap());
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            let does = *self.does.lock().unwrap();
            let result = match does {
                Does::Answer => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let mut c = completion();
                    let n = req.get("n").and_then(|n| n.as_u64()).unwrap_or(1) as usize;
                    if self.honours_n.load(Ordering::SeqCst) {
                        c.choices = vec![c.choices[0].clone(); n];
                    }
                    Ok(c)
                }
                Does::Fail(status) => Err(status_error(status)),
                Does::Refuse => Err(UpstreamError::Transport("connection refused".into())),
                Does::Hang => futures::future::pending().await,
            };
            self.now.fetch_sub(1, Ordering::SeqCst);
            result
        }
        .boxed()
    }

    fn models(&self, _: Option<Arc<str>>) -> BoxFuture<'_, Result<Value, UpstreamError>> {
        async move {
            self.probes.fetch_add(1, Ordering::SeqCst);
            let delay = *self.probe_delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            if !self.probe_ok.load(Ordering::SeqCst) {
                return Err(UpstreamError::Transport("connection refused".into()));
            }
            match *self.probe_status.lock().unwrap() {
                Some(status) => Err(status_error(status)),
                None => Ok(json!({"data": []})),
            }
        }
        .boxed()
    }
}

fn status_error(status: u16) -> UpstreamError {
    UpstreamError::Status { status, message: "no".into(), kind: String::new(), param: None, code: None }
}

fn pool(fakes: &[Arc<Fake>], deadline: Option<Duration>) -> (Pool, Arc<Metrics>) {
    pool_with(fakes, PoolOptions { deadline, ..PoolOptions::default() })
}

fn pool_with(fakes: &[Arc<Fake>], opts: PoolOptions) -> (Pool, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new().unwrap());
    let members = fakes.iter().enumerate().map(|(i, f)| (i.to_string(), f.clone() as Arc<dyn Upstream>)).collect();
    (Pool::new(members, opts, metrics.clone()), metrics)
}

fn body(seed: i64) -> UpstreamRequest {
    UpstreamRequest::from(json!({"model": "m"}).as_object().unwrap().clone()).seed(seed)
}

#[tokio::test(start_paused = true)]
async fn best_of_8_over_4_upstreams_runs_2_on_each() {
    let fakes: Vec<_> = (0..4).map(|_| Fake::new(Does::Answer)).collect();
    let (pool, _) = pool(&fakes, None);
    let calls = (0..8).map(|i| pool.chat(body(100 + i), None));
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok));
    for f in &fakes {
        assert_eq!(f.seeds().len(), 2);
        assert_eq!(f.peak.load(Ordering::SeqCst), 2);
    }
    let mut seeds: Vec<i64> = fakes.iter().flat_map(|f| f.seeds()).collect();
    seeds.sort_unstable();
    assert_eq!(seeds, (100..108).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_is_retried_once_elsewhere_with_the_same_seed() {
    let fakes = [Fake::new(Does::Fail(503)), Fake::new(Does::Answer)];
    let (pool, metrics) = pool(&fakes, Some(Duration::from_secs(10)));
    // Round-robin starts at member 0.
    assert!(pool.chat(body(7), None).await.is_ok());
    assert_eq!(fakes[0].seeds(), [7]);
    assert_eq!(fakes[1].seeds(), [7]);
    // Member 0 is down: the next requests go to member 1 only, until a probe after the back-off.
    assert_eq!(pool.routable(), 1);
    for seed in 8..12 {
        assert!(pool.chat(body(seed), None).await.is_ok());
    }
    assert_eq!(fakes[0].seeds(), [7]);
    let page = metrics.render().unwrap();
    assert!(page.contains("bon_upstream_requests_total{outcome=\"http_5xx\",upstream=\"0\"} 1"), "{page}");
    assert!(page.contains("bon_upstream_failovers_total{upstream=\"0\"} 1"), "{page}");
    assert!(page.contains("bon_upstream_up{upstream=\"0\"} 0"), "{page}");
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_not_retried() {
    let fakes = [Fake::new(Does::Fail(400)), Fake::new(Does::Answer)];
    let (pool, _) = pool(&fakes, None);
    let err = pool.chat(body(1), None).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Status { status: 400, .. }));
    assert!(fakes[1].seeds().is_empty());
    assert_eq!(pool.routable(), 2, "a 400 says nothing about the upstream's health");
}

#[tokio::test(start_paused = true)]
async fn a_dead_upstream_comes_back_after_a_probe() {
    let fakes = [Fake::new(Does::Refuse), Fake::new(Does::Answer)];
    let (pool, _) = pool(&fakes, None);
    fakes[0].probe_ok.store(false, Ordering::SeqCst);
    assert!(pool.chat(body(1), None).await.is_ok());
    assert_eq!(pool.routable(), 1);
    let watch = pool.watch();
    tokio::pin!(watch);
    // The first back-off is 1 s: a probe then fails, and the next comes 2 s later.
    let _ = tokio::time::timeout(Duration::from_millis(1300), &mut watch).await;
    assert_eq!(fakes[0].probes.load(Ordering::SeqCst), 1);
    assert_eq!(pool.routable(), 1);
    fakes[0].set(Does::Answer);
    fakes[0].probe_ok.store(true, Ordering::SeqCst);
    let _ = tokio::time::timeout(Duration::from_millis(1000), &mut watch).await;
    assert_eq!(pool.routable(), 1, "still backing off");
    let _ = tokio::time::timeout(Duration::from_millis(1200), &mut watch).await;
    assert_eq!(fakes[0].probes.load(Ordering::SeqCst), 2);
    assert_eq!(pool.routable(), 2);
    let status = pool.status();
    assert_eq!(status[0].state, State::Up);
    assert_eq!(status[0].failures, 0);
}

#[tokio::test(start_paused = true)]
async fn with_every_upstream_down_requests_still_go_out() {
    let fakes = [Fake::new(Does::Fail(502)), Fake::new(Does::Fail(502))];
    let (pool, _) = pool(&fakes, None);
    assert!(pool.chat(body(1), None).await.is_err());
    assert_eq!(pool.routable(), 0);
    fakes[1].set(Does::Answer);
    let mut served = 0;
    for seed in 2..6 {
        served += usize::from(pool.chat(body(seed), None).await.is_ok());
    }
    assert!(served >= 1, "a pool with every member down still sends requests");
    // The one that answered is up again (an answer is proof of health); the other stays down, saying why.
    let status = pool.status();
    assert_eq!((status[0].state, status[1].state), (State::Down, State::Up));
    assert!(status[0].error.as_deref().is_some_and(|e| e.contains("502")), "{:?}", status[0].error);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_upstream_times_out_and_is_marked_down() {
    let fakes = [Fake::new(Does::Hang), Fake::new(Does::Answer)];
    let (pool, _) = pool(&fakes, Some(Duration::from_secs(5)));
    let err = pool.chat(body(1), None).await.unwrap_err();
    assert_eq!(err, UpstreamError::Timeout(Duration::from_secs(5)));
    // No time was left to retry: member 1 never saw the request, and it is not blamed.
    assert!(fakes[1].seeds().is_empty());
    assert_eq!(pool.status().iter().map(|s| s.state).collect::<Vec<_>>(), [State::Down, State::Unknown]);
}

#[tokio::test(start_paused = true)]
async fn one_upstream_behaves_as_itself() {
    let fakes = [Fake::new(Does::Fail(503))];
    let (pool, _) = pool(&fakes, None);
    assert!(pool.chat(body(1), None).await.is_err());
    fakes[0].set(Does::Answer);
    // Down, but the only one: it still gets the next request at once.
    assert!(pool.chat(body(2), None).await.is_ok());
    assert_eq!(fakes[0].seeds(), [1, 2]);
    assert_eq!(pool.shares(4), [4]);
}

#[tokio::test(start_paused = true)]
async fn a_slow_upstream_is_not_taken_for_a_dead_one() {
    // Its completions take 300 ms, its `/v1/models` 20 s: longer than the 10 s probe timeout.
    let fakes = [Fake::new(Does::Answer)];
    let (pool, metrics) = pool(&fakes, None);
    *fakes[0].probe_delay.lock().unwrap() = Duration::from_secs(20);
    let member = pool.members[0].clone();
    // Never answered anything, idle, and the probe gets no answer in time: slow, not dead (other replicas may be
    // keeping it busy); it still gets traffic.
    assert!(matches!(pool.probe(&member).await, Err(UpstreamError::Timeout(_))));
    assert_eq!(pool.status()[0].state, State::Unknown);
    assert_eq!(pool.routable(), 1);
    assert!(metrics.render().unwrap().contains("bon_upstream_probes_total{outcome=\"timeout\",upstream=\"0\"} 1"));
    // An answered request is proof of health; later probe timeouts, idle for long, change nothing.
    assert!(pool.chat(body(1), None).await.is_ok());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(pool.probe(&member).await.is_err());
    assert_eq!(pool.status()[0].state, State::Up, "slow, not dead");
    assert!(metrics.render().unwrap().contains("bon_upstream_up{upstream=\"0\"} 1"));
    // Busy answers are answers: 429, 408, and a 503 the HTTP client reads with Retry-After (tests/pool.rs).
    *fakes[0].probe_delay.lock().unwrap() = Duration::ZERO;
    for busy in [429, 408] {
        *fakes[0].probe_status.lock().unwrap() = Some(busy);
        assert!(pool.probe(&member).await.is_ok(), "{busy}");
        assert_eq!(pool.status()[0].state, State::Up);
    }
    // A 5xx is an upstream saying it is broken: down. An answered request brings it back at once.
    *fakes[0].probe_status.lock().unwrap() = Some(500);
    assert!(pool.probe(&member).await.is_err());
    assert_eq!(pool.status()[0].state, State::Down);
    assert!(pool.chat(body(3), None).await.is_ok());
    assert_eq!(pool.status()[0].state, State::Up);
}

#[tokio::test(start_paused = true)]
async fn a_busy_answer_is_retried_elsewhere_but_never_marks_down() {
    let fakes = [Fake::new(Does::Fail(429)), Fake::new(Does::Answer)];
    let (pool, _) = pool(&fakes, None);
    assert!(pool.chat(body(1), None).await.is_ok(), "retried on the other member");
    assert_eq!(fakes[1].seeds(), [1]);
    assert_eq!(pool.routable(), 2, "busy, not down");
    for seed in 2..6 {
        assert!(pool.chat(body(seed), None).await.is_ok());
    }
    assert!(fakes[0].seeds().len() > 1, "member 0 got more busy answers: {:?}", fakes[0].seeds());
    assert_eq!(pool.routable(), 2, "still busy, not down");
    fakes[0].set(Does::Fail(503));
    for seed in 6..10 {
        assert!(pool.chat(body(seed), None).await.is_ok());
    }
    assert_eq!(pool.routable(), 1, "a 503 is a broken upstream");
}

#[tokio::test(start_paused = true)]
async fn a_candidate_timeout_marks_down_only_an_upstream_that_answered_nothing_meanwhile() {
    let fakes = [Fake::new(Does::Hang)];
    let (pool, _) = pool(&fakes, Some(Duration::from_secs(5)));
    // One request hangs; another, started later, is answered while it waits: the upstream is busy, not dead.
    let stuck = pool.chat(body(1), None);
    let answered = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        fakes[0].set(Does::Answer);
        pool.chat(body(2), None).await
    };
    let (stuck, answered) = futures::join!(stuck, answered);
    assert_eq!(stuck.unwrap_err(), UpstreamError::Timeout(Duration::from_secs(5)));
    assert!(answered.is_ok());
    assert_eq!(pool.status()[0].state, State::Up, "it answered another request while this one waited");
    // Nothing answered while a request waited: down.
    fakes[0].set(Does::Hang);
    assert!(pool.chat(body(3), None).await.is_err());
    assert_eq!(pool.status()[0].state, State::Down);
}

#[test]
fn native_n_is_split_over_healthy_upstreams() {
    assert_eq!(split(8, 4), [2, 2, 2, 2]);
    assert_eq!(split(8, 3), [3, 3, 2]);
    assert_eq!(split(2, 4), [1, 1]);
    assert_eq!(split(5, 1), [5]);
    assert_eq!(split(1, 0), [1]);
}

/// An Ollama (ignores `n`) beside a llama.cpp server (honours it), `--upstream-n auto`.
fn mixed(learn_n: bool) -> (Vec<Arc<Fake>>, Pool) {
    let fakes = vec![Fake::new(Does::Answer), Fake::new(Does::Answer)];
    fakes[0].honours_n.store(false, Ordering::SeqCst);
    let (pool, _) = pool_with(&fakes, PoolOptions { learn_n, ..PoolOptions::default() });
    (fakes, pool)
}

#[tokio::test(start_paused = true)]
async fn a_member_that_ignores_n_loses_its_share_and_only_it() {
    let (fakes, pool) = mixed(true);
    assert_eq!(pool.shares(4), [2, 2]);
    // The first share goes to the Ollama (round-robin starts there): one choice of two.
    let c = pool.chat(body(1).n(2), None).await.unwrap();
    assert_eq!((c.choices.len(), fakes[0].seeds(), fakes[1].seeds()), (1, vec![1], vec![]));
    // Learnt for that member only: N goes whole to the one that honours `n`, and `n` requests go there.
    assert_eq!(pool.shares(4), [4]);
    for seed in 2..5 {
        assert_eq!(pool.chat(body(seed).n(4), None).await.unwrap().choices.len(), 4);
    }
    assert_eq!(fakes[1].seeds(), [2, 3, 4], "every later `n` request went to the member that honours it");
    // Plain requests (fan-out) still use both.
    for seed in 5..9 {
        pool.chat(body(seed), None).await.unwrap();
    }
    assert_eq!(fakes[0].seeds().len(), 3, "{:?}", fakes[0].seeds());
}

#[tokio::test(start_paused = true)]
async fn when_every_member_ignores_n_there_is_no_share_and_without_learning_nothing_is_learnt() {
    let (fakes, pool) = mixed(true);
    fakes[1].honours_n.store(false, Ordering::SeqCst);
    pool.chat(body(1).n(2), None).await.unwrap();
    pool.chat(body(2).n(2), None).await.unwrap();
    assert!(pool.shares(4).is_empty(), "no member honours `n`: every candidate fans out");

    let (_, pool) = mixed(false);
    pool.chat(body(1).n(2), None).await.unwrap();
    assert_eq!(pool.shares(4), [2, 2], "`--upstream-n native`: shares stay as they were");
}
