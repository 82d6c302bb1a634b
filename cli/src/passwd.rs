//! `mqtt-policy passwd`: create or update a user in a password file, like
//! `mosquitto_passwd`, in the formats the `password` policy reads.
//!
//! The password comes from a no-echo prompt on the terminal (asked twice) or,
//! with `--stdin`, from the first line of standard input; never from the
//! command line, where other users could read it in the process list.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::Path;

use anyhow::{Context as _, bail};
use password::StoredHash;

/// The hash format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// argon2id, m=19456 KiB, t=2, p=1 (OWASP's recommendation): the default.
    Argon2id,
    /// Mosquitto's `$7$` PBKDF2-HMAC-SHA512, readable by Mosquitto 2.0 itself.
    Pbkdf2,
}

/// What to do with the user.
#[derive(Debug)]
pub struct Options<'a> {
    pub file: &'a Path,
    pub username: &'a str,
    pub create: bool,
    pub delete: bool,
    pub stdin: bool,
    pub format: Format,
    pub iterations: u32,
}

/// Largest password file read (as the policy host's data-file bound).
const MAX_FILE_BYTES: u64 = 16 << 20;

pub fn run(o: &Options<'_>) -> anyhow::Result<()> {
    check_username(o.username)?;
    let mut lines = if o.create {
        Vec::new()
    } else {
        read_lines(o.file)?
    };
    let position = lines.iter().position(|l| line_user(l) == Some(o.username));
    if o.delete {
        let Some(i) = position else {
            bail!("user \"{}\" is not in {}", o.username, o.file.display());
        };
        lines.remove(i);
    } else {
        let password = read_password(o.stdin)?;
        let mut salt = [0u8; 16];
        getrandom::getrandom(&mut salt).context("no system randomness for the salt")?;
        let hash = match o.format {
            Format::Argon2id => StoredHash::new_argon2id(password.as_bytes(), &salt),
            Format::Pbkdf2 => StoredHash::new_pbkdf2(password.as_bytes(), &salt, o.iterations),
        }
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let line = format!("{}:{hash}", o.username);
        match position {
            Some(i) => lines[i] = line,
            None => lines.push(line),
        }
    }
    write_atomically(o.file, &lines)
}

fn check_username(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
        bail!("username must be non-empty, without ':' or control characters");
    }
    if name.len() > 65_535 {
        bail!("username is longer than MQTT's 65,535 bytes");
    }
    Ok(())
}

/// The username of a `user:hash` line (comments and blank lines have none).
fn line_user(line: &str) -> Option<&str> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    line.split_once(':').map(|(user, _)| user.trim())
}

fn read_lines(file: &Path) -> anyhow::Result<Vec<String>> {
    let meta = std::fs::metadata(file).with_context(|| {
        format!(
            "cannot read {} (use --create for a new file)",
            file.display()
        )
    })?;
    if !meta.is_file() {
        bail!("{} is not a regular file", file.display());
    }
    if meta.len() > MAX_FILE_BYTES {
        bail!("{} is over {MAX_FILE_BYTES} bytes", file.display());
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(text.lines().map(str::to_owned).collect())
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let password = line.trim_end_matches(['\n', '\r']).to_owned();
        if password.is_empty() {
            bail!("empty password on standard input");
        }
        return Ok(password);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to prompt on: give the password on standard input with --stdin");
    }
    let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
    let second =
        rpassword::prompt_password("Reenter password: ").context("cannot read the password")?;
    if first != second {
        bail!("the passwords do not match");
    }
    if first.is_empty() {
        bail!("empty password");
    }
    Ok(first)
}

/// Replace the file in one step (a temp file in the same directory, then a
/// rename) so a reader — the policy host's watcher — never sees half a file.
/// The file holds hashes: readable by its owner only.
fn write_atomically(file: &Path, lines: &[String]) -> anyhow::Result<()> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    for line in lines {
        writeln!(tmp, "{line}")?;
    }
    tmp.as_file().sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.persist(file)
        .with_context(|| format!("cannot replace {}", file.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_usernames() {
        assert_eq!(line_user("alice:$7$..."), Some("alice"));
        assert_eq!(line_user("# comment:x"), None);
        assert_eq!(line_user("   "), None);
        assert!(check_username("a:b").is_err());
        assert!(check_username("").is_err());
        assert!(check_username("a\nb").is_err());
        assert!(check_username("alice").is_ok());
    }
}
