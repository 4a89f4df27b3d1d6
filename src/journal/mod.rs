//! What a delivery is: the metadata ingest reads from a webhook, the raw
//! request kept beside it, what appending one came to, and the event
//! names GitHub sends. How it is kept
//! is the store's (`crate::store`).

pub mod events;
pub mod model;

pub use model::{Appended, ContentKind, DeliveryMeta, DeliveryRow, NewDelivery, ParseStatus};
