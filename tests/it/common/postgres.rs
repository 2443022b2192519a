//! A throwaway PostgreSQL for the cluster tests: `initdb` and `postgres` from the machine's
//! PostgreSQL binaries (PATH, then /usr/lib/postgresql/*/bin), run as the `postgres` user when
//! the tests run as root, on a free loopback port, with fsync off. Where the binaries are
//! missing the tests say so loudly and are skipped, unless INKFLOW_REQUIRE_REAL_TOOLS is set
//! (as `.ci/run` does), and then they fail.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A running server, stopped and removed on drop.
pub struct Postgres {
    /// `postgres://inkflow@127.0.0.1:PORT/postgres`.
    pub url: String,
    server: Child,
    _dir: TempDir,
}

/// Where `program` is: PATH first, then the Debian layout.
fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file());
    on_path.or_else(|| {
        let mut found: Vec<PathBuf> =
            glob::glob(&format!("/usr/lib/postgresql/*/bin/{program}")).ok()?.flatten().collect();
        found.sort();
        found.pop()
    })
}

/// The uid and gid of the `postgres` user, from /etc/passwd.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

fn as_server_user(command: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command
}

impl Postgres {
    /// Starts a server, or returns `None` after a loud SKIPPED line when the binaries are
    /// missing (panicking instead when real tools are required).
    pub fn start(test: &str) -> Option<Postgres> {
        let (Some(initdb), Some(postgres)) = (find("initdb"), find("postgres")) else {
            if std::env::var_os("INKFLOW_REQUIRE_REAL_TOOLS").is_some() {
                panic!(
                    "{test}: PostgreSQL's initdb and postgres are required (INKFLOW_REQUIRE_REAL_TOOLS) but missing"
                );
            }
            eprintln!("SKIPPED {test}: PostgreSQL's initdb/postgres not found (apt-get install postgresql)");
            return None;
        };
        // PostgreSQL refuses to run as root.
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let user = root.then(|| postgres_user().expect("running as root, but no postgres user"));
        let dir = tempfile::tempdir().unwrap();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let status = as_server_user(&mut Command::new(&initdb), user)
            .args(["-D", data.to_str().unwrap(), "-A", "trust", "-U", "inkflow", "--no-sync", "-E", "UTF8"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "initdb failed");
        let port = free_port();
        let server = as_server_user(&mut Command::new(&postgres), user)
            .args(["-D", data.to_str().unwrap(), "-p", &port.to_string(), "-k", dir.path().to_str().unwrap()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("postgres://inkflow@127.0.0.1:{port}/postgres");
        wait_until_ready(port, dir.path());
        Some(Postgres { url, server, _dir: dir })
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until the server takes connections (its socket file and its TCP port).
fn wait_until_ready(port: u16, dir: &Path) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let socket = dir.join(format!(".s.PGSQL.{port}"));
        if socket.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("PostgreSQL did not start on port {port}");
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown; the data is thrown away.
        // SAFETY: kill has no memory preconditions; the pid is our own child's.
        unsafe { libc::kill(self.server.id() as i32, libc::SIGQUIT) };
        let _ = self.server.wait();
    }
}
