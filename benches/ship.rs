//! Upload throughput: N MiB of sealed segments (1 MiB each, incompressible bytes) shipped by
//! `imprint_ship::Shipper` to a real moto_server on 127.0.0.1 (from the venv tests/setup.sh
//! makes), bandwidth unbounded, `max_concurrency` 2. Each sample ships a fresh spool (a new
//! spool id, so new keys): PUT, acknowledgement and marker, as in production. Reported as
//! MB/s of segment bytes. moto is a Python server, so this measures the shipper plus moto,
//! not what a production store would take.
//! `cargo bench -p imprint-benches --bench ship`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imprint_config::ship::ShipConfig;
use imprint_ship::Shipper;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SEGMENTS: usize = 16;
const SEGMENT_BYTES: usize = 1 << 20;

fn http(port: u16, method: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn bench(c: &mut Criterion) {
    let moto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv/bin/moto_server");
    assert!(
        moto.exists(),
        "{} is missing: run `bash tests/setup.sh`",
        moto.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(&moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server");
    let deadline = Instant::now() + Duration::from_secs(30);
    while http(port, "GET", "/").is_err() {
        assert!(Instant::now() < deadline, "moto_server did not answer");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(http(port, "PUT", "/bench").unwrap().contains(" 200 "));

    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::write(&creds, "access_key_id = b\nsecret_access_key = b\n").unwrap();
    std::fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cfg = ShipConfig {
        enabled: true,
        endpoint: format!("http://127.0.0.1:{port}"),
        bucket: "bench".into(),
        credentials_file: creds,
        max_bytes_per_sec: 0,
        ..ShipConfig::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut noise = vec![0u8; SEGMENT_BYTES];

    let mut g = c.benchmark_group("ship");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Bytes((SEGMENTS * SEGMENT_BYTES) as u64));
    g.bench_function(format!("{SEGMENTS}x1MiB_to_moto"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let spool = tempfile::tempdir_in(dir.path()).unwrap();
                for i in 0..SEGMENTS {
                    for w in noise.chunks_mut(8) {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        w.copy_from_slice(&seed.to_le_bytes()[..w.len()]);
                    }
                    std::fs::write(spool.path().join(format!("{:020}.sealed", i + 1)), &noise)
                        .unwrap();
                }
                let shipper = Shipper::new(&cfg, spool.path(), None).unwrap();
                let t = Instant::now();
                let r = rt.block_on(shipper.ship_once()).unwrap();
                total += t.elapsed();
                assert_eq!(r.shipped, SEGMENTS, "{r:?}");
            }
            total
        })
    });
    g.finish();
    let _ = server.kill();
    let _ = server.wait();
}

criterion_group!(benches, bench);
criterion_main!(benches);
