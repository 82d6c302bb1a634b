//! `password`: usernames and salted password hashes, a drop-in for
//! Mosquitto's `password_file`. A known user with the right password is
//! allowed and granted its roles and attributes; a known user with a wrong (or
//! no) password is denied with `bad-username-or-password`; any other client is
//! not this policy's business unless `unknown_user` says otherwise.
//!
//! Config:
//! ```json
//! {
//!   "users": [                                     // optional
//!     {"username": "alice",
//!      "hash": "$argon2id$v=19$m=19456,t=2,p=1$...$...",   // or "$7$..." / "$6$..." (see below)
//!      "roles": ["operator"],                      // optional, granted on allow
//!      "attributes": {"site": "plant-1"}}          // optional, granted on allow
//!   ],
//!   "password_file": "alice:$7$101$...\nbob:$argon2id$...\n",  // optional: the TEXT of a Mosquitto password_file
//!   "unknown_user": "defer",                       // or "deny": unknown username, or none
//!   "remember_verified": true                      // see "Remembered passwords"; false to hash every connect
//! }
//! ```
//! `password_file` is the content of the file, not its path: a policy has no
//! filesystem, so the host (or whoever writes the chain config) reads the
//! operator's file and passes its text. One `username:hash` per line, as
//! `mosquitto_passwd` writes it; blank lines and lines starting with `#` are
//! skipped; blanks around the username and the hash are ignored. Users may
//! come from `users`, `password_file` or both; a username given twice is a
//! load error naming it. A `users` entry without `hash` names a
//! `password_file` user and gives it roles and attributes, so passwords can
//! stay in the file `mosquitto_passwd` manages. Unlike Mosquitto, which
//! skips a line it cannot read, a malformed line is a load error naming the
//! line number (a silently dropped user is a lock-out nobody can explain).
//!
//! On allow the session is granted the user's `roles`, its `attributes`, and
//! attribute `username` holding the verified username, so topic rules can use
//! `{attr:username}` (and `topic-list`'s `acl_file` keys its `user` sections
//! on it) without trusting the username a client merely sent. `attributes`
//! may not set `username` itself.
//!
//! # Hash formats
//!
//! | format | written by | cost |
//! |---|---|---|
//! | `$argon2id$v=19$m=M,t=T,p=P$salt$hash` (PHC string, B64 without padding) | the `argon2` CLI (`-id -e`), Mosquitto 2.1's `mosquitto_passwd`, argon2 libraries | memory-hard: `M` KiB, `T` passes, `P` lanes |
//! | `$7$ITERATIONS$salt$hash` | `mosquitto_passwd` (Mosquitto 2.0's default) | PBKDF2-HMAC-SHA512, `ITERATIONS` rounds, 64-byte hash |
//! | `$6$salt$hash` | `mosquitto_passwd -H sha512` (Mosquitto 1.6 and earlier) | one SHA-512 of password then salt |
//!
//! **argon2id is the recommended format** and the only modern one accepted:
//! it is memory-hard, so a stolen password file is expensive to attack on
//! GPUs and ASICs, where PBKDF2 (and bcrypt, which is not memory-hard and
//! truncates passwords at 72 bytes) are cheap to run in parallel; it is the
//! first choice of RFC 9106 and of OWASP's password storage cheat sheet; and it
//! is what Mosquitto 2.1's `mosquitto_passwd` writes, so this policy reads
//! both generations of Mosquitto files. `argon2i`/`argon2d` and bcrypt
//! (`$2b$`) strings are refused with a message saying so. `$6$` is accepted
//! for old files but logs a warning at load: a single SHA-512 is fast to
//! brute-force; re-hash those users. A `$6$` here is Mosquitto's (standard
//! base64 salt and 64-byte hash), not crypt(3)'s SHA-512-crypt.
//!
//! A `hash` that is none of these, or a `password` field, is a load error
//! naming the user: plaintext passwords are never accepted. Errors never
//! quote the hash text (it may be a pasted password).
//!
//! # Bounds and cost
//!
//! A connect costs one hash, on the broker thread that asked. So that a
//! config cannot make one check cost more than about 100 ms of CPU natively
//! (about 135 ms in wasm), parameters above these are a load error naming the
//! user and the bound:
//!
//! - `$7$`: at most [`MAX_PBKDF2_ITERATIONS`] (210,000) iterations: Mosquitto
//!   2.1's default; Mosquitto 2.0 writes 101.
//! - argon2id: memory `m` at most [`MAX_ARGON2_MEMORY_KIB`] KiB (24 MiB, so it
//!   fits the host's default 32 MiB instance memory cap), `m × t` at most
//!   [`MAX_ARGON2_WORK_KIB`] KiB, `p` at most [`MAX_ARGON2_LANES`].
//!   `m=19456,t=2,p=1` (OWASP's recommended minimum) is recommended here.
//!   Defaults that need more memory are refused and must be re-hashed:
//!   Mosquitto 2.1's (`m=47104`, 46 MiB), argon2-cffi's and RFC 9106's
//!   (64 MiB).
//! - salts of 8 to 64 bytes; an argon2id hash of 16 to 64 bytes; `$7$` and
//!   `$6$` hashes of exactly 64 bytes (what Mosquitto writes).
//!
//! CPU time per check, measured on a 2-core AMD EPYC (x86-64, AVX2) while
//! another build ran, natively (`cargo test --release -p password-policy --
//! --ignored --nocapture hash_cost`) and in wasm (the built component's own
//! `init` and `connect-check`, run by Wasmtime 50 through the component
//! model under a 32 MiB memory cap, less the cost of a call that defers:
//! `wasm_cost.py` beside this crate's `Cargo.toml`):
//!
//! | hash | native | wasm |
//! |---|---|---|
//! | `$7$`, 101 iterations (Mosquitto 2.0) | 0.05 ms | 0.1 ms |
//! | `$7$`, 210,000 iterations (Mosquitto 2.1, the bound) | 102-104 ms | 131-134 ms |
//! | argon2id `m=19456,t=2,p=1` (recommended) | 17 ms | 35-37 ms |
//! | argon2id `m=24576,t=5,p=1` (the most work the bounds allow) | 52 ms | 122-134 ms |
//! | `$6$` | < 0.01 ms | < 0.1 ms |
//!
//! So give this policy its own `deadline_ms = 250` in the chain file: it
//! covers every hash the bounds accept with about twice the headroom (the
//! chain-wide 5 ms default is far too short for any password hash worth
//! having), and the other policies keep theirs. One core then verifies about
//! 28 recommended-argon2id connects per second in wasm (57 natively), or
//! about 9,000 per second (20,000 natively) for Mosquitto 2.0's `$7$` files.
//!
//! # Checking a connect
//!
//! The derived hash is compared in constant time. MQTT passwords are binary:
//! the password bytes are hashed as sent, whether or not they are UTF-8
//! (Mosquitto stops at the first NUL byte; this policy does not). A known user
//! who sends no password is denied (after hashing an empty password, so the
//! answer takes as long as for a wrong one). With `"unknown_user": "deny"` an
//! unknown username is checked against the first user's hash anyway and then
//! denied, so response time does not tell which usernames exist; with
//! `"defer"` (the default) it is left to the next policy (`jwt`, `thumbprint`)
//! at no cost.
//!
//! # Remembered passwords
//!
//! A device that reconnects (a flaky link, a broker-side takeover) sends the
//! same password again, and with argon2id each reconnect would cost tens of
//! milliseconds of CPU. So after a password verifies, each policy instance
//! keeps one HMAC-SHA256 tag of it per user, under a key derived from the
//! instance's random hash seed (128 bits; the host fills it from its OS
//! random source); the next connect of that user with the same password
//! that reaches the same instance is allowed after one HMAC (microseconds)
//! instead of the stored hash. The host keeps several warm instances, so
//! each verifies a user once before it remembers them. A different
//! password, a wrong one, or a user not yet seen by this instance is checked
//! against the stored hash as always, so a guess costs an attacker exactly
//! what it did. Nothing outlives the instance: a reload (an edited password
//! file) starts new instances with nothing remembered. Memory is one tag
//! per configured user.
//!
//! The trade-off: while it lives, an instance's memory holds a fast-to-test
//! tag (and its key) of each user's last good password, beside the slow
//! stored hashes. (Passwords a check received are freed, not scrubbed, so
//! instance memory may hold recent ones until reused, with or without
//! this.) Whoever can read a policy instance's memory can test guesses for
//! remembered users at HMAC speed. Set `"remember_verified": false` to hash
//! on every connect.

use std::collections::{BTreeMap, HashMap};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use mqtt_policy_sdk::log;
use mqtt_policy_sdk::prelude::*;
use serde::Deserialize;
use sha2::{Digest as _, Sha512};
use subtle::ConstantTimeEq as _;

/// Most PBKDF2-HMAC-SHA512 iterations a `$7$` hash may ask for: Mosquitto
/// 2.1's default (and OWASP's figure for PBKDF2-HMAC-SHA512), ~100 ms.
pub const MAX_PBKDF2_ITERATIONS: u32 = 210_000;
/// Most memory (KiB) an argon2id hash may ask for: 24 MiB, which fits under
/// the host's default 32 MiB instance memory cap with the policy's own heap.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 24 * 1024;
/// Most argon2id work, memory × passes (KiB): 128 MiB-passes, ~60 ms natively.
pub const MAX_ARGON2_WORK_KIB: u64 = 128 * 1024;
/// Most argon2id lanes (`p`). A policy has no threads, so lanes run one after
/// another and `p` does not change the cost; the bound only refuses nonsense.
pub const MAX_ARGON2_LANES: u32 = 8;

const MIN_SALT: usize = 8;
const MAX_SALT: usize = 64;
const MIN_ARGON2_OUTPUT: usize = 16;
const MAX_ARGON2_OUTPUT: usize = 64;
const SHA512_LEN: usize = 64;

/// The attribute the verified username is granted under.
pub const USERNAME_ATTRIBUTE: &str = "username";

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum UnknownUser {
    #[default]
    Defer,
    Deny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserConfig {
    username: String,
    #[serde(default)]
    hash: Option<String>,
    /// Only here to refuse it with a message that names the user.
    #[serde(default)]
    password: Option<serde_json::Value>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    users: Vec<UserConfig>,
    #[serde(default)]
    password_file: Option<String>,
    #[serde(default)]
    unknown_user: UnknownUser,
    #[serde(default = "yes")]
    remember_verified: bool,
}

fn yes() -> bool {
    true
}

/// A stored password hash, decoded once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredHash {
    /// Mosquitto `$6$`: SHA-512(password ‖ salt).
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
    /// Mosquitto `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2Sha512 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    /// PHC `$argon2id$`.
    Argon2id {
        version: Version,
        memory_kib: u32,
        passes: u32,
        lanes: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

/// Mosquitto writes standard base64 with padding; accept it without too.
const MOSQUITTO_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// PHC strings use standard base64 without padding.
const PHC_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

const UNRECOGNISED: &str = "hash is not a recognised format ($argon2id$ PHC string, or $7$ / $6$ \
     as mosquitto_passwd writes them); plaintext passwords are not accepted";

fn decode(engine: &GeneralPurpose, text: &str, what: &str) -> Result<Vec<u8>, String> {
    engine
        .decode(text)
        .map_err(|_| format!("{what} is not valid base64"))
}

fn salt_ok(salt: &[u8]) -> Result<(), String> {
    if (MIN_SALT..=MAX_SALT).contains(&salt.len()) {
        Ok(())
    } else {
        Err(format!(
            "salt is {} bytes; {MIN_SALT} to {MAX_SALT} are accepted",
            salt.len()
        ))
    }
}

fn sha512_len(hash: &[u8]) -> Result<(), String> {
    if hash.len() == SHA512_LEN {
        Ok(())
    } else {
        Err(format!(
            "hash is {} bytes; a SHA-512 hash is {SHA512_LEN}",
            hash.len()
        ))
    }
}

impl StoredHash {
    /// Decode a hash string and check it against the bounds. The error never
    /// quotes `text`.
    pub fn parse(text: &str) -> Result<StoredHash, String> {
        if let Some(rest) = text.strip_prefix("$7$") {
            Self::parse_pbkdf2(rest)
        } else if let Some(rest) = text.strip_prefix("$6$") {
            Self::parse_sha512(rest)
        } else if let Some(rest) = text.strip_prefix("$argon2id$") {
            Self::parse_argon2id(rest)
        } else if text.starts_with("$argon2i$") || text.starts_with("$argon2d$") {
            Err(
                "only argon2id is accepted (this is argon2i or argon2d); re-hash with argon2id"
                    .into(),
            )
        } else if ["$2a$", "$2b$", "$2x$", "$2y$"]
            .iter()
            .any(|p| text.starts_with(p))
        {
            Err("bcrypt hashes are not accepted; use argon2id".into())
        } else {
            Err(UNRECOGNISED.into())
        }
    }

    fn parse_pbkdf2(rest: &str) -> Result<StoredHash, String> {
        let [iterations, salt, hash] = rest.split('$').collect::<Vec<_>>()[..] else {
            return Err("malformed $7$ hash (expected $7$ITERATIONS$SALT$HASH)".into());
        };
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| "malformed $7$ hash: the iteration count is not a number".to_string())?;
        if iterations == 0 {
            return Err("$7$ hash with 0 iterations".into());
        }
        if iterations > MAX_PBKDF2_ITERATIONS {
            return Err(format!(
                "$7$ hash with {iterations} iterations is over the bound of {MAX_PBKDF2_ITERATIONS}"
            ));
        }
        let salt = decode(&MOSQUITTO_B64, salt, "$7$ salt")?;
        salt_ok(&salt)?;
        let hash = decode(&MOSQUITTO_B64, hash, "$7$ hash")?;
        sha512_len(&hash)?;
        Ok(StoredHash::Pbkdf2Sha512 {
            iterations,
            salt,
            hash,
        })
    }

    fn parse_sha512(rest: &str) -> Result<StoredHash, String> {
        let [salt, hash] = rest.split('$').collect::<Vec<_>>()[..] else {
            return Err(
                "malformed $6$ hash (expected $6$SALT$HASH as mosquitto_passwd -H sha512 writes; \
                 crypt(3) SHA-512-crypt is not accepted)"
                    .into(),
            );
        };
        let salt = decode(&MOSQUITTO_B64, salt, "$6$ salt")?;
        salt_ok(&salt)?;
        let hash = decode(&MOSQUITTO_B64, hash, "$6$ hash")?;
        sha512_len(&hash)?;
        Ok(StoredHash::Sha512 { salt, hash })
    }

    fn parse_argon2id(rest: &str) -> Result<StoredHash, String> {
        const SHAPE: &str =
            "malformed argon2id hash (expected $argon2id$v=19$m=M,t=T,p=P$SALT$HASH)";
        let parts: Vec<&str> = rest.split('$').collect();
        // PHC: a missing `v=` means version 0x10, as in the reference implementation.
        let (version, params, salt, hash) = match parts[..] {
            [v, params, salt, hash] => {
                let version = match v {
                    "v=19" => Version::V0x13,
                    "v=16" => Version::V0x10,
                    _ => return Err(format!("{SHAPE}: version must be v=19 or v=16")),
                };
                (version, params, salt, hash)
            }
            [params, salt, hash] => (Version::V0x10, params, salt, hash),
            _ => return Err(SHAPE.into()),
        };
        let (mut m, mut t, mut p) = (None, None, None);
        for pair in params.split(',') {
            let (key, value) = pair.split_once('=').ok_or_else(|| SHAPE.to_string())?;
            let slot = match key {
                "m" => &mut m,
                "t" => &mut t,
                "p" => &mut p,
                "keyid" | "data" => {
                    return Err("argon2id keyid/data parameters are not supported".into());
                }
                _ => return Err(format!("{SHAPE}: unknown parameter")),
            };
            let value: u32 = value
                .parse()
                .map_err(|_| format!("{SHAPE}: {key} is not a number"))?;
            if slot.replace(value).is_some() {
                return Err(format!("{SHAPE}: {key} given twice"));
            }
        }
        let (Some(memory_kib), Some(passes), Some(lanes)) = (m, t, p) else {
            return Err(format!("{SHAPE}: m, t and p are all required"));
        };
        if memory_kib > MAX_ARGON2_MEMORY_KIB {
            return Err(format!(
                "argon2id m={memory_kib} KiB is over the bound of {MAX_ARGON2_MEMORY_KIB} KiB"
            ));
        }
        if u64::from(memory_kib) * u64::from(passes) > MAX_ARGON2_WORK_KIB {
            return Err(format!(
                "argon2id m×t = {} KiB is over the bound of {MAX_ARGON2_WORK_KIB} KiB",
                u64::from(memory_kib) * u64::from(passes)
            ));
        }
        if lanes > MAX_ARGON2_LANES {
            return Err(format!(
                "argon2id p={lanes} is over the bound of {MAX_ARGON2_LANES}"
            ));
        }
        let salt = decode(&PHC_B64, salt, "argon2id salt")?;
        salt_ok(&salt)?;
        let hash = decode(&PHC_B64, hash, "argon2id hash")?;
        if !(MIN_ARGON2_OUTPUT..=MAX_ARGON2_OUTPUT).contains(&hash.len()) {
            return Err(format!(
                "argon2id hash is {} bytes; {MIN_ARGON2_OUTPUT} to {MAX_ARGON2_OUTPUT} are accepted",
                hash.len()
            ));
        }
        // Let the argon2 crate check what is left (e.g. m ≥ 8 × p, t ≥ 1).
        Params::new(memory_kib, passes, lanes, Some(hash.len()))
            .map_err(|e| format!("invalid argon2id parameters: {e}"))?;
        Ok(StoredHash::Argon2id {
            version,
            memory_kib,
            passes,
            lanes,
            salt,
            hash,
        })
    }

    /// Hash `password` with argon2id at OWASP's recommended parameters
    /// (`m=19456,t=2,p=1`, 32-byte output) and `salt` (8 to 64 random bytes):
    /// what `mqtt-policy passwd` writes by default.
    pub fn new_argon2id(password: &[u8], salt: &[u8]) -> Result<StoredHash, String> {
        salt_ok(salt)?;
        let (memory_kib, passes, lanes) = (19_456, 2, 1);
        let params = Params::new(memory_kib, passes, lanes, Some(32)).map_err(|e| e.to_string())?;
        let mut hash = vec![0u8; 32];
        let blocks = vec![Block::default(); params.block_count()];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into_with_memory(password, salt, &mut hash, blocks)
            .map_err(|e| e.to_string())?;
        Ok(StoredHash::Argon2id {
            version: Version::V0x13,
            memory_kib,
            passes,
            lanes,
            salt: salt.to_vec(),
            hash,
        })
    }

    /// Hash `password` as Mosquitto's `$7$` (PBKDF2-HMAC-SHA512) with
    /// `iterations` rounds (1 to [`MAX_PBKDF2_ITERATIONS`]) and `salt`: a
    /// line Mosquitto 2.0 itself reads.
    pub fn new_pbkdf2(password: &[u8], salt: &[u8], iterations: u32) -> Result<StoredHash, String> {
        salt_ok(salt)?;
        if !(1..=MAX_PBKDF2_ITERATIONS).contains(&iterations) {
            return Err(format!(
                "iterations must be 1 to {MAX_PBKDF2_ITERATIONS}, got {iterations}"
            ));
        }
        let mut hash = vec![0u8; SHA512_LEN];
        pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut hash);
        Ok(StoredHash::Pbkdf2Sha512 {
            iterations,
            salt: salt.to_vec(),
            hash,
        })
    }

    /// Does `password` hash to this? The comparison is constant-time.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            StoredHash::Sha512 { salt, hash } => {
                let derived = Sha512::new()
                    .chain_update(password)
                    .chain_update(salt)
                    .finalize();
                bool::from(derived.as_slice().ct_eq(hash))
            }
            StoredHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => {
                let mut derived = [0u8; SHA512_LEN];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut derived);
                bool::from(derived.as_slice().ct_eq(hash))
            }
            StoredHash::Argon2id {
                version,
                memory_kib,
                passes,
                lanes,
                salt,
                hash,
            } => {
                let Ok(params) = Params::new(*memory_kib, *passes, *lanes, Some(hash.len())) else {
                    return false;
                };
                let mut derived = vec![0u8; hash.len()];
                // Bounded at load by MAX_ARGON2_MEMORY_KIB (one block is 1 KiB).
                let blocks = vec![Block::default(); params.block_count()];
                Argon2::new(Algorithm::Argon2id, *version, params)
                    .hash_password_into_with_memory(password, salt, &mut derived, blocks)
                    .is_ok()
                    && bool::from(derived.as_slice().ct_eq(hash))
            }
        }
    }
}

/// The hash as a password file line's hash field, in the form it was parsed
/// from (and in which `mosquitto_passwd` or the `argon2` CLI write it).
impl std::fmt::Display for StoredHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use base64::Engine as _;
        match self {
            StoredHash::Sha512 { salt, hash } => write!(
                f,
                "$6${}${}",
                MOSQUITTO_B64.encode(salt),
                MOSQUITTO_B64.encode(hash)
            ),
            StoredHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => write!(
                f,
                "$7${iterations}${}${}",
                MOSQUITTO_B64.encode(salt),
                MOSQUITTO_B64.encode(hash)
            ),
            StoredHash::Argon2id {
                version,
                memory_kib,
                passes,
                lanes,
                salt,
                hash,
            } => write!(
                f,
                "$argon2id$v={}$m={memory_kib},t={passes},p={lanes}${}${}",
                u32::from(*version),
                PHC_B64.encode(salt),
                PHC_B64.encode(hash)
            ),
        }
    }
}

struct User {
    name: String,
    hash: StoredHash,
    grant: Grant,
}

pub struct PasswordPolicy {
    users: Vec<User>,
    by_name: HashMap<String, usize>,
    unknown_user: UnknownUser,
    /// `None` when `remember_verified` is off.
    remembered: Option<Remembered>,
}

/// The password each user last connected with, as an HMAC-SHA256 tag under
/// a key drawn when the instance starts (see "Remembered passwords" in the
/// module docs). One slot per configured user, so it is bounded by the
/// config, not by clients.
struct Remembered {
    key: [u8; 32],
    tags: std::sync::Mutex<Vec<Option<[u8; 32]>>>,
}

impl Remembered {
    fn new(users: usize) -> Self {
        use std::hash::{BuildHasher as _, Hasher as _};
        // std seeds `RandomState` once per instance from the host (128 bits,
        // `wasi:random/insecure-seed`, which this host fills from its OS
        // random source) and steps it for each new one; hashing with four
        // of them spreads that seed over the key. (The key keeps tags from
        // matching across instances; see the docs for what it does not
        // protect.)
        let mut key = [0u8; 32];
        for (i, chunk) in key.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
        Remembered {
            key,
            tags: std::sync::Mutex::new(vec![None; users]),
        }
    }

    fn tag(&self, user: usize, password: &[u8]) -> [u8; 32] {
        use hmac::Mac as _;
        let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            // HMAC takes keys of any length; never reached.
            Err(_) => return [0; 32],
        };
        mac.update(&(user as u64).to_le_bytes());
        mac.update(password);
        mac.finalize().into_bytes().into()
    }

    fn tags(&self) -> std::sync::MutexGuard<'_, Vec<Option<[u8; 32]>>> {
        self.tags.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Is `password` the one `user` last connected with?
    fn knows(&self, user: usize, password: &[u8]) -> bool {
        let tag = self.tag(user, password);
        self.tags()
            .get(user)
            .copied()
            .flatten()
            .is_some_and(|kept| bool::from(kept.ct_eq(&tag)))
    }

    fn remember(&self, user: usize, password: &[u8]) {
        let tag = self.tag(user, password);
        if let Some(slot) = self.tags().get_mut(user) {
            *slot = Some(tag);
        }
    }
}

fn add_user(
    users: &mut Vec<User>,
    by_name: &mut HashMap<String, usize>,
    name: String,
    hash: StoredHash,
    grant: Grant,
) -> Result<(), String> {
    if by_name.contains_key(&name) {
        return Err(format!("user \"{name}\" is listed twice"));
    }
    by_name.insert(name.clone(), users.len());
    users.push(User { name, hash, grant });
    Ok(())
}

fn grant_for(name: &str, roles: Vec<String>, attributes: BTreeMap<String, String>) -> Grant {
    let mut grant = Grant::default();
    for role in roles {
        grant = grant.role(role);
    }
    for (key, value) in attributes {
        grant = grant.attribute(key, value);
    }
    grant.attribute(USERNAME_ATTRIBUTE, name)
}

/// Parse a Mosquitto password_file's text into (username, hash) pairs.
fn parse_password_file(text: &str) -> Result<Vec<(String, StoredHash)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, hash)) = line.split_once(':') else {
            return Err(format!("password_file line {n}: expected username:hash"));
        };
        let name = name.trim_matches([' ', '\t']);
        if name.is_empty() {
            return Err(format!("password_file line {n}: empty username"));
        }
        let hash = StoredHash::parse(hash.trim_matches([' ', '\t']))
            .map_err(|e| format!("password_file line {n} (user \"{name}\"): {e}"))?;
        out.push((name.to_owned(), hash));
    }
    Ok(out)
}

impl Policy for PasswordPolicy {
    fn new(config: &str) -> Result<Self, String> {
        // Errors name the offending field by path.
        let config: Config = mqtt_policy_sdk::config(config)?;
        let mut from_file: Vec<Option<(String, StoredHash)>> =
            parse_password_file(config.password_file.as_deref().unwrap_or_default())?
                .into_iter()
                .map(Some)
                .collect();
        let mut users = Vec::new();
        let mut by_name = HashMap::new();
        for (i, u) in config.users.into_iter().enumerate() {
            let who = format!("users[{i}] \"{}\"", u.username);
            if u.username.is_empty() {
                return Err(format!("users[{i}]: empty username"));
            }
            if by_name.contains_key(&u.username) {
                return Err(format!("user \"{}\" is listed twice", u.username));
            }
            if u.password.is_some() {
                return Err(format!(
                    "{who}: plaintext \"password\" is not accepted; give a \"hash\" \
                     (argon2id, or mosquitto_passwd's $7$)"
                ));
            }
            if u.attributes.contains_key(USERNAME_ATTRIBUTE) {
                return Err(format!(
                    "{who}: attribute \"{USERNAME_ATTRIBUTE}\" is set by the policy to the verified username"
                ));
            }
            let hash = match u.hash.as_deref() {
                Some(text) => StoredHash::parse(text).map_err(|e| format!("{who}: {e}"))?,
                // No hash: roles and attributes for a password_file user.
                None => from_file
                    .iter_mut()
                    .find(|e| e.as_ref().is_some_and(|(name, _)| *name == u.username))
                    .and_then(Option::take)
                    .map(|(_, hash)| hash)
                    .ok_or_else(|| {
                        format!("{who}: missing \"hash\" (and not a user of password_file)")
                    })?,
            };
            let grant = grant_for(&u.username, u.roles, u.attributes);
            add_user(&mut users, &mut by_name, u.username, hash, grant)?;
        }
        for (name, hash) in from_file.into_iter().flatten() {
            let grant = grant_for(&name, Vec::new(), BTreeMap::new());
            add_user(&mut users, &mut by_name, name, hash, grant)?;
        }
        if users.is_empty() {
            return Err("no users: give \"users\" or a non-empty \"password_file\"".into());
        }
        let weak: Vec<&str> = users
            .iter()
            .filter(|u| matches!(u.hash, StoredHash::Sha512 { .. }))
            .map(|u| u.name.as_str())
            .collect();
        if !weak.is_empty() {
            // One line for all of them: a large old file must not flood the log.
            let shown = weak.iter().take(10).copied().collect::<Vec<_>>().join(", ");
            log::warn(
                "users with a $6$ (single SHA-512) password hash, which is fast to \
                 brute-force: re-hash them with argon2id or mosquitto_passwd",
                &[("count", &weak.len().to_string()), ("users", &shown)],
            );
        }
        Ok(PasswordPolicy {
            remembered: config
                .remember_verified
                .then(|| Remembered::new(users.len())),
            users,
            by_name,
            unknown_user: config.unknown_user,
        })
    }

    fn connect_check(&self, request: &ConnectRequest) -> ConnectVerdict {
        let refuse = || {
            deny_connect(
                DenyReason::BadUsernameOrPassword,
                "bad username or password",
            )
        };
        let Some(username) = request.username.as_deref() else {
            return match self.unknown_user {
                UnknownUser::Defer => ConnectVerdict::Defer,
                UnknownUser::Deny => refuse(),
            };
        };
        // An absent password is hashed as empty so it costs what a wrong one does.
        let password = request.password.as_deref().unwrap_or_default();
        let found = self
            .by_name
            .get(username)
            .and_then(|&i| Some((i, self.users.get(i)?)));
        let Some((index, user)) = found else {
            return match self.unknown_user {
                UnknownUser::Defer => ConnectVerdict::Defer,
                UnknownUser::Deny => {
                    // Spend what a known user costs, so timing does not list users.
                    if let Some(decoy) = self.users.first() {
                        std::hint::black_box(decoy.hash.verify(password));
                    }
                    log::info(
                        "unknown user",
                        &[("client_id", &request.client_id), ("username", username)],
                    );
                    refuse()
                }
            };
        };
        if request.password.is_some() {
            let remembered = self.remembered.as_ref();
            if remembered.is_some_and(|r| r.knows(index, password)) {
                return allow_connect(user.grant.clone());
            }
            if user.hash.verify(password) {
                if let Some(r) = remembered {
                    r.remember(index, password);
                }
                return allow_connect(user.grant.clone());
            }
        } else {
            // The same work as a wrong password (see the module docs).
            std::hint::black_box(user.hash.verify(password));
        }
        log::info(
            "wrong password",
            &[("client_id", &request.client_id), ("username", &user.name)],
        );
        refuse()
    }
}

export_policy!(PasswordPolicy);

#[cfg(test)]
mod tests;
