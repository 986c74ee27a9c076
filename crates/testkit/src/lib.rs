//! Test harness shared by integration tests: the shared NATS and PostgreSQL the machine runs,
//! private `nats-server` / PostgreSQL processes a test owns (to stop and restart them), a fresh
//! database and subject prefix per test, and bounded polling instead of fixed sleeps.

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

/// URL of the shared NATS server (`NATS_URL`, default `nats://127.0.0.1:4222`).
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// URL of the shared PostgreSQL server (`DATABASE_URL`, default the `postgres` database).
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A subject prefix (and stream name) nobody else uses: `t_<label>_<random>`.
pub fn unique_prefix(label: &str) -> String {
    let short = uuid::Uuid::new_v4().simple().to_string();
    let label: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("t_{label}_{}", &short[..12])
}

/// A free TCP port on loopback (bound then released; a tiny race a retry absorbs).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects to the NATS server(s) in `url`, which may list several, comma separated (every
/// node of a cluster), as `NATS_URL` does; async-nats takes a single string as one address.
pub async fn connect_nats(url: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    let addrs: Vec<async_nats::ServerAddr> = url
        .split(',')
        .filter_map(|u| u.trim().parse().ok())
        .collect();
    async_nats::connect(addrs).await
}

/// Deletes JetStream stream `name` on the server at `url` (test clean-up; errors ignored: the
/// stream may never have been created).
pub async fn delete_stream(url: &str, name: &str) {
    if let Ok(client) = connect_nats(url).await {
        let _ = async_nats::jetstream::new(client).delete_stream(name).await;
    }
}

/// Drops every database whose name starts with `prefix` (clean-up after a test that let a
/// program create databases of its own, e.g. one per service).
pub async fn drop_databases_with_prefix(admin_url: &str, prefix: &str) {
    let Ok(mut conn) = PgConnection::connect(admin_url).await else {
        return;
    };
    let pattern = format!("{}%", prefix.replace('_', "\\_"));
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(pattern)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    for name in names {
        let _ = conn
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .await;
    }
}

/// A `nats-server` process owned by one test: JetStream on, file storage in a temp dir that
/// survives restarts, random port. Killed on drop.
pub struct NatsServer {
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
    /// Configuration file (`-c`) and the environment it reads (`$VAR` references), if any.
    config: Option<(PathBuf, Vec<(String, String)>)>,
}

impl NatsServer {
    /// Starts a private server and waits until it accepts connections.
    pub async fn start() -> Self {
        let store = tempfile::tempdir().expect("temp dir for JetStream");
        let mut server = NatsServer {
            port: free_port(),
            store,
            child: None,
            config: None,
        };
        server.spawn().await;
        server
    }

    /// Starts a private server that also reads the configuration `config` (e.g. an
    /// `authorization` block), with `env` in its environment for the `$VAR` references in it.
    /// Address, port, JetStream and storage are still set by flags, as for [`NatsServer::start`].
    pub async fn start_with_config(config: &str, env: &[(String, String)]) -> Self {
        let store = tempfile::tempdir().expect("temp dir for JetStream");
        let path = store.path().join("server.conf");
        std::fs::write(&path, config).expect("write the server configuration");
        let mut server = NatsServer {
            port: free_port(),
            store,
            child: None,
            config: Some((path, env.to_vec())),
        };
        server.spawn().await;
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the process (SIGKILL: nothing is flushed beyond what the server already synced).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process (SIGSTOP): connections stay open but nothing is answered or sent,
    /// as with a server stuck or a peer that silently lost state.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the server is running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Starts it again on the same port with the same storage.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let binary = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let mut command = Command::new(&binary);
        if let Some((path, env)) = &self.config {
            command.arg("-c").arg(path).envs(env.iter().cloned());
        }
        let child = command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} (install Debian's nats-server): {e}")
            });
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10)).await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three `nats-server` processes clustered with JetStream (file storage in temp dirs that
/// survive restarts, free client and route ports), for tests that kill one node of a cluster
/// holding replicated streams. Every node is killed on drop.
pub struct NatsCluster {
    nodes: Vec<ClusterNode>,
}

struct ClusterNode {
    name: String,
    port: u16,
    route_port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsCluster {
    /// Starts three nodes and waits until JetStream answers through them (a meta leader is
    /// elected).
    pub async fn start() -> Self {
        let cluster = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let nodes = (1..=3)
            .map(|i| ClusterNode {
                name: format!("n{i}_{cluster}"),
                port: free_port(),
                route_port: free_port(),
                store: tempfile::tempdir().expect("temp dir for JetStream"),
                child: None,
            })
            .collect();
        let mut cluster = NatsCluster { nodes };
        for i in 0..3 {
            cluster.spawn(i).await;
        }
        cluster.wait_for_jetstream().await;
        cluster
    }

    /// Every node's client URL, comma separated (what `NATS_URL` takes).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s server name (what JetStream reports as a stream's leader or replica).
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Which node has server name `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Kills node `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on the same ports and storage, and waits for its client port.
    pub async fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i).await;
    }

    async fn spawn(&mut self, i: usize) {
        let binary = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.route_port))
            .collect();
        let node = &mut self.nodes[i];
        let child = Command::new(&binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &node.port.to_string(),
                "-n",
                &node.name,
            ])
            .args(["-js", "-sd"])
            .arg(node.store.path())
            .args(["--cluster_name", "testkit"])
            .args([
                "--cluster",
                &format!("nats://127.0.0.1:{}", node.route_port),
            ])
            .args(["--routes", &routes.join(",")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} (install Debian's nats-server): {e}")
            });
        node.child = Some(child);
        wait_for_port(node.port, Duration::from_secs(10)).await;
    }

    async fn wait_for_jetstream(&self) {
        let url = self.url();
        eventually(
            Duration::from_secs(30),
            "the JetStream cluster to elect a meta leader",
            || {
                let url = url.clone();
                async move {
                    // A stream with three replicas can be created once the meta leader is
                    // elected and every node takes part: what the system's start-up needs.
                    let client = connect_nats(&url).await.ok()?;
                    let js = async_nats::jetstream::new(client);
                    let name = "testkit_probe".to_owned();
                    js.create_stream(async_nats::jetstream::stream::Config {
                        name: name.clone(),
                        subjects: vec![format!("{name}.>")],
                        num_replicas: 3,
                        ..Default::default()
                    })
                    .await
                    .ok()?;
                    js.delete_stream(&name).await.ok().map(|_| ())
                }
            },
        )
        .await;
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

async fn wait_for_port(port: u16, timeout: Duration) {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if start.elapsed() > timeout {
            panic!("server on port {port} did not start within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A database created for one test on the shared server, dropped when the value is dropped.
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates `t_<label>_<random>` on the server of [`database_url`].
    pub async fn create(label: &str) -> Self {
        Self::create_on(&database_url(), label).await
    }

    /// Creates a fresh database on the server behind `admin_url`.
    pub async fn create_on(admin_url: &str, label: &str) -> Self {
        let name = unique_prefix(label);
        let mut conn = PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to PostgreSQL at {admin_url}: {e}"));
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        let url = replace_database(admin_url, &name);
        TestDatabase {
            name,
            url,
            admin_url: admin_url.to_owned(),
        }
    }

    /// Connection URL of the test database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs outside async context guarantees: use a private runtime on its own thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    if let Ok(mut conn) = PgConnection::connect(&admin).await {
                        let _ = conn
                            .execute(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            )))
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

/// `url` with its database path replaced by `database`.
pub fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..host_end], database);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A PostgreSQL cluster owned by one test (`initdb` + `pg_ctl`), to stop and restart it.
pub struct PostgresServer {
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    running: bool,
}

impl PostgresServer {
    /// Initialises a cluster in a temp dir and starts it on a random port (trust auth, user
    /// `postgres`). Needs `initdb` and `pg_ctl` on PATH or in `/usr/lib/postgresql/*/bin`.
    pub async fn start() -> Self {
        let bin = postgres_bin_dir();
        let dir = tempfile::tempdir().expect("temp dir for PostgreSQL");
        let data = dir.path().join("data");
        if running_as_root() {
            // PostgreSQL refuses to run as root: hand the directory to the postgres user.
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status();
        }
        let status = pg_command(&bin, "initdb")
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed");
        let mut server = PostgresServer {
            port: free_port(),
            dir,
            bin,
            running: false,
        };
        server.start_again().await;
        server
    }

    /// Admin URL (`postgres` database).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops it immediately (`pg_ctl stop -m immediate`: like a crash, recovery on restart).
    pub fn stop(&mut self) {
        if self.running {
            let _ = pg_command(&self.bin, "pg_ctl")
                .args(["stop", "-m", "immediate", "-w", "-D"])
                .arg(self.dir.path().join("data"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            self.running = false;
        }
    }

    /// Starts it (again) on the same port.
    pub async fn start_again(&mut self) {
        let socket_dir = self.dir.path().to_path_buf();
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            socket_dir.display()
        );
        let status = pg_command(&self.bin, "pg_ctl")
            .args(["start", "-w", "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-o", &opts, "-D"])
            .arg(self.dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run pg_ctl start");
        assert!(status.success(), "pg_ctl start failed");
        self.running = true;
        wait_for_port(self.port, Duration::from_secs(20)).await;
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A PostgreSQL tool, run as the `postgres` user when we are root.
fn pg_command(bin: &std::path::Path, tool: &str) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        cmd
    } else {
        Command::new(bin.join(tool))
    }
}

fn postgres_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN_DIR") {
        return PathBuf::from(dir);
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort();
        if let Some(bin) = versions
            .into_iter()
            .rev()
            .find(|p| p.join("initdb").exists())
        {
            return bin;
        }
    }
    PathBuf::from("/usr/local/bin")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(
            replace_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_database("postgres://h:1/db?sslmode=disable", "y"),
            "postgres://h:1/y?sslmode=disable"
        );
        assert_eq!(replace_database("postgres://h:1", "z"), "postgres://h:1/z");
    }
}
