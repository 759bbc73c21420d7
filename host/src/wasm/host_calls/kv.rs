//! `wasmgate:gateway/kv`: the calling service's durable key-value state.
//! The store checks the limits and always names the service, so a handler
//! can only reach its own keys.

use std::time::Duration;

use super::bindings::wasmgate::gateway::kv::{Entry, EntryPage, Host, KeyPage};
use super::{to_wit_error, wit};
use crate::wasm::store::EventState;

impl Host for EventState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, wit::GatewayError> {
        self.state
            .kv
            .get(&self.service, &key)
            .await
            .map_err(to_wit_error)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), wit::GatewayError> {
        let ttl = ttl_ms.map(Duration::from_millis);
        self.state
            .kv
            .set(&self.service, self.state.kv_quota, key, value, ttl)
            .await
            .map_err(to_wit_error)
    }

    async fn delete(&mut self, key: String) -> Result<bool, wit::GatewayError> {
        self.state
            .kv
            .delete(&self.service, key)
            .await
            .map_err(to_wit_error)
    }

    async fn exists(&mut self, key: String) -> Result<bool, wit::GatewayError> {
        self.state
            .kv
            .exists(&self.service, &key)
            .await
            .map_err(to_wit_error)
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        cursor: Option<String>,
    ) -> Result<KeyPage, wit::GatewayError> {
        let page = self
            .state
            .kv
            .list_keys(&self.service, &prefix, cursor.as_deref())
            .await
            .map_err(to_wit_error)?;
        Ok(KeyPage {
            keys: page.keys,
            cursor: page.cursor,
        })
    }

    async fn list_entries(
        &mut self,
        prefix: String,
        cursor: Option<String>,
    ) -> Result<EntryPage, wit::GatewayError> {
        let page = self
            .state
            .kv
            .list_entries(&self.service, &prefix, cursor.as_deref())
            .await
            .map_err(to_wit_error)?;
        Ok(EntryPage {
            entries: page
                .entries
                .into_iter()
                .map(|(key, value)| Entry { key, value })
                .collect(),
            cursor: page.cursor,
        })
    }

    async fn get_many(
        &mut self,
        keys: Vec<String>,
    ) -> Result<Vec<Option<Vec<u8>>>, wit::GatewayError> {
        self.state
            .kv
            .get_many(&self.service, &keys)
            .await
            .map_err(to_wit_error)
    }

    async fn increment(&mut self, key: String, delta: i64) -> Result<i64, wit::GatewayError> {
        self.state
            .kv
            .increment(&self.service, self.state.kv_quota, key, delta)
            .await
            .map_err(to_wit_error)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool, wit::GatewayError> {
        self.state
            .kv
            .compare_and_swap(&self.service, self.state.kv_quota, key, expected, value)
            .await
            .map_err(to_wit_error)
    }
}
