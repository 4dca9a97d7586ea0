//! Apply progress: spinners on a terminal, plain timestamped lines otherwise.

use crate::style;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use mlctl_core::Action;
use mlctl_core::apply::{ApplyEvent, Outcome, Reporter};
use mlctl_spec::ResourceId;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shows apply events to a person (or a CI log).
pub struct Progress {
    multi: Option<MultiProgress>,
    bars: Mutex<BTreeMap<ResourceId, ProgressBar>>,
    /// Without a terminal: when each resource last printed a progress line, so a long bake
    /// or training job logs a line every few seconds rather than on every poll.
    last_line: Mutex<BTreeMap<ResourceId, Instant>>,
}

/// The least time between two progress lines of one resource in a log.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl Progress {
    /// Spinners when stderr is a terminal, lines otherwise.
    pub fn new() -> Self {
        let multi = std::io::stderr().is_terminal().then(MultiProgress::new);
        Progress {
            multi,
            bars: Mutex::new(BTreeMap::new()),
            last_line: Mutex::new(BTreeMap::new()),
        }
    }

    fn line(&self, s: String) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(s);
            }
            None => eprintln!("{s}"),
        }
    }
}

fn verb(a: Action) -> &'static str {
    match a {
        Action::Create => "creating",
        Action::Update => "updating",
        Action::Replace => "replacing",
        Action::Delete => "destroying",
        Action::NoOp => "checking",
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl Reporter for Progress {
    fn event(&self, event: ApplyEvent) {
        match event {
            ApplyEvent::Started { id, action } => match &self.multi {
                Some(m) => {
                    let bar = m.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {prefix}: {msg} [{elapsed}]")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(id.to_string());
                    bar.set_message(verb(action));
                    bar.enable_steady_tick(Duration::from_millis(120));
                    if let Ok(mut bars) = self.bars.lock() {
                        bars.insert(id, bar);
                    }
                }
                None => eprintln!("{id}: {}...", verb(action)),
            },
            ApplyEvent::Progress { id, message } => {
                let bar = self.bars.lock().ok().and_then(|b| b.get(&id).cloned());
                match bar {
                    Some(bar) => bar.set_message(message),
                    None => {
                        let now = Instant::now();
                        let due = self.last_line.lock().map(|mut last| match last.get(&id) {
                            Some(t) if now.duration_since(*t) < LOG_EVERY => false,
                            _ => {
                                last.insert(id.clone(), now);
                                true
                            }
                        });
                        if due.unwrap_or(true) {
                            self.line(format!("{id}: {message}"));
                        }
                    }
                }
            }
            ApplyEvent::Finished {
                id,
                outcome,
                elapsed,
            } => {
                if let Some(bar) = self.bars.lock().ok().and_then(|mut b| b.remove(&id)) {
                    bar.finish_and_clear();
                }
                let text = match outcome {
                    Outcome::NoOp => return,
                    Outcome::Applied(detail) => {
                        format!("{} {id}: {detail} [{}]", style::green("✓"), secs(elapsed))
                    }
                    Outcome::Failed(msg) => {
                        format!("{} {id}: {msg} [{}]", style::red("✗"), secs(elapsed))
                    }
                    Outcome::Skipped(why) => format!("{} {id}: {why}", style::yellow("-")),
                };
                self.line(text);
            }
        }
    }
}
