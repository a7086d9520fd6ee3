//! Batches of a split, prepared on a background thread.
//!
//! Each epoch gets its own thread that decodes and transforms the next batches (the images
//! of a batch in parallel, on rayon's pool) while the consumer works on the current one, a
//! few batches ahead through a bounded channel. Dropping the epoch's iterator stops the
//! thread after at most the batch it is working on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rayon::prelude::*;

use crate::transform::{Rng, Transform};
use crate::{DataError, Image, Result, Split};

/// How many finished batches may wait for the consumer: enough to hide a slow batch,
/// few enough that memory stays at a handful of batches.
const PREFETCH: usize = 2;

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
}

impl Loader {
    /// A loader over `split`. With `shuffle`, epoch `e` visits the samples in a
    /// Fisher–Yates permutation seeded by `seed + e`; otherwise in index order. With
    /// `drop_last`, a final batch smaller than `batch_size` is skipped.
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
        })
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

    /// Starts epoch `epoch`: an iterator of its batches, prepared on a background thread.
    pub fn epoch(&self, epoch: u64) -> Epoch {
        let mut batches: Vec<Vec<usize>> = self
            .order(epoch)
            .chunks(self.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        if self.drop_last && batches.last().is_some_and(|b| b.len() < self.batch_size) {
            batches.pop();
        }
        let (tx, rx) = sync_channel(PREFETCH);
        let stop = Arc::new(AtomicBool::new(false));
        let job = Job {
            split: Arc::clone(&self.split),
            transform: self.transform.clone(),
            seed: self.seed,
            epoch,
            stop: Arc::clone(&stop),
        };
        let handle = std::thread::Builder::new()
            .name(format!("mep-data-loader-epoch-{epoch}"))
            .spawn(move || {
                for indices in batches {
                    if job.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let batch = job.make_batch(indices);
                    // The receiver is gone when the consumer dropped the epoch: just stop.
                    if tx.send(batch).is_err() {
                        return;
                    }
                }
            });
        match handle {
            Ok(handle) => Epoch {
                rx: Some(rx),
                handle: Some(handle),
                stop,
                spawn_error: None,
            },
            Err(e) => Epoch {
                rx: None,
                handle: None,
                stop,
                spawn_error: Some(DataError::Invalid(format!("cannot start the loader thread: {e}"))),
            },
        }
    }
}

/// What the background thread needs to make batches.
struct Job {
    split: Arc<Split>,
    transform: Transform,
    seed: u64,
    epoch: u64,
    stop: Arc<AtomicBool>,
}

impl Job {
    fn make_batch(&self, indices: Vec<usize>) -> Result<Batch> {
        let images: Vec<Result<Image>> = indices
            .par_iter()
            .map(|&i| {
                if self.stop.load(Ordering::Relaxed) {
                    return Err(DataError::Invalid("loader stopped".to_string()));
                }
                self.split.image(i)
            })
            .collect();
        let images: Vec<Image> = images.into_iter().collect::<Result<_>>()?;
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
        x.par_chunks_mut(per)
            .zip(images.par_iter())
            .zip(indices.par_iter())
            .try_for_each(|((out, img), &i)| {
                // One stream per (seed, epoch, sample) keeps augmentation independent of how
                // rayon schedules the images.
                let mut rng = Rng::from_parts(&[self.seed, self.epoch, i as u64]);
                self.transform.apply(img, &mut rng, out)
            })?;
        Ok(Batch {
            x,
            labels,
            shape: [indices.len(), 3, h, w],
            indices,
        })
    }
}

/// The batches of one epoch, in order; see [`Loader::epoch`]. An image that cannot be read
/// makes its batch an `Err` naming the file; later batches still come.
pub struct Epoch {
    rx: Option<Receiver<Result<Batch>>>,
    handle: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    spawn_error: Option<DataError>,
}

impl Iterator for Epoch {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if let Some(e) = self.spawn_error.take() {
            return Some(Err(e));
        }
        // A closed channel means the thread sent its last batch (or died, which join reports).
        match self.rx.as_ref()?.recv() {
            Ok(batch) => Some(batch),
            Err(_) => {
                self.rx = None;
                let panicked = self.handle.take().map(|h| h.join().is_err()).unwrap_or(false);
                panicked.then(|| Err(DataError::Invalid("the loader thread panicked".to_string())))
            }
        }
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver first unblocks a thread waiting to send, so the join is prompt.
        self.rx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
