//! API keys, shared by the REST and gRPC transports. Keys are kept only as SHA-256 digests and
//! compared in constant time; neither keys nor presented tokens are ever logged.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The accepted keys.
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    /// Keys from configuration; an empty list disables authentication.
    pub fn new(keys: &[String]) -> Self {
        Self {
            digests: keys
                .iter()
                .map(|k| Sha256::digest(k.as_bytes()).into())
                .collect(),
        }
    }

    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        !self.digests.is_empty()
    }

    /// Whether `token` is one of the keys. Every key is compared, in constant time, so timing
    /// tells neither which key matched nor how much of one did.
    pub fn accepts(&self, token: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |acc, d| acc | d.ct_eq(&presented))
            .into()
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(value: &str) -> Option<&str> {
    value.strip_prefix("Bearer ").map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_configured_keys() {
        let keys = ApiKeys::new(&["k".repeat(20), "other-key-0123456789".into()]);
        assert!(keys.accepts(&"k".repeat(20)));
        assert!(keys.accepts("other-key-0123456789"));
        assert!(!keys.accepts(&"k".repeat(19)));
        assert!(!keys.accepts(""));
        assert!(!ApiKeys::new(&[]).enabled());
    }
}
