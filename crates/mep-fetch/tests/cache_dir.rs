//! `cache_dir` reads the environment, so it has its own test binary (its own process) and a
//! single test: nothing else can race on the variables.

use std::path::PathBuf;

use mep_fetch::cache_dir;

#[test]
fn env_overrides_in_order() {
    let vars = ["MEP_CACHE", "XDG_CACHE_HOME", "HOME"];
    let saved: Vec<_> = vars.iter().map(std::env::var_os).collect();

    std::env::set_var("MEP_CACHE", "/tmp/mep-cache-a");
    std::env::set_var("XDG_CACHE_HOME", "/tmp/xdg");
    std::env::set_var("HOME", "/tmp/home");
    assert_eq!(cache_dir(), PathBuf::from("/tmp/mep-cache-a"));

    std::env::remove_var("MEP_CACHE");
    assert_eq!(cache_dir(), PathBuf::from("/tmp/xdg/mep"));

    // Empty and relative XDG values are ignored, as the XDG spec asks.
    std::env::set_var("MEP_CACHE", "");
    std::env::set_var("XDG_CACHE_HOME", "relative");
    assert_eq!(cache_dir(), PathBuf::from("/tmp/home/.cache/mep"));

    std::env::remove_var("XDG_CACHE_HOME");
    assert_eq!(cache_dir(), PathBuf::from("/tmp/home/.cache/mep"));

    for (v, old) in vars.iter().zip(saved) {
        match old {
            Some(val) => std::env::set_var(v, val),
            None => std::env::remove_var(v),
        }
    }
}
