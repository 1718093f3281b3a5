//! The durable benchmark without the web crate, for quick iterations:
//! `cargo run --release -p shenpi-adapters --example durable_bench -- DB_URL CLIENTS ACTIONS`,
//! or `... -- timers DB_URL PENDING DUE`. The product commands are `shenpi bench durable` and
//! `shenpi bench timers`.

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "timers") {
        args.next();
        let b = shenpi_adapters::bench::TimerBench {
            db: args
                .next()
                .unwrap_or_else(|| "sqlite:///tmp/shenpi-timers.db".into()),
            pending: args
                .next()
                .and_then(|a| a.parse().ok())
                .unwrap_or(1_000_000),
            due: args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000),
            spread_secs: 10,
        };
        match shenpi_adapters::bench::run_timers(&b) {
            Ok(r) => println!("{r}"),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        }
        return;
    }
    let db = args
        .next()
        .unwrap_or_else(|| "sqlite:///tmp/shenpi-bench.db".into());
    let clients = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let actions = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let b = shenpi_adapters::bench::DurableBench {
        db,
        clients,
        actions,
        workflows: shenpi_adapters::bench::default_workflows(),
    };
    match shenpi_adapters::bench::run_durable(&b) {
        Ok(r) => println!("{r}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
