//! Batches of a split, prepared ahead of the consumer by a pool of worker threads.
//!
//! Each epoch starts [`Loader::threads`] workers. A worker claims the next batch index, makes
//! the whole batch on its own thread (read or decode, augment, normalise, resize, image after
//! image) and files it under its index; the consumer takes the batches strictly in index
//! order. Workers claim at most `threads + PREFETCH` batches ahead of the consumer, so memory
//! stays at a handful of batches while a slow batch is hidden behind the others.
//!
//! A batch's contents depend only on `(seed, epoch, sample index)` — never on which worker
//! made it or when — so every thread count gives the same batches, bit for bit. A worker
//! that panics turns its batch into an error; dropping the epoch's iterator stops the
//! workers after at most the image each is working on.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::transform::{Rng, Transform};
use crate::{DataError, Result, Split};

/// How many finished batches may wait for the consumer beyond one per worker: enough to
/// hide a slow batch, few enough that memory stays at a handful of batches.
pub const PREFETCH: usize = 2;

/// The most workers [`default_threads`] picks: past this many, one 224×224 batch of 32 is
/// made far faster than a GPU trains on it, and each worker holds a batch in memory.
pub const MAX_DEFAULT_THREADS: usize = 8;

/// The worker count a loader starts with: every core but one (left to the consumer, which
/// feeds the device), at least 1 and at most [`MAX_DEFAULT_THREADS`].
pub fn default_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_sub(1).clamp(1, MAX_DEFAULT_THREADS)
}

/// One batch: images as `[B, 3, H, W]` floats, their labels and their indices in the split.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `B · 3 · H · W` floats, row-major in `shape`.
    pub x: Vec<f32>,
    /// The class of each image.
    pub labels: Vec<usize>,
    /// The split index of each image.
    pub indices: Vec<usize>,
    /// `[B, 3, H, W]`.
    pub shape: [usize; 4],
}

/// Iterates a split in batches, epoch by epoch, like PyTorch's `DataLoader`.
#[derive(Clone, Debug)]
pub struct Loader {
    split: Arc<Split>,
    transform: Transform,
    batch_size: usize,
    shuffle: bool,
    seed: u64,
    drop_last: bool,
    threads: usize,
}

impl Loader {
    /// A loader over `split` with [`default_threads`] workers. With `shuffle`, epoch `e`
    /// visits the samples in a Fisher–Yates permutation seeded by `seed + e`; otherwise in
    /// index order. With `drop_last`, a final batch smaller than `batch_size` is skipped.
    pub fn new(
        split: impl Into<Arc<Split>>,
        transform: Transform,
        batch_size: usize,
        shuffle: bool,
        seed: u64,
        drop_last: bool,
    ) -> Result<Self> {
        if batch_size == 0 {
            return Err(DataError::Invalid("batch size must be positive".to_string()));
        }
        transform.validate()?;
        Ok(Self {
            split: split.into(),
            transform,
            batch_size,
            shuffle,
            seed,
            drop_last,
            threads: default_threads(),
        })
    }

    /// The same loader with `threads` workers per epoch; the batches do not change.
    pub fn with_threads(mut self, threads: usize) -> Result<Self> {
        if threads == 0 {
            return Err(DataError::Invalid(
                "the loader needs at least 1 worker thread, got 0".to_string(),
            ));
        }
        self.threads = threads;
        Ok(self)
    }

    /// The worker threads each epoch starts.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The split being loaded.
    pub fn split(&self) -> &Split {
        &self.split
    }

    /// The number of batches in an epoch.
    pub fn num_batches(&self) -> usize {
        let n = self.split.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// The order in which epoch `epoch` visits the samples (before batching and dropping).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.split.len()).collect();
        if self.shuffle {
            Rng::new(self.seed.wrapping_add(epoch)).shuffle(&mut order);
        }
        order
    }

    /// Starts epoch `epoch`: an iterator of its batches, in order, made by the workers.
    pub fn epoch(&self, epoch: u64) -> Epoch {
        let mut batches: Vec<Vec<usize>> = self
            .order(epoch)
            .chunks(self.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        if self.drop_last && batches.last().is_some_and(|b| b.len() < self.batch_size) {
            batches.pop();
        }
        let job = Job {
            split: Arc::clone(&self.split),
            transform: self.transform.clone(),
            seed: self.seed,
            epoch,
        };
        let n = batches.len();
        let make = move |b: usize, stop: &AtomicBool| job.make_batch(batches[b].clone(), stop);
        Epoch::start(n, self.threads, epoch, Arc::new(make))
    }
}

/// What the workers need to make batches.
struct Job {
    split: Arc<Split>,
    transform: Transform,
    seed: u64,
    epoch: u64,
}

impl Job {
    fn make_batch(&self, indices: Vec<usize>, stop: &AtomicBool) -> Result<Batch> {
        let mut images = Vec::with_capacity(indices.len());
        for &i in &indices {
            if stop.load(Ordering::Relaxed) {
                return Err(DataError::Invalid("loader stopped".to_string()));
            }
            images.push(self.split.image(i)?);
        }
        let labels = indices
            .iter()
            .map(|&i| self.split.label(i))
            .collect::<Result<Vec<_>>>()?;
        let Some(first) = images.first() else {
            return Err(DataError::Invalid("empty batch".to_string()));
        };
        let (h, w) = self.transform.output_hw(first);
        let per = 3 * h * w;
        // Without a resize every image must already have the batch's size.
        for (k, img) in images.iter().enumerate() {
            if self.transform.output_hw(img) != (h, w) {
                let i = indices[k];
                return Err(DataError::MixedSizes {
                    path: self
                        .split
                        .path(i)
                        .map_or_else(|| format!("sample {i}").into(), |p| p.to_path_buf()),
                    expected: format!("{}x{}", first.height, first.width),
                    found: format!("{}x{}", img.height, img.width),
                });
            }
        }
        let mut x = vec![0f32; images.len() * per];
        for ((out, img), &i) in x.chunks_mut(per).zip(&images).zip(&indices) {
            if stop.load(Ordering::Relaxed) {
                return Err(DataError::Invalid("loader stopped".to_string()));
            }
            // One stream per (seed, epoch, sample) keeps augmentation independent of which
            // worker makes the batch, and of the batch size.
            let mut rng = Rng::from_parts(&[self.seed, self.epoch, i as u64]);
            self.transform.apply(img, &mut rng, out)?;
        }
        Ok(Batch {
            x,
            labels,
            shape: [indices.len(), 3, h, w],
            indices,
        })
    }
}

/// Makes batch `b`; the flag asks it to give up early (the consumer is gone).
type MakeBatch = dyn Fn(usize, &AtomicBool) -> Result<Batch> + Send + Sync;

/// What the workers and the consumer share.
struct Shared {
    state: Mutex<State>,
    /// Signalled when a batch is filed or a worker exits: the consumer may proceed.
    filed: Condvar,
    /// Signalled when the consumer takes a batch or stops: a worker may claim another.
    room: Condvar,
    /// Set (under the lock) when the consumer is gone.
    stop: AtomicBool,
}

struct State {
    /// The next batch a worker claims.
    claimed: usize,
    /// The next batch the consumer takes.
    taken: usize,
    /// Made batches the consumer has not taken yet, by index.
    made: BTreeMap<usize, Result<Batch>>,
    /// Workers that have not exited.
    live: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock, but a poisoned lock must not hang the other side.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts a worker out however it exits, and wakes the consumer to notice.
struct LiveGuard<'a>(&'a Shared);

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().live -= 1;
        self.0.filed.notify_all();
    }
}

/// One worker: claim the next batch within the window, make it, file it; until none are left.
fn work(shared: &Shared, n: usize, window: usize, make: &MakeBatch) {
    let _live = LiveGuard(shared);
    loop {
        let b = {
            let mut s = shared.lock();
            loop {
                if shared.stop.load(Ordering::Relaxed) || s.claimed >= n {
                    return;
                }
                if s.claimed < s.taken + window {
                    break;
                }
                s = shared.room.wait(s).unwrap_or_else(PoisonError::into_inner);
            }
            s.claimed += 1;
            s.claimed - 1
        };
        let batch = catch_unwind(AssertUnwindSafe(|| make(b, &shared.stop))).unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            Err(DataError::Invalid(format!(
                "a loader worker panicked making batch {b}: {msg}"
            )))
        });
        shared.lock().made.insert(b, batch);
        shared.filed.notify_all();
    }
}

/// The batches of one epoch, in order; see [`Loader::epoch`]. An image that cannot be read
/// makes its batch an `Err` naming the file; later batches still come.
pub struct Epoch {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    batches: usize,
    spawn_error: Option<DataError>,
}

impl Epoch {
    /// Starts `threads` workers making batches `0..n` with `make`.
    fn start(n: usize, threads: usize, epoch: u64, make: Arc<MakeBatch>) -> Epoch {
        let threads = threads.clamp(1, n.max(1));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                claimed: 0,
                taken: 0,
                made: BTreeMap::new(),
                live: threads,
            }),
            filed: Condvar::new(),
            room: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let window = threads + PREFETCH;
        let mut workers = Vec::with_capacity(threads);
        let mut spawn_error = None;
        for t in 0..threads {
            let (shared_t, make_t) = (Arc::clone(&shared), Arc::clone(&make));
            let spawned = std::thread::Builder::new()
                .name(format!("mep-data-loader-{epoch}-{t}"))
                .spawn(move || work(&shared_t, n, window, make_t.as_ref()));
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => {
                    // The workers that did start make every batch; only none at all is an error.
                    shared.lock().live -= threads - t;
                    if workers.is_empty() {
                        spawn_error = Some(DataError::Invalid(format!("cannot start the loader's workers: {e}")));
                    }
                    break;
                }
            }
        }
        Epoch {
            shared,
            workers,
            batches: n,
            spawn_error,
        }
    }
}

impl Iterator for Epoch {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if let Some(e) = self.spawn_error.take() {
            self.shared.lock().taken = self.batches;
            return Some(Err(e));
        }
        let mut s = self.shared.lock();
        if s.taken >= self.batches {
            return None;
        }
        loop {
            let b = s.taken;
            if let Some(batch) = s.made.remove(&b) {
                s.taken += 1;
                drop(s);
                self.shared.room.notify_all();
                return Some(batch);
            }
            if s.live == 0 {
                // Every worker is gone and this batch was never filed: say so once, then end.
                s.taken = self.batches;
                return Some(Err(DataError::Invalid(format!(
                    "the loader's workers stopped before making batch {b}"
                ))));
            }
            s = self.shared.filed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        {
            // Under the lock, so a worker between its check of the flag and its wait cannot
            // miss the wake-up below.
            let _s = self.shared.lock();
            self.shared.stop.store(true, Ordering::Relaxed);
        }
        self.shared.room.notify_all();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    //! The worker pool on its own, with batch makers that misbehave on purpose.

    use super::*;
    use std::time::{Duration, Instant};

    /// A one-float batch holding `b`.
    fn tiny(b: usize) -> Batch {
        Batch {
            x: vec![b as f32],
            labels: vec![0],
            indices: vec![b],
            shape: [1, 3, 1, 1],
        }
    }

    #[test]
    fn batches_come_in_order_whatever_finishes_first() {
        // Earlier batches take longest, so the workers finish them out of order.
        let make = |b: usize, _: &AtomicBool| {
            std::thread::sleep(Duration::from_millis(((20 - b) % 7) as u64 * 3));
            Ok(tiny(b))
        };
        let got: Vec<usize> = Epoch::start(20, 4, 0, Arc::new(make))
            .map(|b| b.unwrap().indices[0])
            .collect();
        assert_eq!(got, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn a_panicking_worker_is_reported_and_later_batches_still_come() {
        let make = |b: usize, _: &AtomicBool| {
            if b == 3 {
                panic!("batch three is cursed");
            }
            Ok(tiny(b))
        };
        let items: Vec<Result<Batch>> = Epoch::start(8, 2, 0, Arc::new(make)).collect();
        assert_eq!(items.len(), 8);
        let e = items[3].as_ref().unwrap_err().to_string();
        assert!(e.contains("batch 3") && e.contains("cursed"), "{e}");
        assert!(items.iter().enumerate().all(|(i, b)| i == 3 || b.is_ok()));
    }

    #[test]
    fn workers_never_run_more_than_the_window_ahead() {
        let most = Arc::new(Mutex::new(0usize));
        let seen = Arc::clone(&most);
        let make = move |b: usize, _: &AtomicBool| {
            let mut m = seen.lock().unwrap();
            *m = (*m).max(b);
            Ok(tiny(b))
        };
        let mut epoch = Epoch::start(100, 3, 0, Arc::new(make));
        epoch.next().unwrap().unwrap();
        // Batch 0 taken: the workers may claim batches 1..=3 + PREFETCH, no further. Wait
        // until they have (however busy the machine), then give them time to overstep.
        let start = Instant::now();
        while *most.lock().unwrap() < 3 + PREFETCH && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(*most.lock().unwrap(), 3 + PREFETCH);
    }

    #[test]
    fn dropping_the_epoch_stops_blocked_and_busy_workers() {
        // Each batch runs until asked to stop; dropping must ask and join at once.
        let make = |b: usize, stop: &AtomicBool| {
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(tiny(b))
        };
        let epoch = Epoch::start(50, 4, 0, Arc::new(make));
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        drop(epoch);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(2), "drop took {took:?}");
    }

    #[test]
    fn an_empty_epoch_ends_at_once() {
        let make = |b: usize, _: &AtomicBool| Ok(tiny(b));
        assert_eq!(Epoch::start(0, 4, 0, Arc::new(make)).count(), 0);
    }
}
