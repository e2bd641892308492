//! The client API keys the proxy accepts (`--api-key`, `--api-keys-file`), kept as blake3 digests only; the
//! comparison of digests is constant-time. A rejected key is never echoed, logged or counted by value.

/// Digests of the accepted keys.
#[derive(Default)]
pub struct Keys(Vec<blake3::Hash>);

impl Keys {
    pub fn new(keys: &[String]) -> Self {
        Self(keys.iter().map(|k| blake3::hash(k.as_bytes())).collect())
    }

    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `presented` is one of the keys.
    pub fn accepts(&self, presented: &str) -> bool {
        let digest = blake3::hash(presented.as_bytes());
        // blake3::Hash's == is constant-time; check every key so timing does not reveal which matched.
        self.0.iter().fold(false, |found, k| found | (*k == digest))
    }
}
