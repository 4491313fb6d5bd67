//! `imprint generate`: the man pages and shell completions the packages install. The daemons
//! parse their few flags by hand (the collector links no clap), so their pages come from clap
//! descriptions kept here, next to the CLI's, and checked against the daemons' usage lines.

use anyhow::{Context, Result};
use clap::{Arg, ArgAction, Command, CommandFactory};
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// What `imprint generate` writes.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// Man pages (roff, uncompressed) or bash, zsh and fish completions.
    #[arg(value_enum)]
    what: What,
    /// Directory to write them into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum What {
    Man,
    Completions,
}

/// Writes the requested files and prints each path written.
pub fn run(args: GenerateArgs) -> Result<i32> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let written = match args.what {
        What::Man => man_pages(&args.out)?,
        What::Completions => completions(&args.out)?,
    };
    for path in written {
        println!("{}", path.display());
    }
    Ok(0)
}

/// `imprint.1`, one `imprint-SUB.1` per visible subcommand (`imprint-policy-check.1` for
/// nested ones), `imprint-collector.8`, `imprint-agent.8` and `imprint-session.1`.
fn man_pages(out: &Path) -> Result<Vec<PathBuf>> {
    let mut cli = super::Cli::command();
    // build() fills in the subcommands' display names ("imprint-policy-check").
    cli.build();
    let mut written = Vec::new();
    cli_pages(&cli, out, &mut written)?;
    for (cmd, section) in daemons() {
        written.push(write_page(cmd, section, out)?);
    }
    Ok(written)
}

fn cli_pages(cmd: &Command, out: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
    let name = page_name(cmd);
    // `imprint collector` and `imprint agent` would be imprint-collector.1 and imprint-agent.1,
    // shadowing the daemons' own pages in `man imprint-collector`: their flags are in
    // `imprint collector --help`, and the daemons' pages are the ones an operator needs.
    if DAEMONS.contains(&name.as_str()) {
        return Ok(());
    }
    written.push(write_page(cmd.clone(), "1", out)?);
    // clap's generated `help` subcommands would each get a page of their own.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        cli_pages(sub, out, written)?;
    }
    Ok(())
}

fn page_name(cmd: &Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned()
}

fn write_page(cmd: Command, section: &str, out: &Path) -> Result<PathBuf> {
    let name = page_name(&cmd);
    let path = out.join(format!("{name}.{section}"));
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd)
        .title(name.to_uppercase())
        .section(section)
        .manual("imprint")
        .source(format!("imprint {}", env!("CARGO_PKG_VERSION")))
        .render(&mut roff)
        .with_context(|| format!("rendering {name}.{section}"))?;
    std::fs::write(&path, roff).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `imprint.bash`, `_imprint` (zsh) and `imprint.fish`.
fn completions(out: &Path) -> Result<Vec<PathBuf>> {
    let mut cli = super::Cli::command();
    [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .map(|shell| {
            clap_complete::generate_to(shell, &mut cli, "imprint", out)
                .with_context(|| format!("writing the {shell} completion into {}", out.display()))
        })
        .collect()
}

const DAEMONS: [&str; 3] = ["imprint-collector", "imprint-agent", "imprint-session"];

/// The daemons' command lines, as their `main.rs` parses them (the test below holds the two
/// together), with the section each page goes in.
fn daemons() -> [(Command, &'static str); 3] {
    let value = |name: &'static str, value_name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .value_name(value_name)
            .action(ArgAction::Set)
            .help(help)
    };
    let common = |cmd: Command| {
        cmd.version(env!("CARGO_PKG_VERSION"))
            .disable_help_flag(true)
            .disable_version_flag(true)
    };
    let collector = common(Command::new("imprint-collector"))
        .about("imprint's privileged collector: reads input and writes the shared ring")
        .long_about(
            "The privileged half of imprint (CAP_BPF and CAP_PERFMON, the input group): reads \
             keyboard and pointer input with eBPF on the kernel's input core, or passively from \
             evdev (it never grabs a device), takes focus, echo and lock state from the \
             imprint-session helper in each login session and scope verdicts from the agent, \
             and frames records into a shared ring that imprint-agent(8) drains. It links no \
             policy, compression or display-protocol code and reads no configuration file: its \
             settings are these flags, set in imprint-collector.service. Logs go to standard \
             error (IMPRINT_LOG sets the level, as in RUST_LOG).",
        )
        .args([
            value(
                "run-dir",
                "DIR",
                "Ring, pause state and session.sock [default: /run/imprint]",
            ),
            value(
                "cursor",
                "FILE",
                "The agent's read cursor [default: /run/imprint-agent/cursor]",
            ),
            value(
                "capacity",
                "BYTES",
                "Ring size, a power of two [default: 4194304]",
            ),
            value("source", "ebpf|evdev|off", "Input source [default: ebpf]"),
            value(
                "input-dir",
                "DIR",
                "evdev device directory [default: /dev/input]",
            ),
            value(
                "seat",
                "SEAT",
                "Seat whose devices are read [default: seat0]",
            ),
            value(
                "session-uid",
                "UID",
                "The seat's session is this user's, instead of asking logind (machines \
                 without logind)",
            ),
            value(
                "agent-user",
                "USER",
                "User the agent runs as [default: imprint]",
            ),
            value(
                "ring-group",
                "GROUP",
                "Group that may read the ring [default: imprint]",
            ),
        ])
        .after_long_help(
            "FILES: /run/imprint/ring, /run/imprint/session.sock. \
             SEE ALSO: imprint-agent(8), imprint-session(1), imprint(1).",
        );
    let agent = common(Command::new("imprint-agent"))
        .about("imprint's unprivileged agent: ring, policy, durable spool")
        .long_about(
            "The unprivileged half of imprint (user imprint, no capabilities): drains the ring \
             the collector writes, applies the policy of the configuration file, writes what it \
             keeps to a crash-safe spool (encrypted to operator keys when configured), ships \
             sealed segments to object storage when [ship] is set, and answers `imprint status` \
             on its control socket. SIGHUP reloads the policy after validating it. Capture stays \
             off until the configuration enables it. Logs go to standard error (IMPRINT_LOG \
             sets the level).",
        )
        .args([
            value(
                "config",
                "FILE",
                "Configuration file; must exist when given [default: /etc/imprint/imprint.toml, \
                 capture off when absent]",
            ),
            value(
                "data-dir",
                "DIR",
                "State directory for the spool [default: /var/lib/imprint]",
            ),
            Arg::new("exit-when-closed")
                .long("exit-when-closed")
                .action(ArgAction::SetTrue)
                .help("Exit once the collector has closed its ring and it is drained"),
        ])
        .after_long_help(
            "FILES: /etc/imprint/imprint.toml, /etc/imprint/conf.d/, /var/lib/imprint/spool/, \
             /var/lib/imprint/audit.jsonl. SEE ALSO: imprint-collector(8), imprint(1).",
        );
    let session = common(Command::new("imprint-session"))
        .about("imprint's per-session helper: focus and secure-input state for the collector")
        .long_about(
            "Runs as the user in each login session (the systemd user unit \
             imprint-session.service, or XDG autostart) and reports to the collector what only \
             the session can see: the focused application, the terminal's echo state, the lock \
             state and a focused password field. It holds no privilege and opens no input \
             device. Logs go to standard error (IMPRINT_LOG sets the level).",
        )
        .args([
            value(
                "config",
                "FILE",
                "Configuration file [default: /etc/imprint/imprint.toml]",
            ),
            value(
                "socket",
                "PATH",
                "The collector's session socket [default: /run/imprint/session.sock]",
            ),
            value(
                "tracker",
                "KIND",
                "Focus tracker, overriding the configuration: auto (from the session's \
                 environment), x11, sway, hyprland, gnome, kde, tty or none",
            ),
        ])
        .after_long_help("SEE ALSO: imprint-collector(8), imprint(1).");
    [(collector, "8"), (agent, "8"), (session, "1")]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The `--flags` of a daemon's USAGE line.
    fn usage_flags(main_rs: &str) -> BTreeSet<String> {
        let start = main_rs.find("const USAGE").expect("a USAGE line");
        let usage = &main_rs[start..start + main_rs[start..].find("\";").expect("its end")];
        usage
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| w.trim_start_matches('-').to_owned())
            .collect()
    }

    #[test]
    fn the_daemon_pages_document_exactly_the_flags_the_daemons_parse() {
        let sources = [
            include_str!("../../../collector/src/main.rs"),
            include_str!("../../../agent/src/main.rs"),
            include_str!("../../../session/src/main.rs"),
        ];
        for ((cmd, _), main_rs) in daemons().into_iter().zip(sources) {
            let parsed = usage_flags(main_rs);
            let documented: BTreeSet<String> = cmd
                .get_arguments()
                .filter_map(|a| a.get_long())
                .map(str::to_owned)
                .collect();
            assert_eq!(documented, parsed, "{}", cmd.get_name());
            for flag in &parsed {
                assert!(
                    main_rs.contains(&format!("\"--{flag}\"")),
                    "{}: --{flag} in USAGE but not matched",
                    cmd.get_name()
                );
            }
        }
    }

    #[test]
    fn man_pages_and_completions_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let pages = man_pages(dir.path()).unwrap();
        let names: BTreeSet<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "imprint.1",
            "imprint-status.1",
            "imprint-policy-check.1",
            "imprint-collector.8",
            "imprint-agent.8",
            "imprint-session.1",
        ] {
            assert!(names.contains(want), "{want} missing from {names:?}");
        }
        assert!(!names.contains("imprint-collector.1"), "{names:?}");
        assert!(
            !names
                .iter()
                .any(|n| n.contains("generate") || n.contains("-help")),
            "{names:?}"
        );
        let collector = std::fs::read_to_string(dir.path().join("imprint-collector.8")).unwrap();
        assert!(collector.contains(".TH IMPRINT-COLLECTOR 8"), "{collector}");
        assert!(collector.contains("ring\\-group"), "{collector}");

        let shells = completions(dir.path()).unwrap();
        assert_eq!(shells.len(), 3);
        let bash = std::fs::read_to_string(dir.path().join("imprint.bash")).unwrap();
        assert!(bash.contains("export"), "{bash}");
    }
}
