//! The few Docker Engine calls `gwctl clean` needs, behind the [`Engine`] trait so the planning
//! and removal logic can be tested with a fake, and [`DockerEngine`], the real one over bollard.

use std::collections::HashMap;

use async_trait::async_trait;
use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, ListVolumesOptionsBuilder};

/// A volume as the engine lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
}

/// A container (running or not) and the named volumes it mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Its name, without Docker's leading `/` (its short id when it has none).
    pub name: String,
    /// The names of the volumes it mounts.
    pub volumes: Vec<String>,
}

/// How a volume removal ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// The volume is gone.
    Removed,
    /// The engine refused: a container uses it (409). Holds the engine's message.
    InUse(String),
    /// It was already gone (404).
    Missing,
}

/// An engine call failed.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {cause}")]
pub struct EngineError {
    /// What was being done, e.g. `listing volumes`.
    pub action: String,
    /// The engine's or the transport's message.
    pub cause: String,
}

/// The Docker Engine API as `gwctl clean` uses it.
#[async_trait]
pub trait Engine: Send + Sync {
    /// The volumes whose label `label` has the value `value` (the engine filters; callers check
    /// again).
    async fn volumes_labelled(
        &self,
        label: &str,
        value: &str,
    ) -> Result<Vec<VolumeInfo>, EngineError>;
    /// Every container, stopped ones included, with the volumes it mounts.
    async fn containers(&self) -> Result<Vec<ContainerInfo>, EngineError>;
    /// Remove one volume (without force: an engine never removes a volume in use anyway).
    async fn remove_volume(&self, name: &str) -> Result<Removal, EngineError>;
}

/// The engine behind `DOCKER_HOST` (default the local socket), through bollard with the API
/// version negotiated (an older engine, e.g. Docker 20.10 at API 1.41, refuses bollard's newer
/// default).
pub struct DockerEngine {
    docker: Docker,
}

impl DockerEngine {
    /// Connect as the Docker CLI would (`DOCKER_HOST`, else the local socket) and negotiate the
    /// API version.
    pub async fn connect() -> Result<Self, EngineError> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "the local socket".to_owned());
        let action = format!("connecting to the Docker engine at {host}");
        let docker = Docker::connect_with_defaults().map_err(|e| EngineError {
            action: action.clone(),
            cause: e.to_string(),
        })?;
        Self::negotiated(docker, &action).await
    }

    /// Use an already configured bollard client (e.g. one on a given socket), negotiating the
    /// API version.
    pub async fn with_docker(docker: Docker) -> Result<Self, EngineError> {
        Self::negotiated(docker, "negotiating the Docker API version").await
    }

    async fn negotiated(docker: Docker, action: &str) -> Result<Self, EngineError> {
        let docker = docker.negotiate_version().await.map_err(|e| EngineError {
            action: action.to_owned(),
            cause: e.to_string(),
        })?;
        Ok(Self { docker })
    }

    /// The API version in use after negotiation.
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }
}

#[async_trait]
impl Engine for DockerEngine {
    async fn volumes_labelled(
        &self,
        label: &str,
        value: &str,
    ) -> Result<Vec<VolumeInfo>, EngineError> {
        let filter = format!("{label}={value}");
        let filters = HashMap::from([("label", vec![filter.as_str()])]);
        let options = ListVolumesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(|e| EngineError {
                action: format!("listing the volumes labelled {filter}"),
                cause: e.to_string(),
            })?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| VolumeInfo {
                name: v.name,
                labels: v.labels,
            })
            .collect())
    }

    async fn containers(&self) -> Result<Vec<ContainerInfo>, EngineError> {
        let options = ListContainersOptionsBuilder::default().all(true).build();
        let list = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| EngineError {
                action: "listing containers".to_owned(),
                cause: e.to_string(),
            })?;
        Ok(list
            .into_iter()
            .map(|c| {
                let name = c
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .filter(|n| !n.is_empty())
                    .or_else(|| c.id.as_ref().map(|id| id.chars().take(12).collect()))
                    .unwrap_or_else(|| "(unnamed)".to_owned());
                let volumes = c
                    .mounts
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|m| m.name)
                    .filter(|n| !n.is_empty())
                    .collect();
                ContainerInfo { name, volumes }
            })
            .collect())
    }

    async fn remove_volume(&self, name: &str) -> Result<Removal, EngineError> {
        match self
            .docker
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
        {
            Ok(()) => Ok(Removal::Removed),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            }) => Ok(Removal::InUse(message)),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(Removal::Missing),
            Err(e) => Err(EngineError {
                action: format!("removing volume {name}"),
                cause: e.to_string(),
            }),
        }
    }
}
