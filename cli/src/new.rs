//! `mqtt-policy new NAME`: scaffold an out-of-tree policy crate that builds,
//! unit-tests and passes `mqtt-policy test` as generated.
//!
//! The SDK is not on crates.io, so the crate depends on an mqtt-policy
//! checkout's `guest-sdk` by absolute path: by default the checkout this
//! binary was built from. When that checkout has a `Cargo.lock`, it seeds the
//! new crate's, so the first build uses the dependency versions the SDK is
//! tested with (and needs no network when the checkout was built); cargo
//! drops the entries the policy does not use.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The SDK of the checkout this binary was built from.
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");

const CARGO_TOML: &str = include_str!("../templates/policy/Cargo.toml.in");
const LIB_RS: &str = include_str!("../templates/policy/lib.rs.in");
const POLICIES_TOML: &str = include_str!("../templates/policy/policies.toml.in");
const TESTS_TOML: &str = include_str!("../templates/policy/tests.toml.in");
const README_MD: &str = include_str!("../templates/policy/README.md.in");
const GITIGNORE: &str = include_str!("../templates/policy/gitignore");
const ALLOWED_JSON: &str = include_str!("../templates/policy/requests/allowed.json");
const DENIED_JSON: &str = include_str!("../templates/policy/requests/denied.json");

/// What to scaffold.
#[derive(Debug)]
pub struct Options<'a> {
    /// The crate (and policy) name.
    pub name: &'a str,
    /// Where to create it; default `./NAME`.
    pub dir: Option<&'a Path>,
    /// The SDK crate directory; default the checkout this binary was built from.
    pub sdk_path: Option<&'a Path>,
}

/// What was created.
#[derive(Debug)]
pub struct Created {
    pub dir: PathBuf,
    pub sdk: PathBuf,
    /// The component `cargo build --release --target wasm32-wasip2` makes,
    /// relative to `dir`.
    pub wasm: String,
    /// Whether Cargo.lock was seeded from the SDK's checkout.
    pub seeded_lockfile: bool,
}

/// Names that would clash with the toolchain, the SDK or Rust itself.
const RESERVED: &[&str] = &[
    "mqtt-policy-sdk",
    "mqtt_policy_sdk",
    "serde",
    "serde_json",
    "wit-bindgen",
    "test",
    "std",
    "core",
    "alloc",
    "proc_macro",
    "proc-macro",
    "self",
    "super",
    "crate",
    "Self",
    "async",
    "await",
    "dyn",
    "fn",
    "impl",
    "mod",
    "struct",
    "type",
    "use",
    "where",
    "build",
    "deps",
    "examples",
    "incremental",
];

/// A crate name cargo accepts and this scaffold can turn into identifiers.
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || name.ends_with(['-', '_'])
    {
        bail!(
            "\"{name}\" is not a usable crate name: start with a letter, then letters, digits, '-' or '_' (at most 64)"
        );
    }
    if RESERVED.contains(&name) {
        bail!("\"{name}\" is reserved; choose another name");
    }
    Ok(())
}

/// `my-policy` → `MyPolicy`, avoiding the SDK prelude's names.
fn type_name(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(['-', '_']).filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    const TAKEN: &[&str] = &[
        "Access",
        "Attribute",
        "Certificate",
        "Config",
        "ConnectRequest",
        "ConnectVerdict",
        "Deny",
        "DenyReason",
        "Grant",
        "Lifetime",
        "Policy",
        "TopicAnswer",
        "TopicRequest",
        "TopicVerdict",
        "UserProperty",
        "Deserialize",
        "Option",
        "Result",
        "String",
        "Vec",
        "Box",
        "Some",
        "None",
        "Ok",
        "Err",
    ];
    if TAKEN.contains(&out.as_str()) {
        out.push_str("Policy");
    }
    out
}

/// A TOML string literal.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The SDK directory to depend on, absolute, checked to be the SDK.
fn sdk_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let (path, origin) = match given {
        Some(p) => (p.to_path_buf(), "--sdk-path"),
        None => (
            PathBuf::from(BUILT_FROM_SDK),
            "the checkout this mqtt-policy was built from",
        ),
    };
    let dir = path.canonicalize().with_context(|| {
        format!(
            "SDK not found at {} ({origin}); pass --sdk-path to an mqtt-policy checkout's guest-sdk",
            path.display()
        )
    })?;
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).with_context(|| {
        format!(
            "{} has no Cargo.toml: not the SDK ({origin})",
            dir.display()
        )
    })?;
    if !manifest.contains("name = \"mqtt-policy-sdk\"") {
        bail!(
            "{} is not the mqtt-policy SDK (its Cargo.toml does not name mqtt-policy-sdk); pass --sdk-path to an mqtt-policy checkout's guest-sdk",
            dir.display()
        );
    }
    let Some(text) = dir.to_str() else {
        bail!("the SDK path {} is not UTF-8", dir.display());
    };
    if text.contains(char::is_control) {
        bail!("the SDK path {} holds control characters", dir.display());
    }
    Ok(dir)
}

fn fill(template: &str, name: &str, lib: &str, ty: &str, sdk: &Path, checkout: &Path) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{lib}}", lib)
        .replace("{{Type}}", ty)
        .replace("{{sdk}}", &toml_string(&sdk.to_string_lossy()))
        .replace("{{checkout}}", &checkout.to_string_lossy())
}

/// Create the crate. Refuses to write into an existing non-empty directory.
pub fn run(options: &Options<'_>) -> anyhow::Result<Created> {
    let name = options.name;
    check_name(name)?;
    let sdk = sdk_dir(options.sdk_path)?;
    let checkout = sdk.parent().map_or_else(|| sdk.clone(), Path::to_path_buf);
    let dir = options
        .dir
        .map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    if dir.exists() {
        let mut entries = std::fs::read_dir(&dir)
            .with_context(|| format!("{} exists and is not a readable directory", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} exists and is not empty; choose another --dir",
                dir.display()
            );
        }
    }
    let lib = name.replace('-', "_");
    let ty = type_name(name);
    let files: [(&str, String); 8] = [
        (
            "Cargo.toml",
            fill(CARGO_TOML, name, &lib, &ty, &sdk, &checkout),
        ),
        ("src/lib.rs", fill(LIB_RS, name, &lib, &ty, &sdk, &checkout)),
        (
            "policies.toml",
            fill(POLICIES_TOML, name, &lib, &ty, &sdk, &checkout),
        ),
        (
            "tests.toml",
            fill(TESTS_TOML, name, &lib, &ty, &sdk, &checkout),
        ),
        ("requests/allowed.json", ALLOWED_JSON.to_owned()),
        ("requests/denied.json", DENIED_JSON.to_owned()),
        (
            "README.md",
            fill(README_MD, name, &lib, &ty, &sdk, &checkout),
        ),
        (".gitignore", GITIGNORE.to_owned()),
    ];
    for (relative, text) in &files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let lock = checkout.join("Cargo.lock");
    let seeded_lockfile = lock.is_file();
    if seeded_lockfile {
        std::fs::copy(&lock, dir.join("Cargo.lock"))
            .with_context(|| format!("cannot copy {}", lock.display()))?;
    }
    Ok(Created {
        dir,
        sdk,
        wasm: format!("target/wasm32-wasip2/release/{lib}.wasm"),
        seeded_lockfile,
    })
}

/// What to tell the user after creating the crate.
pub fn next_steps(created: &Created) -> String {
    let dir = created.dir.display();
    format!(
        "created {dir} (SDK: {sdk})\n\n\
         next:\n  \
         cd {dir}\n  \
         cargo test                                      # unit tests, natively\n  \
         cargo build --release --target wasm32-wasip2    # builds {wasm}\n  \
         mqtt-policy check --config policies.toml requests/allowed.json\n  \
         mqtt-policy test tests.toml\n",
        sdk = created.sdk.display(),
        wasm = created.wasm,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["my-policy", "a", "acl2", "tenant_rules"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1x",
            "-x",
            "x-",
            "a b",
            "a/b",
            "ä",
            "test",
            "mqtt-policy-sdk",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(type_name("my-policy"), "MyPolicy");
        assert_eq!(type_name("acl_v2"), "AclV2");
        assert_eq!(type_name("policy"), "PolicyPolicy");
        assert_eq!(type_name("grant"), "GrantPolicy");
    }

    #[test]
    fn scaffolds_into_an_empty_directory_only() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("p");
        let created = run(&Options {
            name: "my-policy",
            dir: Some(&dir),
            sdk_path: None,
        })?;
        assert_eq!(created.wasm, "target/wasm32-wasip2/release/my_policy.wasm");
        let cargo = std::fs::read_to_string(dir.join("Cargo.toml"))?;
        let sdk = created.sdk.to_string_lossy().into_owned();
        assert!(
            cargo.contains(&format!("path = {}", toml_string(&sdk))),
            "{cargo}"
        );
        assert!(Path::new(&sdk).is_absolute());
        let lib = std::fs::read_to_string(dir.join("src/lib.rs"))?;
        assert!(lib.contains("export_policy!(MyPolicy);") && !lib.contains("{{"));
        for file in [
            "policies.toml",
            "tests.toml",
            "README.md",
            ".gitignore",
            "requests/allowed.json",
        ] {
            let text = std::fs::read_to_string(dir.join(file))?;
            assert!(!text.contains("{{"), "{file}: {text}");
        }
        let again = run(&Options {
            name: "my-policy",
            dir: Some(&dir),
            sdk_path: None,
        });
        assert!(
            format!("{:#}", again.err().unwrap_or_else(|| anyhow::anyhow!("")))
                .contains("not empty")
        );
        let wrong_sdk = run(&Options {
            name: "x",
            dir: Some(&tmp.path().join("q")),
            sdk_path: Some(tmp.path()),
        });
        assert!(
            format!(
                "{:#}",
                wrong_sdk.err().unwrap_or_else(|| anyhow::anyhow!(""))
            )
            .contains("not the SDK")
        );
        Ok(())
    }
}
