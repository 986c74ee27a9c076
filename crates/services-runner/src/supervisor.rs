//! Starts one process per service instance, restarts an instance that dies (as an orchestrator
//! would), and stops them all with SIGTERM — then SIGKILL for any that outlive the budget.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::topology::Service;

/// One running copy of a service.
#[derive(Debug)]
pub struct Instance {
    /// Which service.
    pub service: &'static Service,
    /// 1-based copy number.
    pub copy: usize,
    /// Where its HTTP server listens.
    pub addr: SocketAddr,
    /// Its database URL.
    pub database_url: String,
    pid: AtomicU32,
    restarts: AtomicU32,
}

impl Instance {
    /// `stores#1`.
    pub fn label(&self) -> String {
        format!("{}#{}", self.service.name, self.copy)
    }

    /// The OS process id of the current process (0 while it is restarting).
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::SeqCst)
    }

    /// How often it was restarted after dying.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::SeqCst)
    }
}

/// What every child gets besides its own address and database.
#[derive(Debug, Clone)]
pub struct ChildEnv {
    /// Directory holding the service binaries.
    pub bin_dir: PathBuf,
    /// Extra environment (NATS_URL, NATS_PREFIX, LOG_LEVEL, ...).
    pub vars: Vec<(String, String)>,
    /// Environment for one service's processes only, by service name, applied after `vars`: a
    /// value sets the variable, `None` removes it (its own NATS credentials, see
    /// [`crate::nats_credentials`]).
    pub service_vars: HashMap<&'static str, Vec<(String, Option<String>)>>,
}

/// Runs the instances until [`Supervisor::stop`].
pub struct Supervisor {
    instances: Vec<Arc<Instance>>,
    stopping: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("instances", &self.instances.len())
            .finish()
    }
}

impl Supervisor {
    /// Starts every instance (each on `addr`, with `database_url`) and keeps it running.
    pub fn start(plan: Vec<(&'static Service, usize, SocketAddr, String)>, env: ChildEnv) -> Self {
        let stopping = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut instances = Vec::with_capacity(plan.len());
        for (service, copy, addr, database_url) in plan {
            let instance = Arc::new(Instance {
                service,
                copy,
                addr,
                database_url,
                pid: AtomicU32::new(0),
                restarts: AtomicU32::new(0),
            });
            instances.push(instance.clone());
            tasks.spawn(keep_running(instance, env.clone(), stopping.clone()));
        }
        Supervisor {
            instances,
            stopping,
            tasks,
        }
    }

    /// The instances, in start order.
    pub fn instances(&self) -> &[Arc<Instance>] {
        &self.instances
    }

    /// Sends SIGTERM to every instance and waits for them to exit (SIGKILL after `budget`).
    pub async fn stop(self, budget: Duration) {
        self.stopping.cancel();
        for instance in &self.instances {
            signal(instance.pid(), "-TERM");
        }
        self.tasks.close();
        if tokio::time::timeout(budget, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("services did not stop within {budget:?}; killing them");
            for instance in &self.instances {
                signal(instance.pid(), "-KILL");
            }
            self.tasks.wait().await;
        }
    }
}

fn signal(pid: u32, sig: &str) {
    if pid != 0 {
        let _ = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status();
    }
}

async fn keep_running(instance: Arc<Instance>, env: ChildEnv, stopping: CancellationToken) {
    let label = instance.label();
    loop {
        let mut child = match spawn(&instance, &env) {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(instance = %label, error = %e, "cannot start; retrying in 1 s");
                tokio::select! {
                    _ = stopping.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        instance
            .pid
            .store(child.id().unwrap_or(0), Ordering::SeqCst);
        tracing::info!(instance = %label, addr = %instance.addr, pid = instance.pid(), "started");
        let status = child.wait().await;
        instance.pid.store(0, Ordering::SeqCst);
        if stopping.is_cancelled() {
            tracing::info!(instance = %label, ?status, "stopped");
            return;
        }
        instance.restarts.fetch_add(1, Ordering::SeqCst);
        tracing::warn!(instance = %label, ?status, "exited unexpectedly; restarting in 1 s");
        tokio::select! {
            _ = stopping.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

fn spawn(instance: &Instance, env: &ChildEnv) -> std::io::Result<Child> {
    let binary = env.bin_dir.join(instance.service.binary);
    let mut command = Command::new(&binary);
    command.envs(env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for (key, value) in env
        .service_vars
        .get(instance.service.name)
        .into_iter()
        .flatten()
    {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command
        .env("HTTP_ADDR", instance.addr.to_string())
        .env("DATABASE_URL", &instance.database_url)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command.spawn().map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "{}: {e} (build it with `cargo build --bins`)",
                binary.display()
            ),
        )
    })
}
