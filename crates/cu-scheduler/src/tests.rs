#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::chain::{BLOCK_MS, block_height, block_timestamp, hash_chain};
use crate::cron::{Cron, CronKind, Point, ms_parse, parse_crons, ticks};

fn tags(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn hash_chain_matches_the_su_definition() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use sha2::{Digest, Sha256};
    let pid = URL_SAFE_NO_PAD.encode([7u8; 32]);
    let first = hash_chain(&pid, None).unwrap();
    assert_eq!(first, URL_SAFE_NO_PAD.encode(Sha256::digest([7u8; 32])));
    let asg = URL_SAFE_NO_PAD.encode([9u8; 32]);
    let second = hash_chain(&first, Some(&asg)).unwrap();
    let mut input = vec![9u8; 32];
    input.extend(URL_SAFE_NO_PAD.decode(&first).unwrap());
    assert_eq!(second, URL_SAFE_NO_PAD.encode(Sha256::digest(&input)));
    assert!(hash_chain("short", None).is_err());
    assert!(hash_chain(&first, Some("not*base64")).is_err());
}

#[test]
fn local_blocks() {
    assert_eq!(block_height(0), 0);
    assert_eq!(block_height(BLOCK_MS - 1), 0);
    assert_eq!(block_height(BLOCK_MS), 1);
    assert_eq!(
        block_timestamp(block_height(1_750_000_123_456)),
        1_750_000_123_456 / BLOCK_MS * BLOCK_MS
    );
}

#[test]
fn ms_units_as_ms_2_1_3() {
    assert_eq!(ms_parse("5 minutes"), Some(300_000.0));
    assert_eq!(ms_parse("1 Hour"), Some(3_600_000.0));
    assert_eq!(ms_parse("2 d"), Some(172_800_000.0));
    assert_eq!(ms_parse("1.5 s"), Some(1500.0));
    assert_eq!(ms_parse(".5 h"), Some(1_800_000.0));
    assert_eq!(ms_parse("10 "), Some(10.0));
    assert_eq!(ms_parse("1 y"), Some(31_557_600_000.0));
    assert_eq!(ms_parse("1 month"), None);
    assert_eq!(ms_parse("1. s"), None);
    assert_eq!(ms_parse(" 5"), None);
    assert_eq!(ms_parse("abc"), None);
}

#[test]
fn cron_parsing_as_the_reference() {
    let c = parse_crons(&tags(&[
        ("Cron-Interval", "5-minutes"),
        ("Cron-Tag-Action", "Tick"),
        ("Other", "x"),
        ("Cron-Interval", "10-blocks"),
        ("Cron-Tag-Foo", "Bar"),
        ("Cron-Tag-Fizz", "Buzz"),
    ]))
    .unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].kind, CronKind::Seconds(Some(300)));
    assert_eq!(c[0].tags, tags(&[("Action", "Tick")]));
    assert_eq!(c[1].kind, CronKind::Blocks(Some(10)));
    assert_eq!(c[1].tags, tags(&[("Foo", "Bar"), ("Fizz", "Buzz")]));
    assert_eq!(
        parse_crons(&tags(&[("Cron-Interval", "1-block")])).unwrap()[0].kind,
        CronKind::Blocks(Some(1))
    );
    // Errors with the reference's messages.
    let e = parse_crons(&tags(&[("Cron-Tag-Action", "x")]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "Unmatched Cron-Tag with no preceding Cron-Interval: Cron-Tag-Action"
    );
    let e = parse_crons(&tags(&[("Cron-Interval", "500-ms")]))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "time-based cron cannot be less than 1 second");
    assert!(
        parse_crons(&tags(&[("Cron-Interval", "10")])).is_err(),
        "no unit = milliseconds"
    );
    // ms cannot parse months: the reference keeps a cron that never fires.
    assert_eq!(
        parse_crons(&tags(&[("Cron-Interval", "1-month")])).unwrap()[0].kind,
        CronKind::Seconds(None)
    );
}

/// The reference's per-second walk (`cronMessagesBetweenWith`), literally, over the local blocks in
/// `(L, R)`: returns `(timestamp, height, name)`.
fn naive(crons: &[Cron], origin: Point, left: Point, right: u64) -> Vec<(u64, u64, String)> {
    let block_based: Vec<&Cron> = crons
        .iter()
        .filter(|c| matches!(c.kind, CronKind::Blocks(_)))
        .collect();
    let mut time_based: Vec<&Cron> = crons
        .iter()
        .filter(|c| matches!(c.kind, CronKind::Seconds(_)))
        .collect();
    time_based.sort_by_key(|c| match c.kind {
        CronKind::Seconds(Some(v)) => v,
        _ => u64::MAX,
    });
    let mut blocks: std::collections::VecDeque<(u64, u64)> = (block_height(left.timestamp)
        ..=block_height(right) + 1)
        .map(|h| (h, block_timestamp(h)))
        .filter(|(_, ts)| *ts > left.timestamp && *ts < right)
        .collect();
    let mut out = Vec::new();
    let mut cur = (left.height, left.timestamp);
    let mut t = left.timestamp;
    while t < right {
        if let Some(&(h, bts)) = blocks.front()
            && t / 1000 >= bts / 1000
        {
            blocks.pop_front();
            cur = (h, bts);
            for (i, c) in block_based.iter().enumerate() {
                if let CronKind::Blocks(Some(v)) = c.kind
                    && v != 0
                    && cur.0 != origin.height
                    && (cur.0 as i64 - origin.height as i64) % v == 0
                {
                    out.push((cur.1, cur.0, format!("{i}-{}", c.interval)));
                }
            }
        }
        for (i, c) in time_based.iter().enumerate() {
            if let CronKind::Seconds(Some(v)) = c.kind {
                let (s, o) = (t / 1000, origin.timestamp / 1000);
                if s != o && (s as i64 - o as i64) % v as i64 == 0 {
                    out.push((t, cur.0, format!("{i}-{}", c.interval)));
                }
            }
        }
        t += 1000;
    }
    out
}

fn fast(
    crons: &[Cron],
    origin: Point,
    left: Point,
    right: u64,
    from: u64,
    to: u64,
) -> Vec<(u64, u64, String)> {
    ticks(crons, origin, left, Some(right), from, to)
        .into_iter()
        .map(|t| (t.timestamp, t.block_height, t.name))
        .collect()
}

/// A small deterministic generator (no randomness reaches anything but this test).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn arithmetic_ticks_equal_the_per_second_walk() {
    let mut rng = Lcg(42);
    let intervals = [
        "1-second",
        "7-seconds",
        "1-minute",
        "2-minutes",
        "1-block",
        "3-blocks",
        "1-hour",
        "1-month",
    ];
    for _case in 0..300 {
        let n = 1 + rng.next(3) as usize;
        let mut t = Vec::new();
        for _ in 0..n {
            t.push((
                "Cron-Interval".to_string(),
                intervals[rng.next(intervals.len() as u64) as usize].to_string(),
            ));
            t.push(("Cron-Tag-Action".to_string(), "Cron".to_string()));
        }
        let crons = parse_crons(&t).unwrap();
        let origin_ts = 1_750_000_000_000 + rng.next(1_000_000);
        let origin = Point {
            height: block_height(origin_ts),
            timestamp: origin_ts,
        };
        let l = origin_ts + rng.next(2_000_000);
        let left = Point {
            height: block_height(l),
            timestamp: l,
        };
        let right = l + rng.next(1_500_000);
        let want = naive(&crons, origin, left, right);
        assert_eq!(
            fast(&crons, origin, left, right, l, right),
            want,
            "crons {t:?} origin {origin_ts} L {l} R {right}"
        );
        // Generated incrementally in windows, the concatenation is the same list.
        let mut got = Vec::new();
        let mut from = l;
        while from < right {
            let to = (from + 1 + rng.next(400_000)).min(right);
            got.extend(fast(&crons, origin, left, right, from, to));
            from = to;
        }
        assert_eq!(got, want);
    }
}

#[test]
fn ticks_cost_follows_the_ticks_not_the_seconds() {
    // A year-long window with an hourly cron: 8765 ticks (the one at the end is outside the window),
    // computed without walking 31.5 million seconds.
    let crons = parse_crons(&tags(&[("Cron-Interval", "1-hour")])).unwrap();
    let o = 1_700_000_000_000;
    let origin = Point {
        height: block_height(o),
        timestamp: o,
    };
    let start = std::time::Instant::now();
    let t = ticks(&crons, origin, origin, None, o, o + 31_557_600_000);
    assert_eq!(t.len(), 8765);
    assert!(
        start.elapsed() < std::time::Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(t[0].timestamp, o + 3_600_000);
}

mod scheduling {
    use std::sync::Arc;

    use cu_ans104::Wallet;
    use cu_store::{ProcessRecord, Store, StoreOptions, Tag};

    use crate::chain::{block_height, hash_chain};
    use crate::scheduler::{ScheduleRequest, Scheduler};

    fn wallet() -> Wallet {
        let p =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../cu-ans104/tests/oracle/test-jwk.json");
        Wallet::from_jwk_json(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    const PID: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    fn spawn(s: &Scheduler, tags: &[(&str, &str)], now: u64) {
        let record = ProcessRecord {
            id: PID.into(),
            module_id: "m".into(),
            owner: "owner".into(),
            tags: tags
                .iter()
                .map(|(n, v)| Tag {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            env_json: "{}".into(),
            block_height: 0,
            timestamp: 0,
            spawn_json: String::new(),
        };
        let req = ScheduleRequest {
            process_id: PID.into(),
            message_id: PID.into(),
            message: Some(vec![1]),
            spawn: Some(record),
            delivered: vec![],
        };
        let a = s
            .schedule(req, now, |a| Ok(format!("{{\"Nonce\":{}}}", a.nonce)))
            .unwrap()
            .assigned;
        assert_eq!((a.nonce, a.pos, a.timestamp), (0, 1, now));
        assert_eq!(a.hash_chain, hash_chain(PID, None).unwrap());
    }

    fn msg(s: &Scheduler, id: &str, now: u64) -> crate::Scheduled {
        let req = ScheduleRequest {
            process_id: PID.into(),
            message_id: id.into(),
            message: Some(vec![2]),
            ..Default::default()
        };
        s.schedule(req, now, |a| Ok(format!("{{\"Nonce\":{}}}", a.nonce)))
            .unwrap()
    }

    #[test]
    fn nonces_timestamps_chain_dedupe() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let s = Scheduler::new(store.clone(), Arc::new(wallet()), false);
        spawn(&s, &[], 1_000_000);
        let a = msg(&s, "m1", 1_000_500).assigned;
        // The clock goes backwards: the timestamp still increases.
        let b = msg(&s, "m2", 900_000).assigned;
        assert_eq!((a.nonce, b.nonce), (1, 2));
        assert_eq!(b.timestamp, a.timestamp + 1);
        assert_eq!(b.block_height, block_height(b.timestamp));
        assert_eq!(
            b.hash_chain,
            hash_chain(&a.hash_chain, Some(&a.assignment_id)).unwrap()
        );
        // The same message again: its first assignment, nothing written.
        assert_eq!(msg(&s, "m1", 2_000_000).assigned, a);
        assert_eq!(store.last_pos(PID).unwrap(), 3);
        // The assignment item is signed by the node and carries the SU's tags in the SU's order.
        let r = s.reads().by_nonce(PID, 2).unwrap().unwrap();
        let item = cu_ans104::DataItem::parse(&r.assignment).unwrap();
        item.verify().unwrap();
        let names: Vec<&str> = item.tags().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "Process",
                "Epoch",
                "Nonce",
                "Hash-Chain",
                "Block-Height",
                "Timestamp",
                "Data-Protocol",
                "Type",
                "Variant",
                "Message"
            ]
        );
        assert_eq!(item.tag("Message"), Some("m2"));
        // A new scheduler over the same store (a restart) continues the chain.
        let s2 = Scheduler::new(store.clone(), Arc::new(wallet()), false);
        let c = msg(&s2, "m3", 3_000_000).assigned;
        assert_eq!(c.nonce, 3);
        assert_eq!(
            c.hash_chain,
            hash_chain(&b.hash_chain, Some(&b.assignment_id)).unwrap()
        );
    }

    #[test]
    fn crons_are_logged_before_the_next_message() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let s = Scheduler::new(store.clone(), Arc::new(wallet()), true);
        spawn(
            &s,
            &[("Cron-Interval", "10-seconds"), ("Cron-Tag-Action", "Tick")],
            1_000_000,
        );
        // Ticks are final one second late: at +25.5 s, ticks at +10 s and +20 s.
        assert_eq!(s.tick_crons(PID, 1_025_500).unwrap(), 3);
        let m = msg(&s, "m1", 1_047_000);
        assert_eq!(m.crons, 2, "ticks at +30 s and +40 s");
        assert_eq!(m.assigned.pos, 6);
        let log = store.log_range(PID, 1, 10).unwrap();
        let kinds: Vec<Option<&str>> = log.iter().map(|e| e.cron.as_deref()).collect();
        assert_eq!(
            kinds,
            [
                None,
                Some("0-10-seconds"),
                Some("0-10-seconds"),
                Some("0-10-seconds"),
                Some("0-10-seconds"),
                None
            ]
        );
        let ts: Vec<u64> = log.iter().map(|e| e.timestamp).collect();
        assert_eq!(
            ts,
            [1_000_000, 1_010_000, 1_020_000, 1_030_000, 1_040_000, 1_047_000]
        );
        let cron: serde_json::Value = serde_json::from_str(&log[1].msg_json).unwrap();
        assert_eq!(
            cron.to_string(),
            format!(
                "{{\"Owner\":\"owner\",\"Target\":\"{PID}\",\"From\":\"owner\",\"Tags\":[{{\"name\":\"Action\",\"value\":\"Tick\"}}],\"Timestamp\":1010000,\"Block-Height\":8,\"Cron\":true,\"Read-Only\":false}}"
            )
        );
        // Tag errors of a process refuse its spawn.
        let dir = tempfile::tempdir().unwrap();
        let s = Scheduler::new(
            Store::open(dir.path(), StoreOptions::default()).unwrap(),
            Arc::new(wallet()),
            true,
        );
        let record = ProcessRecord {
            id: PID.into(),
            module_id: "m".into(),
            owner: "o".into(),
            tags: vec![Tag {
                name: "Cron-Tag-X".into(),
                value: "y".into(),
            }],
            env_json: "{}".into(),
            block_height: 0,
            timestamp: 0,
            spawn_json: String::new(),
        };
        let req = ScheduleRequest {
            process_id: PID.into(),
            message_id: PID.into(),
            spawn: Some(record),
            ..Default::default()
        };
        assert!(s.schedule(req, 1, |_| Ok("{}".into())).is_err());
    }

    /// Many threads schedule onto one process at once, each message posted twice by different
    /// threads: one nonce per message, no gap, one hash chain, and both posters of a message answered
    /// its one assignment (a duplicate racing a queued, uncommitted first copy waits for it).
    #[test]
    fn concurrent_schedules_form_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let s = Scheduler::new(store.clone(), Arc::new(wallet()), false);
        spawn(&s, &[], 1_000_000);
        const THREADS: usize = 6;
        const PER_THREAD: usize = 8;
        let answers = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let (s, answers) = (&s, &answers);
                scope.spawn(move || {
                    for k in 0..PER_THREAD {
                        // Thread t posts its own messages and those of thread t - 1.
                        for owner in [t, (t + THREADS - 1) % THREADS] {
                            let id = format!("m-{owner}-{k}");
                            let a = msg(s, &id, 1_000_001).assigned;
                            answers.lock().unwrap().push((id, a));
                        }
                    }
                });
            }
        });
        let n = (THREADS * PER_THREAD) as u64;
        assert_eq!(store.last_pos(PID).unwrap(), n + 1);
        let mut seen = std::collections::HashMap::new();
        let mut prev = s.reads().by_nonce(PID, 0).unwrap().unwrap();
        for nonce in 1..=n {
            let r = s.reads().by_nonce(PID, nonce).unwrap().unwrap();
            assert_eq!(r.pos, nonce + 1);
            assert!(r.timestamp > prev.timestamp);
            assert_eq!(
                r.hash_chain,
                hash_chain(&prev.hash_chain, Some(&prev.assignment_id)).unwrap()
            );
            assert!(
                seen.insert(r.message_id.clone(), r.clone()).is_none(),
                "{} scheduled twice",
                r.message_id
            );
            prev = r;
        }
        let answers = answers.into_inner().unwrap();
        assert_eq!(answers.len(), 2 * n as usize);
        for (id, a) in answers {
            let r = &seen[&id];
            assert_eq!(
                (a.nonce, a.assignment_id.as_str()),
                (r.nonce, r.assignment_id.as_str())
            );
        }
    }

    /// A batch the store refuses (here: another writer took the next log position) is an error for
    /// that call, writes nothing, and the scheduler reloads the process from the store, so the next
    /// message follows what is really stored.
    #[test]
    fn a_refused_commit_reloads_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let s = Scheduler::new(store.clone(), Arc::new(wallet()), false);
        spawn(&s, &[], 1_000_000);
        let a = msg(&s, "m1", 1_000_500).assigned;
        store
            .append(&[cu_store::LogEntry {
                process_id: PID.into(),
                pos: 3,
                message_id: Some("elsewhere".into()),
                nonce: None,
                timestamp: 1_000_600,
                block_height: 0,
                cron: None,
                msg_json: "{}".into(),
            }])
            .unwrap();
        let req = ScheduleRequest {
            process_id: PID.into(),
            message_id: "m2".into(),
            message: Some(vec![2]),
            ..Default::default()
        };
        let err = s.schedule(req, 1_000_700, |_| Ok("{}".into())).unwrap_err();
        assert!(err.to_string().contains("pos"), "{err}");
        assert!(s.reads().by_message(PID, "m2").unwrap().is_none());
        let b = msg(&s, "m2", 1_000_800).assigned;
        assert_eq!((b.nonce, b.pos), (2, 4));
        assert_eq!(
            b.hash_chain,
            hash_chain(&a.hash_chain, Some(&a.assignment_id)).unwrap()
        );
    }
}
