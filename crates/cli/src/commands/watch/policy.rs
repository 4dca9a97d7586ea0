//! When the next cycle runs, and the webhook's signature checks: pure functions, unit-tested.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::time::Duration;

/// The first retry after a failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// The longest wait between retries.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// The wait before the next cycle: `interval` with ±10 % jitter when the last cycle went
/// well; after `failures` failures in a row, exponential backoff from [`BACKOFF_BASE`] up to
/// [`BACKOFF_CAP`] (with the same jitter), never shorter than [`BACKOFF_BASE`], so a failing
/// apply is never retried in a tight loop whatever the interval. `unit` in [0, 1) is the
/// random draw.
pub fn next_wait(interval: Duration, failures: u32, unit: f64) -> Duration {
    let base = if failures == 0 {
        interval
    } else {
        let exp = BACKOFF_BASE.saturating_mul(1u32 << (failures - 1).min(20));
        exp.min(BACKOFF_CAP)
    };
    let jitter = 0.9 + 0.2 * unit.clamp(0.0, 1.0);
    let wait = base.mul_f64(jitter);
    if failures > 0 {
        wait.max(BACKOFF_BASE)
    } else {
        wait
    }
}

/// A small xorshift generator for jitter (no dependency, seeded from time and pid).
pub struct Jitter(u64);

impl Jitter {
    /// Seeded from the clock and the process id.
    pub fn new() -> Jitter {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Jitter(t ^ (u64::from(std::process::id()) << 32) | 1)
    }

    /// A draw in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Who sent a push event, as its headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// `X-GitHub-Event` (`X-Hub-Signature-256: sha256=<hex HMAC of the body>`).
    GitHub,
    /// `X-Gitlab-Event` (`X-Gitlab-Token: <the secret>`).
    GitLab,
}

/// Why a webhook call is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Neither a GitHub nor a GitLab event.
    UnknownSender,
    /// No signature or token header.
    Unsigned,
    /// The signature or token does not match the secret.
    BadSignature,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::UnknownSender => {
                "not a GitHub or GitLab event (no X-GitHub-Event or X-Gitlab-Event header)"
            }
            Refusal::Unsigned => {
                "unsigned (no X-Hub-Signature-256 or X-Gitlab-Token header); set the webhook's secret to the agent's --webhook-secret"
            }
            Refusal::BadSignature => {
                "the signature does not match the agent's --webhook-secret"
            }
        })
    }
}

/// Checks a webhook call: `header` looks a header up by lower-case name. Returns the sender
/// and whether it is a push (other events, such as GitHub's `ping`, are accepted and ignored).
///
/// # Guarantees
/// Both comparisons take the same time whatever matches (HMAC `verify_slice`, and a
/// constant-time comparison of the GitLab token).
pub fn check<'h>(
    header: impl Fn(&str) -> Option<&'h str>,
    body: &[u8],
    secret: &[u8],
) -> Result<(Sender, bool), Refusal> {
    if let Some(event) = header("x-github-event") {
        let Some(sig) = header("x-hub-signature-256") else {
            return Err(Refusal::Unsigned);
        };
        let hex = sig
            .trim()
            .strip_prefix("sha256=")
            .ok_or(Refusal::BadSignature)?;
        let given = decode_hex(hex).ok_or(Refusal::BadSignature)?;
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(|_| Refusal::BadSignature)?;
        mac.update(body);
        mac.verify_slice(&given)
            .map_err(|_| Refusal::BadSignature)?;
        return Ok((Sender::GitHub, event.trim() == "push"));
    }
    if let Some(event) = header("x-gitlab-event") {
        let Some(token) = header("x-gitlab-token") else {
            return Err(Refusal::Unsigned);
        };
        if !constant_time_eq(token.as_bytes(), secret) {
            return Err(Refusal::BadSignature);
        }
        return Ok((Sender::GitLab, event.trim() == "Push Hook"));
    }
    Err(Refusal::UnknownSender)
}

/// The branch a push payload names (`ref: refs/heads/<branch>`, both GitHub's and GitLab's).
pub fn pushed_branch(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("ref")?
        .as_str()?
        .strip_prefix("refs/heads/")
        .map(str::to_string)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Hash both first, so the comparison also takes the same time whatever the lengths.
    let (a, b) = (blake3::hash(a), blake3::hash(b));
    a == b // blake3::Hash's PartialEq is constant-time
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github_signature(secret: &[u8], body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap();
        mac.update(body);
        let bytes = mac.finalize().into_bytes();
        format!(
            "sha256={}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    #[test]
    fn a_github_push_signed_with_the_secret_is_accepted() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let sig = github_signature(b"s3cret", body);
        let h = [
            ("x-github-event", "push"),
            ("x-hub-signature-256", sig.as_str()),
        ];
        assert_eq!(
            check(headers(&h), body, b"s3cret"),
            Ok((Sender::GitHub, true))
        );
        assert_eq!(pushed_branch(body).as_deref(), Some("main"));
    }

    #[test]
    fn a_github_call_signed_with_another_secret_or_body_is_refused() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let sig = github_signature(b"other", body);
        let h = [
            ("x-github-event", "push"),
            ("x-hub-signature-256", sig.as_str()),
        ];
        assert_eq!(
            check(headers(&h), body, b"s3cret"),
            Err(Refusal::BadSignature)
        );
        let sig = github_signature(b"s3cret", b"{}");
        let h = [
            ("x-github-event", "push"),
            ("x-hub-signature-256", sig.as_str()),
        ];
        assert_eq!(
            check(headers(&h), body, b"s3cret"),
            Err(Refusal::BadSignature)
        );
        let h = [
            ("x-github-event", "push"),
            ("x-hub-signature-256", "sha256=zz"),
        ];
        assert_eq!(
            check(headers(&h), body, b"s3cret"),
            Err(Refusal::BadSignature)
        );
        let h = [("x-github-event", "push")];
        assert_eq!(check(headers(&h), body, b"s3cret"), Err(Refusal::Unsigned));
    }

    #[test]
    fn a_github_ping_is_accepted_but_is_not_a_push() {
        let sig = github_signature(b"k", b"{}");
        let h = [
            ("x-github-event", "ping"),
            ("x-hub-signature-256", sig.as_str()),
        ];
        assert_eq!(check(headers(&h), b"{}", b"k"), Ok((Sender::GitHub, false)));
    }

    #[test]
    fn a_gitlab_push_needs_the_token() {
        let h = [
            ("x-gitlab-event", "Push Hook"),
            ("x-gitlab-token", "s3cret"),
        ];
        assert_eq!(
            check(headers(&h), b"{}", b"s3cret"),
            Ok((Sender::GitLab, true))
        );
        let h = [("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "s3cre")];
        assert_eq!(
            check(headers(&h), b"{}", b"s3cret"),
            Err(Refusal::BadSignature)
        );
        let h = [("x-gitlab-event", "Push Hook")];
        assert_eq!(check(headers(&h), b"{}", b"s3cret"), Err(Refusal::Unsigned));
        assert_eq!(
            check(headers(&[]), b"{}", b"s3cret"),
            Err(Refusal::UnknownSender)
        );
    }

    #[test]
    fn cycles_follow_the_interval_with_jitter() {
        let i = Duration::from_secs(60);
        assert_eq!(next_wait(i, 0, 0.0), Duration::from_secs(54));
        assert_eq!(next_wait(i, 0, 0.5), Duration::from_secs(60));
        assert!(next_wait(i, 0, 0.999) < Duration::from_secs(66));
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap_and_never_spin() {
        let i = Duration::from_millis(100);
        let waits: Vec<u64> = (1..=10).map(|n| next_wait(i, n, 0.5).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(next_wait(i, 1, 0.0), BACKOFF_BASE, "never below the base");
        assert_eq!(next_wait(i, 40, 0.5), BACKOFF_CAP);
        // A success resets the backoff to the interval.
        assert_eq!(next_wait(i, 0, 0.5), i);
    }

    #[test]
    fn jitter_draws_stay_in_the_unit_interval() {
        let mut j = Jitter::new();
        for _ in 0..1000 {
            let u = j.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
