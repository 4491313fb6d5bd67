//! Served metrics: `imprint metrics --serve` answers Prometheus scrapes on a Unix socket and a
//! loopback TCP address with text that `promtool check metrics` (Debian's `prometheus`
//! package) accepts, refuses every non-loopback address, and `status --prometheus` ends
//! quietly when its reader goes away.

mod common;

use common::{recording, Env};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One HTTP/1.0 GET; returns (status line, headers, body).
fn get(mut stream: impl Read + Write) -> (String, String, String) {
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_owned(), body.to_owned())
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing: apt-get install prometheus (tests/setup.sh does)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- text ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn served_metrics_pass_promtool_on_a_unix_socket_and_loopback_only() {
    let env = Env::new("full", "");
    let out = env.replay(&recording());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let sock = env.dir.path().join("metrics.sock");
    let mut server = env
        .cmd(&[
            "metrics",
            "--serve",
            "--unix",
            sock.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn metrics server");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the address line");
    let url = line
        .trim()
        .strip_prefix("serving metrics on http://")
        .and_then(|u| u.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no address line: {line:?}"))
        .to_owned();
    assert!(url.starts_with("127.0.0.1:"), "{url}");
    common::wait_until("the Unix socket", Duration::from_secs(10), || {
        sock.exists().then_some(())
    });
    let mode = std::fs::metadata(&sock)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660, "only the agent's group may scrape");

    let (status, headers, unix_body) =
        get(std::os::unix::net::UnixStream::connect(&sock).expect("connect unix"));
    assert!(status.contains(" 200"), "{status}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{headers}"
    );
    // The replayed events are counted: the numbers are the agent's, not placeholders.
    let written = unix_body
        .lines()
        .find_map(|l| l.strip_prefix("imprint_events_written_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no imprint_events_written_total in:\n{unix_body}"));
    assert!(written > 0, "{unix_body}");
    promtool_check(&unix_body);

    let (status, _, tcp_body) = get(std::net::TcpStream::connect(&url).expect("connect tcp"));
    assert!(status.contains(" 200"), "{status}");
    promtool_check(&tcp_body);

    let _ = server.kill();
    let _ = server.wait();

    // Anything but loopback is refused, from the command line and from the configuration.
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let out = env.run(&[
            "metrics",
            "--serve",
            "--unix",
            env.dir.path().join("x.sock").to_str().expect("utf-8"),
            "--listen",
            addr,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("not a loopback address"),
            "{addr}: {err}"
        );
    }
    let bad = Env::new("full", "[metrics]\nlisten = \"0.0.0.0:9464\"\n");
    let out = bad.run(&["metrics"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("metrics.listen") && err.contains("loopback"),
        "{err}"
    );
}

#[test]
fn status_prometheus_into_a_closed_pipe_ends_quietly() {
    let env = Env::new("full", "");
    let out = env.replay(&recording());
    assert!(out.status.success());
    // A pipe whose reader is already gone (`| head` that has exited): every write fails.
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    let out = env
        .cmd(&["status", "--prometheus"])
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "ends by SIGPIPE, as any Unix filter does: {:?} {err}",
        out.status
    );
}
