//! `gwctl clean` against a real Docker-compatible engine: podman's API service, which
//! tests/run.sh starts (component `podman`, `GWCTL_TEST_DOCKER_HOST`). Each test uses its own
//! random project name, so tests share the engine without seeing each other's volumes.
//!
//! Volumes "in use" are held by a container that is created, not started (no runtime needed):
//! its image is imported over the API from a one-file tar made here.

use std::collections::HashMap;
use std::os::unix::fs::symlink;
use std::process::{Output, Stdio};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use gwctl::ops::clean::engine::DockerEngine;
use gwctl::ops::clean::{self, Kept, PROJECT_LABEL};
use gwctl::ops::progress::{Event, Outcome, Recorder};

use crate::support::{TempDir, component};

const IMAGE: &str = "localhost/gwctl-test-holder:latest";

/// The engine's `DOCKER_HOST` (`unix://...`), or `None` to skip (see [`component`]).
fn docker_host() -> Option<String> {
    component("GWCTL_TEST_DOCKER_HOST", "podman")
}

async fn docker(host: &str) -> Docker {
    Docker::connect_with_socket(host, 60, bollard::API_DEFAULT_VERSION)
        .expect("connect to the podman socket")
        .negotiate_version()
        .await
        .expect("negotiate the API version")
}

fn project() -> String {
    format!("gwt{:08x}", rand::random::<u32>())
}

async fn create_volume(d: &Docker, name: &str, project: Option<&str>) {
    let labels = project
        .map(|p| HashMap::from([(PROJECT_LABEL.to_owned(), p.to_owned())]))
        .unwrap_or_default();
    d.create_volume(VolumeCreateRequest {
        name: Some(name.to_owned()),
        labels: Some(labels),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("create volume {name}: {e}"));
}

async fn volume_exists(d: &Docker, name: &str) -> bool {
    match d.inspect_volume(name).await {
        Ok(_) => true,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => false,
        Err(e) => panic!("inspect volume {name}: {e}"),
    }
}

async fn remove_volume(d: &Docker, name: &str) {
    let _ = d
        .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
        .await;
}

/// Import a tiny image (idempotent: importing again just retags).
async fn ensure_image(d: &Docker) {
    if d.inspect_image(IMAGE).await.is_ok() {
        return;
    }
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.0.join("rootfs/bin")).unwrap();
    std::fs::write(dir.0.join("rootfs/bin/holder"), "not a program\n").unwrap();
    let tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir.0.join("rootfs"))
        .args(["-cf", "-", "."])
        .output()
        .expect("run tar");
    assert!(tar.status.success(), "tar failed");
    let (repo, tag) = IMAGE.rsplit_once(':').unwrap();
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .build();
    let mut stream = d.create_image(
        Some(options),
        Some(bollard::body_full(tar.stdout.into())),
        None,
    );
    while let Some(item) = stream.next().await {
        item.expect("import the holder image");
    }
}

/// Create (not start) container `name` mounting volume `volume`.
async fn create_holder(d: &Docker, name: &str, volume: &str) {
    ensure_image(d).await;
    d.create_container(
        Some(CreateContainerOptionsBuilder::default().name(name).build()),
        ContainerCreateBody {
            image: Some(IMAGE.to_owned()),
            cmd: Some(vec!["/bin/holder".to_owned()]),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{volume}:/data")]),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("create container {name}: {e}"));
}

async fn remove_container(d: &Docker, name: &str) {
    let _ = d
        .remove_container(
            name,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await;
}

/// Run `gwctl clean ARGS` against the engine, with no terminal on stdin.
async fn gwctl_clean(host: &str, args: &[&str]) -> Output {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gwctl"))
        .arg("clean")
        .args(args)
        .env("DOCKER_HOST", host)
        .env_remove("COMPOSE_PROJECT_NAME")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("gwctl clean finishes within 60 s")
        .expect("run gwctl")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test]
async fn removes_only_the_projects_labelled_volumes() {
    let Some(host) = docker_host() else { return };
    let d = docker(&host).await;
    let (p, q) = (project(), project());
    let ours = [format!("{p}_db"), format!("{p}_o2")];
    let others = [
        (format!("{p}_unlabelled"), None),
        (format!("{q}_db"), Some(q.clone())),
        // A prefix of our project's name is another project.
        (format!("{p}x_db"), Some(format!("{p}x"))),
    ];
    for v in &ours {
        create_volume(&d, v, Some(&p)).await;
    }
    for (v, proj) in &others {
        create_volume(&d, v, proj.as_deref()).await;
    }

    let o = gwctl_clean(&host, &["--project", &p, "--yes"]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout: {out}\nstderr: {err}");
    // Listed first, then removed.
    for v in &ours {
        let listed = out
            .find(&format!("remove volume {v}"))
            .unwrap_or_else(|| panic!("{out}"));
        let removed = out
            .find(&format!("removed volume {v}"))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(listed < removed, "{out}");
        assert!(!volume_exists(&d, v).await, "{v} was removed");
    }
    for (v, _) in &others {
        assert!(!out.contains(v.as_str()), "{v} is not even listed: {out}");
        assert!(volume_exists(&d, v).await, "{v} was kept");
        remove_volume(&d, v).await;
    }

    // Nothing left: a second run has nothing to do.
    let o = gwctl_clean(&host, &["--project", &p, "--yes"]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(out.contains("nothing to remove"), "{out}");
}

#[tokio::test]
async fn a_volume_in_use_is_reported_with_its_container_and_kept() {
    let Some(host) = docker_host() else { return };
    let d = docker(&host).await;
    let p = project();
    let (used, free) = (format!("{p}_used"), format!("{p}_free"));
    let holder = format!("{p}-db-1");
    create_volume(&d, &used, Some(&p)).await;
    create_volume(&d, &free, Some(&p)).await;
    create_holder(&d, &holder, &used).await;

    let o = gwctl_clean(&host, &["--project", &p, "--yes"]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains(&format!(
            "keep volume {used} (in use by container {holder})"
        )),
        "{out}"
    );
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains(&format!(
            "volume {used} is in use by container {holder}: kept"
        )),
        "{err}"
    );
    assert!(volume_exists(&d, &used).await, "the volume in use is kept");
    assert!(
        !volume_exists(&d, &free).await,
        "the free volume is removed"
    );

    remove_container(&d, &holder).await;
    remove_volume(&d, &used).await;
}

#[tokio::test]
async fn dry_run_lists_and_removes_nothing() {
    let Some(host) = docker_host() else { return };
    let d = docker(&host).await;
    let p = project();
    let vol = format!("{p}_db");
    create_volume(&d, &vol, Some(&p)).await;
    let dir = TempDir::new();
    let data = dir.0.join("pgdata");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("PG_VERSION"), "15\n").unwrap();

    let o = gwctl_clean(
        &host,
        &[
            "--project",
            &p,
            "--path",
            data.to_str().unwrap(),
            "--dry-run",
        ],
    )
    .await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout: {out}\nstderr: {err}");
    assert!(out.contains(&format!("remove volume {vol}")), "{out}");
    assert!(
        out.contains(&format!("empty {}: 1 entry (PG_VERSION)", data.display())),
        "{out}"
    );
    assert!(out.contains("dry run: nothing was removed"), "{out}");
    assert!(volume_exists(&d, &vol).await);
    assert!(data.join("PG_VERSION").exists());
    remove_volume(&d, &vol).await;
}

#[tokio::test]
async fn without_a_terminal_it_needs_yes() {
    let Some(host) = docker_host() else { return };
    let d = docker(&host).await;
    let p = project();
    let vol = format!("{p}_db");
    create_volume(&d, &vol, Some(&p)).await;
    let dir = TempDir::new();
    dir.write("keep.txt", "x");

    let o = gwctl_clean(&host, &["--project", &p, "--path", dir.0.to_str().unwrap()]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains(&format!("remove volume {vol}")),
        "it lists first: {out}"
    );
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("pass --yes"), "{err}");
    assert!(volume_exists(&d, &vol).await, "nothing removed");
    assert!(dir.0.join("keep.txt").exists(), "nothing removed");
    remove_volume(&d, &vol).await;
}

#[tokio::test]
async fn bind_directories_are_emptied_without_following_symlinks() {
    let Some(host) = docker_host() else { return };
    let p = project();
    let dir = TempDir::new();
    let root = &dir.0;
    // Outside the given paths: must survive.
    let outside = root.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("precious"), "keep").unwrap();
    let outside_file = root.join("outside.txt");
    std::fs::write(&outside_file, "keep").unwrap();
    let sibling = root.join("data-sibling");
    std::fs::create_dir(&sibling).unwrap();
    std::fs::write(sibling.join("f"), "keep").unwrap();
    // The data directory: files, a nested tree, symlinks out (to a dir and a file), one nested.
    let data = root.join("data");
    std::fs::create_dir_all(data.join("base/1")).unwrap();
    std::fs::write(data.join("PG_VERSION"), "15").unwrap();
    std::fs::write(data.join("base/1/rel"), "rows").unwrap();
    std::fs::write(data.join(".hidden"), "h").unwrap();
    symlink(&outside, data.join("link-to-dir")).unwrap();
    symlink(&outside_file, data.join("link-to-file")).unwrap();
    symlink(&outside, data.join("base/link-inside")).unwrap();
    // A second --path given through a symlink to a directory: the directory itself is emptied.
    let real = root.join("o2-real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("wal"), "w").unwrap();
    let via = root.join("o2");
    symlink(&real, &via).unwrap();
    let missing = root.join("not-there");

    let o = gwctl_clean(
        &host,
        &[
            "--project",
            &p,
            "--path",
            data.to_str().unwrap(),
            "--path",
            via.to_str().unwrap(),
            "--path",
            missing.to_str().unwrap(),
            "--yes",
        ],
    )
    .await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains(&format!("emptied {} (5 entries removed)", data.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("{} does not exist", missing.display())),
        "{out}"
    );

    assert!(data.is_dir(), "the directory stays");
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0, "and is empty");
    assert!(
        via.is_symlink() && real.is_dir(),
        "the given symlink and its directory stay"
    );
    assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_to_string(outside.join("precious")).unwrap(),
        "keep"
    );
    assert_eq!(std::fs::read_to_string(&outside_file).unwrap(), "keep");
    assert_eq!(std::fs::read_to_string(sibling.join("f")).unwrap(), "keep");
    assert!(!missing.exists(), "a missing path is not created");
}

#[tokio::test]
async fn a_path_that_is_not_a_directory_fails_before_anything_is_removed() {
    let Some(host) = docker_host() else { return };
    let d = docker(&host).await;
    let p = project();
    let vol = format!("{p}_db");
    create_volume(&d, &vol, Some(&p)).await;
    let dir = TempDir::new();
    let file = dir.write("not-a-dir", "x");

    let o = gwctl_clean(
        &host,
        &["--project", &p, "--path", file.to_str().unwrap(), "--yes"],
    )
    .await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("not a directory"), "{err}");
    assert!(volume_exists(&d, &vol).await);
    assert!(file.exists());
    remove_volume(&d, &vol).await;
}

/// The library API through bollard: plan, then apply with progress events.
#[tokio::test]
async fn plan_and_apply_through_bollard_report_progress() {
    let Some(host) = docker_host() else { return };
    let d = docker(&host).await;
    let p = project();
    let (used, free) = (format!("{p}_used"), format!("{p}_free"));
    let holder = format!("{p}-o2-1");
    create_volume(&d, &used, Some(&p)).await;
    create_volume(&d, &free, Some(&p)).await;
    create_holder(&d, &holder, &used).await;

    let engine = DockerEngine::with_docker(docker(&host).await)
        .await
        .unwrap();
    let plan = clean::plan(&engine, &p, &[]).await.unwrap();
    let names: Vec<(&str, &[String])> = plan
        .volumes
        .iter()
        .map(|v| (v.name.as_str(), v.used_by.as_slice()))
        .collect();
    assert_eq!(
        names,
        [
            (free.as_str(), &[][..]),
            (used.as_str(), &[holder.clone()][..])
        ]
    );
    let rec = Recorder::new();
    let report = clean::apply(&engine, &plan, &rec).await;
    assert_eq!(report.removed_volumes, std::slice::from_ref(&free));
    assert_eq!(
        report.kept,
        [Kept::InUse {
            volume: used.clone(),
            containers: vec![holder.clone()]
        }]
    );
    let step = format!("removing volume {free}");
    assert_eq!(
        rec.events(),
        [
            Event::Started(step.clone()),
            Event::Finished(step, Outcome::Ok)
        ]
    );

    // The engine itself refuses to remove the volume in use (409): reported, not an error.
    let removal = gwctl::ops::clean::engine::Engine::remove_volume(&engine, &used)
        .await
        .unwrap();
    assert!(
        matches!(removal, gwctl::ops::clean::engine::Removal::InUse(_)),
        "{removal:?}"
    );
    remove_container(&d, &holder).await;
    remove_volume(&d, &used).await;
}

/// On a terminal: the question is asked (and "y" removes), and the removals are an indicatif
/// spinner left as `✓ step` lines; "n" or an empty answer removes nothing.
#[tokio::test]
async fn on_a_terminal_it_asks_and_shows_a_spinner() {
    use crate::support::tty::run_on_tty_typing;
    const PROMPT: &str = "Remove the above? [y/N] ";
    let Some(host) = docker_host() else { return };
    let d = docker(&host).await;
    let p = project();
    let vol = format!("{p}_db");
    create_volume(&d, &vol, Some(&p)).await;
    let dir = TempDir::new();
    dir.write("old.txt", "x");
    let path = dir.0.to_str().unwrap();
    let clean = || {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_gwctl"));
        c.args(["clean", "--project", &p, "--path", path])
            .env("DOCKER_HOST", &host)
            .env_remove("COMPOSE_PROJECT_NAME");
        c
    };

    for answer in ["n\n", "\n"] {
        let o = run_on_tty_typing(clean(), Some((PROMPT, answer)), Duration::from_secs(60)).await;
        assert_eq!(o.code, Some(1), "{}{}", o.stdout, o.terminal);
        let screen = o.screen_lines();
        assert_eq!(
            screen[screen.len() - 2..],
            [
                format!("{PROMPT}{}", answer.trim()).trim_end().to_owned(),
                "error: not confirmed: nothing was removed".to_owned()
            ],
            "{screen:?}"
        );
        assert!(
            volume_exists(&d, &vol).await,
            "{answer:?} removed the volume"
        );
        assert!(
            dir.0.join("old.txt").exists(),
            "{answer:?} emptied the directory"
        );
    }

    let o = run_on_tty_typing(clean(), Some((PROMPT, "y\n")), Duration::from_secs(60)).await;
    assert_eq!(o.code, Some(0), "{}{}", o.stdout, o.terminal);
    assert!(o.redrew(), "{:?}", o.terminal);
    let screen = o.screen_lines();
    let steps: Vec<&String> = screen.iter().filter(|l| l.starts_with("✓ ")).collect();
    assert_eq!(
        steps,
        vec![
            &format!("✓ removing volume {vol}"),
            &format!("✓ emptying {path}"),
        ],
        "{screen:?}"
    );
    let out: Vec<&str> = o.stdout.lines().collect();
    assert!(
        out.contains(&format!("removed volume {vol}").as_str()),
        "{out:?}"
    );
    assert!(
        out.contains(&format!("emptied {path} (1 entry removed)").as_str()),
        "{out:?}"
    );
    assert!(!volume_exists(&d, &vol).await);
    assert!(!dir.0.join("old.txt").exists());
}
