//! Passwords: argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes, one
//! lane, the OWASP minimum), hashed off the async threads, a bounded number
//! at a time: each hash holds 19 MiB and a core, so a flood of sign-ins (each
//! within its per-address limit) must queue or be refused, not take the
//! machine's memory. Each slot keeps its 19 MiB for good and every hash in
//! that slot reuses it: allocated per hash, the blocks would be kept by the
//! allocator of whichever thread ran it, one 19 MiB heap per thread.

use crate::sync::lock;
use std::sync::{Mutex, OnceLock};

use tokio::sync::Semaphore;

use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 1024;

/// Why a password is refused, for the field message.
pub fn check_policy(password: &str) -> Result<(), lookout_proto::error::Invalid> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(format!("must be at least {MIN_LEN} characters").into());
    }
    if n > MAX_LEN {
        return Err(format!("must be at most {MAX_LEN} characters").into());
    }
    Ok(())
}

/// The most memory a stored hash may ask for (four times the default): a
/// hash imported from elsewhere cannot make one check take the machine.
const MAX_M_COST: u32 = 4 * Params::DEFAULT_M_COST;

/// Runs argon2 with `blocks` as its memory, grown to what `params` need.
fn argon2_into(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    blocks: &mut Vec<Block>,
) -> Result<(), argon2::Error> {
    let needed = params.block_count();
    if blocks.len() < needed {
        blocks.resize(needed, Block::default());
    }
    Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password,
        salt,
        out,
        &mut blocks[..needed],
    )
}

fn hash_blocking(password: &str, blocks: &mut Vec<Block>) -> anyhow::Result<String> {
    let failed = |e: &dyn std::fmt::Display| anyhow::anyhow!("cannot hash a password: {e}");
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_bytes)
        .map_err(|e| failed(&e))?;
    let params = Params::default();
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        argon2_into(
            Algorithm::Argon2id,
            Version::V0x13,
            params.clone(),
            password.as_bytes(),
            salt_bytes,
            out,
            blocks,
        )
        .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
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

/// Hashing slots, each with its argon2 memory, and room for a few requests
/// waiting for one.
struct Pool {
    running: Semaphore,
    admitted: Semaphore,
    /// One argon2 memory per slot, allocated by the first hash in it.
    memory: Mutex<Vec<Vec<Block>>>,
}

impl Pool {
    fn new(slots: usize) -> Self {
        Self {
            running: Semaphore::new(slots),
            admitted: Semaphore::new(slots * (1 + WAITING_PER_SLOT)),
            memory: Mutex::new((0..slots).map(|_| Vec::new()).collect()),
        }
    }

    /// Runs `work` with a slot's memory on a blocking thread once a slot is
    /// free; [`Busy`] at once when the slots and the queue behind them are full.
    async fn run<T: Send + 'static>(
        &'static self,
        work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let _admitted = self.admitted.try_acquire().map_err(|_| Busy)?;
        let _running = self.running.acquire().await.map_err(|_| Busy)?;
        // A slot is ours, so a memory is free.
        let mut blocks = lock(&self.memory).pop().unwrap_or_default();
        let (out, blocks) = tokio::task::spawn_blocking(move || {
            let out = work(&mut blocks);
            (out, blocks)
        })
        .await
        .map_err(|_| Busy)?;
        lock(&self.memory).push(blocks);
        Ok(out)
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
    pool()
        .run(move |blocks| hash_blocking(&password, blocks))
        .await?
}

/// A hash nobody's password matches, checked when the account does not exist
/// so that a wrong username costs the same time as a wrong password.
fn decoy() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        hash_blocking(&crate::auth::token::random_hex(), &mut Vec::new())
            .unwrap_or_else(|_| String::new())
    })
}

/// Whether `password` matches `stored` (a PHC string); `None` checks a decoy
/// and answers false. [`Busy`] when too many hashes are under way.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, Busy> {
    pool()
        .run(move |blocks| verify_blocking(&password, stored, blocks))
        .await
}

fn verify_blocking(password: &str, stored: Option<String>, blocks: &mut Vec<Block>) -> bool {
    let real = stored.is_some();
    let stored = stored.unwrap_or_else(|| decoy().to_owned());
    matches_hash(password, &stored, blocks) && real
}

/// Whether `password` hashes to the PHC string `stored`, with its parameters.
fn matches_hash(password: &str, stored: &str, blocks: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    if params.m_cost() > MAX_M_COST {
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    Output::init_with(expected.len(), |out| {
        argon2_into(
            algorithm,
            version,
            params,
            password.as_bytes(),
            salt_bytes,
            out,
            blocks,
        )
        .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    // `Output`'s comparison takes the same time wherever the bytes differ.
    .is_ok_and(|computed| computed == expected)
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
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(1)));
        let stored = hash_blocking("correct horse", &mut Vec::new()).unwrap();
        let tries = (0..(1 + WAITING_PER_SLOT) + 20).map(|_| {
            let stored = stored.clone();
            pool.run(move |blocks| verify_blocking("wrong horse", Some(stored), blocks))
        });
        let outcomes = futures::future::join_all(tries).await;
        let busy = outcomes.iter().filter(|o| o.is_err()).count();
        assert_eq!(busy, 20, "refused of {}", outcomes.len());
        assert!(outcomes.iter().all(|o| matches!(o, Ok(false) | Err(Busy))));
        // Once the flood is over, a sign-in goes through again.
        let ok = pool.run(move |blocks| verify_blocking("correct horse", Some(stored), blocks));
        assert!(ok.await.unwrap());
        // One memory per slot, kept: 19 MiB, whoever ran the hashes.
        let kept = pool.memory.lock().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].len(), Params::default().block_count());
    }

    #[test]
    fn hashes_from_the_argon2_crate_verify_and_so_do_ours_there() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        // Accounts made before the hashing kept its memory still sign in.
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        let mut blocks = Vec::new();
        assert!(matches_hash("correct horse", &theirs, &mut blocks));
        assert!(!matches_hash("correct horsf", &theirs, &mut blocks));
        let ours = hash_blocking("correct horse", &mut blocks).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &PasswordHash::new(&ours).unwrap())
            .is_ok());
        // A stored hash that asks for a gigabyte is not a match, not a crash.
        let greedy = theirs.replace("m=19456", "m=1048576");
        assert!(!matches_hash("correct horse", &greedy, &mut blocks));
        assert!(blocks.len() <= Params::default().block_count());
    }

    #[test]
    fn policy() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("long enough").is_ok());
        assert!(check_policy(&"x".repeat(MAX_LEN + 1)).is_err());
    }
}
