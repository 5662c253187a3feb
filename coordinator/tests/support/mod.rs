//! What the coordinator's tests against a real ZooKeeper share: a server of Debian's
//! package on a free loopback port, and a wait on a condition under one deadline.
#![allow(dead_code)] // each test binary uses its own part of it

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every test's overall deadline.
pub(crate) const DEADLINE: Duration = Duration::from_secs(90);

/// One ZooKeeper server in a temp directory, killed (by PID) and removed on drop.
pub(crate) struct ZooKeeper {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl ZooKeeper {
    pub(crate) fn start(name: &str) -> ZooKeeper {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("tributary-zk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let cfg = dir.join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\nminSessionTimeout=1000\nmaxSessionTimeout=60000\n4lw.commands.whitelist=*\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("zookeeper.log")).unwrap();
        let child = Command::new("java")
            .args(["-Xmx256m", "-cp", "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"])
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&cfg)
            .env("ZOO_LOG_DIR", &dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting ZooKeeper: is Debian's zookeeper package installed (scripts/install-deps.sh)?");
        let zk = ZooKeeper { child, dir, port };
        let started = Instant::now();
        while !zk.serving() {
            assert!(started.elapsed() < Duration::from_secs(60), "ZooKeeper did not start: see {}", zk.dir.display());
            std::thread::sleep(Duration::from_millis(100));
        }
        zk
    }

    /// Whether the server answers `ruok` with `imok`.
    pub(crate) fn serving(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = String::new();
        s.write_all(b"ruok").is_ok() && s.read_to_string(&mut reply).is_ok() && reply == "imok"
    }

    pub(crate) fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `f` until it returns `Some`, every 50 ms (ZooKeeper has no watch for "the
/// controller wrote what I expect"; the overall deadline bounds it).
pub(crate) async fn eventually<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> F) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

