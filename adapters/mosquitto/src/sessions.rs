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
//! `context__send_will` → `MOSQ_ACL_WRITE`). The slot answers that one
//! publish check only (it is taken), and is emptied at the end of the main
//! loop's turn (`MOSQ_EVT_TICK`), before Mosquitto frees the context and its
//! address can be given to a new client.
//!
//! Entries are made only for contexts that are connected: BASIC_AUTH of a
//! CONNECT, not the re-check round after a reload for a context that had no
//! entry (Mosquitto re-checks offline persistent sessions too, and frees
//! them later without a DISCONNECT event).

use std::sync::{Arc, Mutex, MutexGuard};

use mqtt_policy_host::Session;

/// What the chain said at CONNECT (not the host's `Grant`, which is the
/// attributes and roles of an allow: that lives inside the session).
#[derive(Debug, Clone)]
pub(crate) enum Admission {
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
    grant: Admission,
}

impl Entry {
    fn is_for(&self, client_id: &str, username: Option<&str>) -> bool {
        self.client_id == client_id && self.username.as_deref() == username
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Keyed by the client context's address (not client-chosen), so the
    /// fast hasher is enough: this map is read on every ACL check.
    live: foldhash::HashMap<usize, Entry>,
    /// The session that ended last, kept for its will check.
    ended: Option<(usize, Entry)>,
    /// A reload's re-check round is running (until the loop's turn ends).
    reauth: bool,
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
    Grant(Admission),
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
    pub(crate) fn insert(
        &self,
        key: usize,
        client_id: &str,
        username: Option<&str>,
        grant: Admission,
    ) {
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
        // Replaced even by nothing: a slot from an earlier context must not
        // outlive this event.
        inner.ended = entry.map(|e| (key, e));
    }

    /// The main loop's turn ended: drop the holding slot and end a reload's
    /// re-check round.
    pub(crate) fn end_turn(&self) {
        let mut inner = self.lock();
        inner.ended = None;
        inner.reauth = false;
    }

    /// A reload starts Mosquitto's re-check of every context it holds.
    pub(crate) fn begin_reauth(&self) {
        let mut inner = self.lock();
        inner.ended = None;
        inner.reauth = true;
    }

    /// May a connect decided now for the context at `key` be kept? Not in a
    /// reload's re-check round for a context that had no session (an offline
    /// persistent session: it would never see a DISCONNECT event).
    pub(crate) fn may_keep(&self, key: usize) -> bool {
        let inner = self.lock();
        !inner.reauth || inner.live.contains_key(&key)
    }

    /// The grant of the context at `key`, if it was made for this client id
    /// and username. A stale entry is dropped. The holding slot answers only
    /// the will's publish check of the context that just ended, once.
    pub(crate) fn lookup(
        &self,
        key: usize,
        client_id: &str,
        username: Option<&str>,
        will_check: bool,
    ) -> Found {
        let mut inner = self.lock();
        match inner.live.get(&key) {
            Some(e) if e.is_for(client_id, username) => return Found::Grant(e.grant.clone()),
            Some(_) => {
                inner.live.remove(&key);
                return Found::Missing;
            }
            None => {}
        }
        match inner.ended.take() {
            Some((k, e)) if will_check && k == key && e.is_for(client_id, username) => {
                Found::Grant(e.grant)
            }
            other => {
                inner.ended = other;
                Found::Missing
            }
        }
    }

    /// Live sessions (deferred entries included; the holding slot not).
    pub(crate) fn len(&self) -> usize {
        self.lock().live.len()
    }
}
