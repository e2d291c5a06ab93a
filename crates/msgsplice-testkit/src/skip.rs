//! How a test that cannot run says so, where nobody can miss it.
//!
//! libtest captures what a passing test prints, so an `eprintln!("SKIP")`
//! vanishes and a test that did nothing reads as passed. [`skip`] instead:
//!
//! 1. writes `SKIP <test>: <reason>` to the process's real stderr (a
//!    `write` on fd 2, which libtest's capture does not intercept);
//! 2. appends the same line to the file named by `MSGSPLICE_SKIP_LOG`, if
//!    set, so a test script can count and list the skips of a whole run
//!    (`O_APPEND` and one `write` per line, so that test binaries running
//!    at once never interleave their lines);
//! 3. panics when `CI=true` and the process is root: there, the test had
//!    everything it needs (namespaces, tools installed by the script), so
//!    a skip means the setup broke, and that is a failure.
//!
//! [`skip_unsupported`] is for what root cannot provide on every machine
//! (a kernel without kTLS, a host without IPv6): logged and counted the
//! same way, but never a failure.

use std::fmt::Display;
use std::io::Write;

/// The environment variable naming the file that collects skip lines.
pub const SKIP_LOG_ENV: &str = "MSGSPLICE_SKIP_LOG";

/// Reports that `test` did not run because of `reason` (stderr, skip log);
/// panics in CI as root, where a skip means a broken setup. The caller
/// returns right after.
pub fn skip(test: &str, reason: impl Display) {
    let line = record(test, &reason, true);
    if strict() {
        panic!("{line} (CI=true and root: every test must run)");
    }
}

/// Reports that `test` did not run (or ran only in part) because the
/// machine lacks a kernel feature or an address family that running as
/// root cannot provide. Logged and counted like [`skip`], never a failure.
pub fn skip_unsupported(test: &str, reason: impl Display) {
    record(
        test,
        &format!("{reason} (not available on this machine)"),
        true,
    );
}

/// True if the process is root; otherwise reports a [`skip`] of `test`
/// ("needs root") and returns false, so a call site reads
/// `if !require_root("name") { return; }`.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    skip(test, "needs root (network namespaces, qdiscs); run as root");
    false
}

/// True if the effective user is root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// True when skips are failures: `CI=true` and root.
fn strict() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true") && is_root()
}

/// Writes the skip line to stderr (if `echo`) and to the skip log;
/// returns it.
fn record(test: &str, reason: &dyn Display, echo: bool) -> String {
    let line = format!("SKIP {test}: {reason}");
    // `std::io::stderr()` writes to fd 2 directly; only the `eprint!`
    // family goes through libtest's capture.
    if echo {
        let _ = writeln!(std::io::stderr(), "{line}");
    }
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path);
        match log {
            // One write per line: with O_APPEND, whole lines even when
            // several test binaries log at once.
            Ok(mut f) => {
                let _ = f.write(format!("{line}\n").as_bytes());
            }
            Err(e) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "cannot append to {SKIP_LOG_ENV}={}: {e}",
                    std::path::Path::new(&path).display()
                );
            }
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line reaches the log whole, once per call. (Run with the
    /// variable set by this test only: no other test here logs.)
    #[test]
    fn skip_lines_are_appended_to_the_log() {
        let dir = std::env::temp_dir().join(format!("msgsplice-skip-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let line = record_to(&dir, "t1", "why");
        record_to(&dir, "t2", "because");
        let text = std::fs::read_to_string(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(line, "SKIP t1: why");
        assert_eq!(text, "SKIP t1: why\nSKIP t2: because\n");
    }

    /// Run by `a_skip_fails_in_ci_only_as_root` in a child process.
    #[test]
    #[ignore = "run as a child process by a_skip_fails_in_ci_only_as_root"]
    fn child_that_skips() {
        skip("child_that_skips", "on purpose");
    }

    /// With `CI=true` the child's skip fails its test exactly when it runs
    /// as root, and the line reaches the real stderr either way.
    #[test]
    fn a_skip_fails_in_ci_only_as_root() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "skip::tests::child_that_skips"])
            .env("CI", "true")
            .env_remove(SKIP_LOG_ENV)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("SKIP child_that_skips: on purpose"), "{err}");
        assert_eq!(out.status.success(), !is_root(), "{err}");
    }

    fn record_to(log: &std::path::Path, test: &str, why: &str) -> String {
        // set_var is process-wide; this is the only test in the kit that
        // touches the variable.
        let outer = std::env::var_os(SKIP_LOG_ENV);
        std::env::set_var(SKIP_LOG_ENV, log);
        let l = record(test, &why, false);
        match outer {
            Some(v) => std::env::set_var(SKIP_LOG_ENV, v),
            None => std::env::remove_var(SKIP_LOG_ENV),
        }
        l
    }
}
