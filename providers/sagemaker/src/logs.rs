//! What SageMaker's containers wrote, read back from CloudWatch Logs, bounded.
//!
//! SageMaker writes a training job's output to the log group `/aws/sagemaker/TrainingJobs`,
//! one stream per instance (`<job>/algo-1-<epoch>`, `<job>/algo-2-<epoch>`, ...); a
//! processing job's to `/aws/sagemaker/ProcessingJobs` the same way; an endpoint's to
//! `/aws/sagemaker/Endpoints/<name>`, one stream per variant and instance
//! (`<variant>/<instance-id>`). [`read`] reads every stream of one [`LogSource`] and merges
//! them in time order, each line prefixed with its instance when there is more than one.
//!
//! # Guarantees
//! - Bounded: at most [`Bound::lines`] lines and [`Bound::bytes`] bytes are kept (the last
//!   ones), each line cut at [`MAX_LINE`] bytes; what was left out is counted and said.
//! - Lines are shown as the container wrote them (cut, never rewritten). mlctl never passes
//!   its credentials to a container, so they cannot be in a job's log.
//! - Each stream is read forward with the SDK paginator, which stops when GetLogEvents
//!   repeats its `nextForwardToken` (the end of the stream); at most [`MAX_PAGES`] pages and
//!   [`MAX_STREAMS`] streams are read, and a log cut there says so. An endpoint's group keeps
//!   every instance it ever ran, so of it only the ends of the [`ENDPOINT_STREAMS`] streams
//!   written last are read (one GetLogEvents each).
//!
//! # Caveats
//! A job that never started a container (a bad role, an unknown image) has no log: [`read`]
//! returns `None`, and [`failure_context`] says where it looked.

use crate::aws::Aws;
use crate::error::aws_err;
use mlctl_core::ErrorKind;
use mlctl_core::error::Result;
use std::collections::VecDeque;

/// The log group of training jobs.
pub(crate) const TRAINING_GROUP: &str = "/aws/sagemaker/TrainingJobs";
/// The log group of processing jobs.
pub(crate) const PROCESSING_GROUP: &str = "/aws/sagemaker/ProcessingJobs";
/// A line longer than this (bytes) is cut, with a mark.
pub(crate) const MAX_LINE: usize = 4096;
/// Pages read per stream (GetLogEvents returns up to 10,000 events or 1 MB per page).
pub(crate) const MAX_PAGES: usize = 500;
/// Streams read per source.
pub(crate) const MAX_STREAMS: usize = 100;
/// The streams of an endpoint read (those written last), and only their ends.
const ENDPOINT_STREAMS: i32 = 10;

/// Whose log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogSource<'a> {
    /// A training job (also a tuning trial, which is one), by its SageMaker name.
    TrainingJob(&'a str),
    /// A processing job, by its SageMaker name.
    #[allow(dead_code)] // Read by the processing jobs that run transforms.
    ProcessingJob(&'a str),
    /// An endpoint, by its SageMaker name: the ends of the streams written last.
    Endpoint(&'a str),
}

impl LogSource<'_> {
    /// The log group.
    pub(crate) fn group(&self) -> String {
        match self {
            LogSource::TrainingJob(_) => TRAINING_GROUP.to_string(),
            LogSource::ProcessingJob(_) => PROCESSING_GROUP.to_string(),
            LogSource::Endpoint(name) => format!("/aws/sagemaker/Endpoints/{name}"),
        }
    }

    /// What the source's stream names start with (empty: every stream of the group).
    pub(crate) fn stream_prefix(&self) -> String {
        match self {
            // The slash keeps `job-r2/...` out of `job`'s log.
            LogSource::TrainingJob(name) | LogSource::ProcessingJob(name) => format!("{name}/"),
            LogSource::Endpoint(_) => String::new(),
        }
    }

    /// Why a source may have no log at all.
    pub(crate) fn why_none(&self) -> &'static str {
        match self {
            LogSource::Endpoint(_) => "an endpoint whose containers never started writes none",
            _ => "a job that never started its container writes none",
        }
    }

    /// Where it is, in the words of the CloudWatch console.
    pub(crate) fn location(&self) -> String {
        let prefix = self.stream_prefix();
        if prefix.is_empty() {
            format!("CloudWatch Logs group {}", self.group())
        } else {
            format!("CloudWatch Logs group {}, streams {prefix}*", self.group())
        }
    }
}

/// How much of a log is kept: the last `lines` lines, at most `bytes` bytes of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bound {
    pub lines: usize,
    pub bytes: usize,
}

/// What `mlctl runs logs` shows: the last 10,000 lines, at most 1 MiB.
pub(crate) const WHOLE: Bound = Bound {
    lines: 10_000,
    bytes: 1 << 20,
};

/// What a failure message carries: the last 20 lines, at most 8 KiB.
pub(crate) const FAILURE_TAIL: Bound = Bound {
    lines: 20,
    bytes: 8 << 10,
};

/// The end of a log, and how much came before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogTail {
    /// Where it was read.
    pub location: String,
    /// The streams read, in name order.
    pub streams: Vec<String>,
    /// The lines kept, oldest first, instance-prefixed when there is more than one stream.
    pub lines: Vec<String>,
    /// Lines and bytes read but not kept (earlier than [`LogTail::lines`]).
    pub cut_lines: usize,
    pub cut_bytes: usize,
    /// Whether a stream or page cap stopped the reading before the end (then the counts
    /// are lower bounds, and the lines are the end of what was read).
    pub incomplete: bool,
}

impl LogTail {
    /// What was left out, in one sentence (`None` when nothing was).
    pub(crate) fn cut_note(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.cut_lines > 0 {
            parts.push(format!(
                "{} earlier line{} ({}) not shown",
                self.cut_lines,
                if self.cut_lines == 1 { "" } else { "s" },
                human_bytes(self.cut_bytes)
            ));
        }
        if self.incomplete {
            parts.push(format!(
                "the log was read only in part (at most {MAX_STREAMS} streams of {MAX_PAGES} pages)"
            ));
        }
        (!parts.is_empty()).then(|| {
            format!(
                "{}; the whole log is in {}",
                parts.join("; "),
                self.location
            )
        })
    }

    /// The log as text: the cut note (if any) in brackets, then the lines.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        if let Some(note) = self.cut_note() {
            out.push_str(&format!("[... {note}]\n"));
        }
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

fn human_bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} bytes"),
    }
}

/// One line read, with where and when it was written.
struct Line {
    timestamp: i64,
    stream: usize,
    seq: usize,
    text: String,
}

/// The last `bound` of what was read, and the counts of the rest.
#[derive(Default)]
struct Ring {
    lines: VecDeque<Line>,
    bytes: usize,
    cut_lines: usize,
    cut_bytes: usize,
}

impl Ring {
    fn push(&mut self, line: Line, bound: Bound) {
        self.bytes += line.text.len();
        self.lines.push_back(line);
        while self.lines.len() > bound.lines || (self.bytes > bound.bytes && self.lines.len() > 1) {
            let Some(old) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= old.text.len();
            self.cut_lines += 1;
            self.cut_bytes += old.text.len();
        }
    }
}

/// A line cut to [`MAX_LINE`] bytes (at a character boundary), with a mark when cut.
fn cut_line(s: &str) -> String {
    if s.len() <= MAX_LINE {
        return s.to_string();
    }
    let mut end = MAX_LINE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [line cut at {MAX_LINE} bytes]", &s[..end])
}

/// The instance a stream belongs to: `algo-1` for `<job>/algo-1-1700000000`, the variant
/// and instance for an endpoint's `AllTraffic/i-0abc`.
fn instance_label(stream: &str, prefix: &str) -> String {
    let rest = stream.strip_prefix(prefix).unwrap_or(stream);
    match rest.rsplit_once('-') {
        Some((head, epoch))
            if !head.is_empty()
                && epoch.len() >= 9
                && epoch.bytes().all(|b| b.is_ascii_digit()) =>
        {
            head.to_string()
        }
        _ => rest.to_string(),
    }
}

/// Reads the log of `source`: every stream, merged in time order, the last `bound` of it.
/// `None` when there is no log group or no stream of the source (its container never ran
/// or wrote nothing).
///
/// # Errors
/// What CloudWatch Logs answers other than "not found" (access denied, throttling after
/// the SDK's retries).
pub(crate) async fn read(
    aws: &Aws,
    source: LogSource<'_>,
    bound: Bound,
) -> Result<Option<LogTail>> {
    let group = source.group();
    let prefix = source.stream_prefix();
    // An endpoint's group keeps every instance it ever had: only the streams written last
    // are read, and only their ends (one call each).
    let end_only = matches!(source, LogSource::Endpoint(_));
    let listed = if end_only {
        aws.logs
            .describe_log_streams()
            .log_group_name(&group)
            .order_by(aws_sdk_cloudwatchlogs::types::OrderBy::LastEventTime)
            .descending(true)
            .limit(ENDPOINT_STREAMS)
            .send()
            .await
            .map(|out| out.log_streams().to_vec())
            .map_err(|e| aws_err("DescribeLogStreams", e))
    } else {
        let mut request = aws.logs.describe_log_streams().log_group_name(&group);
        if !prefix.is_empty() {
            request = request.log_stream_name_prefix(&prefix);
        }
        request
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| aws_err("DescribeLogStreams", e))
    };
    let mut streams: Vec<String> = match listed {
        Ok(s) => s
            .iter()
            .filter_map(|s| s.log_stream_name().map(str::to_string))
            .collect(),
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if streams.is_empty() {
        return Ok(None);
    }
    streams.sort();
    let mut incomplete = false;
    if streams.len() > MAX_STREAMS {
        streams.truncate(MAX_STREAMS);
        incomplete = true;
    }

    let mut ring = Ring::default();
    let mut seq = 0usize;
    for (i, stream) in streams.iter().enumerate() {
        let mut request = aws
            .logs
            .get_log_events()
            .log_group_name(&group)
            .log_stream_name(stream);
        request = if end_only {
            incomplete = true;
            request
                .start_from_head(false)
                .limit(bound.lines.min(10_000) as i32)
        } else {
            request.start_from_head(true)
        };
        let mut pages = request.into_paginator().send();
        let mut read_pages = 0;
        let mut stream_ring = Ring::default();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                // Deleted between the listing and the read (retention): nothing more there.
                Err(e) if crate::error::is_not_found(&e) => break,
                Err(e) => return Err(aws_err("GetLogEvents", e)),
            };
            for event in page.events() {
                let text = event.message().unwrap_or_default();
                let text = text.strip_suffix('\n').unwrap_or(text);
                for line in text.split('\n') {
                    seq += 1;
                    stream_ring.push(
                        Line {
                            timestamp: event.timestamp().unwrap_or(0),
                            stream: i,
                            seq,
                            text: cut_line(line.strip_suffix('\r').unwrap_or(line)),
                        },
                        bound,
                    );
                }
            }
            read_pages += 1;
            if end_only {
                break;
            }
            if read_pages >= MAX_PAGES {
                incomplete = true;
                break;
            }
        }
        // Each stream kept at most `bound`; the merge keeps `bound` of them all.
        ring.cut_lines += stream_ring.cut_lines;
        ring.cut_bytes += stream_ring.cut_bytes;
        ring.lines.extend(stream_ring.lines);
    }
    let mut all: Vec<Line> = ring.lines.into_iter().collect();
    all.sort_by_key(|l| (l.timestamp, l.stream, l.seq));
    let mut merged = Ring {
        cut_lines: ring.cut_lines,
        cut_bytes: ring.cut_bytes,
        ..Ring::default()
    };
    for line in all {
        merged.push(line, bound);
    }

    let labels: Vec<String> = streams.iter().map(|s| instance_label(s, &prefix)).collect();
    let unique = {
        let mut sorted = labels.clone();
        sorted.sort();
        sorted.dedup();
        sorted.len() == labels.len()
    };
    let lines = merged
        .lines
        .into_iter()
        .map(|l| {
            if streams.len() == 1 {
                l.text
            } else if unique {
                format!("[{}] {}", labels[l.stream], l.text)
            } else {
                let full = streams[l.stream]
                    .strip_prefix(&prefix)
                    .unwrap_or(&streams[l.stream]);
                format!("[{full}] {}", l.text)
            }
        })
        .collect();
    Ok(Some(LogTail {
        location: source.location(),
        streams,
        lines,
        cut_lines: merged.cut_lines,
        cut_bytes: merged.cut_bytes,
        incomplete,
    }))
}

/// What a failure message adds about the log of `source`: its last lines, or that none was
/// found and where mlctl looked, or why it could not be read. Never fails: the failure it
/// explains matters more than the log.
pub(crate) async fn failure_context(aws: &Aws, source: LogSource<'_>) -> String {
    match read(aws, source, FAILURE_TAIL).await {
        Ok(Some(tail)) if !tail.lines.is_empty() => {
            let n = tail.lines.len();
            let mut out = format!(
                "\nlast {n} line{} of its log ({}):",
                if n == 1 { "" } else { "s" },
                source.location()
            );
            for l in &tail.lines {
                out.push_str("\n  ");
                out.push_str(l);
            }
            out
        }
        Ok(_) => format!(
            "\nno log was found in {} ({})",
            source.location(),
            source.why_none()
        ),
        Err(e) => format!(
            "\nits log could not be read from {}: {e}",
            source.location()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_are_named_without_the_stream_epoch() {
        assert_eq!(instance_label("job/algo-1-1700000000", "job/"), "algo-1");
        assert_eq!(instance_label("job/algo-12-1700000000", "job/"), "algo-12");
        assert_eq!(
            instance_label("AllTraffic/i-0abc123def", ""),
            "AllTraffic/i-0abc123def"
        );
    }

    #[test]
    fn a_long_line_is_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_LINE);
        let cut = cut_line(&long);
        assert!(
            cut.ends_with(&format!("[line cut at {MAX_LINE} bytes]")),
            "{}",
            &cut[cut.len() - 40..]
        );
        assert!(cut.len() < MAX_LINE + 40);
        assert_eq!(cut_line("short"), "short");
    }

    #[test]
    fn the_ring_keeps_the_last_lines_within_both_bounds_and_counts_the_rest() {
        let bound = Bound {
            lines: 3,
            bytes: 10,
        };
        let mut ring = Ring::default();
        for (i, text) in ["aaaa", "bbbb", "cccc", "dddd", "ee"].iter().enumerate() {
            ring.push(
                Line {
                    timestamp: i as i64,
                    stream: 0,
                    seq: i,
                    text: text.to_string(),
                },
                bound,
            );
        }
        let kept: Vec<&str> = ring.lines.iter().map(|l| l.text.as_str()).collect();
        // 3 lines would be 10 bytes with "ee": cccc dddd ee.
        assert_eq!(kept, vec!["cccc", "dddd", "ee"]);
        assert_eq!((ring.cut_lines, ring.cut_bytes), (2, 8));
    }
}
