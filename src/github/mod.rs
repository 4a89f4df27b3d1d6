//! Everything gatehouse sends to GitHub goes through one pool of
//! credentials (invariant 5): App installations and tokens, chosen by
//! remaining budget, one request in flight per credential, paused on
//! secondary limits.

pub mod app;
pub mod budget;
pub mod pool;

pub use pool::{
    Answer, CredId, CredStatus, HeldEtag, Pool, PoolError, ProbeRow, Request, Validators,
};
