//! `coatt-train`: the one binary. Thin: parse arguments, call the library.
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "coatt-train",
    version,
    about = "Weakly supervised semantic segmentation with co-attention (MCIS, ECCV 2020) on the coatt engine"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Time the engine's core CPU kernels (conv2d vs a plain GEMM, co-attention) and print GFLOP/s.
    Bench(coatt::bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        None => {
            use clap::CommandFactory;
            Cli::command().print_help()?;
            println!();
        }
        Some(Cmd::Bench(a)) => coatt::bench::run(&a)?,
    }
    Ok(())
}
