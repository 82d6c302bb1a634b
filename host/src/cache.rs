//! Compiled components, cached by content: in memory so a reload does not
//! recompile unchanged modules, and optionally on disk so a restart does not
//! either.
//!
//! Keys are the SHA-256 of the module bytes plus, on disk, a hash of the
//! engine's compilation settings (`Engine::precompile_compatibility_hash`), so
//! a cache written by a differently configured engine or another wasmtime
//! version is simply a miss. Each disk entry carries a checksum of its
//! contents: a truncated or corrupted file is a miss (and is rewritten), never
//! loaded.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};
use wasmtime::component::Component;

use crate::engine::PolicyEngine;
use crate::error::LoadError;

/// SHA-256 of a module's bytes.
pub type ModuleHash = [u8; 32];

const MAGIC: &[u8; 8] = b"MQPCWC01";

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSource {
    /// Already compiled in this process.
    Memory,
    /// Deserialized from the disk cache.
    Disk,
    /// Compiled now.
    Compiled,
}

/// A cache of compiled components; share one between reloads.
#[derive(Debug, Default)]
pub struct ComponentCache {
    memory: Mutex<HashMap<ModuleHash, Component>>,
    disk: Option<PathBuf>,
}

/// Feeds `Hash` output into SHA-256, for a digest that is stable across
/// processes (std's `DefaultHasher` is not promised to be).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0 // unused: the digest is read with `finalize`
    }
}

pub fn module_hash(bytes: &[u8]) -> ModuleHash {
    Sha256::digest(bytes).into()
}

impl ComponentCache {
    /// An in-memory cache only.
    pub fn new() -> Self {
        Self::default()
    }

    /// An in-memory cache backed by files in `dir` (created if missing, only
    /// accessible to this user). The directory must be as trusted as the
    /// module files: its entries are loaded as native code.
    pub fn with_disk(dir: impl Into<PathBuf>) -> Result<Self, LoadError> {
        let dir = dir.into();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir).map_err(|source| LoadError::Read {
            path: dir.clone(),
            error: source,
        })?;
        check_trusted(&dir)?;
        Ok(Self {
            memory: Mutex::default(),
            disk: Some(dir),
        })
    }

    /// The compiled component for `bytes`, from memory, disk, or compiled now.
    pub(crate) fn get_or_compile(
        &self,
        engine: &PolicyEngine,
        policy: &str,
        origin: &str,
        bytes: &[u8],
    ) -> Result<(Component, ModuleHash, CacheSource), LoadError> {
        let hash = module_hash(bytes);
        if let Some(c) = self.lock().get(&hash) {
            return Ok((c.clone(), hash, CacheSource::Memory));
        }
        let disk_path = self.disk.as_ref().map(|d| disk_entry(d, engine, &hash));
        let from_disk = disk_path.as_deref().and_then(|p| read_entry(engine, p));
        let (component, source) = match from_disk {
            Some(c) => (c, CacheSource::Disk),
            None => {
                let c = crate::compile::compile_component(engine, policy, origin, bytes)?;
                if let Some(p) = &disk_path {
                    write_entry(&c, p);
                }
                (c, CacheSource::Compiled)
            }
        };
        self.lock().insert(hash, component.clone());
        Ok((component, hash, source))
    }

    /// Forget every in-memory entry not in `keep` (after a reload, the
    /// modules the new chain no longer uses).
    pub fn retain(&self, keep: &HashSet<ModuleHash>) {
        self.lock().retain(|h, _| keep.contains(h));
    }

    /// How many compiled components are held in memory.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ModuleHash, Component>> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn disk_entry(dir: &Path, engine: &PolicyEngine, hash: &ModuleHash) -> PathBuf {
    let mut h = Sha256Hasher(Sha256::new());
    engine
        .wasmtime()
        .precompile_compatibility_hash()
        .hash(&mut h);
    let engine_hash = hex::encode(&h.0.finalize()[..8]);
    dir.join(format!("{}-{engine_hash}.cwasm", hex::encode(hash)))
}

/// Read a disk entry; any problem is a miss (logged), never an error.
fn read_entry(engine: &PolicyEngine, path: &Path) -> Option<Component> {
    let data = std::fs::read(path).ok()?;
    let body = data.strip_prefix(MAGIC.as_slice()).and_then(|rest| {
        let (sum, body) = rest.split_at_checked(32)?;
        (Sha256::digest(body).as_slice() == sum).then_some(body)
    });
    let Some(body) = body else {
        tracing::warn!(target: "mqtt_policy::cache", path = %path.display(), "ignoring corrupt cache entry");
        return None;
    };
    // SAFETY: `Component::deserialize` trusts its input to be wasmtime's own
    // output. `body` is exactly what `write_entry` stored from
    // `Component::serialize` (the checksum above rules out truncation and
    // corruption), under a key that includes the engine's compatibility
    // hash; wasmtime checks version and settings again on load. The cache
    // directory must be as trusted as the module files themselves.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine.wasmtime(), body) };
    match component {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(target: "mqtt_policy::cache", path = %path.display(), "ignoring unusable cache entry: {e:#}");
            None
        }
    }
}

/// Write a disk entry atomically (temp file + rename); failures only warn,
/// since the cache is an optimisation.
fn write_entry(component: &Component, path: &Path) {
    let result = (|| -> Result<(), String> {
        use std::io::Write as _;
        let body = component.serialize().map_err(|e| format!("{e:#}"))?;
        let mut data = Vec::with_capacity(MAGIC.len() + 32 + body.len());
        data.extend_from_slice(MAGIC);
        data.extend_from_slice(&Sha256::digest(&body));
        data.extend_from_slice(&body);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        // Exclusive create: never write through a file (or link) someone
        // planted under the temp name; owner-only, like the directory.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let _ = std::fs::remove_file(&tmp);
        let mut file = options.open(&tmp).map_err(|e| e.to_string())?;
        file.write_all(&data).map_err(|e| e.to_string())?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())
    })();
    if let Err(e) = result {
        tracing::warn!(target: "mqtt_policy::cache", path = %path.display(), "cannot write cache entry: {e}");
    }
}

/// The cache holds native code the host will run: refuse a directory that
/// someone else could write to (group- or world-writable, or owned by
/// another user), as ssh does for its keys.
fn check_trusted(dir: &Path) -> Result<(), LoadError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let refuse = |why: String| LoadError::Read {
            path: dir.to_owned(),
            error: std::io::Error::new(std::io::ErrorKind::PermissionDenied, why),
        };
        let meta = std::fs::metadata(dir).map_err(|source| LoadError::Read {
            path: dir.to_owned(),
            error: source,
        })?;
        if !meta.is_dir() {
            return Err(refuse("the cache path is not a directory".into()));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(refuse(format!(
                "the cache directory is writable by others (mode {:o}); it holds native code: chmod 700 it",
                meta.mode() & 0o777
            )));
        }
        // Our own uid without `unsafe` libc calls: the owner of a file we
        // create (which also proves the directory is writable).
        let probe = dir.join(format!(".owner-probe-{}", std::process::id()));
        let made = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&probe)
            .and_then(|f| f.metadata());
        let _ = std::fs::remove_file(&probe);
        let me = made
            .map_err(|source| LoadError::Read {
                path: dir.to_owned(),
                error: source,
            })?
            .uid();
        if meta.uid() != me {
            return Err(refuse(format!(
                "the cache directory is owned by uid {}, not by this user (uid {me})",
                meta.uid()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn a_cache_directory_others_can_write_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir()?;
        let cache = dir.path().join("cache");
        ComponentCache::with_disk(&cache)?;
        let mode = std::fs::metadata(&cache)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        for open in [0o777, 0o770, 0o702] {
            std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(open))?;
            let err = ComponentCache::with_disk(&cache)
                .err()
                .map(|e| e.to_string());
            assert!(
                err.is_some_and(|e| e.contains("writable by others")),
                "{open:o}"
            );
        }
        Ok(())
    }
}
