//! How the process uses glibc's malloc: the one place the workspace allows
//! `unsafe`, for two calls into the C library that have no safe wrapper.
#![allow(unsafe_code)]

/// Caps glibc's malloc at one arena per core (at least two), unless
/// `MALLOC_ARENA_MAX` says otherwise. By default glibc gives each thread
/// that allocates an arena of its own, up to eight per core; the hub's
/// threads (the runtime's workers, one per SQLite connection, blocking
/// work) then each keep their own free memory, about 1 MiB of the hub's
/// anonymous memory with 1,000 services (docs/benchmarks.md).
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets a limit glibc reads when a thread first
        // allocates; it is called before this process starts a thread, and
        // a refused value (0 returned) leaves glibc's default.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// Every ten seconds, hands the pages malloc holds free back to the
/// system, as jemalloc's decay does on its own: glibc returns only the top
/// of its heaps, so what a burst of requests allocated and freed in the
/// middle stays counted in the hub's memory until reused (about 0.7 MiB
/// after the list of 1,000 services was served under load,
/// docs/benchmarks.md). A call took 30–240 µs there; each is logged at debug
/// level with its time.
pub async fn return_freed_memory() {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let started = std::time::Instant::now();
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free pages under malloc's own
        // locks; it is safe to call from any thread at any time.
        let released = unsafe { libc::malloc_trim(0) } == 1;
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        let released = false;
        tracing::debug!(
            released,
            took_us = started.elapsed().as_micros(),
            "returned malloc's free pages"
        );
    }
}
