//! Sinks: the consumers of the journal. Each `[[routes]]` entry is a
//! forward sink; `routes` decides which deliveries become its jobs and
//! `forward` replays them.

pub mod forward;
pub mod routes;
