//! An NFS export on the tokio driver over a temporary tree, for the tokio
//! driver's tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use msgsplice_rpc::nfs::NfsServer;
use msgsplice_rpc::server::{ServerEvent, ShutdownReport, TokioConfig, TokioHandle};

/// A running tokio-driven export over a temporary directory.
pub struct TokioTestServer {
    pub dir: tempfile::TempDir,
    pub nfs: SocketAddr,
    pub mount: SocketAddr,
    pub url: String,
    pub events: Arc<Mutex<Vec<String>>>,
    handle: Option<TokioHandle>,
}

impl TokioTestServer {
    /// A server over a new temporary directory that `fill` populates;
    /// `tune` adjusts the driver's settings.
    pub fn start(fill: impl FnOnce(&Path), tune: impl FnOnce(&mut TokioConfig)) -> TokioTestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        fill(&root);
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let mut config = TokioConfig {
            worker_threads: Some(2),
            events: Arc::new(move |ev: &ServerEvent<'_>| {
                sink.lock().unwrap().push(format!("{ev:?}"));
            }),
            ..TokioConfig::default()
        };
        tune(&mut config);
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = NfsServer::bind(&root, any, any).expect("bind");
        let (nfs, url) = (server.nfs_addr(), server.url());
        let mount = SocketAddr::new(nfs.ip(), server.mount_port());
        let handle = server.into_tokio(config).spawn().expect("spawn");
        TokioTestServer {
            dir,
            nfs,
            mount,
            url,
            events,
            handle: Some(handle),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The URL of a path inside the export.
    pub fn url_for(&self, path: &str) -> String {
        let (base, query) = self.url.split_once('?').unwrap();
        format!("{base}/{}?{query}", path.trim_start_matches('/'))
    }

    pub fn handle(&self) -> &TokioHandle {
        self.handle.as_ref().expect("running")
    }

    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    /// Shuts the server down now.
    pub fn shutdown(&mut self) -> ShutdownReport {
        self.handle
            .take()
            .expect("running")
            .shutdown()
            .expect("clean shutdown")
    }
}

impl Drop for TokioTestServer {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.shutdown();
        }
    }
}
