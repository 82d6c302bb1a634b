//! `mqtt-policy`: evaluate a policy chain on requests written as JSON.
//!
//! ```text
//! mqtt-policy check --config policies.toml request.json
//! ```
//! prints one JSON result: the connect verdict (deciding policy, reason, MQTT
//! code for the request's protocol version, granted attributes and roles) and,
//! if the connection was accepted, a verdict per topic request.
//!
//! ```text
//! mqtt-policy watch --config policies.toml [--cache-dir DIR]
//! ```
//! loads the chain and keeps it loaded, reloading on file changes and SIGHUP,
//! printing one JSON line per load attempt: an operator's way to try a chain
//! change before a broker picks it up.
//!
//! ```text
//! mqtt-policy broker --config broker.toml
//! ```
//! runs an MQTT broker (3.1, 3.1.1, 5) whose every decision is the chain's
//! (see docs/broker.md).
//!
//! ```text
//! mqtt-policy serve --config serve.toml
//! ```
//! answers brokers' HTTP auth calls from the chain (`adapters/webhook`).
//!
//! ```text
//! mqtt-policy test [--config policies.toml] tests.toml
//! ```
//! runs a file of cases (requests and the decisions expected) through the
//! chain; exit 1 when one fails.
//!
//! ```text
//! mqtt-policy new NAME [--dir DIR] [--sdk-path PATH]
//! ```
//! scaffolds a policy crate with unit tests, a chain file and test cases.

use mqtt_policy_cli::{check, new, passwd, test, watch};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mqtt-policy",
    version,
    about = "MQTT authentication/authorization policies as WebAssembly components"
)]
struct Cli {
    /// Log filter for stderr (e.g. `info`, `mqtt_policy=debug`); RUST_LOG also works.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate a connect request (and topic requests in the same session).
    Check {
        /// The chain file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// The request file (JSON); see README.md for the format.
        request: PathBuf,
        /// Print the result on one line.
        #[arg(long)]
        compact: bool,
        /// Keep compiled modules here between runs (default:
        /// $XDG_CACHE_HOME/mqtt-policy or ~/.cache/mqtt-policy).
        #[arg(long, conflicts_with = "no_cache")]
        cache_dir: Option<PathBuf>,
        /// Compile every module afresh and keep nothing on disk.
        #[arg(long)]
        no_cache: bool,
    },
    /// Run a file of test cases through a chain: requests and the decisions
    /// expected for them (see README.md). Exit 1 if a case fails, 2 for bad input.
    Test {
        /// The case file: TOML, or JSON if it ends in `.json`.
        cases: PathBuf,
        /// The chain file (TOML); default: the case file's `config`.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Keep compiled modules here between runs (default:
        /// $XDG_CACHE_HOME/mqtt-policy or ~/.cache/mqtt-policy).
        #[arg(long, conflicts_with = "no_cache")]
        cache_dir: Option<PathBuf>,
        /// Compile every module afresh and keep nothing on disk.
        #[arg(long)]
        no_cache: bool,
    },
    /// Create a policy crate: a policy with typed config and unit tests, a
    /// chain file, example requests and test cases, ready to build.
    New {
        /// The crate and policy name (letters, digits, '-', '_').
        name: String,
        /// The directory to create (default: ./NAME); must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The SDK crate to depend on (an mqtt-policy checkout's guest-sdk);
        /// default: the one this binary was built from.
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Keep a chain loaded; reload on file changes and SIGHUP; exit on SIGINT/SIGTERM.
    Watch {
        /// The chain file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Cache compiled modules here so restarts skip compilation.
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Quiet time after a file change before reloading.
        #[arg(long, default_value_t = 200)]
        debounce_ms: u64,
    },
    /// Run an MQTT broker (3.1/3.1.1/5) that asks the chain about every
    /// CONNECT, SUBSCRIBE, PUBLISH and delivery; SIGHUP reloads the chain,
    /// SIGTERM/SIGINT stop it.
    Broker {
        /// The broker configuration (TOML; see examples/broker.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Answer brokers' HTTP auth calls (amqtt, Azure Web PubSub, EMQX,
    /// RabbitMQ) from the chain; reload on file changes and SIGHUP; exit on
    /// SIGINT/SIGTERM.
    Serve {
        /// The serve file (TOML): listen address, chain, TLS, protocols.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Create or update a user in a password file (like mosquitto_passwd).
    ///
    /// The password is asked twice on the terminal without echo, or read
    /// from the first line of standard input with --stdin; it is never taken
    /// from the command line.
    Passwd {
        /// The password file (`user:hash` lines).
        file: PathBuf,
        /// The user to add, update or delete.
        username: String,
        /// Start a new file (replacing any file of that name).
        #[arg(short = 'c', long)]
        create: bool,
        /// Delete the user instead.
        #[arg(short = 'D', long, conflicts_with_all = ["create", "stdin"])]
        delete: bool,
        /// Read the password from standard input (first line).
        #[arg(long)]
        stdin: bool,
        /// Hash format: argon2id (recommended) or pbkdf2 (Mosquitto's $7$,
        /// which Mosquitto 2.0 itself also reads).
        #[arg(long, value_enum, default_value_t = passwd::Format::Argon2id)]
        format: passwd::Format,
        /// PBKDF2 iterations for --format pbkdf2 (OWASP's figure for
        /// PBKDF2-HMAC-SHA512; Mosquitto 2.0 writes 101).
        #[arg(long, default_value_t = 210_000)]
        iterations: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| cli.log.clone());
    // Colour only on a terminal, and never when NO_COLOR is set.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mqtt-policy: error: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line, each said once: a library error
/// that prints its cause (`"cannot listen on …: address in use"`) and also
/// returns it as `source()` would otherwise repeat it.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut previous = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !previous.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        previous = text;
    }
    line
}

fn choose_cache_dir(no_cache: bool, given: Option<PathBuf>) -> Option<PathBuf> {
    match (no_cache, given) {
        (true, _) => None,
        (false, Some(dir)) => Some(dir),
        (false, None) => check::default_cache_dir(),
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check {
            config,
            request,
            compact,
            cache_dir,
            no_cache,
        } => {
            let cache_dir = choose_cache_dir(no_cache, cache_dir);
            let report = check::run(&config, &request, cache_dir.as_deref())?;
            let text = if compact {
                serde_json::to_string(&report)?
            } else {
                serde_json::to_string_pretty(&report)?
            };
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Test {
            cases,
            config,
            cache_dir,
            no_cache,
        } => {
            let cache_dir = choose_cache_dir(no_cache, cache_dir);
            let options = test::Options {
                config: config.as_deref(),
                cache_dir: cache_dir.as_deref(),
                colour: test::colour_wanted(),
            };
            let summary = test::run(&cases, &options, &mut std::io::stdout().lock())?;
            Ok(if summary.failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::New {
            name,
            dir,
            sdk_path,
        } => {
            let created = new::run(&new::Options {
                name: &name,
                dir: dir.as_deref(),
                sdk_path: sdk_path.as_deref(),
            })?;
            print!("{}", new::next_steps(&created));
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch {
            config,
            cache_dir,
            debounce_ms,
        } => watch::run(
            &config,
            cache_dir,
            std::time::Duration::from_millis(debounce_ms),
        )
        .map(|()| ExitCode::SUCCESS),
        Command::Broker { config } => {
            let config = mqtt_policy_broker::Config::load(&config)?;
            mqtt_policy_broker::run(config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            mqtt_policy_webhook::run(&config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Passwd {
            file,
            username,
            create,
            delete,
            stdin,
            format,
            iterations,
        } => passwd::run(&passwd::Options {
            file: &file,
            username: &username,
            create,
            delete,
            stdin,
            format,
            iterations,
        })
        .map(|()| ExitCode::SUCCESS),
    }
}
