//! `gatehouse actions report`: the Actions reports as a table or JSON.

use super::CliError;
use crate::sinks::actions::report;
use crate::store::Store;

/// Per repository and workflow since `since` (30m, 6h, 7d, RFC 3339).
pub async fn report(store: &Store, since: &str, json: bool) -> Result<(), CliError> {
    let since_ms = crate::clock::parse_since(since, crate::clock::now_ms())?;
    let rows = report::workflows(store, since_ms).await?;
    if json {
        super::print_json(&rows);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no workflow runs or jobs completed since {since}");
        return Ok(());
    }
    let secs =
        |v: Option<f64>| v.map_or("-".to_string(), |s| crate::clock::span((s * 1000.0) as i64));
    println!(
        "{:<32}  {:<24}  {:>5}  {:>7}  {:>8}  {:>8}  {:>5}  {:>9}  {:>9}",
        "repository",
        "workflow",
        "runs",
        "success",
        "run p50",
        "run p95",
        "jobs",
        "queue p50",
        "queue p95"
    );
    for r in rows {
        println!(
            "{:<32}  {:<24}  {:>5}  {:>7}  {:>8}  {:>8}  {:>5}  {:>9}  {:>9}",
            super::safe(&r.repository),
            super::safe(&r.workflow_name),
            r.runs,
            r.success_rate
                .map_or("-".to_string(), |x| format!("{:.1}%", x * 100.0)),
            secs(r.run_p50_secs),
            secs(r.run_p95_secs),
            r.jobs,
            secs(r.queue_p50_secs),
            secs(r.queue_p95_secs),
        );
    }
    Ok(())
}
