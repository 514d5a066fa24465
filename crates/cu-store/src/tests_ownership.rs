//! Process ownership (`crate::ownership`) on PostgreSQL: two nodes on one database, each process owned by
//! one of them, every write of a process fenced by its lease.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::tests::{meta, process, result};
use crate::*;

fn node(dir: &Path, name: &str, ttl_ms: u64) -> Store {
    let options = StoreOptions {
        ownership: Some(OwnershipOptions {
            node: name.into(),
            url: format!("http://{name}.test"),
            ttl: Duration::from_millis(ttl_ms),
        }),
        ..crate::test_db::options_for(dir, StoreOptions::default())
    };
    Store::open(dir, options).unwrap()
}

fn entry(pid: &str, pos: u64) -> LogEntry {
    LogEntry {
        process_id: pid.into(),
        pos,
        message_id: Some(format!("m{pos}")),
        nonce: Some(pos),
        timestamp: 5,
        block_height: 1,
        cron: None,
        msg_json: "{}".into(),
    }
}

fn on_postgres() -> bool {
    if crate::test_db::postgres_url().is_none() {
        eprintln!("runs on PostgreSQL only (set {})", crate::test_db::POSTGRES_ENV);
        return false;
    }
    true
}

fn is_not_owner(err: &StoreError, process: &str) -> bool {
    matches!(err, StoreError::NotOwner { process: p, .. } if p == process)
}

#[test]
fn each_process_is_owned_by_one_node_and_only_its_owner_writes_it() {
    if !on_postgres() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), "node-a", 60_000);
    let b = node(dir.path(), "node-b", 60_000);
    let (oa, ob) = (a.ownership().unwrap(), b.ownership().unwrap());
    assert_ne!(oa.node(), ob.node());
    let Claim::Held { token, fresh: true } = oa.claim("p").unwrap() else {
        panic!("node-a takes the free process")
    };
    assert_eq!(oa.claim("p").unwrap(), Claim::Held { token, fresh: false });
    assert_eq!(
        ob.claim("p").unwrap(),
        Claim::Other {
            node: oa.node().to_string(),
            url: "http://node-a.test".into()
        }
    );
    assert!(matches!(ob.claim("q").unwrap(), Claim::Held { fresh: true, .. }));
    // Each node writes its own process, and no write of the other's passes the fence.
    a.put_process(&process("p")).unwrap();
    b.put_process(&process("q")).unwrap();
    assert!(is_not_owner(&b.put_process(&process("p")).unwrap_err(), "p"));
    a.append(&[entry("p", 1)]).unwrap();
    assert!(is_not_owner(&b.append(&[entry("p", 2)]).unwrap_err(), "p"));
    // A batch touching one foreign process writes nothing at all.
    assert!(is_not_owner(
        &a.append(&[entry("p", 2), entry("q", 1)]).unwrap_err(),
        "q"
    ));
    assert_eq!((a.last_pos("p").unwrap(), a.last_pos("q").unwrap()), (1, 0));
    assert!(is_not_owner(&b.put_result_sync(result("p", 1)).unwrap_err(), "p"));
    assert!(is_not_owner(
        &b.write_checkpoint(meta("p", 1, records::CheckpointKind::Base, None), b"x")
            .unwrap_err(),
        "p"
    ));
    assert!(is_not_owner(
        &b.delete_checkpoints_before("p", 9).unwrap_err(),
        "p"
    ));
    let batch = schedule::ScheduleBatch {
        cron_marks: vec![("p".into(), 7)],
        ..Default::default()
    };
    assert!(is_not_owner(&b.commit_schedule(batch).unwrap_err(), "p"));
    a.put_result_sync(result("p", 1)).unwrap();
    assert_eq!(
        b.result("p", 1).unwrap(),
        Some(result("p", 1)),
        "reads are anyone's"
    );
    assert_eq!(oa.held_processes(), vec!["p".to_string()]);
}

/// Two nodes on one database; node-a owns process `p` (stored) with the returned token, and records the
/// processes it loses or releases.
fn two_nodes_a_owning_p() -> (tempfile::TempDir, Store, Store, Arc<Mutex<Vec<String>>>, i64) {
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), "node-a", 60_000);
    let b = node(dir.path(), "node-b", 60_000);
    let gone = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&gone);
    let oa = a.ownership().unwrap();
    oa.on_lost(move |p| seen.lock().unwrap().push(p.to_string()));
    let Claim::Held { token, .. } = oa.claim("p").unwrap() else {
        panic!("node-a takes the free process")
    };
    a.put_process(&process("p")).unwrap();
    (dir, a, b, gone, token)
}

#[test]
fn a_released_process_moves_with_the_next_token_and_its_old_owner_is_fenced() {
    if !on_postgres() {
        return;
    }
    let (_dir, a, b, released, token) = two_nodes_a_owning_p();
    let (oa, ob) = (a.ownership().unwrap(), b.ownership().unwrap());
    assert!(oa.release("p").unwrap());
    assert!(!oa.release("p").unwrap(), "released once");
    assert_eq!(*released.lock().unwrap(), vec!["p".to_string()]);
    assert_eq!(
        ob.claim("p").unwrap(),
        Claim::Held {
            token: token + 1,
            fresh: true
        }
    );
    assert!(is_not_owner(&a.append(&[entry("p", 1)]).unwrap_err(), "p"));
    b.append(&[entry("p", 1)]).unwrap();
    // Back to node-a: a new tenure, so a fresh claim again.
    assert!(ob.release("p").unwrap());
    assert_eq!(
        oa.claim("p").unwrap(),
        Claim::Held {
            token: token + 2,
            fresh: true
        }
    );
    a.append(&[entry("p", 2)]).unwrap();
}

#[test]
fn a_node_paused_past_its_lease_is_fenced_off_and_told() {
    if !on_postgres() {
        return;
    }
    let (dir, a, b, lost, token) = two_nodes_a_owning_p();
    let (oa, ob) = (a.ownership().unwrap(), b.ownership().unwrap());
    // As if node-a had been paused past its expiry: the lease runs out and node-b takes it.
    let schema = crate::test_db::schema_of(dir.path());
    crate::test_db::admin()
        .batch_execute(&format!("UPDATE {schema}.cu_owner SET expires_ms = 1"))
        .unwrap();
    assert_eq!(
        ob.claim("p").unwrap(),
        Claim::Held {
            token: token + 1,
            fresh: true
        }
    );
    assert!(oa.holds("p"), "node-a has not noticed yet");
    let err = a.put_result_sync(result("p", 1)).unwrap_err();
    assert!(
        matches!(err, StoreError::NotOwner { ref process, token: Some(t), .. } if process == "p" && t == token),
        "{err}"
    );
    assert!(!oa.holds("p"));
    assert_eq!(*lost.lock().unwrap(), vec!["p".to_string()]);
    assert_eq!(b.result("p", 1).unwrap(), None);
    b.put_result_sync(result("p", 1)).unwrap();
    // node-a's close releases nothing of node-b's.
    drop(a);
    b.put_result_sync(result("p", 2)).unwrap();
}

#[test]
fn leases_are_renewed_and_a_crashed_nodes_processes_move_after_the_ttl() {
    if !on_postgres() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), "node-a", 600);
    let b = node(dir.path(), "node-b", 600);
    let (oa, ob) = (a.ownership().unwrap(), b.ownership().unwrap());
    assert!(matches!(oa.claim("p").unwrap(), Claim::Held { .. }));
    // Renewed past several times to live.
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(oa.holds("p"));
    assert!(matches!(ob.claim("p").unwrap(), Claim::Other { .. }));
    // A node that stops renewing (its renewal thread is gone, as in a crash) loses its processes
    // after the time to live.
    ownership::stop(oa, ownership::Stop::Abandon);
    std::thread::sleep(Duration::from_millis(100));
    let started = std::time::Instant::now();
    loop {
        if let Claim::Held { fresh: true, .. } = ob.claim("p").unwrap() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "node-b takes over after the ttl"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn process_ownership_needs_postgres_and_a_name() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        ownership: Some(OwnershipOptions {
            node: "n".into(),
            url: "http://n".into(),
            ttl: Duration::from_secs(1),
        }),
        ..StoreOptions::default()
    };
    let err = Store::open(dir.path(), options).unwrap_err();
    assert!(matches!(err, StoreError::Config { .. }), "{err}");
}
