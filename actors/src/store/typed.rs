//! Typed access to the JSON store for any Kubernetes-shaped resource (`Sandbox`, templates).

use async_trait::async_trait;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{EventRecord, Result, Store, StoreError};

/// What a typed store object must be: a Kubernetes resource with a static kind.
pub trait StoredResource:
    Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Send + Sync + 'static
{
}
impl<K> StoredResource for K where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Send + Sync + 'static
{
}

fn kind<K: StoredResource>() -> String {
    K::kind(&()).into_owned()
}

/// Typed helpers over any [`Store`].
#[async_trait]
pub trait TypedStore {
    /// Reads one object.
    async fn get_obj<K: StoredResource>(&self, namespace: &str, name: &str) -> Result<Option<K>>;
    /// Lists objects in a namespace, or everywhere.
    async fn list_obj<K: StoredResource>(&self, namespace: Option<&str>) -> Result<Vec<K>>;
    /// Creates an object.
    async fn create_obj<K: StoredResource>(&self, object: &K) -> Result<K>;
    /// Replaces an object (optimistic on its resourceVersion).
    async fn replace_obj<K: StoredResource>(&self, object: &K) -> Result<K>;
    /// [`TypedStore::create_obj`] with the events describing it, in one transaction.
    async fn create_obj_with_events<K: StoredResource>(
        &self,
        object: &K,
        events: Vec<EventRecord>,
    ) -> Result<K>;
    /// [`TypedStore::replace_obj`] with the events describing it, in one transaction.
    async fn replace_obj_with_events<K: StoredResource>(
        &self,
        object: &K,
        events: Vec<EventRecord>,
    ) -> Result<K>;
    /// Reads, mutates and writes back an object, retrying on conflicts. `mutate` returns false
    /// to skip the write. `Ok(None)` when the object does not exist.
    async fn update_obj<K, F>(&self, namespace: &str, name: &str, mutate: F) -> Result<Option<K>>
    where
        K: StoredResource,
        F: FnMut(&mut K) -> bool + Send;
}

#[async_trait]
impl<S: Store + ?Sized> TypedStore for S {
    async fn get_obj<K: StoredResource>(&self, namespace: &str, name: &str) -> Result<Option<K>> {
        let value = self.get(&kind::<K>(), namespace, name).await?;
        Ok(value.map(serde_json::from_value).transpose()?)
    }

    async fn list_obj<K: StoredResource>(&self, namespace: Option<&str>) -> Result<Vec<K>> {
        let values = self.list(&kind::<K>(), namespace).await?;
        values
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(StoreError::from))
            .collect()
    }

    async fn create_obj<K: StoredResource>(&self, object: &K) -> Result<K> {
        let value = self
            .create(&kind::<K>(), with_type_meta::<K>(object)?)
            .await?;
        Ok(serde_json::from_value(value)?)
    }

    async fn replace_obj<K: StoredResource>(&self, object: &K) -> Result<K> {
        let value = self
            .replace(&kind::<K>(), with_type_meta::<K>(object)?)
            .await?;
        Ok(serde_json::from_value(value)?)
    }

    async fn create_obj_with_events<K: StoredResource>(
        &self,
        object: &K,
        events: Vec<EventRecord>,
    ) -> Result<K> {
        let value = self
            .create_with_events(&kind::<K>(), with_type_meta::<K>(object)?, events)
            .await?;
        Ok(serde_json::from_value(value)?)
    }

    async fn replace_obj_with_events<K: StoredResource>(
        &self,
        object: &K,
        events: Vec<EventRecord>,
    ) -> Result<K> {
        let value = self
            .replace_with_events(&kind::<K>(), with_type_meta::<K>(object)?, events)
            .await?;
        Ok(serde_json::from_value(value)?)
    }

    async fn update_obj<K, F>(
        &self,
        namespace: &str,
        name: &str,
        mut mutate: F,
    ) -> Result<Option<K>>
    where
        K: StoredResource,
        F: FnMut(&mut K) -> bool + Send,
    {
        loop {
            let Some(mut object) = self.get_obj::<K>(namespace, name).await? else {
                return Ok(None);
            };
            if !mutate(&mut object) {
                return Ok(Some(object));
            }
            match self.replace_obj(&object).await {
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => return Ok(None),
                other => return other.map(Some),
            }
        }
    }
}

/// Serialises a resource with `apiVersion` and `kind` set, as the apiserver would store it.
fn with_type_meta<K: StoredResource>(object: &K) -> Result<serde_json::Value> {
    let mut value = serde_json::to_value(object)?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), K::api_version(&()).into_owned().into());
        map.insert("kind".into(), kind::<K>().into());
    }
    Ok(value)
}
