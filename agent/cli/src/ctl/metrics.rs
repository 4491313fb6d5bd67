//! `imprint metrics`: every metric in Prometheus text format, and with `--serve` the same over
//! HTTP, rendered fresh for each scrape, on a local Unix socket (and a loopback TCP address
//! when configured). Under systemd the sockets come from `imprint-metrics.socket`, so nothing
//! runs until the first scrape.

use super::status::prometheus_text;
use super::Locations;
use imprint_agent::daemon::Paths;
use std::net::TcpListener;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::Duration;

/// `imprint metrics` options.
#[derive(clap::Args, Debug)]
pub struct MetricsArgs {
    /// Serve over HTTP until stopped, instead of printing once.
    #[arg(long)]
    serve: bool,
    /// The Unix socket to serve on [default: `[metrics] socket`, or metrics.sock in the
    /// agent's runtime directory]. Ignored when systemd passes the sockets.
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// Also serve on this loopback address (127.0.0.1:PORT or [::1]:PORT; port 0 picks one)
    /// [default: `[metrics] listen`, if set].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
}

pub fn run(loc: &Locations, args: MetricsArgs) -> anyhow::Result<i32> {
    let cfg = loc.load()?;
    let paths = loc.paths(&cfg);
    if !args.serve {
        print!("{}", prometheus_text(&paths));
        return Ok(0);
    }
    let mut servers = Vec::new();
    let passed = sd_notify::listen_fds().map(|fds| fds.collect::<Vec<_>>());
    match passed {
        Ok(fds) if !fds.is_empty() => {
            for fd in fds {
                // SAFETY: systemd passed these descriptors to this process for it to own.
                servers.push(adopt(fd)?);
            }
        }
        _ => {
            let path = args.unix.clone().unwrap_or_else(|| paths.metrics.clone());
            servers.push(bind_unix(&path)?);
            let listen = match &args.listen {
                Some(text) => Some(
                    imprint_config::metrics::loopback(text)
                        .map_err(|e| anyhow::anyhow!("--listen {e}"))?,
                ),
                None => cfg.metrics.listen_addr().map_err(anyhow::Error::msg)?,
            };
            if let Some(addr) = listen {
                let l = TcpListener::bind(addr)
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
                let local = l.local_addr()?;
                // Tests and operators learn a port picked by the kernel from this line.
                println!("serving metrics on http://{local}/metrics");
                servers.push(server(l.into())?);
            }
        }
    }
    imprint_service::ready("serving metrics");
    let threads: Vec<_> = servers
        .into_iter()
        .map(|s| {
            let paths = paths.clone();
            std::thread::spawn(move || serve(&s, &paths))
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    Ok(0)
}

/// Answers every request on `server` with the current metrics.
fn serve(server: &tiny_http::Server, paths: &Paths) {
    loop {
        let request = match server.recv() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "metrics request failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let response = match (request.method(), request.url()) {
            (tiny_http::Method::Get, "/metrics" | "/") => {
                let header = tiny_http::Header::from_bytes(
                    "Content-Type",
                    "text/plain; version=0.0.4; charset=utf-8",
                )
                .ok();
                let mut r = tiny_http::Response::from_string(prometheus_text(paths));
                if let Some(h) = header {
                    r.add_header(h);
                }
                r
            }
            _ => tiny_http::Response::from_string("only GET /metrics\n").with_status_code(404),
        };
        if let Err(e) = request.respond(response) {
            tracing::debug!(error = %e, "metrics client went away");
        }
    }
}

fn bind_unix(path: &std::path::Path) -> anyhow::Result<tiny_http::Server> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket left by an earlier run is ours to replace; anything else is not.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            anyhow::bail!("{} exists and is not a socket", path.display());
        }
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", path.display()))?;
    // The agent's group may scrape; nobody else (the counts say how much each person types).
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o660))?;
    server(l.into())
}

/// A listening socket passed by systemd: a Unix one, or a TCP one (which must be loopback).
fn adopt(fd: std::os::fd::RawFd) -> anyhow::Result<tiny_http::Server> {
    // SAFETY: the descriptor is a listening socket systemd handed to this process.
    let tcp = unsafe { TcpListener::from_raw_fd(fd) };
    match tcp.local_addr() {
        Ok(addr) if addr.ip().is_loopback() => server(tcp.into()),
        Ok(addr) => anyhow::bail!("refusing to serve metrics on {addr}: not a loopback address"),
        Err(_) => {
            // Not an inet socket: take it back as a Unix one.
            let raw = std::os::fd::IntoRawFd::into_raw_fd(tcp);
            // SAFETY: the same descriptor, now owned as a Unix listener.
            server(unsafe { UnixListener::from_raw_fd(raw) }.into())
        }
    }
}

fn server(listener: tiny_http::Listener) -> anyhow::Result<tiny_http::Server> {
    tiny_http::Server::from_listener(listener, None)
        .map_err(|e| anyhow::anyhow!("metrics server: {e}"))
}
