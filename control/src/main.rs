//! `outdial`: the command-line entry point. See `outdial --help`.

use std::process::ExitCode;

use clap::Parser as _;
use outdial_control::cli::{self, Cli};

fn main() -> ExitCode {
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
