//! KernelBackend's memory pool and graph capture, on the emulated device: a freed block goes
//! to the next allocation of its size and never to two live buffers; out of memory releases
//! the cache and retries; once warmed up, a forward, a forward+backward and a whole NEB step
//! allocate nothing from the device; a captured forward replays to the eager logits, and the
//! graph keeps its blocks to itself while it lives.

use mep::connect::HeadEnergy;
use mep_kernels::{Arg, DevBuf, Dims, KernelBackend, KernelError, Launcher, PoolStats};
use mep_kernels_emu::{EmuLauncher, EmuMem};
use mep_neb::{Neb, NebConfig, Path};
use mep_resnet::{Arch, Cut, FoldedResNet, ResNet};
use mep_tensor::prelude::*;
use mep_tensor::Tensor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = mep_rng::SplitMix64::new(seed);
    (0..n).map(|_| 2.0 * rng.unit_f32() - 1.0).collect()
}

fn addr(b: &KernelBackend<EmuLauncher>, buf: &DevBuf<EmuMem>) -> u64 {
    b.launcher().ptr(buf.mem())
}

/// The emulated device with `budget` bytes of memory: an allocation past it is out of memory.
struct Budget {
    emu: EmuLauncher,
    budget: usize,
    live: Arc<AtomicUsize>,
    calls: AtomicUsize,
}

struct Metered {
    mem: EmuMem,
    bytes: usize,
    live: Arc<AtomicUsize>,
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.live.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Launcher for Budget {
    type Mem = Metered;
    fn name(&self) -> &'static str {
        "budget"
    }
    fn alloc(&self, bytes: usize) -> mep_kernels::Result<Metered> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let live = self.live.load(Ordering::Relaxed);
        if live + bytes > self.budget {
            return Err(KernelError::OutOfMemory {
                bytes,
                msg: format!("allocating {bytes} bytes with {live} of {} in use", self.budget),
            });
        }
        self.live.fetch_add(bytes, Ordering::Relaxed);
        Ok(Metered {
            mem: self.emu.alloc(bytes)?,
            bytes,
            live: self.live.clone(),
        })
    }
    fn write(&self, m: &mut Metered, offset: usize, src: &[u8]) -> mep_kernels::Result<()> {
        self.emu.write(&mut m.mem, offset, src)
    }
    fn read(&self, m: &Metered, offset: usize, dst: &mut [u8]) -> mep_kernels::Result<()> {
        self.emu.read(&m.mem, offset, dst)
    }
    fn copy(&self, s: &Metered, so: usize, d: &mut Metered, d_o: usize, bytes: usize) -> mep_kernels::Result<()> {
        self.emu.copy(&s.mem, so, &mut d.mem, d_o, bytes)
    }
    fn ptr(&self, m: &Metered) -> u64 {
        self.emu.ptr(&m.mem)
    }
    fn launch(&self, kernel: &str, grid: Dims, block: Dims, args: &[Arg]) -> mep_kernels::Result<()> {
        self.emu.launch(kernel, grid, block, args)
    }
    fn synchronize(&self) -> mep_kernels::Result<()> {
        self.emu.synchronize()
    }
}

fn budget(bytes: usize) -> KernelBackend<Budget> {
    KernelBackend::new(Budget {
        emu: EmuLauncher::new(),
        budget: bytes,
        live: Arc::new(AtomicUsize::new(0)),
        calls: AtomicUsize::new(0),
    })
}

#[test]
fn a_freed_block_goes_to_the_next_allocation_of_its_size_and_never_to_two_buffers() {
    let b = EmuLauncher::backend();
    let x = b.upload(&[1.0, 2.0, 3.0]).unwrap();
    let y = b.alloc(3).unwrap();
    assert_ne!(addr(&b, &x), addr(&b, &y));
    let s = b.pool_stats();
    assert_eq!((s.allocations, s.hits, s.cached_bytes), (2, 0, 0));
    let freed = addr(&b, &x);
    drop(x);
    assert_eq!(b.pool_stats().cached_bytes, 12);
    // Another size does not take it.
    let other = b.alloc(4).unwrap();
    assert_ne!(addr(&b, &other), freed);
    let z = b.upload(&[4.0, 5.0, 6.0]).unwrap();
    assert_eq!(addr(&b, &z), freed);
    assert_ne!(addr(&b, &z), addr(&b, &y));
    let s = b.pool_stats();
    assert_eq!((s.allocations, s.hits, s.cached_bytes, s.device_bytes), (3, 1, 0, 40));
    // Length semantics are the buffer's: the reused block holds exactly what was uploaded.
    assert_eq!(b.download(&z).unwrap(), vec![4.0, 5.0, 6.0]);
    assert_eq!(b.len(&z), 3);
    // A block is on the free list once: two allocations after one free are two blocks.
    drop(z);
    let (p, q) = (b.alloc(3).unwrap(), b.alloc(3).unwrap());
    assert_ne!(addr(&b, &p), addr(&b, &q));
}

#[test]
fn trim_releases_the_cache_and_allocation_goes_on_from_the_device() {
    let b = EmuLauncher::backend();
    let bufs: Vec<_> = (0..4).map(|_| b.zeros(256).unwrap()).collect();
    drop(bufs);
    assert_eq!(b.pool_stats().cached_bytes, 4 * 1024);
    assert_eq!(b.pool_stats().cached_blocks, 4);
    assert_eq!(b.trim(), 4 * 1024);
    let s = b.pool_stats();
    assert_eq!((s.cached_bytes, s.cached_blocks, s.device_bytes), (0, 0, 0));
    let x = b.zeros(256).unwrap();
    assert_eq!(b.download(&x).unwrap(), vec![0.0; 256]);
    assert_eq!(b.pool_stats().allocations, 5);
}

#[test]
fn out_of_memory_releases_the_cache_and_retries_once() {
    let b = budget(1000);
    let small = b.alloc(100).unwrap(); // 400 bytes
    drop(small);
    // 800 bytes do not fit beside the cached 400: the pool releases them and retries.
    let big = b.upload(&[1.0; 200]).unwrap();
    assert_eq!(b.download(&big).unwrap(), vec![1.0; 200]);
    let s = b.pool_stats();
    assert_eq!((s.allocations, s.cached_bytes, s.device_bytes), (2, 0, 800));
    assert_eq!(
        b.launcher().calls.load(Ordering::Relaxed),
        3,
        "one failed call, one retry"
    );
    // Still out of memory after the retry: the error names the size and stays out of memory.
    let e = b.alloc(100).err().expect("no room for 400 more bytes");
    assert!(e.is_out_of_memory(), "{e:?}");
    assert!(e.to_string().contains("400 bytes"), "{e}");
    // Nothing cached: no retry, the launcher's error as it was.
    assert_eq!(b.launcher().calls.load(Ordering::Relaxed), 4);
    drop(big);
    let e = b.alloc(300).err().expect("1200 bytes never fit");
    assert!(e.is_out_of_memory(), "{e:?}");
    assert!(
        e.to_string().contains("1200 bytes") && e.to_string().contains("after releasing the pool's 800 cached bytes"),
        "{e}"
    );
    // The device is whole again: what fits, fits.
    assert!(b.alloc(250).is_ok());
}

/// A ResNet-20 of width 4 (10 classes), folded.
fn small_net(b: &KernelBackend<EmuLauncher>) -> FoldedResNet<KernelBackend<EmuLauncher>> {
    let model = ResNet::init(b, Arch::ResNet20, 4, 10, 7).unwrap();
    FoldedResNet::fold(b, &model).unwrap()
}

/// The device allocations and cache hits of `f`, after one warm-up call of it.
fn warm_allocations(b: &KernelBackend<EmuLauncher>, mut f: impl FnMut()) -> (PoolStats, PoolStats) {
    let before = b.pool_stats();
    f();
    let warm = b.pool_stats();
    f();
    let after = b.pool_stats();
    let first = PoolStats {
        allocations: warm.allocations - before.allocations,
        hits: warm.hits - before.hits,
        ..warm
    };
    let second = PoolStats {
        allocations: after.allocations - warm.allocations,
        hits: after.hits - warm.hits,
        ..after
    };
    eprintln!("first call: {first:?}\nsecond call: {second:?}");
    (first, second)
}

#[test]
fn after_a_warm_up_forward_backward_and_a_neb_step_allocate_nothing() {
    let b = EmuLauncher::backend();
    let net = small_net(&b);
    let (n, s) = (2, 16);
    let x = Tensor::from_vec(&b, [n, 3, s, s], data(n * 3 * s * s, 1)).unwrap();

    let (first, second) = warm_allocations(&b, || drop(net.head(&b, &x, Cut::Input).unwrap()));
    assert!(first.allocations > 0);
    assert_eq!(second.allocations, 0, "forward after warm-up: {second:?}");
    assert!(second.hits > 0);

    let targets = [3, 8];
    let (_, second) = warm_allocations(&b, || {
        drop(net.head_loss_grad(&b, &x, Cut::Input, &targets, 0.5).unwrap());
    });
    assert_eq!(second.allocations, 0, "forward+backward after warm-up: {second:?}");
    assert!(second.hits > 0);

    for cut in [Cut::Input, Cut::Layer(1)] {
        let ends = Tensor::from_vec(&b, [2, 3, s, s], data(2 * 3 * s * s, 2)).unwrap();
        let z = net.encode(&b, &ends, cut).unwrap();
        let point_shape = z.shape.dims()[1..].to_vec();
        let dim: usize = point_shape.iter().product();
        let (mut za, mut zb) = (b.alloc(dim).unwrap(), b.alloc(dim).unwrap());
        b.copy_rows(dim, &z.buf, 0, &mut za, 0, 1).unwrap();
        b.copy_rows(dim, &z.buf, 1, &mut zb, 0, 1).unwrap();
        let path = Path::straight(&b, &za, &zb, dim, 6).unwrap();
        // Two batches of interior pivots per step (3 and 1), as a long path has.
        let mut energy = HeadEnergy::new(&net, cut, 0, &point_shape).unwrap().with_max_batch(3);
        let config = NebConfig {
            max_steps: usize::MAX,
            ..NebConfig::default()
        };
        let mut neb = Neb::new(&b, config, path).unwrap();
        let (first, second) = warm_allocations(&b, || drop(neb.step(&b, &mut energy).unwrap()));
        assert!(first.allocations > 0);
        assert_eq!(second.allocations, 0, "NEB step at {cut} after warm-up: {second:?}");
        // And every step after it.
        let before = b.pool_stats().allocations;
        for _ in 0..2 {
            neb.step(&b, &mut energy).unwrap();
        }
        assert_eq!(b.pool_stats().allocations, before, "NEB steps at {cut}");
    }
}

#[test]
fn a_captured_forward_replays_to_the_eager_logits_and_keeps_its_blocks() {
    let b = EmuLauncher::backend();
    let net = small_net(&b);
    let (n, s) = (2, 16);
    let x1 = data(n * 3 * s * s, 3);
    let x2 = data(n * 3 * s * s, 4);
    let mut x = Tensor::from_vec(&b, [n, 3, s, s], x1.clone()).unwrap();
    let eager = |x: &Tensor<_>| net.head(&b, x, Cut::Input).unwrap().to_vec(&b).unwrap();
    let want1 = eager(&x);
    let x2t = Tensor::from_vec(&b, [n, 3, s, s], x2.clone()).unwrap();
    let want2 = eager(&x2t);

    let before = b.pool_stats();
    let (graph, mut y) = b.capture(|| net.head(&b, &x, Cut::Input)).unwrap();
    assert!(!graph.is_empty());
    assert_eq!(b.pool_stats().allocations, before.allocations, "the capture allocated");
    assert!(graph.held_bytes() > 0, "the intermediates stay with the graph");
    // Capturing records without running.
    b.fill(&mut y.buf, f32::NAN).unwrap();
    graph.launch().unwrap();
    assert_eq!(y.to_vec(&b).unwrap(), want1, "replay with the captured input");

    // A new input copied into the captured one, replayed.
    b.copy(&x2t.buf, &mut x.buf).unwrap();
    graph.launch().unwrap();
    assert_eq!(y.to_vec(&b).unwrap(), want2, "replay with a new input");
    // Eager work meanwhile takes none of the graph's blocks: the output stays as replayed and
    // the next replay is still right.
    let held = graph.held_bytes();
    let again = eager(&x2t);
    assert_eq!(again, want2);
    assert_eq!(y.to_vec(&b).unwrap(), want2);
    assert_eq!(graph.held_bytes(), held);
    b.copy(&Tensor::from_vec(&b, [n, 3, s, s], x1).unwrap().buf, &mut x.buf)
        .unwrap();
    graph.launch().unwrap();
    assert_eq!(y.to_vec(&b).unwrap(), want1);

    // An output dropped while the graph lives stays the graph's.
    let y_addr = addr(&b, &y.buf);
    let y_len = y.buf.len();
    drop(y);
    assert_eq!(graph.held_bytes(), held + 4 * y_len);
    let other = b.alloc(y_len).unwrap();
    assert_ne!(addr(&b, &other), y_addr, "the graph's output went to another buffer");
    // Dropping the graph returns its blocks to the cache.
    let cached = b.pool_stats().cached_bytes;
    drop(graph);
    assert_eq!(b.pool_stats().cached_bytes, cached + held + 4 * y_len);
    let (one, two) = (b.alloc(y_len).unwrap(), b.alloc(y_len).unwrap());
    assert!(addr(&b, &one) == y_addr || addr(&b, &two) == y_addr);
}

/// The network's forward and backward to the points captured alone (the cross-entropy's
/// gradient at the logits fed in as a device copy); the replayed gradient equals
/// head_loss_grad's. The whole step, cross-entropy included, is crates/mep/tests/cli/device_step.rs's.
#[test]
fn a_captured_forward_backward_replays_to_the_eager_gradient() {
    let b = EmuLauncher::backend();
    let net = small_net(&b);
    let (n, s, target) = (2, 16, 1);
    let points = Tensor::from_vec(&b, [n, 3, s, s], data(n * 3 * s * s, 6)).unwrap();
    let z = points.duplicate(&b).unwrap();
    let eager = net.head_loss_grad(&b, &z, Cut::Input, &[target; 2], 1.0).unwrap();
    let mut onehot = vec![0.0; n * 10];
    onehot[target] = 1.0;
    onehot[10 + target] = 1.0;
    let mut dlogits = eager.probs.duplicate(&b).unwrap();
    b.axpy(-1.0, &b.upload(&onehot).unwrap(), &mut dlogits.buf).unwrap();
    let want = eager.grad.to_vec(&b).unwrap();
    drop(eager);
    let before = b.pool_stats().allocations;
    let (graph, (_, mut grad)) = b
        .capture(|| net.head_backward(&b, &z, Cut::Input, |_| Ok(dlogits.duplicate(&b)?)))
        .unwrap();
    assert_eq!(b.pool_stats().allocations, before);
    b.fill(&mut grad.buf, f32::NAN).unwrap();
    graph.launch().unwrap();
    assert_eq!(grad.to_vec(&b).unwrap(), want);
}

#[test]
fn a_miss_or_a_host_copy_during_a_capture_is_an_error_and_the_backend_goes_on() {
    let b = EmuLauncher::backend();
    let net = small_net(&b);
    let x = Tensor::from_vec(&b, [3, 3, 16, 16], data(3 * 3 * 16 * 16, 5)).unwrap();
    // No warm-up at batch 3: the first allocation misses.
    let e = b.capture(|| net.head(&b, &x, Cut::Input)).err().expect("a miss");
    assert!(e.to_string().contains("warm up first"), "{e}");
    assert!(!e.is_out_of_memory());
    // A host copy inside a capture.
    let e = b.capture(|| x.to_vec(&b)).err().expect("a download cannot be captured");
    assert!(e.to_string().contains("while capturing"), "{e}");
    // Nothing is left capturing: eager work runs, and once its outputs are dropped (the
    // warm-up), the capture finds every block it needs.
    let want = net.head(&b, &x, Cut::Input).unwrap().to_vec(&b).unwrap();
    assert_eq!(want.len(), 30);
    let (graph, y) = b.capture(|| net.head(&b, &x, Cut::Input)).unwrap();
    graph.launch().unwrap();
    assert_eq!(y.to_vec(&b).unwrap(), want);
}

#[test]
fn the_emulation_records_launches_and_copies_and_replays_them() {
    let l = EmuLauncher::new();
    let b = KernelBackend::new(EmuLauncher::new());
    let x = b.upload(&[1.0, 2.0]).unwrap();
    let mut y = b.upload(&[10.0, 20.0]).unwrap();
    let mut z = b.zeros(2).unwrap();
    let (graph, ()) = b
        .capture(|| {
            b.axpy(2.0, &x, &mut y)?;
            b.copy(&y, &mut z)
        })
        .unwrap();
    assert_eq!(b.download(&y).unwrap(), vec![10.0, 20.0], "recorded, not run");
    graph.launch().unwrap();
    assert_eq!(b.download(&z).unwrap(), vec![12.0, 24.0]);
    graph.launch().unwrap();
    assert_eq!(b.download(&z).unwrap(), vec![14.0, 28.0]);
    // `z` is dropped below, so the graph that writes it goes first (the caller's rule).
    drop(graph);
    // A buffer made before the capture and dropped inside it: the graph reads it on every
    // replay, so it is the graph's until the graph is dropped.
    let tmp = b.upload(&[1.0, 1.0]).unwrap();
    let tmp_addr = addr(&b, &tmp);
    let (graph2, ()) = b
        .capture(|| {
            let (tmp, mut z) = (tmp, z);
            b.axpy(1.0, &tmp, &mut z)
        })
        .unwrap();
    let others: Vec<_> = (0..3).map(|_| b.alloc(2).unwrap()).collect();
    assert!(others.iter().all(|o| addr(&b, o) != tmp_addr));
    graph2.launch().unwrap();
    drop(graph2);
    // `z` went with the closure too, so two blocks come back.
    let hits = b.pool_stats().hits;
    let again = [b.alloc(2).unwrap(), b.alloc(2).unwrap()];
    assert!(
        again.iter().any(|a| addr(&b, a) == tmp_addr),
        "back in the cache once the graph is gone"
    );
    assert_eq!(b.pool_stats().hits, hits + 2);
    // The launcher alone: an empty capture is empty.
    let g = l.capture(&mut || Ok(())).unwrap();
    assert!(g.is_empty());
    g.replay().unwrap();
}
