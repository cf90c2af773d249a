//! Panics as findings: caught, quiet, and remembered with their location.
//!
//! Input: code that may panic. Output: its result, or the panic's message
//! and source location. A quiet panic hook records the last panic (the
//! payload alone has no location) instead of printing it; the compiler's own
//! guard turns a back-end panic into an E0900 diagnostic that says only "the
//! pass panicked", and [`last_panic`] supplies what it was.
//! Invariant: the hook is process-wide; [`quietly`] restores the previous
//! hook, so a test that fails afterwards still prints its message.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;

static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Installs the quiet, recording hook for the rest of the process (workers).
pub fn install_quiet_hook() {
    panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let message = payload_text(info.payload());
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(format!("{message}{location}"));
        }
    }));
}

/// Runs `f` with the quiet hook, then puts the previous hook back.
pub fn quietly<T>(f: impl FnOnce() -> T) -> T {
    let previous = panic::take_hook();
    install_quiet_hook();
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    panic::set_hook(previous);
    result.unwrap_or_else(|p| panic::resume_unwind(p))
}

/// Forgets the last panic (call before a case).
pub fn clear() {
    if let Ok(mut last) = LAST_PANIC.lock() {
        *last = None;
    }
}

/// The last panic recorded since [`clear`], with its location.
pub fn last_panic() -> Option<String> {
    LAST_PANIC.lock().ok().and_then(|last| last.clone())
}

/// Runs `f`; a panic becomes `Err(message at location)`.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| last_panic().unwrap_or_else(|| payload_text(&*payload)))
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}
