//! `gwctl setup kong`: converge a Kong 3.x (or `gwctl serve`) Admin API to a declarative file.
//!
//! The run, in order (CONTRACT.md "gwctl setup kong"):
//!
//! 1. [`file`]: read the file (Kong's `_format_version: "3.0"` format, YAML or JSON, decK's
//!    `_info`/`_konnect`/`_workspace` ignored), replace decK's `${{ env "NAME" }}` placeholders,
//!    and flatten the nested entities into the desired state, keeping only the fields the file
//!    sets. File problems are reported before anything is contacted.
//! 2. [`client`]: wait for the Admin API (`GET /`, jittered backoff until `--wait` runs out),
//!    then [`kong`] tells Kong from gwctl by the tagline and adapts the desired state (Kong gets
//!    a `post-function` for gwctl's `jwt-claim-headers`; plugins it lacks are refused by name).
//! 3. [`state`]: read every collection, following `next` through all pages.
//! 4. [`plan`]: match entities by their natural keys (names, usernames, target addresses,
//!    credential keys, plugin name + scope) and compare only the fields the file sets ([`diff`]),
//!    giving creates, in-place updates, deletes (`--prune`) and unchanged entities.
//! 5. [`apply`]: send the plan in dependency order (upstreams, targets, services, routes,
//!    consumers, credentials, plugins; deletes in reverse) and stop at the first API error,
//!    reporting the entity, the request, the Admin API's message and what was applied before.
//!
//! Nothing here prints: the [`Report`] (or the error) goes back to `cmd/`, which prints one line
//! per change and the summary. No secret (JWT secrets, key-auth keys, password-like fields, the
//! admin token) appears in any [`Change`], error or progress step.

mod apply;
mod client;
mod diff;
mod file;
pub mod kong;
mod plan;
mod state;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::progress::{Outcome, Reporter};

pub use client::ApiError;
pub use kong::{Dialect, ServerInfo};

/// Input of [`run`]. Its `Debug` hides the admin token and the environment's values.
#[derive(Clone)]
pub struct SetupKongOptions {
    /// The declarative file.
    pub file: PathBuf,
    /// Base URL of the Admin API, e.g. `http://127.0.0.1:8001`.
    pub admin_url: String,
    /// Sent as `Kong-Admin-Token` when set.
    pub admin_token: Option<String>,
    /// Compute and return the plan, change nothing.
    pub dry_run: bool,
    /// Also delete what the file does not name.
    pub prune: bool,
    /// How long to wait for the Admin API to answer.
    pub wait: Duration,
    /// The variables `${{ env "NAME" }}` placeholders are replaced from (the process
    /// environment on the command line; tests pass their own).
    pub env: HashMap<String, String>,
}

impl fmt::Debug for SetupKongOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetupKongOptions")
            .field("file", &self.file)
            .field("admin_url", &self.admin_url)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "****"))
            .field("dry_run", &self.dry_run)
            .field("prune", &self.prune)
            .field("wait", &self.wait)
            .field("env", &format_args!("{} variables", self.env.len()))
            .finish()
    }
}

/// The entity kinds `setup kong` manages, in the order creates and updates are applied
/// (deletes go in the reverse order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// An upstream (load-balancer), matched by name.
    Upstream,
    /// A target of an upstream, matched by its `host:port` under the upstream.
    Target,
    /// A service, matched by name.
    Service,
    /// A route, matched by name.
    Route,
    /// A consumer, matched by username.
    Consumer,
    /// A jwt credential, matched by its key (the `iss` its tokens carry).
    JwtSecret,
    /// A key-auth credential, matched by its key.
    KeyauthCredential,
    /// An ACL group membership, matched by consumer and group.
    Acl,
    /// A plugin instance, matched by plugin name and scope.
    Plugin,
}

impl Kind {
    /// Every kind, in apply order.
    pub const ALL: [Self; 9] = [
        Self::Upstream,
        Self::Target,
        Self::Service,
        Self::Route,
        Self::Consumer,
        Self::JwtSecret,
        Self::KeyauthCredential,
        Self::Acl,
        Self::Plugin,
    ];

    /// The word used in output lines (`service`, `jwt_secret`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Target => "target",
            Self::Service => "service",
            Self::Route => "route",
            Self::Consumer => "consumer",
            Self::JwtSecret => "jwt_secret",
            Self::KeyauthCredential => "keyauth_credential",
            Self::Acl => "acl",
            Self::Plugin => "plugin",
        }
    }

    /// The schema gwctl has for this kind (used to know which fields are records, sets, maps).
    fn entity_kind(self) -> crate::model::schema::EntityKind {
        use crate::model::schema::EntityKind as E;
        match self {
            Self::Upstream => E::Upstreams,
            Self::Target => E::Targets,
            Self::Service => E::Services,
            Self::Route => E::Routes,
            Self::Consumer => E::Consumers,
            Self::JwtSecret => E::JwtSecrets,
            Self::KeyauthCredential => E::KeyauthCredentials,
            Self::Acl => E::Acls,
            Self::Plugin => E::Plugins,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a [`Change`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The entity is new.
    Create,
    /// The entity exists and some field the file sets differs: updated in place (same id).
    Update,
    /// The entity is not in the file (`--prune`).
    Delete,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        })
    }
}

/// One field of a [`Change`], rendered for people: values are compact JSON, secrets masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// Dotted path inside the entity (`paths`, `config.minute`, `service`).
    pub path: String,
    /// The server's value (`None` for a create).
    pub old: Option<String>,
    /// The file's value.
    pub new: String,
}

/// One planned or applied change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Create, update or delete.
    pub action: Action,
    /// The entity kind.
    pub kind: Kind,
    /// Which entity, e.g. `auth-route`, `auth-upstream/10.0.0.1:8080`, `jwt (service monitor)`.
    pub label: String,
    /// The fields a create sets or an update changes (empty for deletes).
    pub fields: Vec<FieldChange>,
}

impl Change {
    /// The top-level fields an update changes, in order, without repeats.
    pub fn changed_fields(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for f in &self.fields {
            let top = f.path.split('.').next().unwrap_or(&f.path);
            if !out.contains(&top) {
                out.push(top);
            }
        }
        out
    }

    /// `--dry-run`'s field-level lines under the change line: `  path: old -> new` for updates,
    /// `  path: value` for creates.
    pub fn diff_lines(&self) -> Vec<String> {
        self.fields
            .iter()
            .map(|f| match &f.old {
                Some(old) => format!("  {}: {old} -> {}", f.path, f.new),
                None => format!("  {}: {}", f.path, f.new),
            })
            .collect()
    }
}

impl fmt::Display for Change {
    /// `create service auth-service`, `update route auth-route (paths, strip_path)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.action, self.kind, self.label)?;
        if self.action == Action::Update {
            write!(f, " ({})", self.changed_fields().join(", "))?;
        }
        Ok(())
    }
}

/// The counts of the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Entities created.
    pub created: usize,
    /// Entities updated in place.
    pub updated: usize,
    /// Entities deleted.
    pub deleted: usize,
    /// Entities of the file that already matched.
    pub unchanged: usize,
}

impl Counts {
    fn of(changes: &[Change], unchanged: usize) -> Self {
        let n = |a| changes.iter().filter(|c| c.action == a).count();
        Self {
            created: n(Action::Create),
            updated: n(Action::Update),
            deleted: n(Action::Delete),
            unchanged,
        }
    }
}

impl fmt::Display for Counts {
    /// CONTRACT.md's summary line: `N created, N updated, N deleted, N unchanged`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} created, {} updated, {} deleted, {} unchanged",
            self.created, self.updated, self.deleted, self.unchanged
        )
    }
}

/// What [`run`] did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The Admin API it talked to.
    pub server: ServerInfo,
    /// Whether nothing was changed (`--dry-run`).
    pub dry_run: bool,
    /// The changes, in the order they were (or would be) applied.
    pub changes: Vec<Change>,
    /// Entities of the file that already matched.
    pub unchanged: usize,
    /// Entities on the server the file does not name, left alone because `prune` was off.
    pub not_in_file: usize,
}

impl Report {
    /// The summary counts.
    pub fn counts(&self) -> Counts {
        Counts::of(&self.changes, self.unchanged)
    }

    /// The summary line.
    pub fn summary(&self) -> String {
        self.counts().to_string()
    }
}

/// Why [`run`] failed. Messages never contain a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SetupKongError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a declarative configuration `setup kong` can apply.
    #[error("{path}: {}", problems.join("; "))]
    InvalidFile {
        /// The file.
        path: String,
        /// Each problem, with its place in the file (`services[0].routes[1]: ...`).
        problems: Vec<String>,
    },
    /// The admin URL is not an http(s) URL.
    #[error("invalid admin URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The Admin API did not answer before the deadline.
    #[error("the Admin API at {url} did not answer within {waited_secs} s: {cause}")]
    Unreachable {
        /// The admin URL.
        url: String,
        /// `--wait`.
        waited_secs: u64,
        /// The last attempt's error.
        cause: String,
    },
    /// The Admin API answered `GET /` in a way waiting will not fix (401, 404, not JSON...).
    #[error("the Admin API at {url} refused GET /: {cause}")]
    Refused {
        /// The admin URL.
        url: String,
        /// What it answered.
        cause: String,
    },
    /// The target cannot run something the file asks for (Kong and gwctl's own plugins, a
    /// plugin the server does not have, an unsupported Kong version).
    #[error("{0}")]
    Unsupported(String),
    /// Reading the current configuration failed.
    #[error("reading the current configuration failed: {0}")]
    ReadState(ApiError),
    /// A change was refused by the Admin API; the run stopped there.
    #[error(
        "{change} failed: {error}; applied before the error: {}",
        Counts::of(applied, 0).applied()
    )]
    Apply {
        /// The change that failed.
        change: Box<Change>,
        /// The request and the Admin API's answer.
        error: ApiError,
        /// The changes applied before it, in order.
        applied: Vec<Change>,
    },
}

impl Counts {
    /// `N created, N updated, N deleted` (what a failed run had applied).
    fn applied(&self) -> String {
        format!(
            "{} created, {} updated, {} deleted",
            self.created, self.updated, self.deleted
        )
    }
}

/// Converge the Admin API at `options.admin_url` to `options.file`: validate the file, wait for
/// the Admin API, read its state, plan, and apply the plan (or only return it with `dry_run`).
pub async fn run(
    options: &SetupKongOptions,
    reporter: &dyn Reporter,
) -> Result<Report, SetupKongError> {
    let mut desired = file::load(&options.file, &options.env)?;
    let client = client::AdminClient::new(&options.admin_url, options.admin_token.as_deref())?;
    let root = client.wait_ready(options.wait, reporter).await?;
    let server = ServerInfo::from_root(&root)?;
    kong::adapt(&mut desired, &server)?;

    let step = "reading the current configuration";
    reporter.started(step);
    let current = match state::read(&client).await {
        Ok(c) => {
            reporter.finished(step, Outcome::Ok);
            c
        }
        Err(e) => {
            reporter.finished(step, Outcome::Failed);
            return Err(SetupKongError::ReadState(e.redacted(&desired.secrets)));
        }
    };

    let plan = plan::plan(&desired, &current, options.prune);
    let unchanged = plan.unchanged;
    let not_in_file = plan.not_in_file;
    let changes = if options.dry_run {
        plan.changes(&desired.secrets)
    } else {
        apply::apply(&client, &plan, &desired.secrets, reporter).await?
    };
    Ok(Report {
        server,
        dry_run: options.dry_run,
        changes,
        unchanged,
        not_in_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_lines() {
        let c = Change {
            action: Action::Update,
            kind: Kind::Route,
            label: "auth-route".into(),
            fields: vec![
                FieldChange {
                    path: "paths".into(),
                    old: Some(r#"["/a"]"#.into()),
                    new: r#"["/b"]"#.into(),
                },
                FieldChange {
                    path: "headers.x".into(),
                    old: Some("null".into()),
                    new: r#"["1"]"#.into(),
                },
                FieldChange {
                    path: "headers.y".into(),
                    old: Some("null".into()),
                    new: r#"["2"]"#.into(),
                },
            ],
        };
        assert_eq!(c.to_string(), "update route auth-route (paths, headers)");
        assert_eq!(
            c.diff_lines(),
            vec![
                r#"  paths: ["/a"] -> ["/b"]"#,
                r#"  headers.x: null -> ["1"]"#,
                r#"  headers.y: null -> ["2"]"#
            ]
        );
        let d = Change {
            action: Action::Delete,
            kind: Kind::Plugin,
            label: "cors (global)".into(),
            fields: vec![],
        };
        assert_eq!(d.to_string(), "delete plugin cors (global)");
        assert_eq!(
            Counts::of(&[c, d], 3).to_string(),
            "0 created, 1 updated, 1 deleted, 3 unchanged"
        );
    }

    #[test]
    fn options_debug_hides_the_token() {
        let o = SetupKongOptions {
            file: "f.yml".into(),
            admin_url: "http://127.0.0.1:8001".into(),
            admin_token: Some("tok-123".into()),
            dry_run: false,
            prune: false,
            wait: Duration::from_secs(1),
            env: HashMap::from([("JWT_SECRET".to_owned(), "hunter2".to_owned())]),
        };
        let s = format!("{o:?}");
        assert!(!s.contains("tok-123") && !s.contains("hunter2"), "{s}");
    }
}
