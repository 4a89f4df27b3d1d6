//! The envelope (action, installation, repository, owner) and partition
//! key read from arbitrary JSON: an error or a key, never a panic.
#![no_main]

use gatehouse::config::PartitionBy;
use gatehouse::ingest::envelope::extract;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = extract(data) {
        for by in [PartitionBy::Owner, PartitionBy::Repository] {
            assert!(!e.partition_key(by).is_empty());
        }
    }
});
