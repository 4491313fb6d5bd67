//! `imprint-agent`: the unprivileged half, as the package ships it (user `imprint`, no
//! capabilities): ring → policy → spool, the control socket, and scope verdicts.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: imprint-agent [--config FILE] [--data-dir DIR] [--exit-when-closed]";

fn main() -> ExitCode {
    init_logging();
    let mut config: Option<PathBuf> = None;
    let mut data_dir: Option<PathBuf> = None;
    let mut exit_when_closed = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "--data-dir" => {
                let Some(v) = args.next() else {
                    eprintln!("imprint-agent: {arg} needs a value\n{USAGE}");
                    return ExitCode::from(2);
                };
                if arg == "--config" {
                    config = Some(v.into());
                } else {
                    data_dir = Some(v.into());
                }
            }
            "--exit-when-closed" => exit_when_closed = true,
            other => {
                eprintln!("imprint-agent: unknown argument {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    // An explicit file must exist; the default may be absent (capture off).
    let source = match config {
        Some(p) => (p, true),
        None => (PathBuf::from(imprint_config::DEFAULT_PATH), false),
    };
    match imprint_agent::daemon::run(source, data_dir.as_deref(), exit_when_closed) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imprint-agent: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("IMPRINT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(|| imprint_fsutil::LogStderr)
        .with_target(false)
        .try_init();
}
