//! How long an in-process fakehub takes to start: bind, load the fixture
//! templates, build and seed the world. Run:
//!
//!     cargo bench -p fakehub --bench startup
//!
//! Starts and stops 50 instances (bounded) and prints the median and max.

use std::time::{Duration, Instant};

use fakehub::{Config, FakeHub};

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/app-a.pub.pem"
    ))
    .unwrap();
    let mut times: Vec<Duration> = Vec::new();
    rt.block_on(async {
        for _ in 0..50 {
            let config = Config::default()
                .org("octo-org", &["widgets", "gadgets", "secret"])
                .user("octo-user", &["dotfiles"])
                .app(101, &key, &[(11, "octo-org"), (12, "octo-user")])
                .token("ci", "ghp_x");
            let t = Instant::now();
            let hub = FakeHub::start(config).await.unwrap();
            times.push(t.elapsed());
            hub.stop().await;
        }
    });
    times.sort();
    println!(
        "fakehub in-process start (4 repositories, 1 App, 2 installations): median {:.2} ms, max {:.2} ms over {} starts",
        times[times.len() / 2].as_secs_f64() * 1000.0,
        times.last().unwrap().as_secs_f64() * 1000.0,
        times.len()
    );
}
