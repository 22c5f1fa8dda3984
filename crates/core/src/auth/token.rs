//! Bearer secrets: random, prefixed by kind (so a leaked one is recognisable
//! and a scanner can find it), stored only as their SHA-256.

use sha2::{Digest as _, Sha256};

use crate::store::accounts::CredentialKind;

/// 32 random bytes from the OS, hex-encoded.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    #[allow(
        clippy::expect_used,
        reason = "without the OS's random numbers no secret can be made; stopping is safer"
    )]
    getrandom::fill(&mut bytes).expect("the OS random number generator is available");
    hex::encode(bytes)
}

/// A fresh token of `kind`, e.g. `lkp_3f9a…` for a personal API token.
pub fn generate(kind: CredentialKind) -> String {
    let prefix = match kind {
        CredentialKind::Session => "lks",
        CredentialKind::Access => "lka",
        CredentialKind::Refresh => "lkr",
        CredentialKind::Api => "lkp",
    };
    format!("{prefix}_{}", random_hex())
}

/// What the store keeps of a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares two secrets in time that does not depend on where they differ
/// (`subtle`, whose comparison the optimiser cannot cut short).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_prefixed_and_hashed() {
        let a = generate(CredentialKind::Api);
        let b = generate(CredentialKind::Api);
        assert_ne!(a, b);
        assert!(a.starts_with("lkp_") && a.len() == 4 + 64, "{a}");
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert!(!hash(&a).contains(&a[4..]));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
