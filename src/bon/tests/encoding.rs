//! The `Outcome` as the shared cache tier stores it.

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;

#[tokio::test]
async fn an_outcome_survives_the_shared_cache_encoding_and_foreign_values_do_not_decode() {
    use crate::cache::Shared;
    let up = upstream(0, vec![Act::Say("a!"), Act::Fail(UpstreamError::Transport("reset".into())), Act::Say("c")]);
    let out = Arc::new(go(&up, &scorer(false), &plan(3, 0), LIMIT, &Metrics::new().unwrap()).await.unwrap());
    let back = <Arc<Outcome>>::decode(&out.encode().unwrap()).unwrap();
    assert_eq!(format!("{back:?}"), format!("{out:?}"), "every field, failures and latencies included");
    assert!(<Arc<Outcome>>::decode(b"{\"not\": \"an outcome\"}").is_none());
    assert!(<Arc<Outcome>>::decode(b"\xff\x00").is_none());
    // Well-formed, but naming a winner that does not exist: not something this version wrote.
    let mut forged: Value = serde_json::from_slice(&out.encode().unwrap()).unwrap();
    forged["ranked"] = json!([7]);
    assert!(<Arc<Outcome>>::decode(&serde_json::to_vec(&forged).unwrap()).is_none());
}
