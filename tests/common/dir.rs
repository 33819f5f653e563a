//! A temporary folder with the development certificates copied in, removed when dropped.

use std::path::{Path, PathBuf};

/// A temporary folder with development certificates and whatever files a test adds.
pub struct TestDir {
    pub dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> TestDir {
        let dir = tempfile::tempdir().expect("temp dir");
        recipient_gateway::tls::write_dev_certs(&dir.path().join("certs"), true)
            .expect("dev certs");
        TestDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn ca(&self) -> PathBuf {
        self.path().join("certs/ca.crt")
    }

    /// A TLS acceptor with this folder's `localhost` certificate (signed by its own CA).
    pub fn localhost_tls(&self) -> tokio_rustls::TlsAcceptor {
        let certs = self.path().join("certs");
        let config = recipient_gateway::tls::server_config(
            &certs.join("localhost.crt"),
            &certs.join("localhost.key"),
            None,
        )
        .unwrap();
        tokio_rustls::TlsAcceptor::from(config)
    }
}
