//! Everything `unsafe` in the plugin, and nothing else: the bindings generated
//! from Mosquitto's headers (`bindings.rs`, see `bindgen.sh`), the two OpenSSL
//! functions a client certificate needs, safe wrappers over the broker's
//! accessors (here), and the three entry points Mosquitto looks up with
//! `dlsym` with the event callbacks it calls (`entry.rs`, which hands the
//! wrapped client to `events`; nothing here calls back up).
//!
//! All pointers Mosquitto hands a callback are valid only during that call;
//! the wrappers here borrow them for the call's lifetime and copy what
//! outlives it.
//!
//! No library is linked for these symbols: `mosquitto_*` are exported by the
//! `mosquitto` executable and `i2d_X509` / `X509_free` by the `libcrypto` it
//! loads, and the plugin is `dlopen`ed into that process (`RTLD_NOW |
//! RTLD_GLOBAL`, Mosquitto's `src/lib_load.h`), where they resolve.

#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::pedantic
)]
#[rustfmt::skip]
mod bindings;
mod entry;

use std::ffi::{CStr, CString, c_char, c_int};
use std::marker::PhantomData;
use std::ptr::NonNull;

use bindings::{
    MOSQ_LOG_DEBUG, MOSQ_LOG_ERR, MOSQ_LOG_INFO, MOSQ_LOG_NOTICE, MOSQ_LOG_WARNING, mosquitto,
};

/// OpenSSL's certificate object, opaque here.
#[repr(C)]
struct X509 {
    _opaque: [u8; 0],
}

// Declared by hand: these are OpenSSL's (openssl/x509.h, OpenSSL 1.1 and 3),
// not Mosquitto's; the signatures are stable across those versions.
unsafe extern "C" {
    /// DER-encodes `x` into `*out` (advancing it) and returns the length; with
    /// `out == NULL` only returns the length. Negative on error.
    fn i2d_X509(x: *const X509, out: *mut *mut u8) -> c_int;
    fn X509_free(x: *mut X509);
}

/// Log levels of `mosquitto_log_printf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
}

/// Write one line to Mosquitto's log now (only on Mosquitto's thread,
/// outside plugin callbacks: see `logging.rs`). The message is passed as an
/// argument to a constant `"%s"` format, never as the format itself; NUL
/// bytes (which would cut it) are replaced.
pub(crate) fn write_log(level: Level, message: &str) {
    let level = match level {
        Level::Debug => MOSQ_LOG_DEBUG,
        Level::Info => MOSQ_LOG_INFO,
        Level::Notice => MOSQ_LOG_NOTICE,
        Level::Warning => MOSQ_LOG_WARNING,
        Level::Error => MOSQ_LOG_ERR,
    };
    let text = CString::new(message.replace('\0', "\u{fffd}")).unwrap_or_default();
    // SAFETY: both pointers are NUL-terminated strings alive for the call; the
    // format is the constant "%s" and consumes exactly the one `char *`
    // argument passed. The level constants fit a C int.
    unsafe {
        bindings::mosquitto_log_printf(level as c_int, c"%s".as_ptr(), text.as_ptr());
    }
}

/// A string Mosquitto owns, as text: `None` for NULL, `Err` when not UTF-8
/// (Mosquitto validates MQTT strings as UTF-8, so that is unexpected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotUtf8;

/// # Safety
/// `ptr` is NULL or a NUL-terminated string that stays valid and unchanged
/// for `'a`.
unsafe fn text<'a>(ptr: *const c_char) -> Result<Option<&'a str>, NotUtf8> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated, valid for 'a (the caller's contract).
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map(Some).map_err(|_| NotUtf8)
}

/// # Safety
/// As for [`text`].
unsafe fn bytes<'a>(ptr: *const c_char) -> Option<&'a [u8]> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated, valid for 'a (the caller's contract).
    Some(unsafe { CStr::from_ptr(ptr) }.to_bytes())
}

/// A connected client (Mosquitto's `struct mosquitto *`), borrowed for the
/// duration of one callback.
#[derive(Clone, Copy)]
pub(crate) struct Client<'a> {
    ptr: NonNull<mosquitto>,
    _call: PhantomData<&'a mosquitto>,
}

impl std::fmt::Debug for Client<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({:p})", self.ptr)
    }
}

impl<'a> Client<'a> {
    /// # Safety
    /// `ptr` is NULL or the client of the event being handled, valid for `'a`.
    unsafe fn new(ptr: *mut mosquitto) -> Option<Self> {
        NonNull::new(ptr).map(|ptr| Client {
            ptr,
            _call: PhantomData,
        })
    }

    /// The address of Mosquitto's client context: unique among live contexts
    /// (a freed one's address may be reused, see `sessions`).
    pub(crate) fn key(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    pub(crate) fn id(&self) -> Result<Option<&'a str>, NotUtf8> {
        // SAFETY: the client is valid for 'a; the id it returns is owned by
        // the context and not changed during a callback.
        unsafe { text(bindings::mosquitto_client_id(self.ptr.as_ptr())) }
    }

    pub(crate) fn username(&self) -> Result<Option<&'a str>, NotUtf8> {
        // SAFETY: as for `id`.
        unsafe { text(bindings::mosquitto_client_username(self.ptr.as_ptr())) }
    }

    /// The peer's IP address (no port: Mosquitto keeps it apart).
    pub(crate) fn address(&self) -> Result<Option<&'a str>, NotUtf8> {
        // SAFETY: as for `id`.
        unsafe { text(bindings::mosquitto_client_address(self.ptr.as_ptr())) }
    }

    /// 3, 4 or 5; 0 when unknown.
    pub(crate) fn protocol_version(&self) -> i32 {
        // SAFETY: the client is valid for the call.
        unsafe { bindings::mosquitto_client_protocol_version(self.ptr.as_ptr()) }
    }

    pub(crate) fn keepalive(&self) -> i32 {
        // SAFETY: the client is valid for the call.
        unsafe { bindings::mosquitto_client_keepalive(self.ptr.as_ptr()) }
    }

    pub(crate) fn clean_session(&self) -> bool {
        // SAFETY: the client is valid for the call.
        unsafe { bindings::mosquitto_client_clean_session(self.ptr.as_ptr()) }
    }

    /// The client's TLS certificate as DER (only on listeners with
    /// `require_certificate true`), or `None`.
    pub(crate) fn certificate_der(&self) -> Option<Vec<u8>> {
        // SAFETY: the client is valid for the call. The result is NULL or an
        // X509 whose reference we own (SSL_get_peer_certificate), freed below.
        let cert =
            unsafe { bindings::mosquitto_client_certificate(self.ptr.as_ptr()) }.cast::<X509>();
        if cert.is_null() {
            return None;
        }
        /// Frees the certificate reference on every path out.
        struct Owned(*mut X509);
        impl Drop for Owned {
            fn drop(&mut self) {
                // SAFETY: a non-NULL X509 we own one reference to, freed once.
                unsafe { X509_free(self.0) }
            }
        }
        let cert = Owned(cert);
        // SAFETY: `cert.0` is a valid X509; a NULL output pointer asks for the
        // length only.
        let len = unsafe { i2d_X509(cert.0, std::ptr::null_mut()) };
        let len = usize::try_from(len).ok().filter(|&n| n > 0)?;
        let mut der = vec![0u8; len];
        let mut out = der.as_mut_ptr();
        // SAFETY: `der` has exactly the `len` bytes i2d_X509 said it writes;
        // `out` points at its start and is advanced by i2d_X509 only.
        let written = unsafe { i2d_X509(cert.0, &mut out) };
        (usize::try_from(written).ok() == Some(len)).then_some(der)
    }
}
