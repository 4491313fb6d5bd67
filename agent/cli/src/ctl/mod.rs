//! The `imprint` command line: the daemons (`collector`, `agent`, or both as `run`) and the
//! tools that read what they wrote (`dump`, `verify`, `export`, `status`).

mod daemons;
mod dump;
mod erase;
mod export;
mod generate;
mod metrics;
mod policy;
mod ship;
mod status;
mod verify;
mod walk;

use clap::{Parser, Subcommand};
use imprint_config::{self, Config};
use imprint_source::replay::Speed;
use std::path::{Path, PathBuf};

/// imprint: consented keyboard and pointer capture for Linux fleets.
#[derive(Parser, Debug)]
#[command(name = "imprint", version, about)]
pub struct Cli {
    #[command(flatten)]
    loc: Locations,
    #[command(subcommand)]
    command: Command,
}

/// Where to find the configuration and state.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Locations {
    /// Configuration file [default: /etc/imprint/imprint.toml]
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// State directory: the spool lives in DIR/spool; for `run`, `status` and the daemons the
    /// ring and status files then live in DIR/run too (development and tests).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// An operator's age identity file, to read an encrypted spool (`dump`, `verify`,
    /// `export`); several keys in it open segments written before a key rotation.
    #[arg(long, global = true, value_name = "FILE")]
    identity: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the collector and the agent in one process (for trying imprint and development).
    Run {
        /// Replay a `libinput record` recording instead of reading input devices; exits once
        /// it has been written to disk.
        #[arg(long, value_name = "FILE.yaml")]
        replay: Option<PathBuf>,
        /// Replay pace: `max`, or a factor of the recorded pace (1 = real time).
        #[arg(long, default_value = "1", requires = "replay")]
        speed: Speed,
    },
    /// Run the privileged collector: capture → ring (what `imprint-collector` does, plus
    /// replay for tests and trials).
    Collector {
        #[arg(long, value_name = "FILE.yaml")]
        replay: Option<PathBuf>,
        #[arg(long, default_value = "1", requires = "replay")]
        speed: Speed,
        /// Attribute the replayed input to the focus imprint-session reports, as if it were
        /// typed live, and start replaying once the first report has arrived.
        #[arg(long, requires = "replay")]
        session_focus: bool,
    },
    /// Run the unprivileged agent: ring → policy → spool.
    Agent {
        /// Exit once the collector has closed its ring and it is drained.
        #[arg(long)]
        exit_when_closed: bool,
    },
    /// Print the spool as JSON lines, in order.
    Dump,
    /// Check every segment and frame; exit non-zero on corruption.
    Verify,
    /// Write the spool as the sessions, actions and events tables (Parquet or JSONL) with a
    /// manifest, for training pipelines.
    Export(export::ExportArgs),
    /// Upload every sealed, unshipped segment to the `[ship]` object store, then exit
    /// (non-zero if any remain unshipped).
    Ship(ship::ShipArgs),
    /// Pause capture: the collector closes the in-kernel gate (evdev: drops events) until
    /// `imprint resume`. The pause survives a collector restart.
    Pause,
    /// Resume capture after `imprint pause`.
    Resume,
    /// Remove one person's data from the spool (all of it, or since a time), and record the
    /// request in the audit trail (DATA_DIR/audit.jsonl).
    Erase(erase::EraseArgs),
    /// Check a policy, or explain what it decides for an application.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Print every metric in Prometheus text format, or serve them (`--serve`) on a local Unix
    /// socket and, when configured, a loopback address.
    Metrics(metrics::MetricsArgs),
    /// Show what is being captured right now, ring fill, spool size and drop counters.
    Status {
        /// Machine-readable JSON.
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Prometheus text exposition format.
        #[arg(long)]
        prometheus: bool,
        /// Pause capture of your own sessions for MINUTES (where the policy allows it).
        #[arg(long, value_name = "MINUTES", conflicts_with_all = ["resume", "prometheus"])]
        pause: Option<u64>,
        /// End your pause now.
        #[arg(long, conflicts_with = "prometheus")]
        resume: bool,
    },
    /// Write the man pages or shell completions into a directory (for packaging).
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
}

pub use imprint_agent::daemon::Paths;

impl Locations {
    /// The operator identities given with `--identity`, if any.
    fn identities(&self) -> anyhow::Result<Option<imprint_spool::Identities>> {
        self.identity
            .as_deref()
            .map(|p| imprint_spool::Identities::load(p).map_err(anyhow::Error::from))
            .transpose()
    }

    fn load(&self) -> anyhow::Result<Config> {
        let (path, must_exist) = self.config_source();
        Ok(Config::load(&path, must_exist)?)
    }

    /// The configuration file, and whether it must exist.
    fn config_source(&self) -> (PathBuf, bool) {
        match &self.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(imprint_config::DEFAULT_PATH), false),
        }
    }

    fn paths(&self, cfg: &Config) -> Paths {
        imprint_agent::daemon::paths(cfg, self.data_dir())
    }

    fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }
}

/// Entry point of the `imprint` binary; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    init_logging();
    if matches!(
        cli.command,
        Command::Dump | Command::Verify | Command::Status { .. } | Command::Policy(_)
    ) {
        // Commands that print for a reader (`imprint dump | head`): a reader that has gone
        // ends them quietly, as it ends any Unix filter. The daemons keep ignoring SIGPIPE.
        // SAFETY: setting a signal's disposition to the default has no preconditions.
        let _ = unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            )
        };
    }
    let loc = cli.loc;
    let result = match cli.command {
        Command::Run { replay, speed } => daemons::run(&loc, replay.as_deref(), speed),
        Command::Collector {
            replay,
            speed,
            session_focus,
        } => daemons::collector(&loc, replay.as_deref(), speed, session_focus),
        Command::Agent { exit_when_closed } => daemons::agent(&loc, exit_when_closed),
        Command::Dump => dump::run(&loc),
        Command::Verify => verify::run(&loc),
        Command::Export(args) => export::run(&loc, args),
        Command::Erase(args) => erase::run(&loc, args),
        Command::Ship(args) => ship::run(&loc, args),
        Command::Metrics(args) => metrics::run(&loc, args),
        Command::Status {
            json,
            prometheus,
            pause,
            resume,
        } => {
            let ask = match (pause, resume) {
                (Some(minutes), _) => imprint_agent::control::Request::Pause { minutes },
                (None, true) => imprint_agent::control::Request::Resume,
                (None, false) => imprint_agent::control::Request::Status,
            };
            status::run(&loc, json, prometheus, ask)
        }
        Command::Policy(cmd) => policy::run(&loc, cmd),
        Command::Pause => status::pause(&loc, true),
        Command::Resume => status::pause(&loc, false),
        Command::Generate(args) => generate::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("imprint: {e:#}");
            2
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("IMPRINT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(|| imprint_fsutil::LogStderr)
        .with_target(false)
        .try_init();
}
