//! A disk that can be made slow on demand, for the chaos suite: an ext4 file system on a
//! loop device, mounted with `sync` so every write a process makes reaches the device
//! before `write` returns (the page cache cannot hide the fault), and throttled through
//! the blkio cgroup of the container that writes to it (Docker's cgroupfs driver, cgroup
//! v1: `blkio.throttle.write_bps_device` / `write_iops_device` of the loop device).
//! Device-mapper's delay target would be the textbook tool; this kernel has no
//! device-mapper, and a static binary ignores LD_PRELOAD shims.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct SlowDisk {
    image: PathBuf,
    device: String,
    mount: tempfile::TempDir,
    /// `major:minor` of the loop device, as the blkio files take it.
    pub dev_numbers: String,
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl SlowDisk {
    /// A `mib` MiB file system owned by `uid`, or why one cannot be made here (it needs
    /// root, a free loop device and the blkio cgroup controller).
    pub fn new(mib: u32, uid: u32) -> Result<SlowDisk, String> {
        if !Path::new("/sys/fs/cgroup/blkio").is_dir() {
            return Err("no cgroup v1 blkio controller".into());
        }
        let mount = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = mount.path().with_extension("img");
        run(Command::new("truncate")
            .arg("-s")
            .arg(format!("{mib}M"))
            .arg(&image))?;
        let device = run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&image);
        })?;
        let disk = SlowDisk {
            dev_numbers: std::fs::read_to_string(format!(
                "/sys/block/{}/dev",
                device.trim_start_matches("/dev/")
            ))
            .map_err(|e| e.to_string())?
            .trim()
            .to_string(),
            image,
            device,
            mount,
        };
        run(Command::new("mkfs.ext4").args(["-q", &disk.device]))?;
        run(Command::new("mount")
            .args(["-o", "sync", &disk.device])
            .arg(disk.mount.path()))?;
        std::os::unix::fs::chown(disk.mount.path(), Some(uid), Some(uid))
            .map_err(|e| e.to_string())?;
        Ok(disk)
    }

    pub fn path(&self) -> &Path {
        self.mount.path()
    }

    /// Limits the writes of the container with the given full id to this disk to
    /// `bytes_per_sec` and `iops` (0 lifts both).
    pub fn throttle(&self, container_id: &str, bytes_per_sec: u64, iops: u64) {
        let dir = PathBuf::from("/sys/fs/cgroup/blkio/docker").join(container_id);
        for (file, value) in [
            ("blkio.throttle.write_bps_device", bytes_per_sec),
            ("blkio.throttle.write_iops_device", iops),
        ] {
            std::fs::write(dir.join(file), format!("{} {value}", self.dev_numbers))
                .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()));
        }
    }
}

impl Drop for SlowDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mount.path()).output();
        let _ = Command::new("losetup").args(["-d", &self.device]).output();
        let _ = std::fs::remove_file(&self.image);
    }
}
