//! The pool's pass-through: one request to the least loaded routable upstream. A failed connection is retried once
//! on another when the body was small enough to keep whole; a streamed body is sent once. The answer comes back
//! whatever its status (a 5xx still marks the upstream down, as a chat request's would), and the request counts as
//! in flight on its upstream until the answer's body has been read.

use futures::StreamExt;
use tokio::time::Instant;

use super::{
    super::{
        UpstreamError,
        forward::{Forward, ForwardBody, Forwarded},
        member::Lease,
    },
    Pool, Wants,
};

impl Pool {
    pub(super) async fn forward_request(&self, req: Forward) -> Result<Forwarded, UpstreamError> {
        let first = self
            .lease(None, Wants::default())
            .ok_or_else(|| UpstreamError::Transport("no upstream configured".into()))?;
        let spare = match &req.body {
            ForwardBody::Whole(bytes) if self.members.len() > 1 => {
                Some(Forward { head: req.head.clone(), body: ForwardBody::Whole(bytes.clone()) })
            }
            _ => None,
        };
        let err = match self.forward_on(&first, req).await {
            Ok(answer) => return Ok(hold(answer, first)),
            Err(e) => e,
        };
        // Only a failed connection: any answer, a 5xx included, is the upstream's to give.
        let (Some(req), Some(second), UpstreamError::Transport(_)) =
            (spare, self.lease(Some(first.index), Wants::default()), &err)
        else {
            return Err(err);
        };
        first.member.metrics.upstream_failovers.with_label_values(&[&first.member.name]).inc();
        tracing::debug!(from = %first.member.name, to = %second.member.name, error = %err, "passing through on another upstream");
        drop(first);
        let answer = self.forward_on(&second, req).await?;
        Ok(hold(answer, second))
    }

    /// Sends `req` to `lease`'s member and records what happened to its health.
    async fn forward_on(&self, lease: &Lease, req: Forward) -> Result<Forwarded, UpstreamError> {
        let started = Instant::now();
        let result = lease.member.upstream.forward(req).await;
        let seen = match &result {
            Ok(answer) if answer.status >= 500 => Err(UpstreamError::Status {
                status: answer.status,
                message: "a passed-through request".into(),
                kind: String::new(),
                param: None,
                code: None,
            }),
            Ok(_) => Ok(()),
            Err(e) => Err(e.clone()),
        };
        lease.member.record(&seen, started.elapsed(), self.opts.backoff);
        result
    }
}

/// The answer, its body holding `lease` (in flight until read or dropped).
fn hold(mut answer: Forwarded, lease: Lease) -> Forwarded {
    answer.body = answer
        .body
        .map(move |chunk| {
            let _held = &lease;
            chunk
        })
        .boxed();
    answer
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use futures::{FutureExt, future::BoxFuture};
    use http::{HeaderMap, Method};
    use serde_json::Value;

    use super::*;
    use crate::{
        metrics::Metrics,
        openai::ChatCompletion,
        upstream::{Forward, Head, PoolOptions, Upstream, UpstreamRequest},
    };

    /// Passes through with a status, or fails to connect; counts what it got.
    struct Fake {
        status: Option<u16>,
        got: AtomicUsize,
    }

    impl Upstream for Fake {
        fn chat(
            &self,
            _: UpstreamRequest,
            _: Option<Arc<str>>,
        ) -> BoxFuture<'_, Result<ChatCompletion, UpstreamError>> {
            async { Err(UpstreamError::EmptyChoices) }.boxed()
        }
        fn models(&self, _: Option<Arc<str>>) -> BoxFuture<'_, Result<Value, UpstreamError>> {
            async { Ok(Value::Null) }.boxed()
        }
        fn forward(&self, _: Forward) -> BoxFuture<'_, Result<Forwarded, UpstreamError>> {
            self.got.fetch_add(1, Ordering::SeqCst);
            let answer = self.status.map(|status| Forwarded {
                status,
                headers: HeaderMap::new(),
                body: futures::stream::empty().boxed(),
            });
            async move { answer.ok_or_else(|| UpstreamError::Transport("connection refused".into())) }.boxed()
        }
    }

    fn setup(statuses: &[Option<u16>]) -> (Pool, Vec<Arc<Fake>>) {
        let fakes: Vec<Arc<Fake>> =
            statuses.iter().map(|&status| Arc::new(Fake { status, got: AtomicUsize::new(0) })).collect();
        let members = fakes.iter().enumerate().map(|(i, f)| (i.to_string(), f.clone() as Arc<dyn Upstream>)).collect();
        (Pool::new(members, PoolOptions::default(), Arc::new(Metrics::new().unwrap())), fakes)
    }

    fn request(body: ForwardBody) -> Forward {
        let head = Head {
            method: Method::POST,
            path_and_query: "/v1/embeddings".into(),
            headers: HeaderMap::new(),
            auth: None,
        };
        Forward { head: Arc::new(head), body }
    }

    fn stream() -> ForwardBody {
        ForwardBody::Stream(
            reqwest::Body::wrap_stream(futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>()),
        )
    }

    #[tokio::test]
    async fn a_whole_body_is_retried_elsewhere_after_a_failed_connection_a_stream_is_not() {
        let (pool, fakes) = setup(&[None, Some(200)]);
        // Round-robin starts at the first member, which cannot be reached.
        let answer = pool.forward_request(request(ForwardBody::Whole("{}".into()))).await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!((fakes[0].got.load(Ordering::SeqCst), fakes[1].got.load(Ordering::SeqCst)), (1, 1));

        let (pool, fakes) = setup(&[None, Some(200)]);
        let err = pool.forward_request(request(stream())).await.err().unwrap();
        assert!(matches!(err, UpstreamError::Transport(_)), "a stream is sent once: {err:?}");
        assert_eq!(fakes[1].got.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_answer_is_returned_as_it_came_and_a_5xx_marks_the_upstream_down() {
        let (pool, fakes) = setup(&[Some(503), Some(200)]);
        let answer = pool.forward_request(request(ForwardBody::Whole("{}".into()))).await.unwrap();
        assert_eq!(answer.status, 503, "the upstream's own answer, not retried");
        assert_eq!(fakes[1].got.load(Ordering::SeqCst), 0);
        assert_eq!(pool.routable(), 1, "the member that answered 503 is down");
    }
}
