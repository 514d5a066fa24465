//! Copy-on-write dry-run forks ([`cu_wasm::DryRunner`] on [`cu_wasm::ForkImage`]s) give exactly what a
//! fresh copy of the process gives, leave nothing behind between dry-runs, and never touch the process.

use cu_tests::*;
use cu_types::{Limits, ModuleFormat};
use cu_wasm::{DryRunner, ForkImage, Process, ProcessConfig};

/// Each message of `probes`, dry-run on the state after `log[..k]`, twice in a row and interleaved,
/// equals the same message on a one-copy fork; the process itself is unchanged; after the process moves
/// on, the same runner takes the new image.
fn check(wasm: Vec<u8>, format: ModuleFormat, log: Vec<(String, String)>, k: usize) {
    on_eval_thread(move || {
        let module = compile(&wasm, format);
        let mut process = boot(&module, Limits::default());
        for (m, e) in &log[..k] {
            process.handle(m, e).unwrap();
        }
        let mut runner = DryRunner::new(module.clone(), config()).unwrap();
        for step in 0..2 {
            let hash = process.memory_hash();
            let image = ForkImage::of(&mut process).unwrap();
            assert!(runner.fits(&image), "{format}");
            let probes = &log[k + step..(k + step + 4).min(log.len())];
            let expected: Vec<_> = probes
                .iter()
                .map(|(m, e)| fresh_fork(&mut process).handle(m, e).unwrap())
                .collect();
            for _round in 0..2 {
                for (i, (m, e)) in probes.iter().enumerate() {
                    if !runner.fits(&image) {
                        // The previous dry-run grew memory: a new runner, as the engine makes one.
                        runner = DryRunner::new(module.clone(), config()).unwrap();
                    }
                    let got = runner.run(&image, m, e).unwrap();
                    assert_eq!(got, expected[i], "{format}: message {} after {k}", k + step + i);
                }
            }
            assert_eq!(
                process.memory_hash(),
                hash,
                "{format}: dry-runs changed the process"
            );
            // The process moves on by one message; the runner follows the next image.
            let (m, e) = &log[k + step];
            process.handle(m, e).unwrap();
        }
    });
}

fn config() -> ProcessConfig {
    ProcessConfig {
        this_program: THIS_PROGRAM.into(),
        ..ProcessConfig::default()
    }
}

fn fresh_fork(process: &mut Process) -> Process {
    process.fork().unwrap()
}

#[test]
fn every_format_dry_runs_on_a_copy_on_write_image_exactly() {
    let log = read_log(&repo().join("tests/modules/wat/messages/main.jsonl"));
    for (stem, format) in WAT_MODULES {
        // After `fs` (13 messages): the file system, the clock and the heap are all in use.
        check(wat_module(stem), format, log.clone(), 13);
    }
}

#[test]
fn lua_process_dry_runs_on_a_copy_on_write_image_exactly() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let log = read_log(&repo().join("tests/modules/lua/messages.jsonl"));
    for k in [1, 20, 40] {
        check(wasm.clone(), ModuleFormat::Emscripten2, log.clone(), k);
    }
}

#[test]
fn a_dry_run_that_grows_memory_leaves_a_runner_that_no_longer_fits() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let log = read_log(&repo().join("tests/modules/lua/messages.jsonl"));
    on_eval_thread(move || {
        let module = compile(&wasm, ModuleFormat::Emscripten2);
        let mut process = boot(&module, Limits::default());
        let (m, e) = &log[0];
        process.handle(m, e).unwrap();
        let size = process.memory_size();
        let image = ForkImage::of(&mut process).unwrap();
        assert_eq!(image.len() as u64, size);
        assert!(image.stored_bytes() < size, "zero pages are not stored");
        let mut runner = DryRunner::new(module.clone(), config()).unwrap();
        let grow = grow_message(24);
        let out = runner.run(&image, &grow.0, &grow.1).unwrap();
        assert!(out.error.is_none(), "{out:?}");
        assert!(!runner.fits(&image));
        let err = runner.run(&image, &grow.0, &grow.1).unwrap_err().to_string();
        assert!(err.contains("cannot take an image"), "{err}");
        // The process did not grow.
        assert_eq!(process.memory_size(), size);
        // An image of a larger state fits again.
        let (m, e) = grow_message(32);
        process.handle(&m, &e).unwrap();
        let bigger = ForkImage::of(&mut process).unwrap();
        assert!(runner.fits(&bigger));
    });
}

fn grow_message(mb: u32) -> (String, String) {
    let msg = format!(
        r#"{{"Id":"g{mb}","Owner":"o","Target":"p","From":"o","Tags":[{{"name":"Action","value":"Grow"}},{{"name":"MB","value":"{mb}"}}],"Timestamp":1,"Block-Height":1,"Cron":false,"Read-Only":false}}"#
    );
    (
        msg,
        r#"{"Process":{"Id":"p","Owner":"o","Tags":[]},"Module":{"Id":"m","Owner":"o","Tags":[]}}"#.into(),
    )
}

#[test]
fn an_image_of_another_module_is_refused() {
    on_eval_thread(|| {
        let a = compile(&wat_module("emscripten2"), ModuleFormat::Emscripten2);
        let b = compile(&wat_module("emscripten3"), ModuleFormat::Emscripten3);
        let mut process = boot(&a, Limits::default());
        let image = ForkImage::of(&mut process).unwrap();
        let mut runner = DryRunner::new(b, config()).unwrap();
        assert!(!runner.fits(&image));
        let log = read_log(&repo().join("tests/modules/wat/messages/main.jsonl"));
        assert!(runner.run(&image, &log[0].0, &log[0].1).is_err());
    });
}

#[test]
fn dry_runs_on_one_image_map_it_once_and_restore_only_their_copies() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    if std::fs::File::open("/proc/self/pagemap").is_err() {
        eprintln!("skipped: /proc/self/pagemap cannot be read here (every dry-run remaps its image)");
        return;
    }
    let log = read_log(&repo().join("tests/modules/lua/messages.jsonl"));
    on_eval_thread(move || {
        let module = compile(&wasm, ModuleFormat::Emscripten2);
        let mut process = boot(&module, Limits::default());
        for (m, e) in &log[..20] {
            process.handle(m, e).unwrap();
        }
        let image = ForkImage::of(&mut process).unwrap();
        let mut runner = DryRunner::new(module.clone(), config()).unwrap();
        // Probes that do not grow memory (one that does leaves a runner too large for the image).
        let size = process.memory_size();
        let mut probes = Vec::new();
        let mut expected = Vec::new();
        for (m, e) in &log[20..] {
            let mut fork = process.fork().unwrap();
            let out = fork.handle(m, e).unwrap();
            if fork.memory_size() == size {
                probes.push((m.clone(), e.clone()));
                expected.push(out);
            }
        }
        assert!(probes.len() >= 5, "only {} probes", probes.len());
        // Each probe twice in a row: a copy left over from the first would show in the second.
        for (i, (m, e)) in probes.iter().enumerate() {
            for _ in 0..2 {
                assert_eq!(runner.run(&image, m, e).unwrap(), expected[i], "probe {i}");
            }
        }
        assert_eq!(runner.remaps(), 1, "one mapping for every dry-run on the image");
        let (m, e) = &probes[0];
        process.handle(m, e).unwrap();
        let next = ForkImage::of(&mut process).unwrap();
        let (m, e) = &probes[1];
        let want = process.fork().unwrap().handle(m, e).unwrap();
        assert_eq!(runner.run(&next, m, e).unwrap(), want);
        assert_eq!(runner.remaps(), 2, "a new image is mapped anew");
    });
}
