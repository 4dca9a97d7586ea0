//! The text of a plan comment: its hidden marker, the plan (or why it failed), and the cut a
//! platform's size limit forces.

use mlctl_spec::suggest::thousands;

/// The hidden first line that finds a comment again: one comment per project and target, as
/// tfcmt's `<!-- github-comment: ... -->`. Names are written as they are, but for the
/// characters that could end the HTML comment or split the marker (`%XX`).
pub fn marker(project: &str, target: &str) -> String {
    format!(
        "<!-- mlctl:plan project={} target={} -->",
        escape(project),
        escape(target)
    )
}

fn escape(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@') {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// The body of a comment: the marker line, then `content`, cut at a line boundary when the
/// whole would pass `limit` characters (GitHub refuses a comment over 65,536), with a note
/// saying how much is left out and where the whole plan is. Never longer than `limit`.
pub fn compose(marker: &str, content: &str, limit: usize, target: &str) -> String {
    let whole = format!("{marker}\n{content}");
    if whole.chars().count() <= limit {
        return whole;
    }
    let total_lines = content.lines().count();
    let total_chars = content.chars().count();
    // Room for the marker, the note (its numbers at most 20 digits each) and a closing fence.
    let reserve = marker.chars().count() + 1 + note(target, usize::MAX, usize::MAX, 0).len() + 8;
    let budget = limit.saturating_sub(reserve);
    let mut kept = String::new();
    let (mut kept_chars, mut kept_lines) = (0, 0);
    for line in content.split_inclusive('\n') {
        let n = line.chars().count();
        if kept_chars + n > budget {
            break;
        }
        kept.push_str(line);
        kept_chars += n;
        kept_lines += 1;
    }
    if !kept.is_empty() && !kept.ends_with('\n') {
        kept.push('\n');
    }
    // A cut inside a code block would swallow the note: close it.
    if kept
        .lines()
        .filter(|l| l.trim_start().starts_with("```"))
        .count()
        % 2
        == 1
    {
        kept.push_str("```\n");
    }
    let mut out = format!("{marker}\n{kept}");
    out.push_str(&note(target, total_lines, total_chars, kept_lines));
    out
}

fn note(target: &str, total_lines: usize, total_chars: usize, kept_lines: usize) -> String {
    format!(
        "\n> **This plan is cut short:** it has {} lines ({} characters), more than a comment holds; the first {} are shown and {} left out. The whole plan is in the CI job's log, or run `mlctl plan --target {}`.\n",
        thousands(total_lines),
        thousands(total_chars),
        thousands(kept_lines),
        thousands(total_lines.saturating_sub(kept_lines)),
        escape(target)
    )
}

/// What a comment says when `mlctl plan` itself failed (the spec does not validate, the target
/// refuses a field, its state cannot be read): the error output in a code block, at most
/// `MAX_ERROR` bytes of it, so the pull request shows why without opening the log.
pub fn failure(project: &str, target: &str, commit: &str, code: i32, stderr: &str) -> String {
    const MAX_ERROR: usize = 20_000;
    let text = mlctl_spec::suggest::clip(stderr.trim_end(), MAX_ERROR);
    let fence = "`".repeat(longest_backtick_run(&text).max(2) + 1);
    format!(
        "### mlctl plan for `{project}` on target `{target}` failed\n\n`mlctl plan` exited with {code} at `{commit}`:\n\n{fence}text\n{text}\n{fence}\n\nFix it and push again: this comment is updated on every push.\n"
    )
}

fn longest_backtick_run(text: &str) -> usize {
    let (mut longest, mut run) = (0, 0);
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_names_project_and_target_and_cannot_end_the_html_comment() {
        assert_eq!(
            marker("iris", "staging"),
            "<!-- mlctl:plan project=iris target=staging -->"
        );
        assert_eq!(
            marker("a b", "x-->y"),
            "<!-- mlctl:plan project=a%20b target=x--%3Ey -->"
        );
    }

    #[test]
    fn a_body_within_the_limit_is_the_marker_and_the_plan() {
        let body = compose("<!-- m -->", "### plan\n\nNo changes.\n", 100, "t");
        assert_eq!(body, "<!-- m -->\n### plan\n\nNo changes.\n");
    }

    #[test]
    fn a_long_plan_is_cut_at_a_line_with_a_note_and_stays_within_the_limit() {
        let content: String = (0..10_000)
            .map(|i| format!("| `~` | `Dataset/d{i}` | update | x |\n"))
            .collect();
        let body = compose("<!-- m -->", &content, 65_536, "staging");
        assert!(body.chars().count() <= 65_536, "{}", body.chars().count());
        assert!(body.starts_with("<!-- m -->\n| `~` | `Dataset/d0` |"));
        let kept = body.lines().filter(|l| l.starts_with("| ")).count();
        assert!(kept > 1_000, "{kept}");
        assert!(
            body.contains(&format!(
                "it has 10,000 lines ({} characters), more than a comment holds; the first {} are shown and {} left out",
                thousands(content.chars().count()),
                thousands(kept),
                thousands(10_000 - kept)
            )),
            "{}",
            &body[body.len() - 400..]
        );
        assert!(body.ends_with("run `mlctl plan --target staging`.\n"));
    }

    #[test]
    fn a_cut_inside_a_code_block_closes_it_before_the_note() {
        let content = format!("```text\n{}```\n", "error line\n".repeat(1_000));
        let body = compose("<!-- m -->", &content, 2_000, "t");
        assert!(body.chars().count() <= 2_000);
        let fences = body.lines().filter(|l| l.starts_with("```")).count();
        assert_eq!(fences, 2, "{body}");
        assert!(
            body.contains("```\n\n> **This plan is cut short:**"),
            "{body}"
        );
    }

    #[test]
    fn a_failure_quotes_the_error_in_a_fence_longer_than_any_it_contains() {
        let body = failure("iris", "t", "abc1234", 1, "error: x ``` y\n");
        assert!(
            body.contains("\n````text\nerror: x ``` y\n````\n"),
            "{body}"
        );
        assert!(body.starts_with("### mlctl plan for `iris` on target `t` failed\n"));
    }
}
