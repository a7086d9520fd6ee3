//! The options of `cargo xtask gpu-check` and their parsing.

use super::*;
use std::path::PathBuf;
use std::time::Duration;

/// The options of `cargo xtask gpu-check`.
#[derive(Debug, PartialEq)]
pub struct Options {
    /// Where summary.md and the logs go.
    pub out: PathBuf,
    /// The whole run's time limit.
    pub budget: Duration,
    /// Timed iterations per speed case.
    pub iters: usize,
    /// The optional steps to run.
    pub steps: Vec<&'static str>,
    /// Run the steps even when no GPU is found (the GPU steps then fail with their own errors).
    pub force: bool,
    /// Show every step's output as it comes (always in the logs).
    pub verbose: bool,
    /// A folder made by `cargo xtask gpu-bundle`: use its binaries instead of building (for a
    /// GPU machine without a Rust toolchain); it is also the root the steps run in.
    pub prebuilt: Option<PathBuf>,
}

impl Options {
    /// Parses the arguments after `gpu-check`.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            out: PathBuf::from("target/gpu-check"),
            budget: Duration::from_secs(420),
            iters: 20,
            steps: DEFAULT_STEPS.to_vec(),
            force: false,
            verbose: false,
            prebuilt: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |flag: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value; usage: {USAGE}"))
            };
            let positive = |flag: &str, v: String| match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{flag} {v}: expected a positive integer")),
            };
            match a.as_str() {
                "--out" => o.out = PathBuf::from(value("--out")?),
                "--budget" => o.budget = Duration::from_secs(positive("--budget", value("--budget")?)?),
                "--iters" => o.iters = positive("--iters", value("--iters")?)? as usize,
                "--only" => o.steps = step_list(&value("--only")?)?,
                "--skip" => {
                    let skip = step_list(&value("--skip")?)?;
                    o.steps.retain(|s| !skip.contains(s));
                }
                "--force" => o.force = true,
                "--verbose" => o.verbose = true,
                "--prebuilt" => o.prebuilt = Some(PathBuf::from(value("--prebuilt")?)),
                "-h" | "--help" => return Err(format!("usage: {USAGE}\n{}", help())),
                other => return Err(format!("unknown argument `{other}`; usage: {USAGE}")),
            }
        }
        Ok(o)
    }
}

pub(crate) fn step_list(v: &str) -> Result<Vec<&'static str>, String> {
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            STEPS
                .iter()
                .find(|k| **k == s.trim())
                .copied()
                .ok_or_else(|| format!("unknown step `{s}`; steps are {}", STEPS.join(", ")))
        })
        .collect()
}

pub(crate) fn help() -> String {
    format!(
        "On a machine with an NVIDIA GPU, in under 8 minutes: nvidia-smi, libnvrtc, a release build with \
         --features cuda, then the steps {} (kernel-rates only when named in --only). Writes OUT/summary.md \
         (default target/gpu-check) and one log per step; exits 1 at once when there is no GPU, unless --force.",
        STEPS.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::words as args;

    #[test]
    fn options_parse_and_bad_ones_are_named() {
        let o = Options::parse(&[]).unwrap();
        assert_eq!((o.budget.as_secs(), o.iters), (420, 20));
        assert_eq!(o.steps, DEFAULT_STEPS);
        let o = Options::parse(&args(&["--only", "memcheck,kernel-rates"])).unwrap();
        assert_eq!(o.steps, vec!["memcheck", "kernel-rates"]);
        let o = Options::parse(&args(&["--only", "speed,smoke", "--budget", "60", "--force"])).unwrap();
        assert_eq!(
            (o.steps, o.budget.as_secs(), o.force),
            (vec!["speed", "smoke"], 60, true)
        );
        let o = Options::parse(&args(&["--skip", "memcheck"])).unwrap();
        assert!(!o.steps.contains(&"memcheck") && o.steps.contains(&"speed"));
        let e = Options::parse(&args(&["--only", "speed,fast"])).unwrap_err();
        assert!(e.contains("`fast`") && e.contains("memcheck"), "{e}");
        let e = Options::parse(&args(&["--budget", "0"])).unwrap_err();
        assert!(e.contains("--budget 0"), "{e}");
        let e = Options::parse(&args(&["--iters"])).unwrap_err();
        assert!(e.contains("--iters needs a value"), "{e}");
    }
}
