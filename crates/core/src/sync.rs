//! Locks that outlive a panic. A thread that panics while holding a
//! `std::sync::Mutex` poisons it; the hub's locks guard maps and counters
//! that stay whole between statements, so the next holder takes the lock
//! over instead of panicking in turn.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// `mutex`, locked, poisoned or not.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
