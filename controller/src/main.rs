//! `drover`: parses the command line and runs the command; errors are printed on one line with a non-zero exit.

use clap::Parser;
use drover::cli::{Cli, dispatch};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    drover::tls::install_crypto_provider();
    let cli = Cli::parse();
    match dispatch(cli).await {
        Ok(code) => std::process::ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
