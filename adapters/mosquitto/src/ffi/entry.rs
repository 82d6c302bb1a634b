//! The three entry points Mosquitto looks up with `dlsym` (version, init with
//! `crate::init`, cleanup with `crate::cleanup`) and the event callbacks it
//! calls, which turn Mosquitto's pointers into the safe wrappers of the
//! parent module and hand them to `events`.
//!
//! Every body runs under [`guard`], that is under
//! [`std::panic::catch_unwind`]: a panic is logged through
//! `mosquitto_log_printf`, never unwinds into C, and is answered with the
//! body's refusal: a deny for the checks (`MOSQ_ERR_AUTH` /
//! `MOSQ_ERR_ACL_DENIED`), `MOSQ_ERR_INVAL` for init, -1 for the version,
//! and for the events that decide nothing (reload, disconnect, tick,
//! cleanup) what they answer anyway.

use std::ffi::{OsStr, OsString, c_int, c_void};
use std::os::unix::ffi::OsStrExt as _;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::bindings::{
    self, MOSQ_ACL_READ, MOSQ_ACL_SUBSCRIBE, MOSQ_ACL_UNSUBSCRIBE, MOSQ_ACL_WRITE,
    MOSQ_ERR_ACL_DENIED, MOSQ_ERR_AUTH, MOSQ_ERR_INVAL, MOSQ_ERR_PLUGIN_DEFER, MOSQ_ERR_SUCCESS,
    MOSQ_EVT_ACL_CHECK, MOSQ_EVT_BASIC_AUTH, MOSQ_EVT_DISCONNECT, MOSQ_EVT_RELOAD, MOSQ_EVT_TICK,
    MOSQ_PLUGIN_VERSION, mosquitto_evt_acl_check, mosquitto_evt_basic_auth,
    mosquitto_evt_disconnect, mosquitto_opt, mosquitto_plugin_id_t,
};
use super::{Client, Level, bytes, text};
use crate::Plugin;
use crate::events::{self, Access, Answer};
use crate::logging::{self, log};

/// Run a callback body; a panic is logged and answered with `on_panic`.
fn guard(what: &str, on_panic: c_int, body: impl FnOnce() -> c_int) -> c_int {
    // Host log lines made during the body are queued and written after it
    // (see logging.rs: a log line can re-enter this plugin).
    let body = || {
        let _depth = logging::enter();
        body()
    };
    let result = catch_unwind(AssertUnwindSafe(body));
    let _ = catch_unwind(logging::flush);
    match result {
        Ok(code) => code,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            // Logging itself must not unwind either.
            let _ = catch_unwind(|| {
                log(
                    Level::Error,
                    &format!("mqtt-policy: panic in {what}, answered as a deny: {message}"),
                )
            });
            on_panic
        }
    }
}

/// # Safety
/// `userdata` is NULL or the `Plugin` registered with the callback, alive
/// until the callbacks are unregistered in `mosquitto_plugin_cleanup`.
unsafe fn plugin<'a>(userdata: *mut c_void) -> Option<&'a Plugin> {
    // SAFETY: the caller's contract; the plugin is only read through `&`.
    unsafe { userdata.cast::<Plugin>().as_ref() }
}

fn code(answer: Answer, deny: c_int) -> c_int {
    match answer {
        Answer::Allow => MOSQ_ERR_SUCCESS,
        Answer::Deny => deny,
        Answer::Defer => MOSQ_ERR_PLUGIN_DEFER,
    }
}

/// `MOSQ_EVT_BASIC_AUTH`: every CONNECT on a listener without
/// `use_identity_as_username` / `use_subject_as_username` and without MQTT 5
/// enhanced authentication, and every connected client again after a reload.
unsafe extern "C" fn on_basic_auth(
    _event: c_int,
    data: *mut c_void,
    userdata: *mut c_void,
) -> c_int {
    guard("basic auth", MOSQ_ERR_AUTH, || {
        // SAFETY: Mosquitto passes the plugin registered with this callback.
        let Some(plugin) = (unsafe { plugin(userdata) }) else {
            return MOSQ_ERR_AUTH;
        };
        // SAFETY: for MOSQ_EVT_BASIC_AUTH, `data` points at a
        // mosquitto_evt_basic_auth valid for this call (security.c,
        // mosquitto_unpwd_check).
        let Some(event) = (unsafe { data.cast::<mosquitto_evt_basic_auth>().as_ref() }) else {
            return MOSQ_ERR_AUTH;
        };
        // SAFETY: the event's client, username and password are valid and
        // unchanged for this call.
        let (client, username, password) = unsafe {
            (
                Client::new(event.client),
                text(event.username),
                bytes(event.password),
            )
        };
        let Some(client) = client else {
            return MOSQ_ERR_AUTH;
        };
        code(
            events::basic_auth(plugin, client, username, password),
            MOSQ_ERR_AUTH,
        )
    })
}

/// `MOSQ_EVT_ACL_CHECK`: publish (write), delivery (read: live, queued,
/// retained and will messages), subscribe and unsubscribe, one topic each.
unsafe extern "C" fn on_acl_check(
    _event: c_int,
    data: *mut c_void,
    userdata: *mut c_void,
) -> c_int {
    guard("ACL check", MOSQ_ERR_ACL_DENIED, || {
        // SAFETY: Mosquitto passes the plugin registered with this callback.
        let Some(plugin) = (unsafe { plugin(userdata) }) else {
            return MOSQ_ERR_ACL_DENIED;
        };
        // SAFETY: for MOSQ_EVT_ACL_CHECK, `data` points at a
        // mosquitto_evt_acl_check valid for this call (security.c,
        // mosquitto_acl_check).
        let Some(event) = (unsafe { data.cast::<mosquitto_evt_acl_check>().as_ref() }) else {
            return MOSQ_ERR_ACL_DENIED;
        };
        // SAFETY: the event's client and topic are valid for this call.
        let (client, topic) = unsafe { (Client::new(event.client), text(event.topic)) };
        let (Some(client), Ok(Some(topic))) = (client, topic) else {
            return MOSQ_ERR_ACL_DENIED;
        };
        let access = match u32::try_from(event.access) {
            Ok(MOSQ_ACL_WRITE) => Access::Publish,
            Ok(MOSQ_ACL_READ) => Access::Receive,
            Ok(MOSQ_ACL_SUBSCRIBE) => Access::Subscribe,
            Ok(MOSQ_ACL_UNSUBSCRIBE) => Access::Unsubscribe,
            _ => {
                log(
                    Level::Notice,
                    &format!(
                        "mqtt-policy: ACL check with unknown access {} denied",
                        event.access
                    ),
                );
                return MOSQ_ERR_ACL_DENIED;
            }
        };
        code(
            events::acl_check(plugin, client, topic, access, event.qos, event.retain),
            MOSQ_ERR_ACL_DENIED,
        )
    })
}

/// `MOSQ_EVT_RELOAD` (SIGHUP). Always answers "defer" so that plugins after
/// this one get the event too: in `security__init_single` the first answer
/// other than defer ends the round, and an error would also skip reloading
/// Mosquitto's own password and ACL files.
unsafe extern "C" fn on_reload(_event: c_int, _data: *mut c_void, userdata: *mut c_void) -> c_int {
    guard("reload", MOSQ_ERR_PLUGIN_DEFER, || {
        // SAFETY: Mosquitto passes the plugin registered with this callback.
        if let Some(plugin) = unsafe { plugin(userdata) } {
            events::reload(plugin);
        }
        MOSQ_ERR_PLUGIN_DEFER
    })
}

/// `MOSQ_EVT_DISCONNECT`: once per client context that disconnects (also
/// refused ones, and one taken over by a new connection).
unsafe extern "C" fn on_disconnect(
    _event: c_int,
    data: *mut c_void,
    userdata: *mut c_void,
) -> c_int {
    guard("disconnect", MOSQ_ERR_SUCCESS, || {
        // SAFETY: Mosquitto passes the plugin registered with this callback.
        let Some(plugin) = (unsafe { plugin(userdata) }) else {
            return MOSQ_ERR_SUCCESS;
        };
        // SAFETY: for MOSQ_EVT_DISCONNECT, `data` points at a
        // mosquitto_evt_disconnect valid for this call (plugin.c,
        // plugin__handle_disconnect).
        let event = unsafe { data.cast::<mosquitto_evt_disconnect>().as_ref() };
        // SAFETY: the event's client is valid for this call.
        if let Some(client) = event.and_then(|e| unsafe { Client::new(e.client) }) {
            events::disconnect(plugin, client);
        }
        MOSQ_ERR_SUCCESS
    })
}

/// `MOSQ_EVT_TICK`: once per turn of Mosquitto's main loop (loop.c), after
/// the turn's disconnects and wills and before the next turn frees their
/// contexts: what was kept only for this turn (the ended session's will
/// check, the reload's re-check round) is dropped here, before a freed
/// context's address can be reused by a new client.
unsafe extern "C" fn on_tick(_event: c_int, _data: *mut c_void, userdata: *mut c_void) -> c_int {
    guard("tick", MOSQ_ERR_SUCCESS, || {
        // SAFETY: Mosquitto passes the plugin registered with this callback.
        if let Some(plugin) = unsafe { plugin(userdata) } {
            events::tick(plugin);
        }
        MOSQ_ERR_SUCCESS
    })
}

type Callback = unsafe extern "C" fn(c_int, *mut c_void, *mut c_void) -> c_int;

const CALLBACKS: [(u32, Callback); 5] = [
    (MOSQ_EVT_BASIC_AUTH, on_basic_auth),
    (MOSQ_EVT_ACL_CHECK, on_acl_check),
    (MOSQ_EVT_RELOAD, on_reload),
    (MOSQ_EVT_DISCONNECT, on_disconnect),
    (MOSQ_EVT_TICK, on_tick),
];

/// The plugin as Mosquitto holds it: the identifier to unregister with, and
/// the state the callbacks share.
struct Registered {
    identifier: *mut mosquitto_plugin_id_t,
    plugin: Box<Plugin>,
}

/// Mosquitto asks which plugin interface this is: 5, if it offers it.
///
/// # Safety
/// `versions` points at `count` ints (or `count` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mosquitto_plugin_version(count: c_int, versions: *const c_int) -> c_int {
    guard("plugin version", -1, || {
        let wanted = MOSQ_PLUGIN_VERSION as c_int;
        let count = usize::try_from(count).unwrap_or(0);
        if versions.is_null() || count == 0 {
            return -1;
        }
        // SAFETY: Mosquitto passes `count` valid ints (security.c,
        // security__module_init_single: {5, 4, 3, 2}).
        let offered = unsafe { std::slice::from_raw_parts(versions, count) };
        if offered.contains(&wanted) {
            wanted
        } else {
            -1
        }
    })
}

/// Load the chain named by `plugin_opt_config` and register the callbacks.
///
/// # Safety
/// Called by Mosquitto once per `plugin` line: `identifier` is the plugin's
/// id, `userdata` a place for our state, `options` `count` key/value pairs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mosquitto_plugin_init(
    identifier: *mut mosquitto_plugin_id_t,
    userdata: *mut *mut c_void,
    options: *mut mosquitto_opt,
    count: c_int,
) -> c_int {
    guard("plugin init", MOSQ_ERR_INVAL, || {
        if identifier.is_null() || userdata.is_null() {
            return MOSQ_ERR_INVAL;
        }
        // SAFETY: Mosquitto passes `count` options valid for this call.
        let options = unsafe { read_options(options, count) };
        let plugin = match crate::init(options) {
            Ok(plugin) => Box::new(plugin),
            Err(e) => {
                log(Level::Error, &format!("mqtt-policy: cannot start: {e}"));
                return MOSQ_ERR_INVAL;
            }
        };
        let registered = Box::new(Registered { identifier, plugin });
        let state: *const Plugin = &*registered.plugin;
        for (i, (event, callback)) in CALLBACKS.iter().enumerate() {
            // SAFETY: `identifier` is ours; the callback is a valid function
            // for the whole life of the library (never unloaded: -z nodelete);
            // `state` stays valid until cleanup unregisters every callback.
            let rc = unsafe {
                bindings::mosquitto_callback_register(
                    identifier,
                    *event as c_int,
                    Some(*callback),
                    std::ptr::null(),
                    state.cast_mut().cast(),
                )
            };
            if rc != MOSQ_ERR_SUCCESS {
                log(
                    Level::Error,
                    &format!("mqtt-policy: cannot register callback for event {event}: error {rc}"),
                );
                for (event, callback) in &CALLBACKS[..i] {
                    // SAFETY: registered just above with this identifier.
                    unsafe {
                        bindings::mosquitto_callback_unregister(
                            identifier,
                            *event as c_int,
                            Some(*callback),
                            std::ptr::null(),
                        );
                    }
                }
                return rc;
            }
        }
        // SAFETY: `userdata` is Mosquitto's slot for this plugin's state,
        // handed back to mosquitto_plugin_cleanup.
        unsafe { *userdata = Box::into_raw(registered).cast() };
        MOSQ_ERR_SUCCESS
    })
}

/// Unregister the callbacks and free the plugin's state.
///
/// # Safety
/// `userdata` is what `mosquitto_plugin_init` stored (or NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mosquitto_plugin_cleanup(
    userdata: *mut c_void,
    _options: *mut mosquitto_opt,
    _count: c_int,
) -> c_int {
    guard("plugin cleanup", MOSQ_ERR_SUCCESS, || {
        if userdata.is_null() {
            return MOSQ_ERR_SUCCESS;
        }
        // SAFETY: made by Box::into_raw in init and handed back once.
        let registered = unsafe { Box::from_raw(userdata.cast::<Registered>()) };
        for (event, callback) in CALLBACKS {
            // SAFETY: registered in init with this identifier; after this no
            // callback can see the state freed below.
            unsafe {
                bindings::mosquitto_callback_unregister(
                    registered.identifier,
                    event as c_int,
                    Some(callback),
                    std::ptr::null(),
                );
            }
        }
        crate::cleanup(registered.plugin);
        MOSQ_ERR_SUCCESS
    })
}

/// # Safety
/// `options` points at `count` options (or `count` is 0) valid for the call.
unsafe fn read_options(options: *mut mosquitto_opt, count: c_int) -> Vec<(String, OsString)> {
    let count = usize::try_from(count).unwrap_or(0);
    if options.is_null() || count == 0 {
        return Vec::new();
    }
    // SAFETY: the caller's contract.
    let options = unsafe { std::slice::from_raw_parts(options, count) };
    options
        .iter()
        .map(|o| {
            // SAFETY: keys and values are NULL or NUL-terminated strings
            // owned by Mosquitto's config for the call.
            let (key, value) = unsafe { (bytes(o.key), bytes(o.value)) };
            (
                String::from_utf8_lossy(key.unwrap_or_default()).into_owned(),
                OsStr::from_bytes(value.unwrap_or_default()).to_owned(),
            )
        })
        .collect()
}
