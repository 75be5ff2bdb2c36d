//! Containers a run left behind (feature `docker`): dropping a container removes it and testcontainers'
//! watchdog removes it on SIGINT/SIGTERM/SIGQUIT, but a run killed outright (SIGKILL, a crash) does
//! neither. Each container carries its process's identity ([`OWNER_LABEL`]); each start removes the
//! provider's containers whose process on this machine is gone ([`sweep`]).

use std::collections::HashMap;

use super::docker::{LABEL_KEY, LABEL_VALUE};

/// This process's [`OWNER_LABEL`] value (empty where `/proc` cannot tell: such a container is never
/// swept).
pub fn owner_label() -> String {
    owner_of(std::process::id()).unwrap_or_default()
}

/// The label naming the process a container belongs to, `<boot id>/<pid namespace>/<pid>/<start time>`
/// ([`owner_of`]): a run killed with SIGKILL (no drop, no watchdog) leaves its container running, and
/// the next start on this machine removes the containers whose owner is gone.
pub const OWNER_LABEL: &str = "init-fn-local.owner";

/// `pid`'s identity on this machine: the kernel's boot id, the pid namespace (a process in another
/// container sees other pids), the pid and its start time in clock ticks (`/proc/PID/stat` field 22, so
/// a pid the kernel has since given to another process does not pass for the owner). `None` when `pid`
/// does not exist (or this is not Linux).
fn owner_of(pid: u32) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from after its last ')'.
    let start = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .nth(19)?;
    Some(format!(
        "{}/{}/{pid}/{start}",
        boot.trim(),
        namespace.display()
    ))
}

/// An [`owner_of`] value's machine part (`<boot id>/<pid namespace>`) and pid.
fn machine_and_pid(owner: &str) -> Option<(&str, u32)> {
    let (rest, _start) = owner.rsplit_once('/')?;
    let (machine, pid) = rest.rsplit_once('/')?;
    Some((machine, pid.parse().ok()?))
}

/// Removes this provider's containers that a process of this machine (same boot, same pid namespace)
/// started and that outlived it: killed without its drop or the watchdog (SIGKILL, a crash). Containers
/// of live processes and of other machines are left alone. Best effort, quiet unless it removes one.
pub async fn sweep(docker: &testcontainers_modules::testcontainers::bollard::Docker) {
    use testcontainers_modules::testcontainers::bollard::query_parameters::{
        ListContainersOptions, RemoveContainerOptions,
    };
    let Some(ours) = owner_of(std::process::id()) else {
        return;
    };
    let Some((machine, _)) = machine_and_pid(&ours) else {
        return;
    };
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{LABEL_KEY}={LABEL_VALUE}"),
            OWNER_LABEL.to_string(),
        ],
    )]);
    let options = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let Ok(containers) = docker.list_containers(Some(options)).await else {
        return;
    };
    for summary in containers {
        let (Some(id), Some(owner)) = (
            summary.id,
            summary.labels.and_then(|mut l| l.remove(OWNER_LABEL)),
        ) else {
            continue;
        };
        let Some((owner_machine, pid)) = machine_and_pid(&owner) else {
            continue;
        };
        if owner_machine != machine || owner_of(pid).as_deref() == Some(owner.as_str()) {
            continue; // another machine's, or its process lives
        }
        let remove = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        if docker.remove_container(&id, Some(remove)).await.is_ok() {
            eprintln!(
                "postgres: removed container {} left by a run that ended without removing it (pid {pid})",
                id.get(..12).unwrap_or(&id)
            );
        }
    }
}
