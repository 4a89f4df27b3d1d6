//! gatehouse: a self-hosted appliance that makes GitHub automation reliable.
//! The modules follow the flow: ingest → journal → (scheduler → sinks);
//! the gateway spends the github pool for API clients; app wires them, ops
//! and metrics make them visible; webhook holds GitHub's webhook protocol
//! (signatures, form bodies) for every layer that speaks it.

pub mod admin;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod duties;
pub mod files;
pub mod gateway;
pub mod github;
pub mod human;
pub mod ingest;
pub mod journal;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod problems;
pub mod recovery;
pub mod reload;
pub mod retention;
pub mod scheduler;
pub mod server;
pub mod shutdown;
pub mod sinks;
pub mod store;
pub mod systemd;
pub mod throttle;
pub mod watchdog;
pub mod webhook;
