//! Unit tests of the store (each in its own temporary directory).

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::*;

/// Opens the store of `dir` on the engine the tests run on (SQLite, or PostgreSQL: see `test_db`).
fn open(dir: &Path) -> Store {
    crate::test_db::open(dir, StoreOptions::default())
}

/// Opens the store of `dir` on SQLite whatever the test engine (for tests of SQLite itself).
fn open_sqlite(dir: &Path) -> Store {
    Store::open(dir, StoreOptions::default()).expect("open store")
}

fn tags(n: usize) -> Vec<Tag> {
    (0..n)
        .map(|i| Tag {
            name: format!("Name-{i}"),
            value: format!("välue {i} \"quoted\""),
        })
        .collect()
}

pub(crate) fn process(id: &str) -> ProcessRecord {
    ProcessRecord {
        id: id.into(),
        module_id: "module-1".into(),
        owner: "owner-addr".into(),
        tags: tags(3),
        env_json: r#"{"Process":{"Id":"x"}}"#.into(),
        block_height: 1_500_000,
        timestamp: 1_700_000_000_000,
        spawn_json: r#"{"Id":"spawn"}"#.into(),
    }
}

fn entry(pid: &str, pos: u64) -> LogEntry {
    let cron = pos.is_multiple_of(5);
    LogEntry {
        process_id: pid.into(),
        pos,
        message_id: (!cron).then(|| format!("msg-{pid}-{pos}")),
        nonce: (!cron).then_some(pos * 10),
        timestamp: 1_000 + pos,
        block_height: 7 + pos,
        cron: cron.then(|| "0-10-minutes".into()),
        msg_json: format!(r#"{{"pos":{pos}}}"#),
    }
}

/// Result at `pos`: two results per timestamp (pos 1,2 at t=1000; 3,4 at t=1001; ...), every 3rd is cron,
/// every 4th has an error.
pub(crate) fn result(pid: &str, pos: u64) -> ResultRecord {
    let cron = pos.is_multiple_of(3);
    ResultRecord {
        process_id: pid.into(),
        pos,
        message_id: (!cron).then(|| format!("msg-{pid}-{pos}")),
        nonce: (!cron).then_some(pos),
        timestamp: 1_000 + (pos - 1) / 2,
        block_height: 100 + pos,
        cron: cron.then(|| "1-hour".into()),
        has_error: pos.is_multiple_of(4),
        output_json: format!(r#"{{"Output":"result {pos}"}}"#),
    }
}

fn positions(page: &ResultsPage) -> Vec<u64> {
    page.items.iter().map(|r| r.pos).collect()
}

#[test]
fn modules_round_trip_and_put_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.module("m1").unwrap(), None);
    let m = ModuleRecord {
        id: "m1".into(),
        format: "wasm64-unknown-emscripten-draft_2024_02_15".into(),
        owner: "me".into(),
        owner_key: Some("key".into()),
        tags: tags(5),
        wasm: (0..=255u8).cycle().take(70_000).collect(),
    };
    store.put_module(&m).unwrap();
    assert_eq!(store.module("m1").unwrap(), Some(m.clone()));
    // The same id again changes nothing, even with different content.
    let other = ModuleRecord {
        wasm: vec![1, 2, 3],
        tags: vec![],
        ..m.clone()
    };
    store.put_module(&other).unwrap();
    assert_eq!(store.module("m1").unwrap(), Some(m.clone()));
    store.put_module(&ModuleRecord { id: "m0".into(), ..m }).unwrap();
    assert_eq!(
        store.module_ids().unwrap(),
        vec!["m0".to_string(), "m1".to_string()]
    );
}

#[test]
fn processes_round_trip_exists_and_bad_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let p = process("proc_A-1");
    store.put_process(&p).unwrap();
    assert_eq!(store.process("proc_A-1").unwrap(), Some(p.clone()));
    assert_eq!(store.process("nope").unwrap(), None);
    let again = ProcessRecord {
        owner: "someone else".into(),
        ..p.clone()
    };
    let err = store.put_process(&again).unwrap_err();
    assert!(
        matches!(err, StoreError::Exists { kind: "process", ref id } if id == "proc_A-1"),
        "{err}"
    );
    assert_eq!(
        store.process("proc_A-1").unwrap(),
        Some(p.clone()),
        "a failed put writes nothing"
    );
    for bad in ["../evil", "a/b", "", "x.y"] {
        let err = store.put_process(&process(bad)).unwrap_err();
        assert!(matches!(err, StoreError::BadId { .. }), "{bad:?}: {err}");
    }
    store.put_process(&process("aaa")).unwrap();
    assert_eq!(
        store.process_ids().unwrap(),
        vec!["aaa".to_string(), "proc_A-1".to_string()]
    );
}

#[test]
fn log_append_ranges_and_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put_process(&process("p")).unwrap();
    store.put_process(&process("q")).unwrap();
    assert_eq!(store.last_pos("p").unwrap(), 0);
    assert_eq!(store.log_range("p", 1, 10).unwrap(), vec![]);
    store.append(&[]).unwrap();
    // One batch over two processes, interleaved.
    let batch: Vec<LogEntry> = (1..=6)
        .flat_map(|pos| [entry("p", pos), entry("q", pos)])
        .collect();
    store.append(&batch).unwrap();
    store.append(&[entry("p", 7)]).unwrap();
    assert_eq!(store.last_pos("p").unwrap(), 7);
    assert_eq!(store.last_pos("q").unwrap(), 6);
    let all: Vec<LogEntry> = (1..=7).map(|pos| entry("p", pos)).collect();
    assert_eq!(store.log_range("p", 1, 100).unwrap(), all);
    assert_eq!(store.log_range("p", 0, 100).unwrap(), all);
    assert_eq!(store.log_range("p", 3, 2).unwrap(), all[2..4].to_vec());
    assert_eq!(store.log_range("p", 8, 10).unwrap(), vec![]);
    assert_eq!(store.log_range("p", u64::MAX, 10).unwrap(), vec![]);
    assert_eq!(
        store.log_entry_by_message("p", "msg-p-4").unwrap(),
        Some(entry("p", 4))
    );
    assert_eq!(store.log_entry_by_message("q", "msg-p-4").unwrap(), None);
    assert_eq!(entry("p", 5).message_id, None, "pos 5 is a cron entry");
    assert_eq!(
        store.log_range("p", 5, 1).unwrap()[0].cron.as_deref(),
        Some("0-10-minutes")
    );
}

#[test]
fn append_rejects_gaps_repeats_and_unknown_processes_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put_process(&process("p")).unwrap();
    store.put_process(&process("q")).unwrap();
    store.append(&[entry("p", 1), entry("p", 2)]).unwrap();

    let err = store.append(&[entry("p", 4)]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::OutOfOrder {
                expected: 3,
                got: 4,
                ..
            }
        ),
        "{err}"
    );
    let err = store.append(&[entry("p", 2)]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::OutOfOrder {
                expected: 3,
                got: 2,
                ..
            }
        ),
        "{err}"
    );
    let err = store.append(&[entry("q", 0)]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::OutOfOrder {
                expected: 1,
                got: 0,
                ..
            }
        ),
        "{err}"
    );
    // Counting earlier entries of the same batch: the second "3" is a repeat.
    let err = store.append(&[entry("p", 3), entry("p", 3)]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::OutOfOrder {
                expected: 4,
                got: 3,
                ..
            }
        ),
        "{err}"
    );
    // A bad entry at the end of a long batch: nothing of the batch is written, for any process.
    let mut batch: Vec<LogEntry> = (3..=50).map(|pos| entry("p", pos)).collect();
    batch.extend((1..=10).map(|pos| entry("q", pos)));
    batch.push(entry("q", 12));
    let err = store.append(&batch).unwrap_err();
    assert!(
        matches!(err, StoreError::OutOfOrder { ref process_id, expected: 11, got: 12 } if process_id == "q")
    );
    let err = store.append(&[entry("p", 3), entry("ghost", 1)]).unwrap_err();
    assert!(
        matches!(err, StoreError::UnknownProcess { ref process_id } if process_id == "ghost"),
        "{err}"
    );
    assert_eq!(store.last_pos("p").unwrap(), 2);
    assert_eq!(store.last_pos("q").unwrap(), 0);
    assert_eq!(store.log_range("p", 1, 100).unwrap().len(), 2);
    // Values SQLite cannot hold are refused before anything is written.
    let mut huge = entry("p", 3);
    huge.timestamp = u64::MAX;
    assert!(matches!(
        store.append(&[huge]).unwrap_err(),
        StoreError::ValueTooLarge {
            field: "timestamp",
            ..
        }
    ));
    // The store is still fully usable afterwards.
    store.append(&[entry("p", 3), entry("q", 1)]).unwrap();
    assert_eq!(
        (store.last_pos("p").unwrap(), store.last_pos("q").unwrap()),
        (3, 1)
    );
}

#[test]
fn results_round_trip_and_rewrite_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.last_result_pos("p").unwrap(), 0);
    for pos in 1..=6 {
        store.put_result_sync(result("p", pos)).unwrap();
    }
    assert_eq!(store.result("p", 4).unwrap(), Some(result("p", 4)));
    assert_eq!(store.result("p", 7).unwrap(), None);
    assert_eq!(store.result("p", u64::MAX).unwrap(), None);
    assert_eq!(store.result("q", 4).unwrap(), None);
    assert_eq!(
        store.result_by_message("p", "msg-p-5").unwrap(),
        Some(result("p", 5))
    );
    assert_eq!(
        store.result_by_message("p", "msg-p-6").unwrap(),
        None,
        "pos 6 is cron (no message id)"
    );
    assert_eq!(store.last_result_pos("p").unwrap(), 6);
    // A replayed result is ignored (the first one stays).
    let mut replay = result("p", 2);
    replay.output_json = "different".into();
    store.put_result_sync(replay).unwrap();
    assert_eq!(store.result("p", 2).unwrap(), Some(result("p", 2)));
    assert_eq!(
        store.all_results("p").unwrap(),
        (1..=6).map(|pos| result("p", pos)).collect::<Vec<_>>()
    );
    let mut huge = result("p", 7);
    huge.nonce = Some(u64::MAX);
    assert!(matches!(
        store.put_result_sync(huge).unwrap_err(),
        StoreError::ValueTooLarge { field: "nonce", .. }
    ));
}

#[test]
fn results_queries_page_filter_and_sort() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for pos in 1..=20 {
        store.put_result(result("p", pos), Box::new(|r| r.unwrap()));
        store.put_result(result("other", pos), Box::new(|r| r.unwrap()));
    }
    store.flush().unwrap();
    let q = |after, upto, sort, limit| ResultsQuery {
        after,
        upto,
        sort,
        limit,
        only_cron: false,
        skip_errors: false,
    };

    let page = store.results("p", &q(None, None, Sort::Asc, 25)).unwrap();
    assert_eq!(positions(&page), (1..=20).collect::<Vec<_>>());
    assert!(!page.has_next_page);
    assert_eq!(page.items[0], result("p", 1));

    // Paging forward with a pos cursor.
    let page = store.results("p", &q(None, None, Sort::Asc, 8)).unwrap();
    assert_eq!((positions(&page), page.has_next_page), ((1..=8).collect(), true));
    let page = store
        .results("p", &q(Some(Bound::Pos(8)), None, Sort::Asc, 8))
        .unwrap();
    assert_eq!((positions(&page), page.has_next_page), ((9..=16).collect(), true));
    let page = store
        .results("p", &q(Some(Bound::Pos(16)), None, Sort::Asc, 8))
        .unwrap();
    assert_eq!(
        (positions(&page), page.has_next_page),
        ((17..=20).collect(), false)
    );
    // Exactly `limit` left: no next page.
    let page = store
        .results("p", &q(Some(Bound::Pos(12)), None, Sort::Asc, 8))
        .unwrap();
    assert_eq!(
        (positions(&page), page.has_next_page),
        ((13..=20).collect(), false)
    );

    // Descending, paging backwards: upto is inclusive.
    let page = store.results("p", &q(None, None, Sort::Desc, 5)).unwrap();
    assert_eq!(
        (positions(&page), page.has_next_page),
        (vec![20, 19, 18, 17, 16], true)
    );
    let page = store
        .results("p", &q(None, Some(Bound::Pos(15)), Sort::Desc, 5))
        .unwrap();
    assert_eq!(
        (positions(&page), page.has_next_page),
        (vec![15, 14, 13, 12, 11], true)
    );
    let page = store
        .results("p", &q(Some(Bound::Pos(3)), Some(Bound::Pos(7)), Sort::Desc, 10))
        .unwrap();
    assert_eq!((positions(&page), page.has_next_page), (vec![7, 6, 5, 4], false));

    // Timestamps: pos 2k-1 and 2k have timestamp 999 + k. after = Timestamp(t) excludes all results at t.
    let page = store
        .results("p", &q(Some(Bound::Timestamp(1002)), None, Sort::Asc, 4))
        .unwrap();
    assert_eq!((positions(&page), page.has_next_page), (vec![7, 8, 9, 10], true));
    let page = store
        .results("p", &q(None, Some(Bound::Timestamp(1002)), Sort::Asc, 10))
        .unwrap();
    assert_eq!((positions(&page), page.has_next_page), ((1..=6).collect(), false));
    let page = store
        .results(
            "p",
            &q(
                Some(Bound::Timestamp(1000)),
                Some(Bound::Timestamp(1003)),
                Sort::Desc,
                3,
            ),
        )
        .unwrap();
    assert_eq!((positions(&page), page.has_next_page), (vec![8, 7, 6], true));
    // Mixed: after a pos, up to a timestamp.
    let page = store
        .results(
            "p",
            &q(Some(Bound::Pos(3)), Some(Bound::Timestamp(1002)), Sort::Asc, 10),
        )
        .unwrap();
    assert_eq!(positions(&page), vec![4, 5, 6]);
    // Empty and inverted ranges.
    let page = store
        .results("p", &q(Some(Bound::Pos(20)), None, Sort::Asc, 10))
        .unwrap();
    assert_eq!((positions(&page), page.has_next_page), (vec![], false));
    let page = store
        .results("p", &q(Some(Bound::Pos(10)), Some(Bound::Pos(5)), Sort::Asc, 10))
        .unwrap();
    assert!(page.items.is_empty());
    let page = store.results("nobody", &q(None, None, Sort::Asc, 10)).unwrap();
    assert!(page.items.is_empty() && !page.has_next_page);
    // limit 0 still tells whether anything matches.
    let page = store.results("p", &q(None, None, Sort::Asc, 0)).unwrap();
    assert_eq!((page.items.len(), page.has_next_page), (0, true));
    let page = store.results("p", &q(None, None, Sort::Asc, usize::MAX)).unwrap();
    assert_eq!(page.items.len(), 20);

    // Filters: cron = multiples of 3, errors = multiples of 4.
    let only_cron = ResultsQuery {
        only_cron: true,
        limit: 3,
        ..ResultsQuery::default()
    };
    let page = store.results("p", &only_cron).unwrap();
    assert_eq!((positions(&page), page.has_next_page), (vec![3, 6, 9], true));
    let page = store
        .results(
            "p",
            &ResultsQuery {
                after: Some(Bound::Pos(9)),
                ..only_cron.clone()
            },
        )
        .unwrap();
    assert_eq!((positions(&page), page.has_next_page), (vec![12, 15, 18], false));
    let skip = ResultsQuery {
        skip_errors: true,
        limit: 100,
        ..ResultsQuery::default()
    };
    let page = store.results("p", &skip).unwrap();
    assert_eq!(
        positions(&page),
        (1..=20).filter(|p| p % 4 != 0).collect::<Vec<_>>()
    );
    assert!(page.items.iter().all(|r| !r.has_error));
    let both = ResultsQuery {
        skip_errors: true,
        only_cron: true,
        sort: Sort::Desc,
        ..ResultsQuery::default()
    };
    assert_eq!(
        positions(&store.results("p", &both).unwrap()),
        vec![18, 15, 9, 6, 3]
    );
}

#[test]
fn group_commit_many_threads_callbacks_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::test_db::open(
        dir.path(),
        StoreOptions {
            fsync: false,
            group_commit_max: 64,
            ..StoreOptions::default()
        },
    );
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 400;
    let called = Arc::new(AtomicUsize::new(0));
    let not_visible = Arc::new(AtomicUsize::new(0));
    let order: Arc<Mutex<Vec<Vec<u64>>>> = Arc::new(Mutex::new(vec![Vec::new(); THREADS as usize]));
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (store, called, not_visible, order) =
                (store.clone(), called.clone(), not_visible.clone(), order.clone());
            s.spawn(move || {
                let pid = format!("p{t}");
                for pos in 1..=PER_THREAD {
                    let reader = store.clone();
                    let (called, not_visible, order, pid2) =
                        (called.clone(), not_visible.clone(), order.clone(), pid.clone());
                    store.put_result(
                        result(&pid, pos),
                        Box::new(move |outcome| {
                            outcome.unwrap();
                            // Committed before the callback: a separate read connection sees it.
                            if reader.result(&pid2, pos).unwrap().is_none() {
                                not_visible.fetch_add(1, Ordering::SeqCst);
                            }
                            order.lock().unwrap()[t as usize].push(pos);
                            called.fetch_add(1, Ordering::SeqCst);
                        }),
                    );
                }
            });
        }
    });
    store.flush().unwrap();
    let total = (THREADS * PER_THREAD) as usize;
    assert_eq!(
        called.load(Ordering::SeqCst),
        total,
        "flush returns after every earlier callback ran"
    );
    assert_eq!(not_visible.load(Ordering::SeqCst), 0);
    for (t, seen) in order.lock().unwrap().iter().enumerate() {
        assert_eq!(
            *seen,
            (1..=PER_THREAD).collect::<Vec<_>>(),
            "callbacks of thread {t} in queue order"
        );
    }
    for t in 0..THREADS {
        let pid = format!("p{t}");
        assert_eq!(
            store.all_results(&pid).unwrap(),
            (1..=PER_THREAD).map(|p| result(&pid, p)).collect::<Vec<_>>()
        );
    }
    let (commits, jobs) = store.writer_stats();
    assert!(jobs >= total as u64);
    assert!(
        commits < total as u64 / 4,
        "results are grouped: {commits} commits for {total} results"
    );
    assert!(
        commits >= total as u64 / 64,
        "groups hold at most group_commit_max jobs: {commits} commits"
    );
}

#[test]
fn sync_writers_from_many_threads_are_grouped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    std::thread::scope(|s| {
        for t in 0..6 {
            let store = store.clone();
            s.spawn(move || {
                for pos in 1..=200 {
                    store.put_result_sync(result(&format!("s{t}"), pos)).unwrap();
                    assert!(
                        store.result(&format!("s{t}"), pos).unwrap().is_some(),
                        "visible on return"
                    );
                }
            });
        }
    });
    for t in 0..6 {
        assert_eq!(store.last_result_pos(&format!("s{t}")).unwrap(), 200);
    }
}

#[test]
fn write_from_a_callback_fails_instead_of_deadlocking() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (tx, rx) = mpsc::channel();
    let inner = store.clone();
    store.put_result(
        result("p", 1),
        Box::new(move |outcome| {
            outcome.unwrap();
            let _ = tx.send(inner.put_result_sync(result("p", 2)));
        }),
    );
    let nested = rx.recv_timeout(Duration::from_secs(30)).expect("callback ran");
    assert!(matches!(nested, Err(StoreError::Reentrant { .. })), "{nested:?}");
    store.flush().unwrap();
    assert_eq!(store.last_result_pos("p").unwrap(), 1);
}

#[test]
fn a_panicking_callback_does_not_stop_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put_result(result("p", 1), Box::new(|_| panic!("callback panics on purpose")));
    store.put_result_sync(result("p", 2)).unwrap();
    assert_eq!(store.all_results("p").unwrap().len(), 2);
}

#[test]
fn data_survives_drop_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let module = ModuleRecord {
        id: "m".into(),
        format: "f".into(),
        owner: "o".into(),
        owner_key: None,
        tags: tags(1),
        wasm: vec![0; 9],
    };
    let called = Arc::new(AtomicUsize::new(0));
    let ckpt;
    {
        let store = open(dir.path());
        store.put_module(&module).unwrap();
        store.put_process(&process("p")).unwrap();
        store
            .append(&(1..=30).map(|pos| entry("p", pos)).collect::<Vec<_>>())
            .unwrap();
        ckpt = store
            .write_checkpoint(
                CheckpointMeta {
                    process_id: "p".into(),
                    seq: 1,
                    pos: 30,
                    kind: CheckpointKind::Base,
                    parent: None,
                    memory_len: 4,
                },
                b"snap",
            )
            .unwrap();
        // Queued, not waited for: dropping the last clone commits them.
        for pos in 1..=30 {
            let called = called.clone();
            store.put_result(
                result("p", pos),
                Box::new(move |r| {
                    r.unwrap();
                    called.fetch_add(1, Ordering::SeqCst);
                }),
            );
        }
        let clone = store.clone();
        drop(store);
        clone.put_result_sync(result("q", 1)).unwrap();
    }
    assert_eq!(
        called.load(Ordering::SeqCst),
        30,
        "every queued callback ran before drop returned"
    );
    let store = open(dir.path());
    assert_eq!(store.module("m").unwrap(), Some(module));
    assert_eq!(store.process("p").unwrap(), Some(process("p")));
    assert_eq!(store.last_pos("p").unwrap(), 30);
    assert_eq!(
        store.all_results("p").unwrap(),
        (1..=30).map(|pos| result("p", pos)).collect::<Vec<_>>()
    );
    assert_eq!(store.result("q", 1).unwrap(), Some(result("q", 1)));
    assert_eq!(store.checkpoints("p").unwrap(), vec![ckpt.clone()]);
    assert_eq!(store.read_checkpoint(&ckpt).unwrap(), b"snap");
    // And once more with fsync on (synchronous=FULL).
    drop(store);
    let store = crate::test_db::open(
        dir.path(),
        StoreOptions {
            fsync: true,
            group_commit_max: 16,
            ..StoreOptions::default()
        },
    );
    store.put_result_sync(result("q", 2)).unwrap();
    drop(store);
    assert_eq!(open(dir.path()).last_result_pos("q").unwrap(), 2);
}

/// Environment variable that turns [`kill_child`] into the child of [`results_survive_kill_9`].
const KILL_CHILD_ENV: &str = "CU_STORE_KILL_CHILD_DIR";

/// The child process of `results_survive_kill_9`: writes results forever (until killed), printing
/// `ACK <pid> <pos>` once a result's commit was acknowledged (after `put_result_sync` returned, or from inside
/// `put_result`'s callback). Ignored so that a normal run does not start it; the parent runs it with
/// `--ignored --exact`.
#[test]
#[ignore = "child process of results_survive_kill_9"]
fn kill_child() {
    let Some(dir) = std::env::var_os(KILL_CHILD_ENV) else {
        eprintln!(
            "kill_child runs only as the child of results_survive_kill_9 ({KILL_CHILD_ENV} is not set)"
        );
        return;
    };
    let store = crate::test_db::open(Path::new(&dir), StoreOptions::default());
    let ack = |pid: &str, pos: u64| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ACK {pid} {pos}").unwrap();
        out.flush().unwrap();
    };
    std::thread::scope(|s| {
        for t in 0..3 {
            let store = store.clone();
            s.spawn(move || {
                let pid = format!("sync{t}");
                for pos in 1..=1_000_000 {
                    store.put_result_sync(result(&pid, pos)).unwrap();
                    ack(&pid, pos);
                }
            });
        }
        let store = store.clone();
        s.spawn(move || {
            for pos in 1..=1_000_000 {
                store.put_result(
                    result("async", pos),
                    Box::new(move |r| {
                        r.unwrap();
                        ack("async", pos);
                    }),
                );
            }
        });
    });
}

#[test]
fn results_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "tests::kill_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILL_CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acked: BTreeSet<(String, u64)> = BTreeSet::new();
    let parse = |line: &str| -> Option<(String, u64)> {
        let mut parts = line.strip_prefix("ACK ")?.split(' ');
        Some((parts.next()?.to_string(), parts.next()?.parse().ok()?))
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.len() < 3_000 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => acked.extend(parse(&line)),
            Err(e) => {
                let _ = child.kill();
                panic!("child stopped acknowledging after {} results: {e}", acked.len());
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed, not finished: {status}");
    // Lines written before the kill are still in the pipe.
    for line in rx.iter() {
        acked.extend(parse(&line));
    }
    reader.join().unwrap();

    let store = open(dir.path());
    let mut missing = Vec::new();
    for (pid, pos) in &acked {
        match store.result(pid, *pos).unwrap() {
            Some(r) => assert_eq!(r, result(pid, *pos)),
            None => missing.push((pid.clone(), *pos)),
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged results lost after kill -9: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let async_acked = acked.iter().filter(|(pid, _)| pid == "async").count();
    assert!(
        async_acked > 0 && acked.len() > async_acked,
        "both write paths were exercised"
    );
    // The log stays gap-free per process: every stored result up to the last one is present.
    for pid in ["sync0", "sync1", "sync2", "async"] {
        let all = store.all_results(pid).unwrap();
        assert_eq!(
            all.iter().map(|r| r.pos).collect::<Vec<_>>(),
            (1..=all.len() as u64).collect::<Vec<_>>()
        );
    }
}

pub(crate) fn meta(pid: &str, seq: u64, kind: CheckpointKind, parent: Option<u64>) -> CheckpointMeta {
    CheckpointMeta {
        process_id: pid.into(),
        seq,
        pos: seq * 100,
        kind,
        parent,
        memory_len: 65536 * seq,
    }
}

fn blob(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u64 * 31 + seq) as u8).collect()
}

#[test]
fn checkpoints_write_read_list_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let b1 = blob(1, 100_000);
    let rec1 = store
        .write_checkpoint(meta("p", 1, CheckpointKind::Base, None), &b1)
        .unwrap();
    assert_eq!(rec1.file, "checkpoints/p/00000000000000000001.ckpt");
    assert_eq!(rec1.blake3, blake3::hash(&b1).to_hex().to_string());
    assert_eq!(
        (rec1.bytes, rec1.pos, rec1.memory_len, rec1.kind),
        (100_000, 100, 65536, CheckpointKind::Base)
    );
    assert_eq!(
        fs::read(crate::test_db::blob_root(dir.path()).join(&rec1.file)).unwrap(),
        b1
    );
    let rec2 = store
        .write_checkpoint(meta("p", 2, CheckpointKind::Delta, Some(1)), &blob(2, 10))
        .unwrap();
    let empty = store
        .write_checkpoint(meta("p", 3, CheckpointKind::Delta, Some(2)), &[])
        .unwrap();
    assert_eq!(
        store.checkpoints("p").unwrap(),
        vec![rec1.clone(), rec2.clone(), empty.clone()]
    );
    assert_eq!(store.checkpoints("other").unwrap(), vec![]);
    assert_eq!(store.read_checkpoint(&rec1).unwrap(), b1);
    assert_eq!(store.read_checkpoint(&rec2).unwrap(), blob(2, 10));
    assert_eq!(store.read_checkpoint(&empty).unwrap(), Vec::<u8>::new());
    assert_eq!(store.checkpoint_bytes("p").unwrap(), 100_010);
    assert_eq!(store.checkpoint_bytes("none").unwrap(), 0);
    // No temporary files are left behind.
    let names: Vec<String> = fs::read_dir(crate::test_db::blob_root(dir.path()).join("checkpoints/p"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| n.ends_with(".ckpt")), "{names:?}");
    // An indexed seq cannot be written again, and the file is untouched.
    let err = store
        .write_checkpoint(meta("p", 1, CheckpointKind::Base, None), b"other")
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Exists {
                kind: "checkpoint",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.read_checkpoint(&rec1).unwrap(), b1);
    // Ids are never trusted into a path.
    for bad in ["../p", "p/../../x", ""] {
        let err = store
            .write_checkpoint(meta(bad, 9, CheckpointKind::Base, None), b"x")
            .unwrap_err();
        assert!(matches!(err, StoreError::BadId { .. }), "{bad:?}: {err}");
        assert!(matches!(
            store.checkpoint_bytes(bad),
            Err(StoreError::BadId { .. })
        ));
        assert!(matches!(
            store.delete_checkpoints_before(bad, 5),
            Err(StoreError::BadId { .. })
        ));
        assert!(matches!(
            store.read_checkpoint(&CheckpointRecord {
                process_id: bad.into(),
                ..rec1.clone()
            }),
            Err(StoreError::BadId { .. })
        ));
    }
    // A record naming another file is refused rather than followed.
    let moved = CheckpointRecord {
        file: "ao-cu.sqlite".into(),
        ..rec1.clone()
    };
    assert!(matches!(
        store.read_checkpoint(&moved),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn checkpoints_read_as_a_stream_are_verified() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for (seq, len) in [(1, 5000), (2, 3 << 20)] {
        let data = blob(seq, len);
        let rec = store
            .write_checkpoint(meta("p", seq, CheckpointKind::Base, None), &data)
            .unwrap();
        // Read whole, or only a prefix (the rest is hashed after the use).
        let all = store
            .read_checkpoint_stream(&rec, |r, n| {
                assert_eq!(n, len as u64);
                let mut v = Vec::new();
                r.read_to_end(&mut v).unwrap();
                v
            })
            .unwrap();
        assert_eq!(all, data);
        let head = store
            .read_checkpoint_stream(&rec, |r, _| {
                let mut v = vec![0u8; 100];
                r.read_exact(&mut v).unwrap();
                v
            })
            .unwrap();
        assert_eq!(head, data[..100]);
        // A flipped byte past what the use read still fails the check; a truncated file fails the length.
        let path = crate::test_db::blob_root(dir.path()).join(&rec.file);
        let mut flipped = data.clone();
        flipped[len - 1] ^= 0x01;
        fs::write(&path, &flipped).unwrap();
        let err = store.read_checkpoint_stream(&rec, |_, _| ()).unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { ref reason, .. } if reason.contains("BLAKE3")),
            "{err}"
        );
        fs::write(&path, &data[..len / 2]).unwrap();
        let err = store.read_checkpoint_stream(&rec, |_, _| ()).unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { ref reason, .. } if reason.contains("length")),
            "{err}"
        );
        fs::remove_file(&path).unwrap();
        assert!(matches!(
            store.read_checkpoint_stream(&rec, |_, _| ()).unwrap_err(),
            StoreError::Corrupt { .. }
        ));
    }
}

#[test]
fn checkpoint_corruption_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = blob(1, 5000);
    let rec = store
        .write_checkpoint(meta("p", 1, CheckpointKind::Base, None), &data)
        .unwrap();
    let path = crate::test_db::blob_root(dir.path()).join(&rec.file);

    // One flipped byte: same length, different BLAKE3.
    let mut flipped = data.clone();
    flipped[2500] ^= 0x01;
    fs::write(&path, &flipped).unwrap();
    let err = store.read_checkpoint(&rec).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { ref reason, .. } if reason.contains("BLAKE3")),
        "{err}"
    );

    // Truncated (a torn write).
    fs::write(&path, &data[..4096]).unwrap();
    let err = store.read_checkpoint(&rec).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { ref reason, .. } if reason.contains("length")),
        "{err}"
    );

    // Missing.
    fs::remove_file(&path).unwrap();
    assert!(matches!(
        store.read_checkpoint(&rec).unwrap_err(),
        StoreError::Corrupt { .. }
    ));

    // Restored: reads again.
    fs::write(&path, &data).unwrap();
    assert_eq!(store.read_checkpoint(&rec).unwrap(), data);
    // A record whose hash was altered does not match the file.
    let wrong = CheckpointRecord {
        blake3: "00".repeat(32),
        ..rec
    };
    assert!(matches!(
        store.read_checkpoint(&wrong).unwrap_err(),
        StoreError::Corrupt { .. }
    ));
}

#[test]
fn pruning_removes_rows_and_files_before_seq() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let recs: Vec<CheckpointRecord> = (1..=6)
        .map(|seq| {
            let kind = if seq % 3 == 1 {
                CheckpointKind::Base
            } else {
                CheckpointKind::Delta
            };
            let parent = (kind == CheckpointKind::Delta).then(|| seq - 1);
            store
                .write_checkpoint(meta("p", seq, kind, parent), &blob(seq, 1000))
                .unwrap()
        })
        .collect();
    let other = store
        .write_checkpoint(meta("q", 1, CheckpointKind::Base, None), b"q")
        .unwrap();
    // A file already gone, and a stale temporary file from a crash, are both fine.
    fs::remove_file(crate::test_db::blob_root(dir.path()).join(&recs[1].file)).unwrap();
    let stale_tmp = crate::test_db::blob_root(dir.path()).join("checkpoints/p/00000000000000000002.ckpt.tmp");
    fs::write(&stale_tmp, b"torn").unwrap();
    let foreign = crate::test_db::blob_root(dir.path()).join("checkpoints/p/README");
    fs::write(&foreign, b"not ours").unwrap();

    store.delete_checkpoints_before("p", 4).unwrap();
    assert_eq!(store.checkpoints("p").unwrap(), recs[3..].to_vec());
    for rec in &recs[..3] {
        assert!(
            !crate::test_db::blob_root(dir.path()).join(&rec.file).exists(),
            "{}",
            rec.file
        );
    }
    assert!(!stale_tmp.exists());
    assert!(foreign.exists(), "files that are not checkpoints are left alone");
    for rec in &recs[3..] {
        assert_eq!(store.read_checkpoint(rec).unwrap(), blob(rec.seq, 1000));
    }
    assert_eq!(
        store.checkpoint_bytes("p").unwrap(),
        3000 + b"not ours".len() as u64
    );
    assert_eq!(
        store.checkpoints("q").unwrap(),
        vec![other],
        "other processes are untouched"
    );
    // Pruning again, or a process without checkpoints, is fine; u64::MAX removes everything.
    store.delete_checkpoints_before("p", 4).unwrap();
    store.delete_checkpoints_before("nobody", 10).unwrap();
    store.delete_checkpoints_before("p", u64::MAX).unwrap();
    assert_eq!(store.checkpoints("p").unwrap(), vec![]);
    assert_eq!(store.checkpoint_bytes("p").unwrap(), b"not ours".len() as u64);
    // A seq freed by pruning can be written again.
    store
        .write_checkpoint(meta("p", 1, CheckpointKind::Base, None), b"again")
        .unwrap();
}

#[test]
fn checkpoint_row_commits_after_results_queued_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for pos in 1..=500 {
        store.put_result(result("p", pos), Box::new(|r| r.unwrap()));
    }
    store
        .write_checkpoint(meta("p", 1, CheckpointKind::Base, None), b"state at 500")
        .unwrap();
    // The checkpoint is visible, so every result queued before it is committed too.
    assert_eq!(store.last_result_pos("p").unwrap(), 500);
}

/// Whether the current user can write into a directory that has no write permission (root can).
fn writes_ignore_modes(dir: &Path) -> bool {
    let probe = dir.join("probe");
    let can = fs::write(&probe, b"x").is_ok();
    let _ = fs::remove_file(&probe);
    can
}

#[cfg(unix)]
#[test]
fn not_writable_directories_are_reported() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // A path under a regular file cannot be created by anyone, root included.
    let file = dir.path().join("a-file");
    fs::write(&file, b"x").unwrap();
    let err = Store::open(&file.join("store"), StoreOptions::default()).unwrap_err();
    assert!(
        matches!(err, StoreError::NotWritable { ref path, .. } if path.starts_with(&file)),
        "{err}"
    );
    let err = Store::open(&file, StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::NotWritable { .. }), "{err}");
    assert!(
        err.to_string().contains("a-file"),
        "the message names the path: {err}"
    );

    let ro = dir.path().join("ro");
    fs::create_dir(&ro).unwrap();
    let store_dir = dir.path().join("store");
    // Checkpoint files (what this test makes unwritable), whatever the test engine.
    let store = open_sqlite(&store_dir);
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
    let ckpt_dir = store_dir.join("checkpoints");
    fs::set_permissions(&ckpt_dir, fs::Permissions::from_mode(0o555)).unwrap();
    if writes_ignore_modes(&ro) {
        println!("SKIPPED read-only directory assertions: this user (root?) ignores file modes");
    } else {
        let err = Store::open(&ro, StoreOptions::default()).unwrap_err();
        assert!(matches!(err, StoreError::NotWritable { .. }), "{err}");
        let err = Store::open(&ro.join("sub"), StoreOptions::default()).unwrap_err();
        assert!(matches!(err, StoreError::NotWritable { .. }), "{err}");
        let err = store
            .write_checkpoint(meta("p", 1, CheckpointKind::Base, None), b"x")
            .unwrap_err();
        assert!(matches!(err, StoreError::NotWritable { .. }), "{err}");
        assert_eq!(store.checkpoints("p").unwrap(), vec![], "no row without a file");
    }
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&ckpt_dir, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open_sqlite(dir.path()));
    let db = dir.path().join(DB_FILE);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .unwrap();
    drop(conn);
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported, .. } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err}"
    );
    assert!(err.to_string().contains("ao-cu.sqlite"), "{err}");
    // Reopening the current version works and keeps the data.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
        .unwrap();
    drop(conn);
    open_sqlite(dir.path()).put_result_sync(result("p", 1)).unwrap();
}

#[test]
fn store_is_clone_send_sync() {
    fn check<T: Clone + Send + Sync + 'static>() {}
    check::<Store>();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.dir(), dir.path());
    assert!(format!("{store:?}").contains("Store"));
}

/// Queues a write job that inserts result `pos` of process "p" and then stops inside the writer's open
/// transaction; returns once it is there, with the sender that lets it finish and the receiver of its
/// outcome.
fn hold_in_transaction(
    store: &Store,
    pos: i64,
) -> (mpsc::Sender<()>, mpsc::Receiver<Result<(), StoreError>>) {
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    store.submit(crate::writer::Job::single(
        Box::new(move |conn| {
            conn.execute(
                "INSERT INTO results (process_id, pos, timestamp, block_height, has_error, output_json) \
                 VALUES ('p', ?1, 0, 0, 0, '{}')",
                crate::db::args![pos],
            )
            .unwrap();
            entered_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            Ok(())
        }),
        Box::new(move |r| done_tx.send(r).unwrap()),
    ));
    entered_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    (release_tx, done_rx)
}

#[test]
fn reads_do_not_wait_for_an_open_write_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put_result_sync(result("p", 1)).unwrap();
    let (release_tx, done_rx) = hold_in_transaction(&store, 2);
    // The writer holds its transaction open: reads still answer at once, from the last commit.
    let start = Instant::now();
    assert_eq!(store.result("p", 1).unwrap(), Some(result("p", 1)));
    assert_eq!(
        store.result("p", 2).unwrap(),
        None,
        "uncommitted rows are invisible"
    );
    assert_eq!(store.last_result_pos("p").unwrap(), 1);
    assert!(start.elapsed() < Duration::from_secs(5));
    release_tx.send(()).unwrap();
    done_rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap();
    assert_eq!(store.last_result_pos("p").unwrap(), 2);
}

#[test]
fn a_failing_write_in_a_group_does_not_undo_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put_process(&process("p")).unwrap();
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    // Hold the writer so that everything below is queued and committed as one group.
    store.submit(crate::writer::Job::flush(Box::new(move |_| {
        entered_tx.send(()).unwrap();
        release_rx.recv().unwrap();
    })));
    entered_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let commits_before = store.writer_stats().0;
    let queued_before = store.inner_queued();
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let record = |tag: &'static str| {
        let outcomes = outcomes.clone();
        Box::new(move |r: Result<(), StoreError>| outcomes.lock().unwrap().push((tag, r.is_ok())))
    };
    store.put_result(result("p", 1), record("r1"));
    let appender = {
        let store = store.clone();
        // Valid first entry, bad second: the whole append must be undone inside the shared transaction.
        std::thread::spawn(move || store.append(&[entry("p", 1), entry("p", 3)]))
    };
    // Wait until the appending thread has handed its job to the queue (the writer is held, so it is queued).
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.inner_queued() < queued_before + 2 {
        assert!(Instant::now() < deadline, "the append was never queued");
        std::thread::sleep(Duration::from_millis(5));
    }
    store.put_result(result("p", 2), record("r2"));
    release_tx.send(()).unwrap();
    let err = appender.join().unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::OutOfOrder {
                expected: 2,
                got: 3,
                ..
            }
        ),
        "{err}"
    );
    store.flush().unwrap();
    assert_eq!(*outcomes.lock().unwrap(), vec![("r1", true), ("r2", true)]);
    assert_eq!(
        store.all_results("p").unwrap(),
        vec![result("p", 1), result("p", 2)]
    );
    assert_eq!(store.last_pos("p").unwrap(), 0, "the failed append left nothing");
    assert_eq!(
        store.writer_stats().0 - commits_before,
        1,
        "one transaction for the whole group"
    );
}

#[test]
fn schedule_pages_walk_an_index_without_sorting() {
    // Regression: `ORDER BY nonce` under a timestamp range made SQLite sort every later assignment of the
    // process (blobs included) in a temporary B-tree for each page: reading a schedule was quadratic.
    let dir = tempfile::tempdir().unwrap();
    let _store = open_sqlite(dir.path());
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    for (sql, args, index) in [
        (
            crate::schedule::PAGE_BY_TIMESTAMP,
            vec![
                rusqlite::types::Value::Text("p".into()),
                0.into(),
                i64::MAX.into(),
                10.into(),
            ],
            "schedule_by_timestamp",
        ),
        (
            crate::schedule::PAGE_BY_NONCE,
            vec![rusqlite::types::Value::Text("p".into()), 0.into(), 10.into()],
            "sqlite_autoindex_schedule_1",
        ),
    ] {
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN SELECT * FROM schedule {sql}"))
            .unwrap()
            .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(plan.iter().any(|d| d.contains(index)), "{sql}: {plan:?}");
        assert!(!plan.iter().any(|d| d.contains("TEMP B-TREE")), "{sql}: {plan:?}");
    }
}

#[test]
fn lookups_by_message_use_the_message_indexes() {
    // Regression: `ORDER BY pos` made SQLite scan every row of the process through the primary key.
    let dir = tempfile::tempdir().unwrap();
    let _store = open_sqlite(dir.path());
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    for (table, sql, index) in [
        ("log", crate::store::BY_MESSAGE, "log_by_message"),
        ("results", crate::store::BY_MESSAGE, "results_by_message"),
    ] {
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN SELECT * FROM {table} {sql}"))
            .unwrap()
            .query_map(["p", "m"], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(plan.iter().any(|d| d.contains(index)), "{table}: {plan:?}");
    }
}

#[test]
fn lookups_by_message_are_not_compiled_again_for_every_message_id() {
    // Regression: with `ORDER BY pos LIMIT 1` SQLite recompiled the lookup whenever the message id bound
    // to it changed (20% of the node's CPU under `GET /result` load). Checked on the query as the store
    // runs it, on a reader connection, over a log of a few hundred entries.
    let dir = tempfile::tempdir().unwrap();
    let store = open_sqlite(dir.path());
    store.put_process(&process("p")).unwrap();
    let entries: Vec<_> = (1..=300).map(|pos| entry("p", pos)).collect();
    store.append(&entries).unwrap();
    for pos in 1..=300 {
        store.put_result(result("p", pos), Box::new(|_| {}));
    }
    store.flush().unwrap();
    let conn = crate::schema::open_reader(&dir.path().join(DB_FILE)).unwrap();
    for (table, cols) in [
        ("log", crate::rows::LOG_COLS),
        ("results", crate::rows::RESULT_COLS),
    ] {
        let sql = format!("SELECT {cols} FROM {table} {}", crate::store::BY_MESSAGE);
        for pos in [1, 2, 4, 7, 8, 11, 13, 14] {
            let m = format!("msg-p-{pos}");
            let mut st = conn.prepare_cached(&sql).unwrap();
            assert!(
                st.query(["p", m.as_str()]).unwrap().next().unwrap().is_some(),
                "{table} {m}"
            );
        }
        let st = conn.prepare_cached(&sql).unwrap();
        assert_eq!(
            st.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "{table}: the lookup was compiled again"
        );
    }
}

#[test]
fn a_message_id_that_occurs_twice_finds_its_first_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put_process(&process("p")).unwrap();
    let mut entries: Vec<_> = (1..=8).map(|pos| entry("p", pos)).collect();
    // Positions 8 and 2 carry the same message id (an SU schedule evaluated in hbu mode may repeat one).
    entries[7].message_id = Some("msg-p-2".into());
    store.append(&entries).unwrap();
    for pos in [8, 2, 1] {
        let mut r = result("p", pos);
        if pos == 8 {
            r.message_id = Some("msg-p-2".into());
        }
        store.put_result(r, Box::new(|_| {}));
    }
    store.flush().unwrap();
    assert_eq!(
        store.log_entry_by_message("p", "msg-p-2").unwrap().unwrap().pos,
        2
    );
    assert_eq!(store.result_by_message("p", "msg-p-2").unwrap().unwrap().pos, 2);
    assert!(store.log_entry_by_message("p", "msg-p-99").unwrap().is_none());
}

#[test]
fn a_postgres_schema_from_a_newer_build_is_refused() {
    if crate::test_db::postgres_url().is_none() {
        eprintln!("runs on PostgreSQL only (set {})", crate::test_db::POSTGRES_ENV);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let schema = crate::test_db::schema_of(dir.path());
    let mut admin = crate::test_db::admin();
    let bump = |admin: &mut postgres::Client, v: i64| {
        admin
            .batch_execute(&format!("UPDATE {schema}.cu_schema SET version = {v}"))
            .unwrap();
    };
    bump(&mut admin, SCHEMA_VERSION + 1);
    let err = Store::open(
        dir.path(),
        crate::test_db::options_for(dir.path(), StoreOptions::default()),
    )
    .unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported, .. } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err}"
    );
    assert!(err.to_string().contains("postgres://postgres@"), "{err}");
    bump(&mut admin, SCHEMA_VERSION);
    open(dir.path()).put_result_sync(result("p", 1)).unwrap();
}

#[test]
fn an_unreachable_postgres_server_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens there.
    let db = Database::from_url("postgres://cu:secret@127.0.0.1:1/ao").unwrap();
    let options = StoreOptions {
        database: db,
        ..StoreOptions::default()
    };
    let err = Store::open(dir.path(), options).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::NotWritable { .. }), "{text}");
    assert!(
        text.contains("postgres://cu@127.0.0.1:1/ao") && text.contains("cannot connect"),
        "{text}"
    );
    assert!(
        !text.contains("secret"),
        "the password stays out of messages: {text}"
    );
}

#[test]
fn database_urls_are_checked() {
    assert_eq!(
        Database::from_url("postgresql://u@h:5432/d").unwrap(),
        Database::Postgres {
            url: "postgresql://u@h:5432/d".into()
        }
    );
    let err = Database::from_url("sqlite:///tmp/x.db").unwrap_err();
    assert!(err.contains("unsupported database URL"), "{err}");
    let err = Database::from_url("postgres://u@h:notaport/d").unwrap_err();
    assert!(err.contains("invalid PostgreSQL URL"), "{err}");
}

#[test]
fn an_s3_bucket_that_refuses_the_credentials_is_a_clear_error_at_open() {
    if crate::test_db::s3().is_none() {
        eprintln!("runs with an S3 server only (set {})", crate::test_db::S3_ENV);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut options = crate::test_db::options_for(dir.path(), StoreOptions::default());
    let bucket = options.checkpoint_bucket.as_mut().unwrap();
    bucket.secret_key = "not-the-secret".into();
    let err = Store::open(dir.path(), options.clone()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::ObjectStore { .. }), "{text}");
    assert!(
        text.contains("s3://ao-cu-test/") && text.contains("HTTP 403"),
        "{text}"
    );
    assert!(!text.contains("not-the-secret"), "{text}");
    let bucket = options.checkpoint_bucket.as_mut().unwrap();
    bucket.secret_key = crate::test_db::S3_SECRET_KEY.into();
    bucket.bucket = "no-such-bucket".into();
    let err = Store::open(dir.path(), options).unwrap_err();
    assert!(err.to_string().contains("HTTP 404"), "{err}");
    // The endpoint itself unreachable.
    let mut options = crate::test_db::options_for(dir.path(), StoreOptions::default());
    options.checkpoint_bucket.as_mut().unwrap().endpoint = "http://127.0.0.1:1".into();
    let err = Store::open(dir.path(), options).unwrap_err();
    assert!(matches!(err, StoreError::ObjectStore { .. }), "{err}");
}

fn leased(dir: &Path, owner: &str, ttl_ms: u64) -> Result<Store, StoreError> {
    let options = StoreOptions {
        lease: Some(LeaseOptions {
            owner: owner.into(),
            ttl: Duration::from_millis(ttl_ms),
        }),
        ..crate::test_db::options_for(dir, StoreOptions::default())
    };
    Store::open(dir, options)
}

#[test]
fn a_store_lease_is_held_by_one_node_and_handed_over_on_release() {
    if crate::test_db::postgres_url().is_none() {
        eprintln!("runs on PostgreSQL only (set {})", crate::test_db::POSTGRES_ENV);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = leased(dir.path(), "node-a", 2_000).unwrap();
    let token_a = a.lease().unwrap().token;
    a.put_process(&process("p")).unwrap();
    // node-b waits while node-a holds the lease (and renews it past its time to live).
    let (tx, rx) = mpsc::channel();
    let path = dir.path().to_path_buf();
    let waiter = std::thread::spawn(move || {
        let b = leased(&path, "node-b", 2_000).unwrap();
        tx.send(b.lease().unwrap().token).unwrap();
        b
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(3_000)).is_err(),
        "node-b must stand by"
    );
    a.put_result_sync(result("p", 1)).unwrap();
    // A clean close releases at once: node-b takes over with the next token and sees node-a's writes.
    drop(a);
    let token_b = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("node-b takes over");
    assert_eq!(token_b, token_a + 1);
    let b = waiter.join().unwrap();
    assert_eq!(b.result("p", 1).unwrap(), Some(result("p", 1)));
    b.put_result_sync(result("p", 2)).unwrap();
}

#[test]
fn a_node_whose_lease_was_taken_over_can_never_write_again() {
    if crate::test_db::postgres_url().is_none() {
        eprintln!("runs on PostgreSQL only (set {})", crate::test_db::POSTGRES_ENV);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = leased(dir.path(), "node-a", 60_000).unwrap();
    a.put_process(&process("p")).unwrap();
    a.put_result_sync(result("p", 1)).unwrap();
    // As if node-a had been paused past its expiry: the lease runs out and node-b takes it.
    let schema = crate::test_db::schema_of(dir.path());
    crate::test_db::admin()
        .batch_execute(&format!("UPDATE {schema}.cu_lease SET expires_ms = 0"))
        .unwrap();
    let b = leased(dir.path(), "node-b", 60_000).unwrap();
    assert_eq!(b.lease().unwrap().token, a.lease().unwrap().token + 1);
    assert!(!a.lease().unwrap().lost(), "node-a has not noticed yet");
    // Every kind of write of node-a is refused, in the transaction, and nothing of it lands.
    let err = a.put_result_sync(result("p", 2)).unwrap_err();
    assert!(
        matches!(err, StoreError::Fenced { ref owner, .. } if owner == "node-a"),
        "{err}"
    );
    assert!(a.lease().unwrap().lost());
    let entry = LogEntry {
        process_id: "p".into(),
        pos: 1,
        message_id: Some("m1".into()),
        nonce: Some(1),
        timestamp: 5,
        block_height: 1,
        cron: None,
        msg_json: "{}".into(),
    };
    assert!(matches!(
        a.append(std::slice::from_ref(&entry)),
        Err(StoreError::Fenced { .. })
    ));
    assert!(matches!(
        a.write_checkpoint(meta("p", 1, CheckpointKind::Base, None), b"x"),
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(b.result("p", 2).unwrap(), None);
    assert_eq!(b.last_pos("p").unwrap(), 0);
    assert_eq!(b.checkpoints("p").unwrap(), vec![]);
    // node-b writes as usual.
    b.append(std::slice::from_ref(&entry)).unwrap();
    b.put_result_sync(result("p", 2)).unwrap();
    drop(a);
    // node-a's close did not release node-b's lease.
    b.put_result_sync(result("p", 3)).unwrap();
}

#[test]
fn a_store_lease_needs_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        lease: Some(LeaseOptions {
            owner: "n".into(),
            ttl: Duration::from_secs(1),
        }),
        ..StoreOptions::default()
    };
    let err = Store::open(dir.path(), options).unwrap_err();
    assert!(matches!(err, StoreError::Config { .. }), "{err}");
}

/// A node frozen in the middle of a write transaction holds the share lock on the lease row; the server
/// ends such a session after the lease's time to live (`idle_in_transaction_session_timeout`), so a
/// takeover goes through, and the frozen write is lost rather than committed.
#[test]
fn a_writer_stuck_in_a_transaction_does_not_block_a_takeover() {
    if crate::test_db::postgres_url().is_none() {
        eprintln!("runs on PostgreSQL only (set {})", crate::test_db::POSTGRES_ENV);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = leased(dir.path(), "node-a", 1_000).unwrap();
    a.put_process(&process("p")).unwrap();
    let (release_tx, done_rx) = hold_in_transaction(&a, 7);
    let schema = crate::test_db::schema_of(dir.path());
    let start = Instant::now();
    crate::test_db::admin()
        // Without the server ending the frozen session this would wait for ever: give up after 10 s.
        .batch_execute(&format!(
            "SET statement_timeout = 10000; UPDATE {schema}.cu_lease SET owner = 'node-b', token = token + 1"
        ))
        .expect("the takeover goes through while node-a's write transaction is frozen");
    assert!(start.elapsed() < Duration::from_secs(15), "{:?}", start.elapsed());
    release_tx.send(()).unwrap();
    let outcome = done_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(
        outcome.is_err(),
        "the frozen transaction cannot commit: {outcome:?}"
    );
    let err = a.put_result_sync(result("p", 8)).unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    let count: i64 = crate::test_db::admin()
        .query_one(&format!("SELECT count(*) FROM {schema}.results"), &[])
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "neither write landed");
}
