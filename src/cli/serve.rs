//! `gatehouse serve`: process setup, the config (or the embedded
//! default), logging, and the server on a multi-threaded runtime.

use std::path::Path;
use std::process::ExitCode;

use crate::{app, logging};

/// Large allocations (request bodies of up to 25 MB) get pages of their
/// own and give them back when freed. glibc's default raises the mmap
/// threshold to the size of each large block freed, so after one burst of
/// big bodies later ones come from the heap and the process stays at its
/// peak size; a fixed threshold turns that off.
fn return_memory_after_bursts() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of glibc's allocator; called
    // once, before any thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// `gatehouse serve`: the server until SIGTERM, on the config at `path`
/// or the embedded default.
pub fn serve(path: Option<&Path>) -> ExitCode {
    return_memory_after_bursts();
    let (config, generated) = match super::config::for_serve(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    logging::init(config.log.format, &config.log.level);
    if path.is_none() {
        super::config::banner(&config, &generated);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build tokio runtime");
    match runtime.block_on(app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "gatehouse failed to start");
            eprintln!("gatehouse: {e}");
            ExitCode::FAILURE
        }
    }
}
