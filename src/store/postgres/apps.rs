//! [`AppStore`] on PostgreSQL: not there yet; every call answers [`StoreError::Unsupported`].

use async_trait::async_trait;

use super::PostgresBackend;
use crate::store::StoreError;
use crate::store::apps::{
    AppChanges, AppRow, AppStore, AttemptRow, BindCode, BindingRow, DeliveryFilter,
    DeliveryOutcome, DeliveryRow, NewApp, NewBinding, NewDelivery,
};

const UNSUPPORTED: StoreError = StoreError::Unsupported("the platform's tables on PostgreSQL");

#[async_trait]
impl AppStore for PostgresBackend {
    async fn app_insert(&self, _: &NewApp<'_>) -> Result<i64, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn app(&self, _: i64) -> Result<Option<AppRow>, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn app_by_name(&self, _: &str) -> Result<Option<AppRow>, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn apps(&self) -> Result<Vec<AppRow>, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn app_update(&self, _: i64, _: &AppChanges) -> Result<bool, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn app_revoke(&self, _: i64, _: i64) -> Result<bool, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn bind_code_insert(&self, _: &BindCode) -> Result<(), StoreError> {
        Err(UNSUPPORTED)
    }
    async fn bind_code(&self, _: &str) -> Result<Option<BindCode>, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn bind_code_set_ticket(&self, _: &str, _: &str, _: &str) -> Result<(), StoreError> {
        Err(UNSUPPORTED)
    }
    async fn bind_code_use(&self, _: &str, _: &str, _: &str, _: i64) -> Result<bool, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn bind_codes_purge(&self, _: i64) -> Result<u64, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn binding_upsert(
        &self,
        _: &NewBinding<'_>,
    ) -> Result<(BindingRow, Option<String>), StoreError> {
        Err(UNSUPPORTED)
    }
    async fn binding(&self, _: i64, _: &str) -> Result<Option<BindingRow>, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn binding_by_seq(&self, _: i64) -> Result<Option<BindingRow>, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn bindings_of_follower(&self, _: i64, _: &str) -> Result<Vec<BindingRow>, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn bindings_of_openid(&self, _: &str) -> Result<Vec<BindingRow>, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn bindings_of_uids(&self, _: i64, _: &[String]) -> Result<Vec<BindingRow>, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn bindings_page(
        &self,
        _: i64,
        _: Option<&str>,
        _: Option<bool>,
        _: u32,
        _: u32,
    ) -> Result<Vec<BindingRow>, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn bindings_count(
        &self,
        _: i64,
        _: Option<&str>,
        _: Option<bool>,
    ) -> Result<u64, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn binding_delete(&self, _: i64, _: i64) -> Result<bool, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn binding_block(&self, _: i64, _: i64, _: bool, _: i64) -> Result<bool, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn bindings_mark(&self, _: &str, _: &str, _: i64) -> Result<u64, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn topic_set_app(&self, _: &str, _: Option<i64>) -> Result<bool, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn topic_by_num(&self, _: i64) -> Result<Option<String>, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn webhook_insert(&self, _: &[NewDelivery<'_>]) -> Result<Vec<i64>, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn webhook_insert_claimed(
        &self,
        _: &NewDelivery<'_>,
        _: &str,
        _: i64,
    ) -> Result<(i64, bool), StoreError> {
        Err(UNSUPPORTED)
    }
    async fn webhook_claim(
        &self,
        _: &str,
        _: i64,
        _: i64,
        _: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn webhook_settle(
        &self,
        _: &str,
        _: &[DeliveryOutcome],
        _: i64,
    ) -> Result<(), StoreError> {
        Err(UNSUPPORTED)
    }
    async fn webhook_delivery(&self, _: &str) -> Result<Option<DeliveryRow>, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn webhook_deliveries(&self, _: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn webhook_attempts(&self, _: &[i64]) -> Result<Vec<AttemptRow>, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn webhook_next_due(&self) -> Result<Option<i64>, StoreError> {
        Err(UNSUPPORTED)
    }
    async fn webhook_purge(&self, _: i64) -> Result<u64, StoreError> {
        Err(UNSUPPORTED)
    }
}
