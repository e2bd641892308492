//! A real redis-server (Debian's, fetched by `scripts/redis-server fetch`) on a free port, for the shared-cache tests.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A running redis-server; killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    password: Option<String>,
}

/// The wrapper `scripts/redis-server fetch` writes (or `BON_TEST_REDIS_SERVER`).
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BON_TEST_REDIS_SERVER") {
        return PathBuf::from(path);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci-cache/redis/redis-server");
    assert!(
        path.exists(),
        "no redis-server at {}: run scripts/redis-server fetch (scripts/test does), or set BON_TEST_REDIS_SERVER",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Redis {
    /// Starts a server without persistence, with `password` if given, and waits until it answers PING.
    pub async fn start(password: Option<&str>) -> Self {
        Self::start_on(free_port(), password).await
    }

    pub async fn start_on(port: u16, password: Option<&str>) -> Self {
        let mut cmd = Command::new(binary());
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        // DEBUG SLEEP makes a slow Redis on demand (local connections only).
        cmd.args(["--enable-debug-command", "local"]);
        if let Some(pw) = password {
            cmd.args(["--requirepass", pw]);
        }
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let redis = Self { child: Some(child), port, password: password.map(str::to_owned) };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = redis.connection().await
                && redis::cmd("PING").query_async::<String>(&mut c).await.is_ok()
            {
                return redis;
            }
            assert!(std::time::Instant::now() < deadline, "redis-server did not start on port {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The URL a proxy is given.
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// A direct connection, for the test to look at (or tamper with) what the proxies stored.
    pub async fn connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        redis::Client::open(self.url())?.get_multiplexed_async_connection().await
    }

    /// Every key bon-proxy stored.
    pub async fn keys(&self) -> Vec<String> {
        let mut c = self.connection().await.unwrap();
        redis::cmd("KEYS").arg("bon:*").query_async(&mut c).await.unwrap()
    }

    /// Kills the server (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
