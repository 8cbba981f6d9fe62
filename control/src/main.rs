//! `outdial`: the command-line entry point. See `outdial --help`.

use std::process::ExitCode;

use clap::Parser as _;
use outdial_control::cli::{self, Cli};

/// mimalloc instead of glibc's malloc: a create allocates and frees a few hundred small
/// objects across tokio's threads, and a 10,000-call batch frees megabytes at once; glibc
/// spent 12–19 % of the server's time in malloc, free and `malloc_consolidate` under
/// `bench/api/run.sh` (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before any thread starts: a dataplane core must not stall zeroing a huge page.
    if let Err(e) = outdial_control::huge_pages::disable_for_process() {
        eprintln!(
            "warning: cannot turn transparent huge pages off ({e}); cores may stall in page faults"
        );
    }
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(cli::run(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}
