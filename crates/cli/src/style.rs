//! Terminal styling: colour only on a TTY, and never when NO_COLOR is set.

use std::io::IsTerminal;
use std::sync::OnceLock;

static COLOR: OnceLock<bool> = OnceLock::new();

/// Decides once whether stderr/stdout get colours.
pub fn init(force_off: bool) {
    let on = !force_off
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::stderr().is_terminal()
        && std::env::var("TERM").map(|t| t != "dumb").unwrap_or(true);
    let _ = COLOR.set(on);
}

fn paint(code: &str, s: &str) -> String {
    if *COLOR.get().unwrap_or(&false) {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// Red, bold.
pub fn red(s: &str) -> String {
    paint("1;31", s)
}
/// Green.
pub fn green(s: &str) -> String {
    paint("32", s)
}
/// Yellow.
pub fn yellow(s: &str) -> String {
    paint("33", s)
}
/// Bold.
pub fn bold(s: &str) -> String {
    paint("1", s)
}
/// Whether colours are on.
pub fn enabled() -> bool {
    *COLOR.get().unwrap_or(&false)
}
