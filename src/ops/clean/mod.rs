//! `gwctl clean`: remove a compose project's labelled volumes (bollard) and empty bind directories.
//!
//! Two phases, so the binary can list everything and ask before anything goes:
//! [`plan`] reads the volumes labelled `com.docker.compose.project=NAME` (checking the label
//! again itself: a volume without it is never touched), which containers use them, and what each
//! `--path` directory holds; [`apply`] then removes the volumes no container uses and empties the
//! directories. A volume in use is reported with its containers and kept (the engine would refuse
//! anyway: 409). Emptying a directory removes its entries and keeps the directory; a symlink
//! inside is removed as a link, never followed, so nothing outside the given paths is touched.

pub mod engine;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use self::engine::{Engine, EngineError, Removal};
use super::progress::{Outcome, Reporter};

/// The label docker compose puts on the volumes (and containers, networks) of a project.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";

/// Why [`plan`] could not make a plan (nothing was removed).
#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    /// The project name is not one compose would use.
    #[error(
        "invalid project name {0:?}: compose project names are lower-case letters, digits, `_` and `-`, starting with a letter or digit"
    )]
    BadProject(String),
    /// A `--path` cannot be emptied.
    #[error("--path {}: {reason}", path.display())]
    BadPath {
        /// The path as given.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// A volume of the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedVolume {
    /// Its name.
    pub name: String,
    /// The containers that use it (it is kept when any does).
    pub used_by: Vec<String>,
}

/// A directory to empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDir {
    /// As given with `--path`.
    pub given: PathBuf,
    /// The directory itself (symlinks in `given` resolved); `None` when it does not exist.
    pub dir: Option<PathBuf>,
    /// The names of its entries, sorted.
    pub entries: Vec<String>,
}

/// What `gwctl clean` will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanPlan {
    /// The compose project.
    pub project: String,
    /// Its volumes, by name.
    pub volumes: Vec<PlannedVolume>,
    /// The directories, in the order given.
    pub dirs: Vec<PlannedDir>,
}

impl CleanPlan {
    /// The volumes that will be removed (no container uses them).
    pub fn removable_volumes(&self) -> impl Iterator<Item = &PlannedVolume> {
        self.volumes.iter().filter(|v| v.used_by.is_empty())
    }

    /// The volumes that will be kept because containers use them.
    pub fn volumes_in_use(&self) -> impl Iterator<Item = &PlannedVolume> {
        self.volumes.iter().filter(|v| !v.used_by.is_empty())
    }

    /// Whether applying it would remove nothing.
    pub fn removes_nothing(&self) -> bool {
        self.removable_volumes().next().is_none() && self.dirs.iter().all(|d| d.entries.is_empty())
    }
}

/// One thing [`apply`] did not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// A volume in use, with its containers.
    InUse {
        /// The volume.
        volume: String,
        /// The containers using it (or the engine's message when it only answered 409).
        containers: Vec<String>,
    },
    /// Removing a volume or a directory entry failed.
    Failed {
        /// The volume or path.
        what: String,
        /// Why.
        cause: String,
    },
}

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InUse { volume, containers } => write!(
                f,
                "volume {volume} is in use by container{} {}: kept",
                if containers.len() == 1 { "" } else { "s" },
                containers.join(", ")
            ),
            Self::Failed { what, cause } => write!(f, "{what}: {cause}"),
        }
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanReport {
    /// Volumes removed.
    pub removed_volumes: Vec<String>,
    /// Directories emptied, with the number of entries removed from each.
    pub emptied_dirs: Vec<(PathBuf, usize)>,
    /// What was left alone, and why.
    pub kept: Vec<Kept>,
}

impl CleanReport {
    /// Whether everything planned was removed (exit 0).
    pub fn is_complete(&self) -> bool {
        self.kept.is_empty()
    }
}

/// The project name docker compose derives from a directory (its base name, lower-cased, only
/// `[a-z0-9_-]` kept, leading `_`/`-` dropped); `None` when nothing is left.
pub fn default_project_name(dir: &Path) -> Option<String> {
    let base = dir.file_name()?.to_string_lossy().to_lowercase();
    let kept: String = base
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    let name = kept.trim_start_matches(['_', '-']);
    (!name.is_empty()).then(|| name.to_owned())
}

fn check_project(project: &str) -> Result<(), CleanError> {
    let mut chars = project.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(CleanError::BadProject(project.to_owned()))
    }
}

/// List what cleaning `project` and `paths` would remove. Changes nothing.
pub async fn plan(
    engine: &dyn Engine,
    project: &str,
    paths: &[PathBuf],
) -> Result<CleanPlan, CleanError> {
    check_project(project)?;
    // Paths first: a bad one fails before the engine is even asked.
    let dirs = paths
        .iter()
        .map(|p| plan_dir(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut volumes: Vec<PlannedVolume> = engine
        .volumes_labelled(PROJECT_LABEL, project)
        .await?
        .into_iter()
        // The engine filtered; never trust a filter with deletions.
        .filter(|v| v.labels.get(PROJECT_LABEL).map(String::as_str) == Some(project))
        .map(|v| PlannedVolume {
            name: v.name,
            used_by: Vec::new(),
        })
        .collect();
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    volumes.dedup_by(|a, b| a.name == b.name);
    if !volumes.is_empty() {
        for container in engine.containers().await? {
            for v in &mut volumes {
                if container.volumes.contains(&v.name) && !v.used_by.contains(&container.name) {
                    v.used_by.push(container.name.clone());
                }
            }
        }
        for v in &mut volumes {
            v.used_by.sort();
        }
    }
    Ok(CleanPlan {
        project: project.to_owned(),
        volumes,
        dirs,
    })
}

fn plan_dir(given: &Path) -> Result<PlannedDir, CleanError> {
    let bad = |reason: String| CleanError::BadPath {
        path: given.to_owned(),
        reason,
    };
    if given.as_os_str().is_empty() {
        return Err(bad("empty path".to_owned()));
    }
    let dir = match std::fs::canonicalize(given) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(PlannedDir {
                given: given.to_owned(),
                dir: None,
                entries: Vec::new(),
            });
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    if !dir.is_dir() {
        return Err(bad("not a directory".to_owned()));
    }
    if dir.parent().is_none() {
        return Err(bad("refusing to empty the root directory".to_owned()));
    }
    let mut entries = std::fs::read_dir(&dir)
        .and_then(|rd| {
            rd.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<io::Result<Vec<_>>>()
        })
        .map_err(|e| bad(format!("reading it: {e}")))?;
    entries.sort();
    Ok(PlannedDir {
        given: given.to_owned(),
        dir: Some(dir),
        entries,
    })
}

/// Carry out `plan`: remove the volumes no container uses, empty the directories. Keeps going
/// after a failure, so the report says everything that was and was not done.
pub async fn apply(engine: &dyn Engine, plan: &CleanPlan, reporter: &dyn Reporter) -> CleanReport {
    let mut report = CleanReport::default();
    for v in &plan.volumes {
        if !v.used_by.is_empty() {
            report.kept.push(Kept::InUse {
                volume: v.name.clone(),
                containers: v.used_by.clone(),
            });
            continue;
        }
        let step = format!("removing volume {}", v.name);
        reporter.started(&step);
        match engine.remove_volume(&v.name).await {
            Ok(Removal::Removed) => {
                reporter.finished(&step, Outcome::Ok);
                report.removed_volumes.push(v.name.clone());
            }
            Ok(Removal::Missing) => {
                // Gone since the listing: what was wanted.
                reporter.finished(&step, Outcome::Skipped);
            }
            Ok(Removal::InUse(message)) => {
                // A container started using it after the listing.
                reporter.finished(&step, Outcome::Failed);
                let containers = engine
                    .containers()
                    .await
                    .ok()
                    .map(|cs| {
                        cs.into_iter()
                            .filter(|c| c.volumes.contains(&v.name))
                            .map(|c| c.name)
                            .collect::<Vec<_>>()
                    })
                    .filter(|cs| !cs.is_empty())
                    .unwrap_or_else(|| vec![message]);
                report.kept.push(Kept::InUse {
                    volume: v.name.clone(),
                    containers,
                });
            }
            Err(e) => {
                reporter.finished(&step, Outcome::Failed);
                report.kept.push(Kept::Failed {
                    what: format!("volume {}", v.name),
                    cause: e.cause,
                });
            }
        }
    }
    for d in &plan.dirs {
        let Some(dir) = &d.dir else { continue };
        let step = format!("emptying {}", dir.display());
        reporter.started(&step);
        let (removed, failures) = empty_dir(dir);
        reporter.finished(
            &step,
            if !failures.is_empty() {
                Outcome::Failed
            } else if removed == 0 {
                Outcome::Skipped
            } else {
                Outcome::Ok
            },
        );
        report.emptied_dirs.push((dir.clone(), removed));
        report.kept.extend(failures);
    }
    report
}

/// Remove every entry of `dir`, keeping `dir`. Symlinks are removed, not followed (neither here
/// nor inside subdirectories: `remove_dir_all` does not follow them). Returns the number of
/// entries removed and the failures.
fn empty_dir(dir: &Path) -> (usize, Vec<Kept>) {
    let mut removed = 0;
    let mut failures = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            failures.push(Kept::Failed {
                what: dir.display().to_string(),
                cause: e.to_string(),
            });
            return (0, failures);
        }
    };
    for entry in entries {
        let result = entry.and_then(|entry| {
            let path = entry.path();
            // `file_type` of a directory entry does not follow a symlink.
            let is_dir = entry.file_type()?.is_dir();
            let outcome = if is_dir {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            outcome.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
        });
        match result {
            Ok(()) => removed += 1,
            Err(e) => failures.push(Kept::Failed {
                what: format!("emptying {}", dir.display()),
                cause: e.to_string(),
            }),
        }
    }
    (removed, failures)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::engine::{ContainerInfo, VolumeInfo};
    use super::*;
    use crate::ops::progress::Recorder;

    /// An engine with a fixed list of volumes and containers; its label filter is deliberately
    /// sloppy (it returns every volume), to show that `plan` checks labels itself.
    struct Fake {
        volumes: Vec<VolumeInfo>,
        containers: Vec<ContainerInfo>,
        removed: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Engine for Fake {
        async fn volumes_labelled(
            &self,
            _label: &str,
            _value: &str,
        ) -> Result<Vec<VolumeInfo>, EngineError> {
            Ok(self.volumes.clone())
        }
        async fn containers(&self) -> Result<Vec<ContainerInfo>, EngineError> {
            Ok(self.containers.clone())
        }
        async fn remove_volume(&self, name: &str) -> Result<Removal, EngineError> {
            if self
                .containers
                .iter()
                .any(|c| c.volumes.iter().any(|v| v == name))
            {
                return Ok(Removal::InUse("volume is being used".into()));
            }
            self.removed.lock().unwrap().push(name.to_owned());
            Ok(Removal::Removed)
        }
    }

    fn vol(name: &str, project: Option<&str>) -> VolumeInfo {
        VolumeInfo {
            name: name.to_owned(),
            labels: project
                .map(|p| HashMap::from([(PROJECT_LABEL.to_owned(), p.to_owned())]))
                .unwrap_or_default(),
        }
    }

    #[tokio::test]
    async fn plans_only_labelled_volumes_and_keeps_those_in_use() {
        let fake = Fake {
            volumes: vec![
                vol("p_data", Some("p")),
                vol("p_used", Some("p")),
                vol("other", Some("q")),
                vol("plain", None),
            ],
            containers: vec![ContainerInfo {
                name: "p-db-1".into(),
                volumes: vec!["p_used".into()],
            }],
            removed: Mutex::default(),
        };
        let plan = plan(&fake, "p", &[]).await.unwrap();
        assert_eq!(
            plan.volumes,
            [
                PlannedVolume {
                    name: "p_data".into(),
                    used_by: vec![]
                },
                PlannedVolume {
                    name: "p_used".into(),
                    used_by: vec!["p-db-1".into()]
                },
            ]
        );
        let rec = Recorder::new();
        let report = apply(&fake, &plan, &rec).await;
        assert_eq!(report.removed_volumes, ["p_data"]);
        assert_eq!(*fake.removed.lock().unwrap(), ["p_data"]);
        assert_eq!(
            report.kept,
            [Kept::InUse {
                volume: "p_used".into(),
                containers: vec!["p-db-1".into()]
            }]
        );
        assert!(!report.is_complete());
    }

    #[test]
    fn project_names_like_compose() {
        assert_eq!(
            default_project_name(Path::new("/src/My Stack.v2")).as_deref(),
            Some("mystackv2")
        );
        assert_eq!(
            default_project_name(Path::new("/x/__gw")).as_deref(),
            Some("gw")
        );
        assert_eq!(default_project_name(Path::new("/")), None);
        assert!(check_project("gw_1-a").is_ok());
        assert!(check_project("Gw").is_err());
        assert!(check_project("-gw").is_err());
        assert!(check_project("").is_err());
    }
}
