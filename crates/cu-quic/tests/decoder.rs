//! The frame decoder under arbitrary input: it never panics, round-trips every valid frame however the
//! stream is cut, refuses or checks corrupted frames, and reports truncation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers may fail loudly

use cu_quic::frame::{DEFAULT_MAX_FRAME, MAX_CREDIT};
use cu_quic::{Frame, FrameDecoder, FrameError};
use proptest::collection::vec;
use proptest::prelude::*;

/// Protocol ids: 1..=128 bytes.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{43}",
        "[A-Za-z0-9_-]{1,128}",
        // Multi-byte characters: up to 4 bytes each, 32 at most.
        "\\PC{1,32}",
    ]
}

fn bytes(min: usize, max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), min..=max)
}

fn credit() -> impl Strategy<Value = u32> {
    prop_oneof![Just(1u32), Just(MAX_CREDIT), 1..=MAX_CREDIT]
}

/// Any frame within the protocol's limits.
fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (id(), any::<u64>(), credit()).prop_map(|(process, from, credit)| Frame::Subscribe {
            process,
            from,
            credit
        }),
        credit().prop_map(|slots| Frame::Credit { slots }),
        (any::<u64>(), id(), bytes(1, 2048)).prop_map(|(nonce, cursor, node)| Frame::Slot {
            nonce,
            cursor,
            node
        }),
        any::<Option<u64>>().prop_map(|nonce| Frame::CaughtUp { nonce }),
        bytes(1, 4096).prop_map(|item| Frame::Forward { item }),
        (id(), id()).prop_map(|(process, message)| Frame::ResultRequest { process, message }),
        (id(), bytes(0, 1024)).prop_map(|(process, message)| Frame::DryRunRequest { process, message }),
        (any::<u16>(), bytes(0, 2048)).prop_map(|(status, body)| Frame::Reply { status, body }),
        bytes(1, 64).prop_map(|nonce| Frame::AttestRequest { nonce }),
        bytes(0, 2048).prop_map(|json| Frame::Evidence { json }),
        (any::<u16>(), "\\PC{0,64}").prop_map(|(code, reason)| Frame::Error { code, reason }),
    ]
}

/// Cuts `wire` into chunks of the given sizes (cycled; each at least one byte).
fn chunks<'a>(wire: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = wire;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
        i += 1;
    }
    out
}

/// Whether the decoder's buffer really lacks bytes for its next frame.
fn needs_more(dec: &FrameDecoder, buffered_wire: &[u8]) -> bool {
    let n = dec.buffered();
    if n < 4 {
        return true;
    }
    let tail = &buffered_wire[buffered_wire.len() - n..];
    let len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as usize;
    4 + len > n
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// (a) Any bytes in any chunking: frames, a need for more bytes, or a final error; never a panic.
    #[test]
    fn any_bytes_in_any_chunks_never_panic(
        wire in prop_oneof![
            bytes(0, 4096),
            // A plausible prefix and version over garbage, to reach the archive validation.
            (1u32..600, bytes(0, 600)).prop_map(|(len, body)| {
                let mut w = len.to_le_bytes().to_vec();
                w.push(1);
                w.extend(body);
                w
            }),
        ],
        sizes in vec(1usize..300, 1..16),
        max in prop_oneof![Just(DEFAULT_MAX_FRAME), 1usize..2048],
    ) {
        let mut dec = FrameDecoder::new(max);
        let mut seen = Vec::new();
        let mut failed = false;
        'feed: for chunk in chunks(&wire, &sizes) {
            dec.push(chunk);
            seen.extend_from_slice(chunk);
            loop {
                match dec.next_frame() {
                    Ok(Some(frame)) => {
                        prop_assert!(frame.check().is_ok(), "an invalid frame came out: {frame:?}");
                    }
                    Ok(None) => {
                        prop_assert!(
                            needs_more(&dec, &seen),
                            "no frame, yet {} bytes hold one",
                            dec.buffered()
                        );
                        break;
                    }
                    Err(_) => {
                        failed = true;
                        break 'feed;
                    }
                }
            }
        }
        if !failed {
            match dec.finish() {
                Ok(()) => prop_assert_eq!(dec.buffered(), 0),
                Err(FrameError::Truncated(n)) => prop_assert_eq!(n, dec.buffered()),
                Err(e) => prop_assert!(false, "finish failed with {e:?}"),
            }
        }
    }

    /// (b) Valid frames round-trip through a stream cut anywhere.
    #[test]
    fn valid_frames_round_trip_through_any_chunking(
        frames in vec(frame(), 1..8),
        sizes in vec(1usize..700, 1..16),
    ) {
        let mut wire = Vec::new();
        for f in &frames {
            prop_assert!(f.check().is_ok(), "the strategy made an invalid frame: {f:?}");
            wire.extend(f.encode().unwrap());
        }
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut got = Vec::new();
        for chunk in chunks(&wire, &sizes) {
            dec.push(chunk);
            while let Some(f) = dec.next_frame().unwrap() {
                got.push(f);
            }
        }
        prop_assert_eq!(dec.finish(), Ok(()));
        prop_assert_eq!(got, frames);
    }

    /// (c) One corrupted byte: a frame that passes its checks, a wait for bytes that never come
    /// (then `Truncated`), or an error; never a panic.
    #[test]
    fn a_flipped_byte_is_refused_or_still_a_checked_frame(
        frame in frame(),
        at in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let mut wire = frame.encode().unwrap();
        let i = at.index(wire.len());
        wire[i] ^= mask;
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        dec.push(&wire);
        match dec.next_frame() {
            Ok(Some(f)) => {
                prop_assert!(f.check().is_ok(), "an invalid frame came out: {f:?}");
                // A shorter length prefix leaves the rest buffered; the decoder goes on without panicking.
                let _ = dec.next_frame();
            }
            Ok(None) => {
                prop_assert!(i < 4, "only a longer length prefix waits for more bytes (byte {i} flipped)");
                prop_assert_eq!(dec.finish(), Err(FrameError::Truncated(wire.len())));
            }
            Err(e) => {
                if i == 4 {
                    prop_assert_eq!(e, FrameError::Version(cu_quic::frame::VERSION ^ mask));
                }
            }
        }
    }

    /// (d) A frame cut anywhere is not a frame yet, and `Truncated` at the end of the stream.
    #[test]
    fn a_truncated_frame_waits_then_is_truncated(
        frame in frame(),
        at in any::<prop::sample::Index>(),
        sizes in vec(1usize..300, 1..8),
    ) {
        let wire = frame.encode().unwrap();
        let cut = 1 + at.index(wire.len() - 1);
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        for chunk in chunks(&wire[..cut], &sizes) {
            dec.push(chunk);
            prop_assert_eq!(dec.next_frame(), Ok(None));
        }
        prop_assert_eq!(dec.buffered(), cut);
        prop_assert_eq!(dec.finish(), Err(FrameError::Truncated(cut)));
        // The rest completes it.
        dec.push(&wire[cut..]);
        prop_assert_eq!(dec.next_frame(), Ok(Some(frame)));
        prop_assert_eq!(dec.finish(), Ok(()));
    }
}

#[test]
fn an_empty_prefix_and_an_oversized_prefix_are_errors() {
    let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
    dec.push(&[0, 0, 0, 0]);
    assert_eq!(dec.next_frame(), Err(FrameError::Empty));
    let mut dec = FrameDecoder::new(100);
    dec.push(&101u32.to_le_bytes());
    assert_eq!(
        dec.next_frame(),
        Err(FrameError::Oversized { len: 101, max: 100 })
    );
    // Exactly at the limit waits for its bytes.
    let mut dec = FrameDecoder::new(100);
    dec.push(&100u32.to_le_bytes());
    assert_eq!(dec.next_frame(), Ok(None));
}

#[test]
fn frames_that_break_a_limit_are_invalid_on_receipt() {
    let bad = [
        Frame::Credit { slots: 0 },
        Frame::Credit {
            slots: MAX_CREDIT + 1,
        },
        Frame::Subscribe {
            process: String::new(),
            from: 0,
            credit: 1,
        },
        Frame::Subscribe {
            process: "p".into(),
            from: 0,
            credit: 0,
        },
        Frame::ResultRequest {
            process: "p".repeat(129),
            message: "m".into(),
        },
        Frame::Slot {
            nonce: 0,
            cursor: "c".into(),
            node: Vec::new(),
        },
        Frame::AttestRequest { nonce: vec![0; 65] },
        Frame::AttestRequest { nonce: Vec::new() },
        Frame::Forward { item: Vec::new() },
    ];
    for frame in bad {
        assert!(frame.check().is_err(), "{frame:?} passes its checks");
        // encode() does not check; a peer's decoder does.
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        dec.push(&frame.encode().unwrap());
        assert!(
            matches!(dec.next_frame(), Err(FrameError::Invalid(_))),
            "{frame:?} was accepted"
        );
    }
}
