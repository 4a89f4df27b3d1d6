//! `gatehouse backup PATH`: a consistent, checked copy of a live journal
//! (how it is made is the store's: see `Lifecycle::backup`).

use std::path::Path;
use std::time::Instant;

use super::CliError;
use crate::store::Store;

pub fn backup(store: &Store, dest: &Path) -> Result<(), CliError> {
    let started = Instant::now();
    let done = store.backup(dest)?;
    println!(
        "backup written to {} ({:.1} MB, {} deliveries, integrity ok) in {:.1} s",
        dest.display(),
        done.bytes as f64 / 1e6,
        done.deliveries,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
