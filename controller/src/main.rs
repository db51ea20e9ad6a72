//! `drover`: parses the command line and runs the command; errors are printed on one line with a non-zero exit.

use clap::Parser;
use drover::cli::{Cli, dispatch};

#[tokio::main]
async fn main() {
    drover::tls::install_crypto_provider();
    let cli = Cli::parse();
    if let Err(err) = dispatch(cli).await {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
