//! The policy session of each Mosquitto client context.
//!
//! Keyed by the address of Mosquitto's `struct mosquitto` (unique among live
//! contexts), and each entry also records the client id and username it was
//! made for. A lookup whose client id or username differs from the context's
//! is a stale entry (the address of a freed context reused by a new one that
//! never went through `MOSQ_EVT_BASIC_AUTH`): it is dropped and never used.
//! A client id alone would not do as the key: on a takeover Mosquitto runs
//! the new connection's `MOSQ_EVT_BASIC_AUTH` before the old connection's
//! `MOSQ_EVT_DISCONNECT` (handle_connect.c, `connect__on_authorised`), so two
//! contexts with one client id are alive at once.
//!
//! Ending a session (`MOSQ_EVT_DISCONNECT`) moves it to a one-entry holding
//! slot instead of dropping it at once: Mosquitto checks the will of a client
//! that went away right after that event, with the same context
//! (context.c, `context__disconnect`: `plugin__handle_disconnect`, then
//! `context__send_will` → `MOSQ_ACL_WRITE`). The slot is emptied by the next
//! event that is not an ACL check, so at most one ended session is ever kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use mqtt_policy_host::Session;

/// What the chain said at CONNECT.
#[derive(Debug, Clone)]
pub(crate) enum Grant {
    /// Allowed: the session answers every topic question.
    Session(Arc<Session>),
    /// Every policy deferred (and the plugin defers to Mosquitto): another
    /// plugin or Mosquitto's own files let the client in, and decide its
    /// topics too.
    Deferred,
}

#[derive(Debug)]
struct Entry {
    client_id: String,
    username: Option<String>,
    grant: Grant,
}

impl Entry {
    fn is_for(&self, client_id: &str, username: Option<&str>) -> bool {
        self.client_id == client_id && self.username.as_deref() == username
    }
}

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<usize, Entry>,
    /// The session that ended last, kept for its will check.
    ended: Option<(usize, Entry)>,
}

/// The session map. Mosquitto calls plugins from its one main thread; the
/// lock only makes the map shareable, and is never held while a policy runs.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    inner: Mutex<Inner>,
}

/// The result of a lookup.
#[derive(Debug)]
pub(crate) enum Found {
    Grant(Grant),
    /// No entry for this context (or a stale one, now dropped).
    Missing,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Entries are inserted and removed whole: a poisoned map is consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep `grant` for the context at `key`, replacing whatever was kept for
    /// that address.
    pub(crate) fn insert(&self, key: usize, client_id: &str, username: Option<&str>, grant: Grant) {
        let mut inner = self.lock();
        if inner.ended.as_ref().is_some_and(|(k, _)| *k == key) {
            inner.ended = None;
        }
        inner.live.insert(
            key,
            Entry {
                client_id: client_id.to_owned(),
                username: username.map(str::to_owned),
                grant,
            },
        );
    }

    /// Forget the context at `key` (its CONNECT was refused).
    pub(crate) fn remove(&self, key: usize) {
        let mut inner = self.lock();
        inner.live.remove(&key);
        if inner.ended.as_ref().is_some_and(|(k, _)| *k == key) {
            inner.ended = None;
        }
    }

    /// The context at `key` disconnected: end its session, keeping it only
    /// in the holding slot (replacing the previous one).
    pub(crate) fn end(&self, key: usize) {
        let mut inner = self.lock();
        let entry = inner.live.remove(&key);
        inner.ended = entry.map(|e| (key, e));
    }

    /// Drop the session kept in the holding slot.
    pub(crate) fn clear_ended(&self) {
        self.lock().ended = None;
    }

    /// The grant of the context at `key`, if it was made for this client id
    /// and username. A stale entry is dropped.
    pub(crate) fn lookup(&self, key: usize, client_id: &str, username: Option<&str>) -> Found {
        let mut inner = self.lock();
        match inner.live.get(&key) {
            Some(e) if e.is_for(client_id, username) => return Found::Grant(e.grant.clone()),
            Some(_) => {
                inner.live.remove(&key);
                return Found::Missing;
            }
            None => {}
        }
        match &inner.ended {
            Some((k, e)) if *k == key && e.is_for(client_id, username) => {
                Found::Grant(e.grant.clone())
            }
            _ => Found::Missing,
        }
    }

    /// Live sessions (deferred entries included; the holding slot not).
    pub(crate) fn len(&self) -> usize {
        self.lock().live.len()
    }
}
