//! Third-party decoders that panic on some corrupt inputs (the `parquet` crate asserts on
//! some broken pages) must not take mlctl down: [`catch_quietly`] turns such a panic into an
//! error message, without the panic's own report on stderr.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs a guarded decoder: its panics are reported as errors.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

static HOOK: Once = Once::new();

/// Runs `f`; a panic inside it becomes `Err(its message)`, and prints nothing. Panics
/// elsewhere are reported as before (the hook in place at the first call is kept).
pub fn catch_quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info)
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown failure".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_and_a_result_passes_through() {
        assert_eq!(catch_quietly(|| 7), Ok(7));
        let e = catch_quietly(|| -> u8 { panic!("bad page {}", 3) }).unwrap_err();
        assert_eq!(e, "bad page 3");
        // The flag is cleared: the thread is not left quiet.
        assert!(!QUIET.with(Cell::get));
    }
}
