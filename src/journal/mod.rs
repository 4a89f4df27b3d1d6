//! What a delivery is: the metadata ingest reads from a webhook, the raw
//! request kept beside it, and what appending one came to. How it is kept
//! is the store's (`crate::store`).

pub mod model;

pub use model::{Appended, ContentKind, DeliveryMeta, DeliveryRow, NewDelivery, ParseStatus};
