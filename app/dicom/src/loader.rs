//! Background decoding with a bounded LRU cache of decoded frames.
//!
//! Callers ask for instances in priority order (the slice on screen first); workers decode whole
//! instances (one file read even for multi-frame objects) and report each result on a channel. A new
//! request supersedes the previous one: queued jobs of an older generation are dropped unstarted.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};
use lru::LruCache;

use crate::pixel::{self, Frame};

/// A frame's identity: the file it is in and its index there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FrameKey {
    pub path: Arc<Path>,
    pub frame: u32,
}

/// What a worker reports.
#[derive(Debug, Clone)]
pub enum LoadEvent {
    /// Every frame of an instance is decoded and in the cache.
    Decoded { path: Arc<Path>, frames: u32 },
    /// The instance could not be decoded; the message is one sentence for the user.
    Failed { path: Arc<Path>, message: String },
}

/// LRU cache of decoded frames, bounded by the bytes of their samples.
pub struct FrameCache {
    inner: Mutex<CacheInner>,
}

struct CacheInner {
    lru: LruCache<FrameKey, Arc<Frame>>,
    bytes: usize,
    cap_bytes: usize,
    failed: std::collections::HashMap<Arc<Path>, String>,
}

impl FrameCache {
    pub fn new(cap_bytes: usize) -> Self {
        FrameCache {
            inner: Mutex::new(CacheInner {
                lru: LruCache::unbounded(),
                bytes: 0,
                cap_bytes,
                failed: Default::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // A worker that panicked mid-insert leaves consistent data (insertions are single calls).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &FrameKey) -> Option<Arc<Frame>> {
        self.lock().lru.get(key).cloned()
    }

    pub fn contains(&self, key: &FrameKey) -> bool {
        self.lock().lru.contains(key)
    }

    /// The reason an instance failed to decode, if it did.
    pub fn failure(&self, path: &Path) -> Option<String> {
        self.lock().failed.get(path).cloned()
    }

    pub fn insert(&self, key: FrameKey, frame: Arc<Frame>) {
        let mut c = self.lock();
        c.bytes += frame.byte_len();
        if let Some(old) = c.lru.put(key, frame) {
            c.bytes = c.bytes.saturating_sub(old.byte_len());
        }
        while c.bytes > c.cap_bytes && c.lru.len() > 1 {
            match c.lru.pop_lru() {
                Some((_, f)) => c.bytes = c.bytes.saturating_sub(f.byte_len()),
                None => break,
            }
        }
    }

    fn fail(&self, path: Arc<Path>, message: String) {
        self.lock().failed.insert(path, message);
    }

    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    pub fn len(&self) -> usize {
        self.lock().lru.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Decodes instances on a worker pool that uses every core.
pub struct Loader {
    pool: rayon::ThreadPool,
    cache: Arc<FrameCache>,
    generation: Arc<AtomicU64>,
    in_flight: Arc<Mutex<HashSet<Arc<Path>>>>,
    /// Jobs queued or running (dropped ones included until the pool reaches them).
    pending: Arc<std::sync::atomic::AtomicUsize>,
    events: Sender<LoadEvent>,
    notify: Arc<dyn Fn() + Send + Sync>,
}

impl Loader {
    /// `notify` is called after every event, e.g. to wake the GUI.
    pub fn new(
        cache_bytes: usize,
        notify: Arc<dyn Fn() + Send + Sync>,
    ) -> std::io::Result<(Loader, Receiver<LoadEvent>)> {
        let pool = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("radclip-decode-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        let (events, rx) = crossbeam_channel::unbounded();
        Ok((
            Loader {
                pool,
                cache: Arc::new(FrameCache::new(cache_bytes)),
                generation: Arc::new(AtomicU64::new(0)),
                in_flight: Default::default(),
                pending: Default::default(),
                events,
                notify,
            },
            rx,
        ))
    }

    pub fn cache(&self) -> &Arc<FrameCache> {
        &self.cache
    }

    /// Whether no job is queued or running.
    pub fn is_idle(&self) -> bool {
        self.pending.load(Ordering::SeqCst) == 0
    }

    /// Drops every queued job; running ones finish but their result is still cached.
    pub fn cancel(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Replaces the queue with `paths`, decoded in the given order (first = most urgent).
    pub fn request(&self, paths: impl IntoIterator<Item = Arc<Path>>) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        for path in paths {
            let key = FrameKey {
                path: path.clone(),
                frame: 0,
            };
            if self.cache.contains(&key) || self.cache.failure(&path).is_some() {
                continue;
            }
            let (cache, gen_now, in_flight, events, notify, pending) = (
                self.cache.clone(),
                self.generation.clone(),
                self.in_flight.clone(),
                self.events.clone(),
                self.notify.clone(),
                self.pending.clone(),
            );
            pending.fetch_add(1, Ordering::SeqCst);
            self.pool.spawn_fifo(move || {
                // Decrements however the job ends.
                struct Done(Arc<std::sync::atomic::AtomicUsize>);
                impl Drop for Done {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let _done = Done(pending);
                if gen_now.load(Ordering::SeqCst) != generation || cache.contains(&key) {
                    return;
                }
                {
                    let mut f = in_flight.lock().unwrap_or_else(|e| e.into_inner());
                    if !f.insert(path.clone()) {
                        return;
                    }
                }
                let event = decode_into(&cache, &path);
                in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&path);
                // The receiver is gone only when the viewer is closing.
                let _ = events.send(event);
                notify();
            });
        }
    }
}

fn decode_into(cache: &FrameCache, path: &Arc<Path>) -> LoadEvent {
    match pixel::decode_file(path) {
        Ok(frames) => {
            let n = frames.len() as u32;
            for (i, f) in frames.into_iter().enumerate() {
                cache.insert(
                    FrameKey {
                        path: path.clone(),
                        frame: i as u32,
                    },
                    Arc::new(f),
                );
            }
            LoadEvent::Decoded {
                path: path.clone(),
                frames: n,
            }
        }
        Err(e) => {
            let message = e.to_string();
            cache.fail(path.clone(), message.clone());
            LoadEvent::Failed {
                path: path.clone(),
                message,
            }
        }
    }
}
