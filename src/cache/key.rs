//! The cache key: blake3 over everything that decides a Best-of-N result (see the module above), objects hashed with
//! sorted keys so that field order does not split entries.

use serde_json::{Map, Value};

/// 32-byte blake3 digest identifying a cacheable request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

/// Bumped whenever what a cached value means changes.
const KEY_VERSION: &[u8] = b"bon-cache-v1\0";

impl CacheKey {
    /// Key of the request `parts` make up together (the forwarded body without per-candidate fields, and what else
    /// decides the result: the client's seed, the Best-of-N options; their keys are disjoint), hashed as one object
    /// without building it, for `n` candidates scored by `reward_model`, on behalf of `caller` (its bearer token,
    /// or None).
    pub fn new(parts: &[&Map<String, Value>], n: u32, reward_model: &str, caller: Option<&str>) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(KEY_VERSION);
        h.update(&n.to_le_bytes());
        h.update(reward_model.as_bytes());
        h.update(b"\0");
        match caller {
            // Only the digest of the credential is kept in memory, never the credential.
            Some(c) => h.update(b"caller\0").update(blake3::hash(c.as_bytes()).as_bytes()),
            None => h.update(b"anonymous\0"),
        };
        hash_object(&mut h, parts);
        Self(*h.finalize().as_bytes())
    }

    /// Lowercase hex of the digest (the shared tier's key).
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn hash_value(h: &mut blake3::Hasher, v: &Value) {
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => h.update(b"#").update(n.to_string().as_bytes()).update(b"\0"),
        Value::String(s) => h.update(b"s").update(&(s.len() as u64).to_le_bytes()).update(s.as_bytes()),
        Value::Array(items) => {
            h.update(b"[").update(&(items.len() as u64).to_le_bytes());
            for item in items {
                hash_value(h, item);
            }
            h.update(b"]")
        }
        Value::Object(map) => {
            hash_object(h, &[map]);
            h
        }
    };
}

/// One object made of `parts` (disjoint keys), sorted by key.
fn hash_object(h: &mut blake3::Hasher, parts: &[&Map<String, Value>]) {
    let mut entries: Vec<_> = parts.iter().flat_map(|map| map.iter()).collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    h.update(b"{").update(&(entries.len() as u64).to_le_bytes());
    for (k, v) in entries {
        h.update(&(k.len() as u64).to_le_bytes()).update(k.as_bytes());
        hash_value(h, v);
    }
    h.update(b"}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_request_in_parts_has_the_key_of_the_whole() {
        let whole = obj(json!({"model": "m", "messages": [], "seed": 7, "bon": {"guard": false}, "top_p": 0.5}));
        let body = obj(json!({"top_p": 0.5, "model": "m", "messages": []}));
        let extra = obj(json!({"bon": {"guard": false}, "seed": 7}));
        assert_eq!(CacheKey::new(&[&body, &extra], 4, "rm", None), CacheKey::new(&[&whole], 4, "rm", None));
        assert_ne!(CacheKey::new(&[&body], 4, "rm", None), CacheKey::new(&[&whole], 4, "rm", None));
    }

    #[test]
    fn key_ignores_field_order_but_not_content() {
        let a = obj(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.7}));
        let b = obj(json!({"temperature": 0.7, "messages": [{"content": "hi", "role": "user"}], "model": "m"}));
        let c = obj(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.8}));
        assert_eq!(CacheKey::new(&[&a], 4, "rm", None), CacheKey::new(&[&b], 4, "rm", None));
        assert_ne!(CacheKey::new(&[&a], 4, "rm", None), CacheKey::new(&[&c], 4, "rm", None));
        assert_ne!(CacheKey::new(&[&a], 4, "rm", None), CacheKey::new(&[&a], 5, "rm", None));
        assert_ne!(CacheKey::new(&[&a], 4, "rm", None), CacheKey::new(&[&a], 4, "other", None));
        assert_ne!(CacheKey::new(&[&a], 4, "rm", Some("key-a")), CacheKey::new(&[&a], 4, "rm", Some("key-b")));
        assert_ne!(CacheKey::new(&[&a], 4, "rm", Some("key-a")), CacheKey::new(&[&a], 4, "rm", None));
    }

    #[test]
    fn key_separates_ambiguous_concatenations() {
        let a = obj(json!({"messages": ["ab", "c"]}));
        let b = obj(json!({"messages": ["a", "bc"]}));
        assert_ne!(CacheKey::new(&[&a], 1, "rm", None), CacheKey::new(&[&b], 1, "rm", None));
    }
}
