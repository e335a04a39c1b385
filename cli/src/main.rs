//! `wxthunk`: probe what this process may do with executable memory, and
//! show wxthunk at work.

mod bench;
mod demo;
mod probe;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wxthunk",
    version,
    about,
    long_about = None,
    after_help = "With no command: the probe report, the demo, then a quick bench \
                  (what `cargo run --release` runs)."
)]
/// Executable memory under W^X discipline: probe, demo, bench.
///
/// With no subcommand: the probe report, the demo, then a quick bench.
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Report what this process may do with executable memory, and why.
    Probe {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// A health check: exit with status 1 when the environment
        /// variables are invalid or no strategy for thunks works here.
        #[arg(long)]
        check: bool,
        /// With --check: also fail when no strategy for written code
        /// (blocks, spans) works.
        #[arg(long, requires = "check")]
        code: bool,
    },
    /// JIT small functions into a Block and call them; hand closures to C.
    Demo,
    /// Time the headline operations (call, create+drop, heap, block).
    Bench {
        /// A shorter run (as at the end of `wxthunk` with no arguments).
        #[arg(long)]
        quick: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Probe { json, check, code }) => {
            probe::run(json);
            if check { probe::health(code) } else { Ok(()) }
        }
        Some(Command::Demo) => demo::run(),
        Some(Command::Bench { quick, json }) => bench::run(quick, json),
        None => {
            probe::run(false);
            println!();
            demo::run().and_then(|()| {
                println!();
                bench::run(true, false)
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxthunk: {}", causes(&*e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, each once, `": "`-separated.
pub(crate) fn causes(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        next = cause.source();
    }
    line
}
