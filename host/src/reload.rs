//! A chain that can be replaced while the broker runs, without losing a check.
//!
//! [`PolicyHost`] owns the current [`Chain`] behind an atomic pointer. A reload
//! reads the chain file and every module it names, compiles what changed
//! (unchanged modules come from the [`ComponentCache`], keyed by content hash),
//! instantiates and `init`s every policy, and only then swaps the new chain in.
//! A check loads the pointer once when it starts, so checks in flight finish on
//! the chain they started with and checks that start after the swap see only
//! the new one. A reload that fails anywhere leaves the running chain untouched
//! and is recorded in [`ReloadStatus`].
//!
//! [`PolicyHost::watch`] reloads on file changes (the chain file and every
//! module), debounced so a burst of writes is one reload; a half-written file
//! fails that reload and the write that completes it triggers the next.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use crate::cache::{CacheSource, ComponentCache, ModuleHash};
use crate::chain::Chain;
use crate::config::ChainConfig;
use crate::decision::{ConnectDecision, TopicDecision};
use crate::engine::PolicyEngine;
use crate::error::LoadError;
use crate::loader::load_chain;
use crate::request::{ConnectRequest, TopicRequest};
use crate::verdict_cache::{CacheTotals, VerdictCacheStats};

/// How the last reload went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new chain is live with this generation.
    Loaded(u64),
    /// The reload failed; the previous chain keeps running.
    Failed,
}

/// Where the modules of the last successful load came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModuleSources {
    /// Compiled during the load.
    pub compiled: usize,
    /// Reused from memory (unchanged since the previous chain).
    pub memory: usize,
    /// Deserialized from the disk cache.
    pub disk: usize,
}

/// The host's reload state, for operators.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// Generation of the live chain (0 for the first load).
    pub generation: u64,
    /// When the last reload was attempted.
    pub last_attempt: Option<SystemTime>,
    /// How the last reload went.
    pub last_outcome: Option<ReloadOutcome>,
    /// The last failure, naming the file and the cause; cleared by a success.
    pub last_error: Option<String>,
    /// How long the last reload took.
    pub last_duration: Duration,
    /// Where the live chain's modules came from.
    pub modules: ModuleSources,
    pub reloads: u64,
    pub failures: u64,
}

struct Inner {
    engine: Option<PolicyEngine>,
    /// `None` for a host made from a ready chain ([`PolicyHost::from_chain`]).
    config_path: Option<PathBuf>,
    cache: ComponentCache,
    current: ArcSwap<Chain>,
    status: Mutex<ReloadStatus>,
    /// Files the live chain was loaded from: the chain file and its modules.
    files: Mutex<Vec<PathBuf>>,
    /// The live chain's modules: all the cache keeps after any reload.
    live_modules: Mutex<HashSet<ModuleHash>>,
    /// One reload at a time.
    reloading: Mutex<()>,
    /// The sessions' verdict caches: counters and the host-wide bound.
    verdict_cache: Arc<CacheTotals>,
}

/// A chain loaded from a file that can be reloaded while checks run.
/// Cheap to clone; share it between the broker's threads.
#[derive(Clone)]
pub struct PolicyHost {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PolicyHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyHost")
            .field("config", &self.inner.config_path)
            .field("generation", &self.generation())
            .finish()
    }
}

/// Builder for a [`PolicyHost`].
#[derive(Debug)]
pub struct PolicyHostBuilder {
    config_path: PathBuf,
    engine: Option<PolicyEngine>,
    cache_dir: Option<PathBuf>,
}

impl PolicyHostBuilder {
    /// Use this engine (default: a new one with default settings).
    pub fn engine(mut self, engine: PolicyEngine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Keep compiled modules in `dir` so a restart does not recompile.
    pub fn disk_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Load the chain. The first load must succeed: there is no previous
    /// chain to fall back on.
    pub fn build(self) -> Result<PolicyHost, LoadError> {
        let engine = match self.engine {
            Some(e) => e,
            None => PolicyEngine::new()?,
        };
        let cache = match self.cache_dir {
            Some(dir) => ComponentCache::with_disk(dir)?,
            None => ComponentCache::new(),
        };
        let config_path =
            std::path::absolute(&self.config_path).map_err(|source| LoadError::Read {
                path: self.config_path.clone(),
                error: source,
            })?;
        let started = Instant::now();
        let Loaded {
            chain,
            files,
            sources: modules,
            hashes,
        } = load(&engine, &config_path, &cache, 0)?;
        cache.retain(&hashes);
        let status = ReloadStatus {
            last_attempt: Some(SystemTime::now()),
            last_outcome: Some(ReloadOutcome::Loaded(0)),
            last_duration: started.elapsed(),
            modules,
            ..ReloadStatus::default()
        };
        Ok(PolicyHost {
            inner: Arc::new(Inner {
                engine: Some(engine),
                config_path: Some(config_path),
                cache,
                current: ArcSwap::from_pointee(chain),
                status: Mutex::new(status),
                files: Mutex::new(files),
                live_modules: Mutex::new(hashes),
                reloading: Mutex::new(()),
                verdict_cache: Arc::default(),
            }),
        })
    }
}

struct Loaded {
    chain: Chain,
    files: Vec<PathBuf>,
    sources: ModuleSources,
    hashes: HashSet<ModuleHash>,
}

fn load(
    engine: &PolicyEngine,
    config_path: &Path,
    cache: &ComponentCache,
    generation: u64,
) -> Result<Loaded, LoadError> {
    // Resolve symlinks once, so the chain file and everything it names
    // relative to itself come from one snapshot: a Kubernetes ConfigMap swaps
    // a `..data` directory link, and reading the chain file through the old
    // link and a module through the new one would mix two versions.
    let snapshot = std::fs::canonicalize(config_path).map_err(|source| LoadError::Read {
        path: config_path.to_owned(),
        error: source,
    })?;
    let config = ChainConfig::from_file(&snapshot)?;
    let loaded = load_chain(engine, &config, &snapshot, cache, generation)?;
    // Watch the paths as the operator named them (the links), not the
    // snapshot, which is replaced by the next deployment.
    let config_dir = config_path.parent().unwrap_or_else(|| Path::new("."));
    let snapshot_dir = snapshot.parent().unwrap_or_else(|| Path::new("."));
    let as_named = |f: &Path| match f.strip_prefix(snapshot_dir) {
        Ok(rest) => config_dir.join(rest),
        Err(_) => std::path::absolute(f).unwrap_or_else(|_| f.to_owned()),
    };
    let mut files = vec![config_path.to_owned()];
    files.extend(loaded.data_files.iter().map(|f| as_named(f)));
    let mut sources = ModuleSources::default();
    let mut hashes = HashSet::new();
    for m in &loaded.modules {
        files.push(as_named(&m.path));
        hashes.insert(m.hash);
        match m.source {
            CacheSource::Compiled => sources.compiled += 1,
            CacheSource::Memory => sources.memory += 1,
            CacheSource::Disk => sources.disk += 1,
        }
    }
    Ok(Loaded {
        chain: loaded.chain,
        files,
        sources,
        hashes,
    })
}

impl PolicyHost {
    /// A host serving a chain built in code (native policies, tests). It
    /// has no file to reload from: [`PolicyHost::reload`] fails and the chain
    /// stays.
    pub fn from_chain(chain: Chain) -> Self {
        let status = ReloadStatus {
            generation: chain.generation(),
            ..ReloadStatus::default()
        };
        PolicyHost {
            inner: Arc::new(Inner {
                engine: None,
                config_path: None,
                cache: ComponentCache::new(),
                current: ArcSwap::from_pointee(chain),
                status: Mutex::new(status),
                files: Mutex::new(Vec::new()),
                live_modules: Mutex::new(HashSet::new()),
                reloading: Mutex::new(()),
                verdict_cache: Arc::default(),
            }),
        }
    }

    pub fn builder(config_path: impl Into<PathBuf>) -> PolicyHostBuilder {
        PolicyHostBuilder {
            config_path: config_path.into(),
            engine: None,
            cache_dir: None,
        }
    }

    /// The live chain. Hold the `Arc` to keep using one generation.
    pub fn chain(&self) -> Arc<Chain> {
        self.inner.current.load_full()
    }

    pub fn generation(&self) -> u64 {
        self.inner.current.load().generation()
    }

    /// The live chain (a cheap, lock-free read).
    pub(crate) fn live(&self) -> arc_swap::Guard<Arc<Chain>> {
        self.inner.current.load()
    }

    pub(crate) fn verdict_cache_totals(&self) -> &Arc<CacheTotals> {
        &self.inner.verdict_cache
    }

    /// The sessions' verdict cache counters (hits, misses, evictions) and
    /// what all sessions keep right now.
    pub fn verdict_cache_stats(&self) -> VerdictCacheStats {
        self.inner.verdict_cache.snapshot()
    }

    /// [`Chain::connect_check`] on the live chain.
    pub fn connect_check(&self, request: &ConnectRequest) -> ConnectDecision {
        self.inner.current.load().connect_check(request)
    }

    /// [`Chain::topic_check`] on the live chain.
    pub fn topic_check(&self, request: &TopicRequest) -> TopicDecision {
        self.inner.current.load().topic_check(request)
    }

    /// The async face; runs inline (see [`Chain::connect_check_async`]).
    pub async fn connect_check_async(&self, request: &ConnectRequest) -> ConnectDecision {
        self.connect_check(request)
    }

    /// The async face; runs inline (see [`Chain::topic_check_async`]).
    pub async fn topic_check_async(&self, request: &TopicRequest) -> TopicDecision {
        self.topic_check(request)
    }

    /// How many compiled components the host holds in memory: the live
    /// chain's, never those of failed reloads.
    pub fn cached_components(&self) -> usize {
        self.inner.cache.len()
    }

    /// The reload state: generation, last attempt, outcome and error.
    pub fn status(&self) -> ReloadStatus {
        self.inner
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The chain file and every module the live chain was loaded from.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        self.inner
            .files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What a watcher should watch: the live chain's files, plus the modules
    /// the chain file names now, even if loading it failed (so a module that
    /// is still being deployed triggers the retry when it arrives).
    fn files_to_watch(&self) -> Vec<PathBuf> {
        let mut files = self.watched_files();
        let Some(path) = &self.inner.config_path else {
            return files;
        };
        if let Ok(config) = ChainConfig::from_file(path) {
            let modules = config
                .policies
                .iter()
                .map(|p| ChainConfig::module_path(path, &p.module));
            for file in modules.chain(config.data_files(path)) {
                let file = std::path::absolute(&file).unwrap_or(file);
                if !files.contains(&file) {
                    files.push(file);
                }
            }
        }
        files
    }

    /// Load the chain file again and swap the new chain in; on any error the
    /// running chain is untouched. Returns the new generation.
    pub fn reload(&self) -> Result<u64, LoadError> {
        let inner = &self.inner;
        let (Some(engine), Some(config_path)) = (&inner.engine, &inner.config_path) else {
            return Err(LoadError::Config {
                path: PathBuf::new(),
                message: "this host serves a chain built in code; there is no file to reload"
                    .into(),
            });
        };
        let _one_at_a_time = inner.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let generation = inner.current.load().generation() + 1;
        let started = Instant::now();
        let result = load(engine, config_path, &inner.cache, generation);
        let mut status = inner.status.lock().unwrap_or_else(|p| p.into_inner());
        status.last_attempt = Some(SystemTime::now());
        status.last_duration = started.elapsed();
        let mut live = inner.live_modules.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(Loaded {
                chain,
                files,
                sources: modules,
                hashes,
            }) => {
                // Build everything first, then one pointer swap.
                inner.current.store(Arc::new(chain));
                *inner.files.lock().unwrap_or_else(|p| p.into_inner()) = files;
                inner.cache.retain(&hashes);
                *live = hashes;
                status.generation = generation;
                status.last_outcome = Some(ReloadOutcome::Loaded(generation));
                status.last_error = None;
                status.modules = modules;
                status.reloads += 1;
                tracing::info!(
                    target: "mqtt_policy::reload",
                    generation,
                    compiled = modules.compiled,
                    reused = modules.memory + modules.disk,
                    took = ?status.last_duration,
                    "policy chain reloaded"
                );
                Ok(generation)
            }
            Err(e) => {
                // Components compiled for the failed chain are not kept:
                // a stream of failed deployments must not grow memory.
                inner.cache.retain(&live);
                status.last_outcome = Some(ReloadOutcome::Failed);
                status.last_error = Some(e.to_string());
                status.failures += 1;
                tracing::error!(
                    target: "mqtt_policy::reload",
                    config = %config_path.display(),
                    kept_generation = generation - 1,
                    "reload failed, keeping the running chain: {e}"
                );
                Err(e)
            }
        }
    }

    /// Reload whenever the chain file or a module it names changes, after
    /// `debounce` of quiet. Stops when the returned [`Watcher`] is dropped.
    pub fn watch(&self, debounce: Duration) -> Result<Watcher, LoadError> {
        let (tx, rx) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })
        .map_err(|e| LoadError::Engine(format!("cannot watch files: {e}")))?;
        // Watches are in place before this returns: no change is missed.
        let mut watched = Watched::default();
        watched.sync(&mut watcher, self.files_to_watch());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let host = Arc::downgrade(&self.inner);
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("mqtt-policy-watch".into())
                .spawn(move || watch_loop(host, watcher, watched, rx, stop, debounce))
                .map_err(|e| LoadError::Engine(format!("cannot start watcher: {e}")))?
        };
        Ok(Watcher {
            stop,
            thread: Some(thread),
        })
    }
}

/// Watches files for a [`PolicyHost`]; dropping it stops the watching.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const POLL: Duration = Duration::from_millis(25);

/// The files a watcher reacts to, and the directories it watches for them.
/// Directories, not files: editors and deploy tools replace files by rename,
/// which a watch on the old inode would miss.
#[derive(Default)]
struct Watched {
    dirs: HashSet<PathBuf>,
    files: Vec<PathBuf>,
    /// What each file resolves to (through symlinks) and its size and
    /// mtime, to notice a swap of a link somewhere in its path — a
    /// Kubernetes ConfigMap replaces `..data`, an event on none of the
    /// named paths.
    fingerprints: Vec<Option<Fingerprint>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    resolved: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let resolved = std::fs::canonicalize(path).ok()?;
    let meta = std::fs::metadata(&resolved).ok()?;
    Some(Fingerprint {
        resolved,
        len: meta.len(),
        modified: meta.modified().ok(),
    })
}

impl Watched {
    fn sync(&mut self, watcher: &mut notify::RecommendedWatcher, files: Vec<PathBuf>) {
        use notify::Watcher as _;
        let want: HashSet<PathBuf> = files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        for d in self.dirs.difference(&want) {
            let _ = watcher.unwatch(d);
        }
        self.dirs.retain(|d| want.contains(d));
        for d in want {
            if self.dirs.contains(&d) {
                continue;
            }
            // A directory that does not exist yet is retried at the next sync.
            match watcher.watch(&d, notify::RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.dirs.insert(d);
                }
                Err(e) => {
                    tracing::warn!(target: "mqtt_policy::reload", dir = %d.display(), "cannot watch: {e}")
                }
            }
        }
        self.fingerprints = files.iter().map(|f| fingerprint(f)).collect();
        self.files = files;
    }

    fn is_relevant(&mut self, event: &notify::Event) -> bool {
        use notify::EventKind::Access;
        use notify::event::{AccessKind, AccessMode};
        let kind_counts = !matches!(event.kind, Access(_))
            || matches!(event.kind, Access(AccessKind::Close(AccessMode::Write)));
        if !kind_counts {
            return false;
        }
        if event.paths.iter().any(|p| self.files.contains(p)) {
            return true;
        }
        // Something else in a watched directory changed: a file we watch
        // may now resolve elsewhere (a swapped symlink).
        let now: Vec<Option<Fingerprint>> = self.files.iter().map(|f| fingerprint(f)).collect();
        if now != self.fingerprints {
            self.fingerprints = now;
            return true;
        }
        false
    }
}

fn watch_loop(
    host: Weak<Inner>,
    mut watcher: notify::RecommendedWatcher,
    mut watched: Watched,
    events: mpsc::Receiver<notify::Result<notify::Event>>,
    stop: Arc<AtomicBool>,
    debounce: Duration,
) {
    let mut pending: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        match events.recv_timeout(POLL) {
            Ok(Ok(event)) if watched.is_relevant(&event) => pending = Some(Instant::now()),
            Ok(Ok(_)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(Err(e)) => tracing::warn!(target: "mqtt_policy::reload", "file watch error: {e}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if pending.is_some_and(|t| t.elapsed() >= debounce) {
            pending = None;
            let Some(inner) = host.upgrade() else { return };
            let host = PolicyHost { inner };
            // Errors are logged and kept in the status; the next change retries.
            let _ = host.reload();
            watched.sync(&mut watcher, host.files_to_watch());
        }
    }
}
