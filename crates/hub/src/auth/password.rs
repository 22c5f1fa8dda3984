//! Passwords: argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes, one
//! lane, the OWASP minimum), hashed off the async threads, a bounded number
//! at a time: each hash holds 19 MiB and a core, so a flood of sign-ins (each
//! within its per-address limit) must queue or be refused, not take the
//! machine's memory.

use std::sync::OnceLock;

use tokio::sync::Semaphore;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 1024;

/// Why a password is refused, for the field message.
pub fn check_policy(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(format!("must be at least {MIN_LEN} characters"));
    }
    if n > MAX_LEN {
        return Err(format!("must be at most {MAX_LEN} characters"));
    }
    Ok(())
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash a password: {e}"))
}

/// Too many passwords are being hashed at once: the request is refused
/// (503 with `Retry-After`) rather than queued without bound.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("too many sign-ins at once; try again in a second")]
pub struct Busy;

/// What one hash costs, with room: the 19 MiB argon2 block and the thread.
const HASH_COST_BYTES: u64 = 32 * 1024 * 1024;
/// Requests that may wait for a hash, per hash that may run.
const WAITING_PER_SLOT: usize = 4;

/// Hashing slots, and room for a few requests waiting for one.
struct Pool {
    running: Semaphore,
    admitted: Semaphore,
}

impl Pool {
    fn new(slots: usize) -> Self {
        Self {
            running: Semaphore::new(slots),
            admitted: Semaphore::new(slots * (1 + WAITING_PER_SLOT)),
        }
    }

    /// Runs `work` on a blocking thread once a slot is free; [`Busy`] at
    /// once when the slots and the queue behind them are full.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let _admitted = self.admitted.try_acquire().map_err(|_| Busy)?;
        let _running = self.running.acquire().await.map_err(|_| Busy)?;
        tokio::task::spawn_blocking(work).await.map_err(|_| Busy)
    }
}

/// How many hashes run at once: one core fewer than the machine has (the
/// rest of the hub keeps one), at least one, and no more than a quarter of
/// the available memory holds.
pub fn concurrency() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let by_memory = available_memory().map_or(usize::MAX, |bytes| {
        usize::try_from(bytes / 4 / HASH_COST_BYTES).unwrap_or(usize::MAX)
    });
    cores.saturating_sub(1).min(by_memory).max(1)
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool::new(concurrency()))
}

/// The PHC string of `password`; [`Busy`] (inside the error) when too many
/// hashes are under way.
pub async fn hash(password: String) -> anyhow::Result<String> {
    pool().run(move || hash_blocking(&password)).await?
}

/// A hash nobody's password matches, checked when the account does not exist
/// so that a wrong username costs the same time as a wrong password.
fn decoy() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        hash_blocking(&crate::auth::token::random_hex()).unwrap_or_else(|_| String::new())
    })
}

/// Whether `password` matches `stored` (a PHC string); `None` checks a decoy
/// and answers false. [`Busy`] when too many hashes are under way.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, Busy> {
    pool().run(move || verify_blocking(&password, stored)).await
}

fn verify_blocking(password: &str, stored: Option<String>) -> bool {
    let real = stored.is_some();
    let stored = stored.unwrap_or_else(|| decoy().to_owned());
    let Ok(parsed) = PasswordHash::new(&stored) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
        && real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_salted_and_verify() {
        let a = hash("correct horse".into()).await.unwrap();
        let b = hash("correct horse".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(!a.contains("correct horse"));
        assert!(verify("correct horse".into(), Some(a.clone()))
            .await
            .unwrap());
        assert!(!verify("correct horsf".into(), Some(a)).await.unwrap());
        assert!(!verify("anything".into(), None).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_is_bounded_not_queued_forever() {
        assert!(concurrency() >= 1);
        // Far more at once than the slots and their queue: the rest are
        // refused at once instead of each holding a hash's memory.
        let pool = Pool::new(1);
        let stored = hash_blocking("correct horse").unwrap();
        let tries = (0..(1 + WAITING_PER_SLOT) + 20).map(|_| {
            let stored = stored.clone();
            pool.run(move || verify_blocking("wrong horse", Some(stored)))
        });
        let outcomes = futures::future::join_all(tries).await;
        let busy = outcomes.iter().filter(|o| o.is_err()).count();
        assert_eq!(busy, 20, "refused of {}", outcomes.len());
        assert!(outcomes.iter().all(|o| matches!(o, Ok(false) | Err(Busy))));
        // Once the flood is over, a sign-in goes through again.
        let ok = pool.run(move || verify_blocking("correct horse", Some(stored)));
        assert!(ok.await.unwrap());
    }

    #[test]
    fn policy() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("long enough").is_ok());
        assert!(check_policy(&"x".repeat(MAX_LEN + 1)).is_err());
    }
}
