//! The Linux kernel's iSCSI initiator (open-iscsi), driven as the seed drove
//! it: `iscsiadm` records the node (target and portal), sets the session's queue limits
//! (`node.session.cmds_max`, `node.session.queue_depth`: the host's
//! can_queue and cmd_per_lun), logs in, and the LUN's disk is found in
//! sysfs (`/sys/class/iscsi_session/sessionN/device/target*/H:C:T:L/block`).
//! A workload then runs on `/dev/sdX` with `O_DIRECT`; logout removes the
//! node record again. Needs `iscsid` running and the `iscsi_tcp` module.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use iolab_iscsi::initiator::IscsiUrl;

/// Why the kernel's initiator could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KernelInitiatorError {
    #[error("open-iscsi's iscsiadm is not installed here")]
    NoIscsiadm,
    #[error("`iscsiadm {args}` failed: {message}")]
    Iscsiadm { args: String, message: String },
    #[error("the URL names no target: iscsi://HOST[:PORT]/IQN/LUN")]
    NoTarget,
    #[error("logged in to {target}, but no disk for LUN {lun} appeared in sysfs within {secs} s")]
    NoDisk { target: String, lun: u64, secs: u64 },
    #[error("the iscsiadm thread failed: {0}")]
    Thread(tokio::task::JoinError),
}

/// The queue limits the kernel initiator's session gets.
#[derive(Debug, Clone, Copy)]
pub struct KernelQueue {
    /// Commands in flight per session (`node.session.cmds_max`, the SCSI host's can_queue).
    pub cmds_max: u32,
    /// Per LUN (`node.session.queue_depth`, cmd_per_lun).
    pub queue_depth: u32,
}

impl Default for KernelQueue {
    /// The seed's settings: 64 slots, as its RAMDISK's queue.
    fn default() -> Self {
        KernelQueue {
            cmds_max: 64,
            queue_depth: 64,
        }
    }
}

/// A LUN the kernel's initiator is logged in to, as a local disk.
#[derive(Debug, Clone)]
pub struct KernelDisk {
    pub device: PathBuf,
    pub target: String,
    pub portal: String,
    pub lun: u64,
}

fn iscsiadm(args: &[&str]) -> Result<String, KernelInitiatorError> {
    let out = Command::new("iscsiadm")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => KernelInitiatorError::NoIscsiadm,
            _ => KernelInitiatorError::Iscsiadm {
                args: args.join(" "),
                message: e.to_string(),
            },
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let text = format!(
            "{} {}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
        Err(KernelInitiatorError::Iscsiadm {
            args: args.join(" "),
            message: format!("{} ({})", text.trim(), out.status),
        })
    }
}

/// The `iscsiadm` arguments that set the session's limits and CHAP.
pub fn node_updates(url: &IscsiUrl, q: KernelQueue) -> Vec<(String, String)> {
    let mut v = vec![
        ("node.session.cmds_max".to_string(), q.cmds_max.to_string()),
        (
            "node.session.queue_depth".to_string(),
            q.queue_depth.to_string(),
        ),
        // One connection per session: open-iscsi has no MC/S.
        ("node.conn[0].iscsi.HeaderDigest".into(), "None".into()),
    ];
    if let Some(c) = &url.chap {
        v.push(("node.session.auth.authmethod".into(), "CHAP".into()));
        v.push(("node.session.auth.username".into(), c.user.clone()));
        v.push(("node.session.auth.password".into(), c.secret.clone()));
    }
    if let Some(m) = &url.mutual {
        v.push(("node.session.auth.username_in".into(), m.user.clone()));
        v.push(("node.session.auth.password_in".into(), m.secret.clone()));
    }
    v
}

/// Logs the kernel's initiator in to `url`'s target and finds its LUN's disk.
pub fn login(url: &IscsiUrl, q: KernelQueue) -> Result<KernelDisk, KernelInitiatorError> {
    let target = url.target.clone().ok_or(KernelInitiatorError::NoTarget)?;
    let portal = url.portal();
    // A node record for the URL's portal itself: SendTargets would record
    // the portal the target advertises, which may be unreachable from here
    // (a target on a host's loopback seen from a guest through NAT).
    iscsiadm(&["-m", "node", "-o", "new", "-T", &target, "-p", &portal])?;
    for (k, v) in node_updates(url, q) {
        iscsiadm(&[
            "-m", "node", "-T", &target, "-p", &portal, "-o", "update", "-n", &k, "-v", &v,
        ])?;
    }
    // iscsid may still be starting (a guest that just booted): retry while
    // iscsiadm cannot reach it.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match iscsiadm(&["-m", "node", "-T", &target, "-p", &portal, "--login"]) {
            Err(KernelInitiatorError::Iscsiadm { message, .. })
                if message.contains("connect to iSCSI daemon") && Instant::now() < until =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            r => {
                r?;
                break;
            }
        }
    }
    let disk = KernelDisk {
        device: PathBuf::new(),
        target: target.clone(),
        portal,
        lun: url.lun,
    };
    let wait = Duration::from_secs(20);
    let until = Instant::now() + wait;
    loop {
        if let Some(dev) = find_disk(Path::new("/sys"), &target, url.lun) {
            let device = Path::new("/dev").join(dev);
            // The node can appear before the disk is added (ENXIO on open
            // meanwhile): the disk is there once it opens.
            if std::fs::File::open(&device).is_ok() {
                return Ok(KernelDisk { device, ..disk });
            }
        }
        if Instant::now() > until {
            let _ = logout(&disk);
            return Err(KernelInitiatorError::NoDisk {
                target,
                lun: url.lun,
                secs: wait.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Logs out and forgets the node record.
pub fn logout(d: &KernelDisk) -> Result<(), KernelInitiatorError> {
    let r = iscsiadm(&["-m", "node", "-T", &d.target, "-p", &d.portal, "--logout"]);
    let _ = iscsiadm(&[
        "-m", "node", "-T", &d.target, "-p", &d.portal, "-o", "delete",
    ]);
    r.map(|_| ())
}

/// [`login`] from async code: iscsiadm blocks, so it runs off the runtime.
pub async fn attach(url: &IscsiUrl, q: KernelQueue) -> Result<KernelDisk, KernelInitiatorError> {
    let u = url.clone();
    tokio::task::spawn_blocking(move || login(&u, q))
        .await
        .map_err(KernelInitiatorError::Thread)?
}

/// [`logout`] from async code; what goes wrong is only logged (the run's
/// outcome stands either way).
pub async fn detach(disk: KernelDisk) {
    let r = tokio::task::spawn_blocking(move || logout(&disk)).await;
    if let Ok(Err(e)) = r {
        tracing::warn!("open-iscsi logout: {e}");
    }
}

/// The block device name (`sdb`) of LUN `lun` of the kernel's session to
/// `target`, from sysfs under `sys`.
pub fn find_disk(sys: &Path, target: &str, lun: u64) -> Option<String> {
    let sessions = std::fs::read_dir(sys.join("class/iscsi_session")).ok()?;
    for s in sessions.flatten() {
        let name = std::fs::read_to_string(s.path().join("targetname")).unwrap_or_default();
        if name.trim() != target {
            continue;
        }
        // sessionN/device is the iSCSI session's device; its SCSI target
        // holds one directory per LUN, named H:C:T:L.
        let dev = s.path().join("device");
        for t in std::fs::read_dir(&dev).ok()?.flatten() {
            if !t.file_name().to_string_lossy().starts_with("target") {
                continue;
            }
            for l in std::fs::read_dir(t.path()).ok()?.flatten() {
                let n = l.file_name().to_string_lossy().into_owned();
                if n.rsplit(':').next().and_then(|x| x.parse::<u64>().ok()) != Some(lun)
                    || n.split(':').count() != 4
                {
                    continue;
                }
                if let Some(b) = std::fs::read_dir(l.path().join("block"))
                    .ok()
                    .and_then(|mut d| d.next())
                    .and_then(Result::ok)
                {
                    return Some(b.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_is_found_by_target_name_and_lun_in_sysfs() {
        let root = std::env::temp_dir().join(format!("iolab-kdisk-{}", std::process::id()));
        let mk = |session: &str, target: &str, hctl: &str, disk: &str| {
            let s = root.join("class/iscsi_session").join(session);
            std::fs::create_dir_all(&s).unwrap();
            std::fs::write(s.join("targetname"), format!("{target}\n")).unwrap();
            let b = s
                .join("device/target2:0:0")
                .join(hctl)
                .join("block")
                .join(disk);
            std::fs::create_dir_all(b).unwrap();
        };
        mk("session1", "iqn.x:other", "2:0:0:0", "sdb");
        mk("session2", "iqn.x:lab", "3:0:0:0", "sdc");
        mk("session2", "iqn.x:lab", "3:0:0:1", "sdd");
        assert_eq!(find_disk(&root, "iqn.x:lab", 1).as_deref(), Some("sdd"));
        assert_eq!(find_disk(&root, "iqn.x:lab", 0).as_deref(), Some("sdc"));
        assert_eq!(find_disk(&root, "iqn.x:lab", 2), None);
        assert_eq!(find_disk(&root, "iqn.x:none", 0), None);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn limits_and_chap_become_node_settings() {
        let u = IscsiUrl::parse("iscsi://u%s@10.0.2.2:3260/iqn.x:lab/0", false).unwrap();
        let v = node_updates(&u, KernelQueue::default());
        let get = |k: &str| v.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        assert_eq!(get("node.session.cmds_max"), Some("64"));
        assert_eq!(get("node.session.queue_depth"), Some("64"));
        assert_eq!(get("node.session.auth.authmethod"), Some("CHAP"));
        assert_eq!(get("node.session.auth.username"), Some("u"));
        assert_eq!(get("node.session.auth.password"), Some("s"));
    }
}
