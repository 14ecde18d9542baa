//! `together-sim`: runs the simulator until Ctrl-C.
//!
//! ```text
//! together-sim --config sim.toml --port 0 [--host 127.0.0.1] [--time-scale N] [--mode sliding|gcra] [--dynamic]
//! ```
//!
//! `--dynamic` turns on the dynamic limits with their defaults when the
//! config has no `[dynamic]` table (one in the config is kept as it is).
//!
//! Prints the bound address and the accepted keys.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use together_sim::{DynamicLimits, Mode, Sim, SimConfig};

/// A local Together-compatible server that enforces rate limits.
#[derive(Debug, Parser)]
#[command(name = "together-sim", version, about)]
struct Args {
    /// TOML configuration file (defaults apply without one).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to bind (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Time speed-up (overrides the config).
    #[arg(long)]
    time_scale: Option<f64>,
    /// Enforcement mode, `sliding` or `gcra` (overrides the config).
    #[arg(long)]
    mode: Option<Mode>,
    /// Dynamic limits per key and model (defaults unless the config has a
    /// `[dynamic]` table).
    #[arg(long)]
    dynamic: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = match &args.config {
        Some(p) => match SimConfig::load(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("together-sim: {e}");
                return ExitCode::from(2);
            }
        },
        None => SimConfig::default(),
    };
    if let Some(s) = args.time_scale {
        config.time_scale = s;
    }
    if let Some(m) = args.mode {
        config.mode = m;
    }
    if args.dynamic && config.dynamic.is_none() {
        config.dynamic = Some(DynamicLimits::default());
    }
    let sim = match Sim::builder()
        .config(config)
        .bind(SocketAddr::new(args.host, args.port))
        .spawn()
        .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("together-sim: {e}");
            return ExitCode::from(1);
        }
    };
    println!("together-sim listening on {}", sim.base_url());
    println!("api keys: {}", sim.api_keys().join(", "));
    println!(
        "mode: {:?}, time scale: {}",
        sim.config().mode,
        sim.config().time_scale
    );
    if let Some(d) = &sim.config().dynamic {
        println!(
            "dynamic limits on {}: {}x the successful rate over {:?}, between {}/s and {}/s",
            d.routes.join(", "),
            d.multiple,
            d.window,
            d.base,
            d.cap
        );
    }
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
    ExitCode::SUCCESS
}
