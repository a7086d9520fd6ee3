//! Child processes with a time limit, their output kept in a log file.
//!
//! `gpu-check` runs each step in its own process group, so that a step that runs past its
//! limit is stopped together with everything it started (cargo's test binaries, the
//! sanitizer's target), not only the process xtask spawned.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How a step ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    /// Exit status 0.
    Passed,
    /// It ran and failed; the text says how (exit status, or what went wrong).
    Failed(String),
    /// Stopped after running past its limit (seconds).
    TimedOut(u64),
    /// Not run; the text says why.
    Skipped(String),
}

impl Status {
    /// Whether the step ran to success.
    pub fn ok(&self) -> bool {
        *self == Status::Passed
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Passed => write!(f, "ok"),
            Status::Failed(why) => write!(f, "FAILED: {why}"),
            Status::TimedOut(s) => write!(f, "TIMED OUT after {s} s"),
            Status::Skipped(why) => write!(f, "skipped: {why}"),
        }
    }
}

/// What a finished child left.
pub struct Finished {
    pub status: Status,
    /// Its whole stdout (also in the log).
    pub stdout: String,
    pub seconds: f64,
}

/// Runs `cmd` for at most `limit`, appending its stdout and stderr to `log` (stderr lines
/// prefixed `! `); with `echo` they are also shown as they come. On timeout the child's whole
/// process group gets SIGTERM, then SIGKILL 3 s later.
pub fn run_limited(cmd: &mut Command, limit: Duration, log: &Path, echo: bool) -> Finished {
    let started = Instant::now();
    let shown = format!("{cmd:?}");
    let log_file = match File::options().create(true).append(true).open(log) {
        Ok(f) => Arc::new(Mutex::new(f)),
        Err(e) => return failed(started, format!("cannot write the log {}: {e}", log.display())),
    };
    let _ = writeln!(lock(&log_file), "$ {shown}");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("could not start {shown}: {e}");
            let _ = writeln!(lock(&log_file), "{msg}");
            return failed(started, msg);
        }
    };
    let out = child.stdout.take().map(|s| pump(s, log_file.clone(), echo, false));
    let err = child.stderr.take().map(|s| pump(s, log_file.clone(), echo, true));
    let deadline = started + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) if s.success() => break Status::Passed,
            Ok(Some(s)) => break Status::Failed(exit_text(s)),
            Ok(None) if Instant::now() >= deadline => {
                stop_group(child.id());
                let _ = child.wait();
                break Status::TimedOut(limit.as_secs());
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(e) => break Status::Failed(format!("waiting for it failed: {e}")),
        }
    };
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    if let Some(h) = err {
        let _ = h.join();
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = writeln!(lock(&log_file), "# {status} ({seconds:.1} s)");
    Finished {
        status,
        stdout,
        seconds,
    }
}

fn failed(started: Instant, msg: String) -> Finished {
    Finished {
        status: Status::Failed(msg),
        stdout: String::new(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn lock(f: &Mutex<File>) -> std::sync::MutexGuard<'_, File> {
    f.lock().unwrap_or_else(|p| p.into_inner())
}

/// Copies a child's stream line by line into the log (and the terminal); returns what it read.
fn pump(
    src: impl Read + Send + 'static,
    log: Arc<Mutex<File>>,
    echo: bool,
    is_err: bool,
) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut all = String::new();
        let mut reader = BufReader::new(src);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            let text = String::from_utf8_lossy(&line);
            let _ = write!(lock(&log), "{}{text}", if is_err { "! " } else { "" });
            if echo {
                eprint!("{text}");
            }
            if !is_err {
                all.push_str(&text);
            }
            line.clear();
        }
        all
    })
}

/// "exit status 3", or the signal that ended it.
pub fn exit_text(s: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = s.signal() {
            return format!("killed by signal {sig}");
        }
    }
    match s.code() {
        Some(c) => format!("exit status {c}"),
        None => s.to_string(),
    }
}

/// SIGTERM to the process group `pgid`, then SIGKILL if anything is left after 3 s.
fn stop_group(pgid: u32) {
    let signal = |sig: &str| {
        Command::new("kill")
            .args([sig, "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if signal("-TERM") {
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            // `kill -0` succeeds while any member of the group is alive.
            if !signal("-0") {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
    signal("-KILL");
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("xtask-proc-{name}-{}.log", std::process::id()))
    }

    #[test]
    fn output_status_and_log_are_kept() {
        let path = log("ok");
        let f = run_limited(
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            Duration::from_secs(10),
            &path,
            false,
        );
        assert_eq!(f.status, Status::Passed);
        assert_eq!(f.stdout, "out\n");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("out\n") && text.contains("! err\n") && text.contains("# ok"),
            "{text}"
        );
        let f = run_limited(
            Command::new("sh").args(["-c", "exit 3"]),
            Duration::from_secs(10),
            &path,
            false,
        );
        assert_eq!(f.status, Status::Failed("exit status 3".into()));
        let f = run_limited(
            &mut Command::new("/nonexistent/tool"),
            Duration::from_secs(10),
            &path,
            false,
        );
        assert!(
            matches!(&f.status, Status::Failed(m) if m.contains("could not start")),
            "{:?}",
            f.status
        );
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn a_step_past_its_limit_is_stopped_with_its_children() {
        let path = log("timeout");
        let t = Instant::now();
        // The grandchild `sleep` holds the pipe: unless the group is killed, this hangs.
        let f = run_limited(
            Command::new("sh").args(["-c", "sleep 30 & sleep 30; echo never"]),
            Duration::from_millis(300),
            &path,
            false,
        );
        assert_eq!(f.status, Status::TimedOut(0));
        assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
        assert!(!f.stdout.contains("never"));
        std::fs::remove_file(&path).ok();
    }
}
