//! `ao-cu`, a high-performance AO Compute Unit: the command-line binary.
//!
//! Subcommands:
//! - `ao-cu eval`: evaluate a message log on one process of a module (JSON Lines in, one result line out
//!   per message), the developer's and benchmarker's entry point (see [`eval`]).
//! - `ao-cu run`: the same log on the persistent engine (store, checkpoints), resumable after a crash
//!   (see [`run`]).
//! - `ao-cu serve`: a complete local AO node (MU, SU and CU on one port, SQLite in a data directory) that
//!   `@permaweb/aoconnect` talks to unchanged (see [`serve`]).
//! - `ao-cu bench`: a load generator, N processes × M messages through the engine in process and through
//!   the HTTP API; throughput, latency percentiles, memory and checkpoint bytes (see [`bench`]).
//! - `ao-cu attest verify`: verify an AMD SEV-SNP attestation report with `cu-attest`'s verifier; prints the
//!   verdict as JSON (see [`attest`]).

mod attest;
mod bench;
mod eval;
mod run;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// ao-cu: a high-performance AO Compute Unit.
#[derive(Parser)]
#[command(name = "ao-cu", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate messages (JSON Lines `{"msg": ..., "env": ...}`) on one process of a module.
    Eval(eval::EvalArgs),
    /// Evaluate a message log on the persistent engine (store, checkpoints); resumable after a crash.
    Run(run::RunArgs),
    /// Serve a complete local AO node (Messenger, Scheduler, Compute Unit) over HTTP.
    Serve(Box<serve::ServeArgs>),
    /// Load generator: N processes × M messages through the engine and/or the HTTP API.
    Bench(bench::BenchArgs),
    /// Attestation tools.
    Attest {
        #[command(subcommand)]
        command: AttestCommand,
    },
}

#[derive(Subcommand)]
enum AttestCommand {
    /// Verify an SEV-SNP attestation report; prints the verdict as JSON, exits 0 when every check passes.
    Verify(attest::VerifyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `AO_CU_LOG` (tracing's env-filter syntax) sets the log level; a server logs `info` by default.
    let filter = match (std::env::var("AO_CU_LOG"), &cli.command) {
        (Err(_), Command::Serve(_)) => tracing_subscriber::EnvFilter::new("info"),
        _ => tracing_subscriber::EnvFilter::from_env("AO_CU_LOG"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Eval(args) => match eval::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ao-cu eval: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Run(args) => match run::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ao-cu run: {e}");
                ExitCode::from(e.exit_code())
            }
        },
        Command::Serve(args) => match serve::run(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ao-cu serve: {e:#}");
                // 3: taken over by a standby (an orchestrator restarts it, as a standby now).
                ExitCode::from(if e.downcast_ref::<serve::LeaseLost>().is_some() {
                    3
                } else {
                    2
                })
            }
        },
        Command::Bench(args) => match bench::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ao-cu bench: {e}");
                ExitCode::from(e.exit_code())
            }
        },
        Command::Attest {
            command: AttestCommand::Verify(args),
        } => attest::run(&args),
    }
}
