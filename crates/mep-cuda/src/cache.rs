//! The on-disk cache of compiled kernels: one CUBIN per (family, arch, source, options, NVRTC
//! version), so that only the first run on a machine pays for NVRTC.
//!
//! Location: `$MEP_KERNEL_CACHE`, else `$XDG_CACHE_HOME/mep/kernels`, else
//! `$HOME/.cache/mep/kernels`. Entries are `<family>-<arch>-<key>.cubin`, where `key` is the
//! first 16 hex digits of a SHA-256 of everything the CUBIN depends on, so a changed kernel,
//! option or compiler never meets a stale entry. Each entry ends with a trailer (magic and the
//! SHA-256 of the CUBIN) so that a truncated or damaged file is detected before the driver sees
//! it. Nothing here is fatal: a cache that cannot be created, read or written only costs a
//! recompilation.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

/// Marks the end of a cache entry, before the CUBIN's SHA-256.
const TRAILER_MAGIC: &[u8; 8] = b"MEPCUBIN";
const TRAILER_LEN: usize = TRAILER_MAGIC.len() + 32;

/// The environment variable naming the cache directory.
pub const CACHE_ENV: &str = "MEP_KERNEL_CACHE";

/// A directory of compiled kernels, or none (caching disabled).
#[derive(Clone, Debug)]
pub struct KernelCache {
    dir: Option<PathBuf>,
}

impl KernelCache {
    /// The cache at the location the environment names (see the module docs), created if
    /// missing. If it cannot be created, caching is disabled and one warning goes to stderr.
    pub fn from_env() -> KernelCache {
        let var = |k: &str| std::env::var_os(k);
        match resolve_dir(var(CACHE_ENV), var("XDG_CACHE_HOME"), var("HOME")) {
            Some(dir) => KernelCache::at(dir),
            None => {
                warn_once(
                    &DIR_WARNED,
                    "mep-cuda: no kernel cache (set MEP_KERNEL_CACHE or HOME); kernels are recompiled each run",
                );
                KernelCache::disabled()
            }
        }
    }

    /// The cache in `dir`, created if missing; disabled (one warning on stderr) if that fails.
    pub fn at(dir: impl Into<PathBuf>) -> KernelCache {
        let dir = dir.into();
        match fs::create_dir_all(&dir) {
            Ok(()) => KernelCache { dir: Some(dir) },
            Err(e) => {
                warn_once(
                    &DIR_WARNED,
                    &format!(
                        "mep-cuda: kernel cache {} cannot be created ({e}); kernels are recompiled each run",
                        dir.display()
                    ),
                );
                KernelCache::disabled()
            }
        }
    }

    /// No caching.
    pub fn disabled() -> KernelCache {
        KernelCache { dir: None }
    }

    /// The directory, or `None` when caching is disabled.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The CUBIN stored under `name`, or `None` when absent, unreadable or damaged.
    pub fn read(&self, name: &str) -> Option<Vec<u8>> {
        let bytes = fs::read(self.dir.as_ref()?.join(name)).ok()?;
        unwrap_entry(bytes)
    }

    /// Stores `cubin` under `name`, atomically (a reader sees the old entry or the new one,
    /// never a partial file). A failure is reported once on stderr and otherwise ignored.
    pub fn write(&self, name: &str, cubin: &[u8]) {
        let Some(dir) = &self.dir else { return };
        if let Err(e) = mep_fs::write_atomic(&dir.join(name), &wrap_entry(cubin)) {
            warn_once(
                &WRITE_WARNED,
                &format!("mep-cuda: cannot write to the kernel cache {} ({e})", dir.display()),
            );
        }
    }

    /// Finds the entry `name` and loads it with `load`; on a miss, or if the entry does not
    /// load (corrupt, or from an incompatible driver), compiles with `compile`, overwrites the
    /// entry and loads that. Only `compile`'s error, or `load`'s on a fresh CUBIN, is returned.
    pub fn load_or_compile<T, E>(
        &self,
        name: &str,
        compile: impl FnOnce() -> Result<Vec<u8>, E>,
        mut load: impl FnMut(&[u8]) -> Result<T, E>,
    ) -> Result<T, E> {
        if let Some(cubin) = self.read(name) {
            if let Ok(t) = load(&cubin) {
                return Ok(t);
            }
        }
        let cubin = compile()?;
        self.write(name, &cubin);
        load(&cubin)
    }
}

static DIR_WARNED: AtomicBool = AtomicBool::new(false);
static WRITE_WARNED: AtomicBool = AtomicBool::new(false);

fn warn_once(flag: &AtomicBool, msg: &str) {
    if !flag.swap(true, Ordering::Relaxed) {
        eprintln!("{msg}");
    }
}

/// The cache directory from the values of `MEP_KERNEL_CACHE`, `XDG_CACHE_HOME` and `HOME`
/// (empty values count as unset, as the XDG spec asks).
pub fn resolve_dir(mep: Option<OsString>, xdg: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    set(mep)
        .or_else(|| set(xdg).map(|d| d.join("mep").join("kernels")))
        .or_else(|| set(home).map(|d| d.join(".cache").join("mep").join("kernels")))
}

/// The entry name `<family>-<arch>-<key>.cubin`: `key` is the first 16 hex digits of the
/// SHA-256 of the source, the arch, the options and the NVRTC version `(major, minor)`.
pub fn entry_name(family: &str, source: &str, arch: &str, opts: &[&str], nvrtc_version: (i32, i32)) -> String {
    let mut h = Sha256::new();
    // NUL-separated so that moving text between fields changes the key.
    for field in [source, arch].into_iter().chain(opts.iter().copied()) {
        h.update(field.as_bytes());
        h.update([0u8]);
    }
    h.update(format!("nvrtc {}.{}", nvrtc_version.0, nvrtc_version.1).as_bytes());
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{family}-{arch}-{hex}.cubin")
}

fn wrap_entry(cubin: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cubin.len() + TRAILER_LEN);
    out.extend_from_slice(cubin);
    out.extend_from_slice(TRAILER_MAGIC);
    out.extend_from_slice(&Sha256::digest(cubin));
    out
}

fn unwrap_entry(mut bytes: Vec<u8>) -> Option<Vec<u8>> {
    let body = bytes.len().checked_sub(TRAILER_LEN)?;
    let (cubin, trailer) = bytes.split_at(body);
    let (magic, hash) = trailer.split_at(TRAILER_MAGIC.len());
    if magic != TRAILER_MAGIC || hash != Sha256::digest(cubin).as_slice() {
        return None;
    }
    bytes.truncate(body);
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mep-cuda-cache-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn dir_precedence_follows_the_env() {
        let s = |v: &str| Some(OsString::from(v));
        assert_eq!(resolve_dir(s("/a"), s("/x"), s("/h")), Some(PathBuf::from("/a")));
        assert_eq!(
            resolve_dir(None, s("/x"), s("/h")),
            Some(PathBuf::from("/x/mep/kernels"))
        );
        assert_eq!(
            resolve_dir(s(""), s(""), s("/h")),
            Some(PathBuf::from("/h/.cache/mep/kernels"))
        );
        assert_eq!(resolve_dir(None, None, None), None);
    }

    fn key(name: &str) -> &str {
        let stem = name.strip_suffix(".cubin").unwrap();
        &stem[stem.rfind('-').unwrap() + 1..]
    }

    #[test]
    fn key_changes_with_what_the_cubin_depends_on() {
        let base = entry_name("neb", "src", "sm_90", &["-std=c++17"], (13, 0));
        assert!(base.starts_with("neb-sm_90-") && base.ends_with(".cubin"));
        assert_eq!(base.len(), "neb-sm_90-".len() + 16 + ".cubin".len());
        assert_eq!(base, entry_name("neb", "src", "sm_90", &["-std=c++17"], (13, 0)));
        for other in [
            entry_name("neb", "src2", "sm_90", &["-std=c++17"], (13, 0)),
            entry_name("neb", "src", "sm_80", &["-std=c++17"], (13, 0)),
            entry_name("neb", "src", "sm_90", &["-std=c++20"], (13, 0)),
            entry_name("neb", "src", "sm_90", &[], (13, 0)),
            entry_name("neb", "src", "sm_90", &["-std=c++17"], (13, 1)),
        ] {
            assert_ne!(key(&base), key(&other), "{other}");
        }
        // Text moved across a field boundary is a different input.
        assert_ne!(
            key(&entry_name("f", "ab", "sm_90", &[], (13, 0))),
            key(&entry_name("f", "a", "bsm_90", &[], (13, 0)))
        );
    }

    #[test]
    fn write_is_atomic_and_round_trips() {
        let dir = tmpdir("rt");
        let cache = KernelCache::at(&dir);
        assert_eq!(cache.read("x.cubin"), None);
        cache.write("x.cubin", b"\x7fELF first");
        cache.write("x.cubin", b"\x7fELF second");
        assert_eq!(cache.read("x.cubin").as_deref(), Some(&b"\x7fELF second"[..]));
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![OsString::from("x.cubin")], "temporary files left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_entries_read_as_missing() {
        let dir = tmpdir("dmg");
        let cache = KernelCache::at(&dir);
        cache.write("x.cubin", b"\x7fELF payload");
        let path = dir.join("x.cubin");
        let full = fs::read(&path).unwrap();
        fs::write(&path, &full[..full.len() - 1]).unwrap();
        assert_eq!(cache.read("x.cubin"), None, "truncated");
        let mut flipped = full.clone();
        flipped[2] ^= 1;
        fs::write(&path, &flipped).unwrap();
        assert_eq!(cache.read("x.cubin"), None, "bit flip");
        fs::write(&path, b"").unwrap();
        assert_eq!(cache.read("x.cubin"), None, "empty");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hit_skips_compile_and_bad_entry_is_recompiled_and_overwritten() {
        let dir = tmpdir("flow");
        let cache = KernelCache::at(&dir);
        let compiles = Cell::new(0);
        let compile = |out: &'static [u8]| {
            compiles.set(compiles.get() + 1);
            Ok::<_, String>(out.to_vec())
        };
        // The "driver" accepts only images starting with GOOD.
        let load = |b: &[u8]| {
            if b.starts_with(b"GOOD") {
                Ok(b.len())
            } else {
                Err(format!("bad image {b:?}"))
            }
        };

        assert_eq!(cache.load_or_compile("k.cubin", || compile(b"GOOD1"), load), Ok(5));
        assert_eq!(compiles.get(), 1);
        assert_eq!(
            cache.load_or_compile("k.cubin", || compile(b"GOOD22"), load),
            Ok(5),
            "cache hit"
        );
        assert_eq!(compiles.get(), 1);

        // An entry with a valid trailer that the driver refuses (e.g. another driver's).
        cache.write("k.cubin", b"STALE");
        assert_eq!(cache.load_or_compile("k.cubin", || compile(b"GOOD333"), load), Ok(7));
        assert_eq!(compiles.get(), 2);
        assert_eq!(cache.read("k.cubin").as_deref(), Some(&b"GOOD333"[..]), "overwritten");

        // Garbage on disk.
        fs::write(dir.join("k.cubin"), b"garbage").unwrap();
        assert_eq!(cache.load_or_compile("k.cubin", || compile(b"GOOD4444"), load), Ok(8));
        assert_eq!(compiles.get(), 3);

        // A compile error is returned as is; a fresh image the driver refuses too.
        let r: Result<usize, String> = cache.load_or_compile("e.cubin", || Err("log".into()), load);
        assert_eq!(r, Err("log".to_string()));
        assert!(cache.load_or_compile("e.cubin", || compile(b"BAD"), load).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn uncreatable_dir_disables_caching() {
        let dir = tmpdir("nodir");
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a-file");
        fs::write(&file, b"").unwrap();
        let cache = KernelCache::at(file.join("sub"));
        assert!(cache.dir().is_none());
        cache.write("x.cubin", b"data");
        assert_eq!(cache.read("x.cubin"), None);
        let compiles = Cell::new(0);
        for _ in 0..2 {
            let r = cache.load_or_compile(
                "x.cubin",
                || {
                    compiles.set(compiles.get() + 1);
                    Ok::<_, ()>(b"img".to_vec())
                },
                |b| Ok(b.len()),
            );
            assert_eq!(r, Ok(3));
        }
        assert_eq!(compiles.get(), 2, "no cache: every call compiles");
        fs::remove_dir_all(&dir).unwrap();
    }
}
