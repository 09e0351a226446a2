//! The store against real SQLite files in a temporary directory.

use std::path::PathBuf;

use iolab_profiles::{
    Cell, HostFacts, Original, Run, RunHost, SeriesPoint, Store, StoreError, schema,
};

struct Dir(PathBuf);
impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!(
            "iolab-store-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn db(&self) -> PathBuf {
        self.0.join("nested/iolab.db")
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sample_run(name: &str) -> Run {
    let mut run = Run {
        id: None,
        profile_name: name.into(),
        profile_body: "format = 1\nname = \"x\"\n".into(),
        started_ms: 1_700_000_000_000,
        ended_ms: 1_700_000_009_000,
        host: HostFacts {
            kernel: "6.1.0".into(),
            cpu_model: "Test CPU".into(),
            cores: 2,
            memory_bytes: 24 << 30,
            interfaces: vec!["lo (loopback)".into(), "veth0 (veth)".into()],
        },
        cells: vec![
            Cell {
                mode: "read".into(),
                connections: 1,
                sessions: 1,
                block_bytes: 262_144,
                threads: 64,
                seconds: 3.0,
                read_bytes: 3 << 30,
                read_transfers: 12_288,
                p50_us: 900.5,
                p99_us: 2000.0,
                p999_us: 3000.0,
                max_us: 4000.0,
                ..Cell::default()
            },
            Cell {
                mode: "rw".into(),
                lun: 1,
                connections: 4,
                sessions: 2,
                block_bytes: 4096,
                threads: 8,
                seconds: 3.5,
                read_bytes: 1 << 20,
                read_transfers: 256,
                write_bytes: 2 << 20,
                write_transfers: 512,
                errors: 1,
                ..Cell::default()
            },
        ],
        series: (0..8)
            .map(|i| SeriesPoint {
                cell: i / 4,
                session: 0,
                cid: i % 4,
                seq: i,
                t_ms: 250 * u64::from(i),
                read_bytes: u64::from(i) << 20,
                write_bytes: 7,
                // Half counted by a remote target, half by this host's initiator.
                host: if i % 2 == 0 {
                    "lab-a".into()
                } else {
                    String::new()
                },
                side: if i % 2 == 0 {
                    "target".into()
                } else {
                    String::new()
                },
            })
            .collect(),
        hosts: vec![RunHost {
            name: "lab-a".into(),
            roles: vec!["target".into(), "initiator".into()],
            facts: HostFacts {
                kernel: "6.1.0-a".into(),
                cpu_model: "A CPU".into(),
                cores: 8,
                memory_bytes: 3 << 30,
                interfaces: vec!["va (veth)".into()],
            },
            agent: "iolab 0.1.0".into(),
            settings: vec![
                ("mtu:va".into(), "9000".into()),
                (
                    "net.ipv4.tcp_rmem".into(),
                    "10000000\t10000000\t10000000".into(),
                ),
            ],
        }],
    };
    // The order the store gives series back in.
    run.series.sort_by(|a, b| {
        (&a.host, &a.side, a.cell, a.session, a.cid, a.seq)
            .cmp(&(&b.host, &b.side, b.cell, b.session, b.cid, b.seq))
    });
    run
}

#[test]
fn profiles_are_added_replaced_and_deleted() {
    let d = Dir::new("profiles");
    let mut s = Store::open(&d.db()).unwrap();
    assert_eq!(s.schema_version().unwrap(), schema::latest());
    s.put_profile("mine", 1, "a = 1", false).unwrap();
    assert!(matches!(
        s.put_profile("mine", 1, "a = 2", false),
        Err(StoreError::ProfileExists(n)) if n == "mine"
    ));
    assert_eq!(s.profile("mine").unwrap().unwrap().body, "a = 1");
    s.put_profile("mine", 1, "a = 2", true).unwrap();
    s.put_profile("alpha", 1, "b = 1", false).unwrap();
    let names: Vec<_> = s.profiles().unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["alpha", "mine"]);
    assert_eq!(s.profile("mine").unwrap().unwrap().body, "a = 2");
    s.delete_profile("mine").unwrap();
    assert!(s.profile("mine").unwrap().is_none());
    assert!(matches!(
        s.delete_profile("mine"),
        Err(StoreError::NoProfile(_))
    ));
}

#[test]
fn runs_come_back_exactly_and_are_never_overwritten() {
    let d = Dir::new("runs");
    let mut s = Store::open(&d.db()).unwrap();
    let r = sample_run("quick");
    let a = s.add_run(&r).unwrap();
    let b = s.add_run(&r).unwrap();
    assert_ne!(a, b);
    drop(s);
    let s = Store::open(&d.db()).unwrap();
    let back = s.run(a).unwrap();
    assert_eq!(back, Run { id: Some(a), ..r });
    let list = s.runs().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].cells, 2);
    assert!(matches!(s.run(999), Err(StoreError::NoRun(999))));
}

#[test]
fn a_file_that_is_not_sqlite_is_reported_and_left_alone() {
    let d = Dir::new("notdb");
    let p = d.0.join("notes.db");
    let text = b"these are my lab notes, not a database\n".repeat(100);
    std::fs::write(&p, &text).unwrap();
    let e = Store::open(&p).err().expect("must refuse");
    assert!(matches!(e, StoreError::NotADatabase { .. }), "{e}");
    assert!(e.to_string().contains("not an SQLite database"), "{e}");
    assert_eq!(std::fs::read(&p).unwrap(), text);
}

#[test]
fn a_damaged_database_is_reported_and_left_alone() {
    let d = Dir::new("corrupt");
    let p = d.db();
    {
        let mut s = Store::open(&p).unwrap();
        for _ in 0..40 {
            s.add_run(&sample_run("quick")).unwrap();
        }
    }
    let mut bytes = std::fs::read(&p).unwrap();
    assert!(bytes.len() > 8 * 4096, "{} bytes", bytes.len());
    // Keep the 100-byte header; scribble over the schema page and the rest.
    for (i, b) in bytes.iter_mut().enumerate().skip(100) {
        *b = (i as u8).wrapping_mul(31) ^ 0x5a;
    }
    std::fs::write(&p, &bytes).unwrap();
    let e = Store::open(&p).err().expect("must refuse");
    assert!(
        matches!(
            e,
            StoreError::Corrupt { .. } | StoreError::NotADatabase { .. }
        ),
        "{e:?}"
    );
    assert_eq!(std::fs::read(&p).unwrap(), bytes, "the file was written");
}

#[test]
fn a_newer_schema_is_refused_naming_both_versions() {
    let d = Dir::new("newer");
    let p = d.db();
    Store::open(&p)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let e = Store::open(&p).err().expect("must refuse");
    let msg = e.to_string();
    assert!(
        msg.contains("99") && msg.contains(&schema::latest().to_string()),
        "{msg}"
    );
}

#[test]
fn an_old_database_is_migrated_and_keeps_every_row() {
    let d = Dir::new("migrate");
    let p = d.db();
    {
        let s = Store::open_at_version(&p, 1).unwrap();
        assert_eq!(s.schema_version().unwrap(), 1);
        s.execute_batch(
            "INSERT INTO profiles VALUES ('old', 1, 'format = 1', 1, 2);
             INSERT INTO runs (profile_name, profile_body, started_ms, ended_ms, kernel, cpu_model, cores, memory_bytes)
                 VALUES ('old', 'format = 1', 10, 20, '5.10', 'Old CPU', 4, 1024);
             INSERT INTO cells VALUES (1, 0, 'read', 0, 2, 1, 262144, 64, 1.0, 1048576, 4, 0, 0, 0, 1, 2, 3, 4);",
        )
        .unwrap();
    }
    let s = Store::open(&p).unwrap();
    assert_eq!(s.schema_version().unwrap(), schema::latest());
    assert_eq!(s.profile("old").unwrap().unwrap().body, "format = 1");
    let r = s.run(1).unwrap();
    assert_eq!(r.host.kernel, "5.10");
    assert!(r.host.interfaces.is_empty());
    assert_eq!(r.cells.len(), 1);
    assert_eq!(r.cells[0].read_mbps(), 1.0);
    assert_eq!(s.runs().unwrap().len(), 1);
}

#[test]
fn series_of_a_version_3_database_survive_the_move_to_hosts() {
    let d = Dir::new("migrate3");
    let p = d.db();
    {
        let s = Store::open_at_version(&p, 3).unwrap();
        s.execute_batch(
            "INSERT INTO runs (profile_name, profile_body, started_ms, ended_ms, kernel, cpu_model, cores, memory_bytes)
                 VALUES ('old', 'format = 1', 10, 20, '6.1', 'CPU', 2, 1024);
             INSERT INTO series VALUES (1, 0, 0, 1, 0, 250, 100, 5), (1, 0, 0, 1, 1, 500, 200, 6);",
        )
        .unwrap();
    }
    let s = Store::open(&p).unwrap();
    let r = s.run(1).unwrap();
    let got: Vec<_> = r
        .series
        .iter()
        .map(|p| {
            (
                p.host.as_str(),
                p.cid,
                p.seq,
                p.t_ms,
                p.read_bytes,
                p.write_bytes,
            )
        })
        .collect();
    assert_eq!(got, [("", 1, 0, 250, 100, 5), ("", 1, 1, 500, 200, 6)]);
    assert!(r.hosts.is_empty());
}

#[test]
fn originals_keep_the_first_value_in_order() {
    let d = Dir::new("originals");
    let mut s = Store::open(&d.db()).unwrap();
    let o = |k: &str, v: &str| Original {
        key: k.into(),
        value: v.into(),
    };
    s.save_originals("tuning:ns1", &[o("b", "1"), o("a", "2")])
        .unwrap();
    s.save_originals("tuning:ns1", &[o("a", "changed"), o("c", "3")])
        .unwrap();
    s.save_originals("tuning:", &[o("a", "9")]).unwrap();
    assert_eq!(
        s.originals("tuning:ns1").unwrap(),
        vec![o("b", "1"), o("a", "2"), o("c", "3")]
    );
    assert_eq!(s.original_scopes().unwrap(), ["tuning:", "tuning:ns1"]);
    s.forget_originals("tuning:ns1", &["a".into(), "b".into()])
        .unwrap();
    assert_eq!(s.originals("tuning:ns1").unwrap(), vec![o("c", "3")]);
}

#[test]
fn two_writers_at_once_lose_nothing() {
    let d = Dir::new("writers");
    let p = d.db();
    Store::open(&p).unwrap();
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let p = p.clone();
            std::thread::spawn(move || {
                let mut s = Store::open(&p).unwrap();
                for i in 0..50 {
                    s.add_run(&sample_run(&format!("w{w}-{i}"))).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let s = Store::open(&p).unwrap();
    assert_eq!(s.runs().unwrap().len(), 100);
}

#[test]
fn openers_racing_to_create_the_file_all_succeed() {
    // The CI once saw "database is locked" when two processes created the
    // database at the same moment; open them from threads released together.
    let d = Dir::new("create-race");
    for round in 0..20 {
        let p = d.0.join(format!("r{round}.db"));
        let start = std::sync::Arc::new(std::sync::Barrier::new(4));
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (p, start) = (p.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let mut s = Store::open(&p).map_err(|e| e.to_string())?;
                    s.add_run(&sample_run(&format!("w{w}")))
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        for w in workers {
            let r = w.join().unwrap();
            assert!(r.is_ok(), "round {round}: {r:?}");
        }
        assert_eq!(Store::open(&p).unwrap().runs().unwrap().len(), 4);
    }
}
