//! `stream: true`: the winner as a server-sent-event stream, whatever the event format (`Frames`: chat completion
//! chunks in `chunks`, the Responses API's events in `responses::events`).
//!
//! Plain Best-of-N must see every candidate whole before it can pick one. If the result is ready within the first
//! keep-alive interval (a cache hit, a fast upstream), the response is sent with all `x-bon-*` headers, and errors
//! are plain HTTP errors. Otherwise the stream starts at once with `x-bon-n` and `x-bon-reward-model` and sends SSE
//! comment lines every `--sse-keepalive` so idle timeouts do not cut it; an error then arrives as an error event.
//! Either way the winner is sent as a token stream would send it (the frames say how).
//!
//! With pruning, the last candidate standing arrives live (`bon::Live`): the stream starts when it is known, its
//! text so far goes out at once and every later delta as it comes; the rest follows when the call is done.

use std::{convert::Infallible, future::Future, pin::Pin};

use axum::{
    http::{HeaderName, HeaderValue},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{StreamExt, stream};
use tokio::sync::mpsc;

use super::{
    headers::{HEADER_N, HEADER_REWARD_MODEL},
    inflight::{Finished, Held},
    response::bon_headers,
};

use crate::{
    bon::{Live, Outcome},
    cache::CacheResult,
    error::ApiError,
    state::AppState,
};

/// How one API writes its event stream.
pub trait Frames: Send + 'static {
    /// The events of the finished call. `streamed`: the live candidate's beginning and text already went out.
    fn finished(&mut self, outcome: &Outcome, cache: CacheResult, streamed: bool) -> Vec<Event>;
    /// The events of a live update (pruning's last candidate standing); `Live::Begin` comes first.
    fn live(&mut self, update: Live) -> Vec<Event>;
    /// The event of an error once the stream has started.
    fn error(&mut self, e: &ApiError) -> Vec<Event>;
    /// Whether a live update went out (then `finished` is told `streamed`).
    fn began(&self) -> bool;
    /// The events that open a stream committed before the result (none by default).
    fn committed(&mut self) -> Vec<Event> {
        Vec::new()
    }
}

/// The streaming response for `work` (`n` candidates), written by `frames`. `updates` brings the last candidate
/// standing while it generates (pruning).
pub async fn respond<F: Frames>(
    work: impl Future<Output = Finished> + Send + 'static,
    updates: Option<mpsc::UnboundedReceiver<Live>>,
    mut held: Held,
    mut frames: F,
    n: u32,
    state: AppState,
) -> Response {
    let keepalive = state.config.server.sse_keepalive;
    let mut work: Work = Box::pin(work);
    let mut updates = updates;
    // Wait one keep-alive interval: a result by then goes out with every header, an error as a proper status. A
    // live candidate before then starts the stream at once.
    let first = tokio::time::timeout(keepalive, async {
        tokio::select! {
            result = &mut work => Err(result),
            Some(update) = next_update(&mut updates) => Ok(update),
        }
    })
    .await;
    let mut opening = Vec::new();
    let pending = match first {
        Ok(Err(result)) => {
            held.inflight.finish(result.as_ref().map(|(_, cache)| *cache));
            return match result {
                Ok((outcome, cache)) => {
                    let events = frames.finished(&outcome, cache, false).into_iter().map(Ok::<_, Infallible>);
                    let mut response = Sse::new(stream::iter(events)).into_response();
                    bon_headers(response.headers_mut(), &outcome, cache, &state.reward_model_id);
                    response
                }
                Err(e) => e.into_response(),
            };
        }
        Ok(Ok(update)) => Some(update),
        Err(_) => {
            opening = frames.committed();
            None
        }
    };
    // Commit to a 200 stream; the work, the admission permit and the in-flight record travel inside it, so a
    // client that disconnects drops them all (cancelling the upstream calls).
    let start = Streaming { work, updates, pending, held: Some(held), frames, done: false };
    let body = stream::iter(std::iter::once(opening))
        .chain(stream::unfold(start, Streaming::step))
        .flat_map(|events| stream::iter(events.into_iter().map(Ok::<_, Infallible>)));
    let mut response =
        Sse::new(body).keep_alive(KeepAlive::new().interval(keepalive).text("bon: generating")).into_response();
    let headers = response.headers_mut();
    headers.insert(HeaderName::from_static(HEADER_N), HeaderValue::from(n));
    if let Ok(v) = HeaderValue::from_str(&state.reward_model_id) {
        headers.insert(HeaderName::from_static(HEADER_REWARD_MODEL), v);
    }
    response
}

type Work = Pin<Box<dyn Future<Output = Finished> + Send>>;

/// The next live update; pending for ever when there are none (so `select!` waits on the work instead).
async fn next_update(updates: &mut Option<mpsc::UnboundedReceiver<Live>>) -> Option<Live> {
    match updates {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A committed stream: live updates as they come, then the rest of the answer once the work is done.
struct Streaming<F> {
    work: Work,
    updates: Option<mpsc::UnboundedReceiver<Live>>,
    pending: Option<Live>,
    held: Option<Held>,
    frames: F,
    done: bool,
}

impl<F: Frames> Streaming<F> {
    /// The next batch of events.
    async fn step(mut self) -> Option<(Vec<Event>, Self)> {
        if self.done {
            return None;
        }
        if let Some(update) = self.pending.take() {
            let events = self.frames.live(update);
            return Some((events, self));
        }
        tokio::select! {
            biased;
            update = next_update(&mut self.updates), if self.updates.is_some() => {
                let events = match update {
                    Some(update) => self.frames.live(update),
                    None => {
                        self.updates = None;
                        Vec::new()
                    }
                };
                Some((events, self))
            }
            result = &mut self.work => {
                self.done = true;
                if let Some(mut held) = self.held.take() {
                    held.inflight.finish(result.as_ref().map(|(_, cache)| *cache));
                }
                // Deltas sent before the work returned come first.
                let mut events = Vec::new();
                while let Some(update) = self.updates.as_mut().and_then(|rx| rx.try_recv().ok()) {
                    events.extend(self.frames.live(update));
                }
                match result {
                    Ok((outcome, cache)) => {
                        let streamed = self.frames.began();
                        events.extend(self.frames.finished(&outcome, cache, streamed));
                    }
                    Err(e) => {
                        if e.status_code().is_server_error() {
                            tracing::error!(error = %e, kind = e.kind(), "streamed request failed");
                        }
                        events.extend(self.frames.error(&e));
                    }
                }
                Some((events, self))
            }
        }
    }
}
