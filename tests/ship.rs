//! Shipping to a real S3-compatible server (moto_server, from the venv that tests/setup.sh
//! makes) on 127.0.0.1: every sealed segment becomes exactly one byte-identical object under
//! its deterministic key; SIGKILLs at any moment lose and duplicate nothing; a store that is
//! down or never answers fails `imprint ship` loudly, counts the failures and marks nothing,
//! and the agent's shipper keeps running and ships everything once the store is back.

mod common;

use common::daemon::poll;
use common::Env;
use futures::TryStreamExt;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BUCKET: &str = "imprint-test";
const PREFIX: &str = "fleet/test";

fn moto_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv/bin/moto_server");
    assert!(
        p.exists(),
        "{} is missing: run `bash tests/setup.sh` (it installs moto[server], the S3 server the \
         shipping tests upload to, into the venv target/pyenv)",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A moto_server on 127.0.0.1, killed when dropped.
struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Moto {
    fn start(port: u16, dir: &Path) -> Moto {
        let log = dir.join(format!("moto-{port}-{}.log", std::process::id()));
        let out = std::fs::File::create(&log).expect("moto log");
        let child = Command::new(moto_bin())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let mut m = Moto { child, port, log };
        poll("moto_server answers", Duration::from_secs(30), || {
            if let Ok(Some(st)) = m.child.try_wait() {
                panic!("moto_server exited: {st:?}: {}", m.log_text());
            }
            http(port, "GET", "/")
                .ok()
                .filter(|r| r.starts_with("HTTP/1."))
        });
        let r = http(port, "PUT", &format!("/{BUCKET}")).expect("create bucket");
        assert!(
            r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200"),
            "{r}"
        );
        m
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// (PUTs answered 200, PUTs refused with 412 because the object existed).
    fn put_counts(&self) -> (usize, usize) {
        let log = self.log_text();
        let puts = |code: &str| {
            log.lines()
                .filter(|l| l.contains("PUT /") && l.contains(".sealed") && l.contains(code))
                .count()
        };
        (puts("\" 200"), puts("\" 412"))
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bodyless HTTP/1.1 request; the whole response as text.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The test bucket on the moto server at `endpoint`, as an operator reads it.
fn test_store(endpoint: &str) -> object_store::aws::AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_allow_http(true)
        .build()
        .expect("store")
}

/// Every object in the bucket: key → content.
fn objects(endpoint: &str) -> BTreeMap<String, Vec<u8>> {
    let store = test_store(endpoint);
    runtime().block_on(async {
        let metas: Vec<_> = store.list(None).try_collect().await.expect("list");
        let mut out = BTreeMap::new();
        for m in metas {
            let body = store
                .get(&m.location)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("body");
            assert_eq!(body.len() as u64, m.size, "{}", m.location);
            out.insert(m.location.to_string(), body.to_vec());
        }
        out
    })
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Writes a private credentials file and returns the `[ship]` section for `endpoint`.
fn ship_section(env: &Env, endpoint: &str, extra: &str) -> String {
    let creds = env.dir.path().join("ship.credentials");
    std::fs::write(&creds, "access_key_id = test\nsecret_access_key = test\n").expect("creds");
    std::fs::set_permissions(
        &creds,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .expect("chmod");
    format!(
        "[ship]\nenabled = true\nendpoint = \"{endpoint}\"\nbucket = \"{BUCKET}\"\nprefix = \"{PREFIX}\"\ncredentials_file = \"{}\"\n{extra}",
        creds.display()
    )
}

const SPOOL: &str =
    "[spool]\nsegment_max_bytes = 4096\nfsync_interval_ms = 10\n[policy]\nredact = false\n";

/// Rewrites the environment's configuration: the spool settings plus `ship`.
fn configure(env: &Env, ship: &str) {
    std::fs::write(
        &env.config,
        format!("[capture]\ndefault_level = \"full\"\n{SPOOL}{ship}"),
    )
    .expect("config");
}

/// Replays `keys` synthetic key presses at a real pace so that many small batches (and so
/// many segments) are written; returns the sealed segments.
fn produce(env: &Env, keys: usize) -> Vec<imprint_spool::SegmentFile> {
    let rec = env.dir.path().join("typing.yml");
    common::synthetic_recording(&rec, keys, 1000);
    env.replay_with("run", &rec, "2");
    let sealed: Vec<_> = imprint_spool::list_segments(&env.spool_dir())
        .expect("list")
        .into_iter()
        .filter(|s| s.sealed)
        .collect();
    assert!(sealed.len() >= 3, "only {} sealed segments", sealed.len());
    sealed
}

/// The bucket holds exactly one object per sealed segment, under its key, byte-identical,
/// and every segment has its marker.
fn assert_shipped_exactly(env: &Env, endpoint: &str, sealed: &[imprint_spool::SegmentFile]) {
    let spool_id = imprint_spool::spool_id(&env.spool_dir()).expect("spool id");
    let objs = objects(endpoint);
    assert_eq!(
        objs.len(),
        sealed.len(),
        "one object per sealed segment: {:?}",
        objs.keys().collect::<Vec<_>>()
    );
    for seg in sealed {
        let data = std::fs::read(&seg.path).expect("segment");
        let hash = sha256_hex(&data);
        let key = format!(
            "{PREFIX}/{spool_id}/{:020}-{}.sealed",
            seg.first_seq,
            &hash[..32]
        );
        let obj = objs
            .get(&key)
            .unwrap_or_else(|| panic!("{key} missing from the bucket"));
        assert_eq!(obj.len(), data.len(), "{key}: size");
        assert_eq!(sha256_hex(obj), hash, "{key}: content");
        assert!(
            imprint_spool::is_shipped(seg),
            "{}: no marker",
            seg.path.display()
        );
        let marker = std::fs::read_to_string(imprint_spool::shipped_marker(seg)).expect("marker");
        assert_eq!(marker, key, "the marker names the key");
    }
}

fn prometheus(env: &Env) -> BTreeMap<String, u64> {
    let out = env.run(&["status", "--prometheus"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

#[test]
fn ship_uploads_every_sealed_segment_once() {
    let env = Env::new("full", "");
    let moto = Moto::start(free_port(), env.dir.path());
    configure(&env, "");
    let sealed = produce(&env, 600);
    configure(
        &env,
        &ship_section(&env, &moto.endpoint(), "max_bytes_per_sec = 0\n"),
    );
    let out = env.run(&["ship"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "imprint ship failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("shipped {} segments", sealed.len())),
        "{stdout}"
    );
    assert_shipped_exactly(&env, &moto.endpoint(), &sealed);
    let total: u64 = sealed.iter().map(|s| s.bytes).sum();
    let m = prometheus(&env);
    assert_eq!(m.get("imprint_upload_bytes_total"), Some(&total), "{m:?}");
    assert_eq!(m.get("imprint_ship_backlog_bytes"), Some(&0), "{m:?}");
    assert_eq!(m.get("imprint_upload_failures_total"), Some(&0), "{m:?}");

    // A second run has nothing to do; with the markers gone it re-sends to the same keys,
    // which the store refuses (412), and the objects are acknowledged by size: no duplicate.
    let out = env.run(&["ship"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("shipped 0 segments"));
    for s in &sealed {
        std::fs::remove_file(imprint_spool::shipped_marker(s)).expect("rm marker");
    }
    let out = env.run(&["ship"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "shipped 0 segments (0 bytes), {} already in the store",
            sealed.len()
        )),
        "{stdout}"
    );
    assert_shipped_exactly(&env, &moto.endpoint(), &sealed);
    assert_eq!(moto.put_counts(), (sealed.len(), sealed.len()));
}

#[test]
fn sigkill_loop_neither_loses_nor_duplicates_objects() {
    const KILLS: usize = 60;
    let env = Env::new("full", "");
    let moto = Moto::start(free_port(), env.dir.path());
    configure(&env, "");
    let sealed = produce(&env, 2000);
    // About 1.5 KB/s: a run ships a segment or two (≈900 bytes each) before it is killed.
    configure(
        &env,
        &ship_section(
            &env,
            &moto.endpoint(),
            "max_bytes_per_sec = 1500\nmax_concurrency = 2\n",
        ),
    );
    let mut seed = 0x2545f4914f6cdd1du64;
    let mut rand = move |lo: u64, hi: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        lo + seed % (hi - lo)
    };
    let started = Instant::now();
    let mut marked_per_kill = Vec::new();
    for i in 0..KILLS {
        let mut ship = env.spawn(&["ship"]);
        std::thread::sleep(Duration::from_millis(rand(10, 300)));
        kill(Pid::from_raw(ship.id() as i32), Signal::SIGKILL).expect("SIGKILL");
        let status = ship.wait().expect("wait");
        let marked = sealed
            .iter()
            .filter(|s| imprint_spool::is_shipped(s))
            .count();
        marked_per_kill.push(marked);
        if status.code().is_some() {
            // It finished before the kill: everything is shipped; later kills still run.
            assert_eq!(marked, sealed.len(), "kill {i}: exited {status:?} early");
        }
    }
    let (ok_before, refused_before) = moto.put_counts();
    let out = env.run(&["ship"]);
    assert!(
        out.status.success(),
        "final ship: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_shipped_exactly(&env, &moto.endpoint(), &sealed);
    let (ok, refused) = moto.put_counts();
    eprintln!(
        "{KILLS} kills in {:.1} s over {} segments; marked after each kill: {marked_per_kill:?}; \
         PUTs accepted {ok} (before the final run {ok_before}), refused as already present {refused} \
         (before {refused_before})",
        started.elapsed().as_secs_f64(),
        sealed.len()
    );
    // Every accepted PUT created a distinct object: none was created twice.
    assert_eq!(ok, sealed.len(), "each object was created exactly once");
}

/// A listener that accepts connections and never answers.
fn black_hole() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let held = l.try_clone().expect("clone");
    std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in held.incoming() {
            match c {
                Ok(c) => conns.push(c),
                Err(_) => break,
            }
        }
    });
    (l, port)
}

#[test]
fn a_store_that_is_down_fails_loudly_and_the_agent_ships_once_it_is_back() {
    let env = Env::new("full", "");
    configure(&env, "");
    let sealed = produce(&env, 600);
    let backlog: u64 = sealed.iter().map(|s| s.bytes).sum();
    let fast = "timeout_secs = 1\nbackoff_min_ms = 100\nbackoff_max_secs = 1\ninterval_secs = 1\nmax_concurrency = 8\n";

    // A store that accepts connections and never answers: every request times out.
    let (_hole, port) = black_hole();
    configure(
        &env,
        &ship_section(&env, &format!("http://127.0.0.1:{port}"), fast),
    );
    let t = Instant::now();
    let out = env.run(&["ship", "--attempts", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("remain unshipped"), "{stderr}");
    assert!(
        stderr.contains("timed out") || stderr.contains("no answer") || stderr.contains("error"),
        "{stderr}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        sealed.iter().all(|s| !imprint_spool::is_shipped(s)),
        "nothing marked"
    );
    let m = prometheus(&env);
    assert!(
        m["imprint_upload_failures_total"] >= sealed.len() as u64,
        "{m:?}"
    );
    assert_eq!(m["imprint_ship_backlog_bytes"], backlog, "{m:?}");
    assert_eq!(m["imprint_upload_bytes_total"], 0, "{m:?}");

    // A closed port: refused at once.
    let port = free_port();
    configure(
        &env,
        &ship_section(&env, &format!("http://127.0.0.1:{port}"), fast),
    );
    let out = env.run(&["ship", "--attempts", "1"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sealed.iter().all(|s| !imprint_spool::is_shipped(s)));

    // The agent, started while the store is down, keeps running and counts failures...
    let mut agent = env.spawn(&["agent"]);
    let failures = m["imprint_upload_failures_total"];
    poll("agent counts failures", Duration::from_secs(20), || {
        (prometheus(&env)["imprint_upload_failures_total"] > failures).then_some(())
    });
    assert!(
        agent.try_wait().expect("wait").is_none(),
        "the agent is running"
    );
    assert!(sealed.iter().all(|s| !imprint_spool::is_shipped(s)));
    // ...and ships everything once the store is back on that port.
    let moto = Moto::start(port, env.dir.path());
    poll("agent ships everything", Duration::from_secs(30), || {
        sealed.iter().all(imprint_spool::is_shipped).then_some(())
    });
    assert!(
        agent.try_wait().expect("wait").is_none(),
        "the agent is running"
    );
    kill(Pid::from_raw(agent.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let _ = agent.wait();
    assert_shipped_exactly(&env, &moto.endpoint(), &sealed);
    let m = prometheus(&env);
    assert_eq!(m["imprint_upload_bytes_total"], backlog, "{m:?}");
    assert_eq!(m["imprint_ship_backlog_bytes"], 0, "{m:?}");
    moto.stop();
}

fn delete_object(endpoint: &str, key: &str) {
    let store = test_store(endpoint);
    runtime().block_on(async {
        store
            .delete(&object_store::path::Path::from(key))
            .await
            .expect("delete");
    })
}

/// The event lines of `imprint dump --identity ID` over `data`'s spool.
fn dumped_events(data: &Path, config: &Path, id: &Path) -> Vec<String> {
    let out = std::process::Command::new(common::imprint_bin())
        .args(["dump", "--identity"])
        .arg(id)
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .output()
        .expect("dump");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"kind\":\"event\""))
        .map(str::to_owned)
        .collect()
}

#[test]
fn encrypted_objects_reveal_nothing_and_decrypt_to_exactly_what_was_captured() {
    let env = Env::new("full", "");
    let (id, recipient) = common::operator_key(env.dir.path(), "operator.key");
    let moto = Moto::start(free_port(), env.dir.path());
    let spool = format!(
        "[spool]\nsegment_max_bytes = 4096\nfsync_interval_ms = 10\nrecipients = [\"{recipient}\"]\n[policy]\nredact = false\n"
    );
    let write = |ship: &str| {
        std::fs::write(
            &env.config,
            format!("[capture]\ndefault_level = \"full\"\n{spool}{ship}"),
        )
        .expect("config")
    };
    write("");
    let rec = env.dir.path().join("typing.yml");
    common::synthetic_recording(&rec, 600, 1000);
    env.replay_with("run", &rec, "2");
    let local = dumped_events(&env.data, &env.config, &id);
    assert!(local.len() >= 600, "{} events", local.len());
    write(&ship_section(
        &env,
        &moto.endpoint(),
        "max_bytes_per_sec = 0\n",
    ));
    let out = env.run(&["ship"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The bucket alone, as an operator downloads it, into a spool of its own.
    let objs = objects(&moto.endpoint());
    assert!(objs.len() >= 3, "{} objects", objs.len());
    let fetched = env.dir.path().join("fetched");
    std::fs::create_dir_all(fetched.join("spool")).expect("dir");
    for (key, body) in &objs {
        assert!(
            !body.windows(18).any(|w| w == b"synthetic-keyboard"),
            "{key} names the device in the clear"
        );
        let name = key.rsplit('/').next().expect("name");
        let first_seq = name.split('-').next().expect("seq");
        std::fs::write(
            fetched.join("spool").join(format!("{first_seq}.sealed")),
            body,
        )
        .expect("write");
    }
    assert_eq!(dumped_events(&fetched, &env.config, &id), local);
}

#[test]
fn erasure_removes_a_subject_from_the_bucket_too() {
    // Focus needs a session; erasure by uid 0 with focus-less replay input erases nothing,
    // so this checks the store side: a rewritten segment's old object goes, the new one
    // arrives, and untouched segments' objects stay.
    let env = Env::new("full", "");
    let moto = Moto::start(free_port(), env.dir.path());
    configure(&env, "");
    let sealed = produce(&env, 600);
    configure(
        &env,
        &ship_section(&env, &moto.endpoint(), "max_bytes_per_sec = 0\n"),
    );
    assert!(env.run(&["ship"]).status.success());
    assert_eq!(objects(&moto.endpoint()).len(), sealed.len());
    // Attribute the first segment's input to uid 4242 by rewriting it with a focus record.
    let seg = &sealed[0];
    let frames = imprint_spool::rewrite::read_all(seg, None).expect("read");
    let mut out = Vec::new();
    for (seq, payload) in frames {
        let (meta, mut recs) = imprint_record::codec::decode_batch(&payload).expect("batch");
        recs.insert(
            0,
            imprint_record::Record::Focus(Box::new(imprint_record::FocusInfo {
                seq: 99,
                uid: 4242,
                ..Default::default()
            })),
        );
        for r in recs.iter_mut() {
            if let imprint_record::Record::Event(e) = r {
                e.focus = 99;
            }
        }
        out.push((seq, imprint_record::codec::encode_batch(&meta, &recs)));
    }
    let original = imprint_spool::rewrite::replace_sealed(seg, &out, None, 3, &[])
        .expect("rewrite")
        .expect("it was shipped");
    // As if it had been captured so: only the attributed version is in the bucket.
    delete_object(&moto.endpoint(), &original);
    assert!(env.run(&["ship"]).status.success());
    let stale = std::fs::read_to_string(imprint_spool::shipped_marker(seg)).expect("marker");
    let before = objects(&moto.endpoint());
    assert!(
        before.contains_key(&stale),
        "the subject's object is in the bucket"
    );
    let out = env.run(&["erase", "--subject", "4242"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("deleted from the store"), "{text}");
    let after = objects(&moto.endpoint());
    assert_eq!(
        after.len(),
        sealed.len(),
        "{:?}",
        after.keys().collect::<Vec<_>>()
    );
    for (k, v) in &before {
        if k.contains(&format!("{:020}-", seg.first_seq)) {
            continue;
        }
        assert_eq!(
            after.get(k),
            Some(v),
            "{k}: other segments' objects are untouched"
        );
    }
    let replaced: Vec<_> = after
        .keys()
        .filter(|k| k.contains(&format!("{:020}-", seg.first_seq)))
        .collect();
    assert_eq!(replaced.len(), 1);
    assert!(!after.contains_key(&stale));
    let body = &after[replaced[0]];
    assert_eq!(
        body,
        &std::fs::read(&seg.path).expect("segment"),
        "the erased version"
    );
}
