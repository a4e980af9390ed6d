//! Throwaway certificate authorities and certificates for the security tests, made by
//! `deploy/gen-certs.sh` (the script the README gives users), so the script is tested too.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::repo_root;

/// A directory of PEM files: `ca.pem` and whatever [`issue`](Certs::issue) made.
pub struct Certs {
    dir: tempfile::TempDir,
}

impl Default for Certs {
    fn default() -> Self {
        Self::new()
    }
}

impl Certs {
    pub fn new() -> Certs {
        Certs {
            dir: tempfile::tempdir().expect("certs dir"),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<dir>/<file>`.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// The CA of [`issue`](Certs::issue).
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A keystore (key and certificate) for `name`, signed by `ca.pem`, valid for
    /// `sans` (default: localhost and 127.0.0.1).
    pub fn issue(&self, name: &str, sans: &[&str]) -> PathBuf {
        self.issue_by("ca", name, sans)
    }

    /// Like [`issue`](Certs::issue), signed by the CA `<ca>.pem` (made on first use).
    pub fn issue_by(&self, ca: &str, name: &str, sans: &[&str]) -> PathBuf {
        let out = Command::new("bash")
            .arg(repo_root().join("deploy/gen-certs.sh"))
            .arg(self.dir.path())
            .arg(name)
            .args(sans)
            .env("CA", ca)
            .env("FJORD_CERT_DAYS", "2")
            .output()
            .expect("run deploy/gen-certs.sh");
        assert!(
            out.status.success(),
            "gen-certs.sh {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.path(&format!("{name}.pem"))
    }
}
