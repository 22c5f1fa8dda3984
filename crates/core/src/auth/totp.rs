//! Two-factor sign-in: TOTP codes (RFC 6238: SHA-1, 6 digits, 30 s, the
//! codes every authenticator app makes) and one-time recovery codes.
//!
//! A code is accepted from the step before the current one to the step
//! after (a clock a little off), and each step once: the store keeps the
//! last step accepted. Recovery codes are kept as their SHA-256, like every
//! other secret a user holds.

use totp_rs::{Algorithm, Secret, Totp};

use super::token;

/// How many recovery codes a user gets.
pub const RECOVERY_CODES: usize = 10;

/// The issuer authenticator apps show beside the account.
pub const ISSUER: &str = "lookout";

/// A new TOTP secret: 20 random bytes (RFC 4226's length), base32.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 20];
    fill(&mut bytes);
    Secret::from(bytes.to_vec()).to_base32()
}

fn fill(bytes: &mut [u8]) {
    #[allow(
        clippy::expect_used,
        reason = "without the OS's random numbers no secret can be made; stopping is safer"
    )]
    getrandom::fill(bytes).expect("the OS random number generator is available");
}

fn totp(secret: &str, account: &str) -> Option<Totp> {
    let secret = Secret::try_from_base32(secret).ok()?;
    totp_rs::Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_issuer(Some(ISSUER))
        .with_account_name(account)
        .build()
        .ok()
}

/// The `otpauth://` URL an authenticator app reads from the QR code.
pub fn otpauth_url(secret: &str, account: &str) -> Option<String> {
    totp(secret, account)?.to_url().ok()
}

/// The time step `code` is good for at `unix_secs`, if it is good.
pub fn check(secret: &str, code: &str, unix_secs: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp(secret, "account")?.check(&code, unix_secs)
}

/// The code for `unix_secs` (what an authenticator app shows then).
pub fn code_at(secret: &str, unix_secs: u64) -> Option<String> {
    Some(totp(secret, "account")?.generate(unix_secs).to_string())
}

/// Fresh recovery codes, `xxxxx-xxxxx` in lowercase base32 (50 bits each).
pub fn new_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; 7];
            fill(&mut bytes);
            let text = Secret::from(bytes.to_vec())
                .to_base32()
                .to_ascii_lowercase();
            format!("{}-{}", &text[..5], &text[5..10])
        })
        .collect()
}

/// What is kept of a recovery code: its SHA-256, whatever its case and
/// dashes as typed.
pub fn recovery_hash(code: &str) -> String {
    let plain: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    token::hash(&plain)
}

/// Whether what was typed looks like a recovery code rather than a TOTP
/// code.
pub fn is_recovery_code(code: &str) -> bool {
    code.chars().filter(char::is_ascii_alphanumeric).count() == 10
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238's test vectors for SHA-1 (the secret "12345678901234567890",
    /// 8 digits there; the last six are the 6-digit code).
    #[test]
    fn codes_match_rfc_6238() {
        let secret = Secret::from(b"12345678901234567890".to_vec()).to_base32();
        for (at, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            assert_eq!(code_at(&secret, at).unwrap(), &eight[2..], "at {at}");
        }
    }

    #[test]
    fn a_code_is_good_for_the_steps_around_its_own_and_no_further() {
        let secret = new_secret();
        let now = 1_800_000_000;
        let code = code_at(&secret, now).unwrap();
        assert_eq!(check(&secret, &code, now), Some(now / 30));
        assert_eq!(check(&secret, &code, now + 30), Some(now / 30));
        assert_eq!(check(&secret, &code, now - 30), Some(now / 30));
        assert_eq!(check(&secret, &code, now + 90), None);
        assert_eq!(check(&secret, &format!(" {} ", &code), now), Some(now / 30));
        for bad in ["", "12345", "1234567", "abcdef", "12 34 5x"] {
            assert_eq!(check(&secret, bad, now), None, "{bad:?}");
        }
        assert_eq!(check("not base32!", &code, now), None);
    }

    #[test]
    fn recovery_codes_are_distinct_and_hash_as_typed() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let distinct: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), RECOVERY_CODES);
        let code = &codes[0];
        assert!(is_recovery_code(code) && !is_recovery_code("123456"));
        assert_eq!(recovery_hash(code), recovery_hash(&code.to_uppercase()));
        assert_eq!(recovery_hash(code), recovery_hash(&code.replace('-', "")));
        assert_ne!(recovery_hash(code), recovery_hash(&codes[1]));
    }

    #[test]
    fn the_url_names_the_issuer_and_the_account() {
        let url = otpauth_url(&new_secret(), "alice").unwrap();
        assert!(url.starts_with("otpauth://totp/lookout:alice?"), "{url}");
        assert!(url.contains("issuer=lookout"), "{url}");
    }
}
