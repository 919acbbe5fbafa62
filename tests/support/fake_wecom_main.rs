//! `fake-wecom`: a WeCom-compatible robot endpoint that enforces WeCom's limits (unknown
//! key → 93000, 20 accepted messages per key per rolling minute → 45009, content over
//! 4096/2048 bytes → 40058, …; see `fake_wecom.rs`). Used by the demo and by tests that
//! run the daemon as a process.
//!
//! ```text
//! fake-wecom --listen 127.0.0.1:0 --keys k1,k2 --record messages.jsonl
//! ```
//!
//! The first line on stdout is `listening on http://ADDR`; every accepted message is then
//! appended to the record file as one JSON line (`at`, `key`, `msgtype`, `content`). Runs
//! until killed.

#[path = "fake_wecom.rs"]
mod fake_wecom;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// A fake WeCom group-robot webhook endpoint for tests and demos.
#[derive(Parser, Debug)]
#[command(name = "fake-wecom", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Comma-separated robot keys that exist; any other key gets errcode 93000.
    #[arg(long, value_delimiter = ',', required = true)]
    keys: Vec<String>,
    /// Append every accepted message as a JSON line to this file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Accepted messages allowed per key in any rolling window (WeCom: 20).
    #[arg(long, default_value_t = fake_wecom::MAX_PER_WINDOW)]
    max_per_window: usize,
    /// Length of the rate window, e.g. "60s" (WeCom: one minute).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Wait this long before answering each request, e.g. "500ms" (a slow WeCom).
    #[arg(long, value_parser = humantime::parse_duration)]
    delay: Option<Duration>,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let mut cfg =
        fake_wecom::FakeConfig::new(&args.keys).with_window(args.max_per_window, args.window);
    cfg.listen = args.listen;
    if let Some(p) = args.record {
        cfg = cfg.with_record(p);
    }
    let fake = fake_wecom::FakeWeCom::start_with(cfg)?;
    if let Some(d) = args.delay {
        fake.slow_down(d);
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", fake.url())?;
        out.flush()?;
    }
    std::future::pending::<()>().await;
    Ok(())
}
