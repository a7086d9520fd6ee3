//! The caching device-memory pool of [`KernelBackend`](crate::KernelBackend): a buffer that
//! is dropped returns its allocation to a free list keyed by its exact byte size, and the
//! next allocation of that size takes it from there, so that a forward, a backward or a NEB
//! step allocates nothing from the device once it has run once (a GPU allocation costs a
//! driver call, and a CUDA graph cannot capture one at all).
//!
//! One stream orders all work of a launcher, so a block freed by one buffer may be handed to
//! the next at once: every later use of it is issued, and runs, after every earlier one.
//!
//! Graph capture follows PyTorch's graph-private pools: while a capture is open, allocations
//! are served from the cache only, and every block handed out or freed during the capture
//! belongs to the graph afterwards. The [`GraphBlocks`] of a live graph keep such blocks off
//! the general free list, because each replay writes them again; they return to it when the
//! graph is dropped (or, for a block still held by a buffer then, when that buffer is).

use crate::error::{KernelError, Result};
use crate::launcher::Launcher;
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves the maps consistent, so a panic elsewhere does not poison them.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The pool's counters, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Calls of the launcher's own `alloc` (cache misses), since the backend was made.
    pub allocations: u64,
    /// Allocations served from the cache.
    pub hits: u64,
    /// Bytes in the general free list, ready for the next allocation.
    pub cached_bytes: usize,
    /// Blocks in the general free list.
    pub cached_blocks: usize,
    /// Bytes obtained from the launcher and not yet released by [`trim`](Pool::trim): in
    /// buffers, in the cache, or held by graphs.
    pub device_bytes: usize,
}

/// A free block: its memory and the live graphs that still own it, first the one whose
/// free list holds it.
struct Cached<M> {
    mem: M,
    owners: Vec<Arc<GraphBlocks<M>>>,
}

struct State<M> {
    free: HashMap<usize, Vec<M>>,
    stats: PoolStats,
    // The blocks of the graph being captured, if a capture is open.
    capturing: Option<Arc<GraphBlocks<M>>>,
}

/// The caching allocator; shared by the backend and by every block it handed out.
pub(crate) struct Pool<M> {
    state: Mutex<State<M>>,
}

/// The blocks a captured graph owns while it lives: the free ones are here, the others are
/// in buffers (each [`Block`] names its owning graphs).
pub(crate) struct GraphBlocks<M> {
    inner: Mutex<GraphState<M>>,
}

struct GraphState<M> {
    // False once the graph is dropped: its blocks then go back to the general free list.
    alive: bool,
    free: HashMap<usize, Vec<Cached<M>>>,
}

/// One allocation handed out by the pool; it returns there when dropped.
pub struct Block<M> {
    // `None` only inside `drop`.
    mem: Option<M>,
    bytes: usize,
    owners: Vec<Arc<GraphBlocks<M>>>,
    pool: Arc<Pool<M>>,
}

impl<M> Block<M> {
    /// The allocation's size in bytes, as asked for.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl<M> Deref for Block<M> {
    type Target = M;
    fn deref(&self) -> &M {
        self.mem.as_ref().expect("a block holds its memory until dropped")
    }
}

impl<M> DerefMut for Block<M> {
    fn deref_mut(&mut self) -> &mut M {
        self.mem.as_mut().expect("a block holds its memory until dropped")
    }
}

impl<M> Drop for Block<M> {
    fn drop(&mut self) {
        if let Some(mem) = self.mem.take() {
            let owners = std::mem::take(&mut self.owners);
            self.pool.give_back(self.bytes, mem, owners);
        }
    }
}

impl<M> Pool<M> {
    pub(crate) fn new() -> Arc<Pool<M>> {
        Arc::new(Pool {
            state: Mutex::new(State {
                free: HashMap::new(),
                stats: PoolStats::default(),
                capturing: None,
            }),
        })
    }

    pub(crate) fn stats(&self) -> PoolStats {
        lock(&self.state).stats
    }

    /// `bytes` bytes: from the cache if it has a block of that size, else from the launcher
    /// (after releasing the cache and retrying once if the device is out of memory). While a
    /// capture is open, from the cache only.
    pub(crate) fn alloc<L: Launcher<Mem = M>>(self: &Arc<Self>, launcher: &L, bytes: usize) -> Result<Block<M>> {
        let block = |mem, owners| Block {
            mem: Some(mem),
            bytes,
            owners,
            pool: self.clone(),
        };
        {
            let mut st = lock(&self.state);
            if let Some(graph) = st.capturing.clone() {
                // The graph's own free blocks first: reusing them inside one graph is as safe
                // as in eager order, and keeps the general cache for later work.
                if let Some(c) = lock(&graph.inner).free.get_mut(&bytes).and_then(Vec::pop) {
                    st.stats.hits += 1;
                    return Ok(block(c.mem, c.owners));
                }
                let Some(mem) = st.take(bytes) else {
                    return Err(KernelError::Memory(format!(
                        "allocating {bytes} bytes while capturing a graph: the pool has no free block of that size, \
                         and the device cannot allocate during a capture (warm up first: run the captured work once \
                         eagerly, and drop its outputs, before capturing)"
                    )));
                };
                return Ok(block(mem, vec![graph]));
            }
            if let Some(mem) = st.take(bytes) {
                return Ok(block(mem, Vec::new()));
            }
        }
        let mem = match launcher.alloc(bytes) {
            Ok(m) => m,
            Err(KernelError::OutOfMemory { msg, .. }) => {
                let released = self.trim();
                if released == 0 {
                    return Err(KernelError::OutOfMemory { bytes, msg });
                }
                launcher.alloc(bytes).map_err(|e| match e {
                    KernelError::OutOfMemory { msg, .. } => KernelError::OutOfMemory {
                        bytes,
                        msg: format!("{msg} (also after releasing the pool's {released} cached bytes)"),
                    },
                    e => e,
                })?
            }
            Err(e) => return Err(e),
        };
        let mut st = lock(&self.state);
        st.stats.allocations += 1;
        st.stats.device_bytes += bytes;
        Ok(block(mem, Vec::new()))
    }

    /// Releases every block of the general free list to the launcher; returns their bytes.
    /// Blocks held by live graphs stay; during a capture it releases nothing.
    pub(crate) fn trim(&self) -> usize {
        let (released, free) = {
            let mut st = lock(&self.state);
            // A device free inside a capture would be recorded into the graph.
            if st.capturing.is_some() {
                return 0;
            }
            let released = st.stats.cached_bytes;
            st.stats.cached_bytes = 0;
            st.stats.cached_blocks = 0;
            st.stats.device_bytes -= released;
            (released, std::mem::take(&mut st.free))
        };
        // Freed outside the lock: a device free may wait for the driver.
        drop(free);
        released
    }

    /// Opens a capture: until [`end_capture`](Self::end_capture), allocations come from the
    /// cache only and the blocks handed out or freed belong to the returned graph.
    pub(crate) fn begin_capture(&self) -> Result<Arc<GraphBlocks<M>>> {
        let mut st = lock(&self.state);
        if st.capturing.is_some() {
            return Err(KernelError::Memory(
                "a graph capture is already open on this backend (captures do not nest)".into(),
            ));
        }
        let graph = Arc::new(GraphBlocks {
            inner: Mutex::new(GraphState {
                alive: true,
                free: HashMap::new(),
            }),
        });
        st.capturing = Some(graph.clone());
        Ok(graph)
    }

    pub(crate) fn end_capture(&self) {
        lock(&self.state).capturing = None;
    }

    /// A block dropped by its buffer: to the free list of its first live owner, else to the
    /// general one. A block freed during a capture joins that graph's owners, since the graph
    /// may have used it.
    fn give_back(&self, bytes: usize, mem: M, mut owners: Vec<Arc<GraphBlocks<M>>>) {
        if let Some(g) = &lock(&self.state).capturing {
            if !owners.iter().any(|o| Arc::ptr_eq(o, g)) {
                owners.push(g.clone());
            }
        }
        self.release(bytes, Cached { mem, owners });
    }

    fn release(&self, bytes: usize, mut c: Cached<M>) {
        while let Some(owner) = c.owners.first().cloned() {
            let mut g = lock(&owner.inner);
            if g.alive {
                g.free.entry(bytes).or_default().push(c);
                return;
            }
            drop(g);
            c.owners.remove(0);
        }
        let mut st = lock(&self.state);
        st.stats.cached_bytes += bytes;
        st.stats.cached_blocks += 1;
        st.free.entry(bytes).or_default().push(c.mem);
    }

    /// The graph is gone: its free blocks go to their next live owner or the general list.
    pub(crate) fn graph_dropped(&self, graph: &Arc<GraphBlocks<M>>) {
        let free = {
            let mut g = lock(&graph.inner);
            g.alive = false;
            std::mem::take(&mut g.free)
        };
        for (bytes, blocks) in free {
            for mut c in blocks {
                c.owners.retain(|o| !Arc::ptr_eq(o, graph));
                self.release(bytes, c);
            }
        }
    }
}

impl<M> State<M> {
    fn take(&mut self, bytes: usize) -> Option<M> {
        let mem = self.free.get_mut(&bytes).and_then(Vec::pop)?;
        self.stats.hits += 1;
        self.stats.cached_bytes -= bytes;
        self.stats.cached_blocks -= 1;
        Some(mem)
    }
}

impl<M> GraphBlocks<M> {
    /// Bytes of the graph's free blocks (its intermediates and the outputs already dropped).
    pub(crate) fn free_bytes(&self) -> usize {
        lock(&self.inner).free.iter().map(|(bytes, v)| bytes * v.len()).sum()
    }
}
