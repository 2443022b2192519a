//! An S3 server for tests: s3s-fs serving a temporary directory on loopback, verifying SigV4
//! signatures, with every request recorded so tests can count PUTs and parts.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub const KEY_ID: &str = "inkflow-test-key";
pub const SECRET: &str = "right-secret-0123456789";
pub const BUCKET: &str = "books";

/// An s3s-fs server on 127.0.0.1 with a request log.
pub struct Server {
    pub endpoint: String,
    pub root: TempDir,
    pub requests: Arc<Mutex<Vec<String>>>,
    accept_loop: JoinHandle<()>,
}

impl Server {
    /// Serves a fresh directory holding the bucket `books` (unless `with_bucket` is false).
    pub async fn start(with_bucket: bool) -> Server {
        let root = tempfile::tempdir().unwrap();
        if with_bucket {
            std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        }
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(KEY_ID, SECRET));
        let s3 = builder.build();

        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let length = request.headers().get("content-length").and_then(|v| v.to_str().ok()).unwrap_or("-");
            log.lock().unwrap().push(format!("{} {} {length}", request.method(), request.uri()));
            hyper::service::Service::call(&s3, request)
        });

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        // Connections live in a JoinSet owned by the accept loop: aborting the loop drops the
        // listener and every open connection, as a crashed server would.
        let accept_loop = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                let service = service.clone();
                connections.spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(socket);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Server { endpoint, root, requests, accept_loop }
    }

    pub async fn stop(&self) {
        self.accept_loop.abort();
        while !self.accept_loop.is_finished() {
            tokio::task::yield_now().await;
        }
    }

    pub fn object_file(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }
}
