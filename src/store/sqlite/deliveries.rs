//! The journal's deliveries on SQLite: appends and prunes go through the
//! writer's own commands (they are its hot path); reads through the pool.

use std::collections::HashSet;

use async_trait::async_trait;

use super::Sqlite;
use super::writer::Command;
use crate::journal::model::{Appended, DeliveryRow, NewDelivery};
use crate::store::{Payload, Pruned, StoreError};

#[async_trait]
impl crate::store::Deliveries for Sqlite {
    async fn append(&self, delivery: NewDelivery) -> Result<Appended, StoreError> {
        self.request(|reply| Command::Append(Box::new(delivery), reply))
            .await
    }

    async fn prune(
        &self,
        bodies_before_ms: i64,
        keys_before_ms: i64,
        limit: usize,
    ) -> Result<Pruned, StoreError> {
        self.request(|reply| Command::Prune {
            bodies_before_ms,
            keys_before_ms: keys_before_ms.min(bodies_before_ms),
            limit,
            reply,
        })
        .await
    }

    async fn delivery(&self, hook_id: &str, guid: &str) -> Result<Option<DeliveryRow>, StoreError> {
        let (hook_id, guid) = (hook_id.to_string(), guid.to_string());
        self.reader.run(move |r| r.get(&hook_id, &guid)).await
    }

    async fn payload(&self, delivery_id: i64) -> Result<Option<Payload>, StoreError> {
        self.reader.run(move |r| r.payload(delivery_id)).await
    }

    async fn payloads(
        &self,
        delivery_ids: Vec<i64>,
        max_bytes: u64,
    ) -> Result<Vec<(i64, Option<Payload>)>, StoreError> {
        self.reader
            .run(move |r| r.payloads(&delivery_ids, max_bytes))
            .await
    }

    /// Any hook: GitHub sends one GUID to every hook subscribed to an
    /// event.
    async fn journaled(&self, guids: Vec<String>) -> Result<HashSet<String>, StoreError> {
        self.read(move |c| {
            let mut st = c.prepare_cached("SELECT 1 FROM deliveries WHERE guid = ?1 LIMIT 1")?;
            let mut out = HashSet::new();
            for g in guids {
                if st.exists([&g])? {
                    out.insert(g);
                }
            }
            Ok(out)
        })
        .await
    }
}
