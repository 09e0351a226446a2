//! `iolab guest`: guests of the profiles, their qemu command lines and
//! lifecycle, and the lab micro-guest.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use iolab_lab_core::guest::command::{
    self, GuestPaths, legacy_pcidevice, qemu_args, resolve_accel, shell_line,
};
use iolab_lab_core::guest::image::{self, ImageSpec};
use iolab_lab_core::guest::lifecycle::{self, GuestState, QEMU};
use iolab_lab_core::guest::{Accel, GuestDef, Nic};

use crate::cli::{AccelArg, BootArgs, GuestCmd, GuestRef};
use iolab_lab_core::notebook::open as open_store;

/// Every (profile, guest) the built-ins and the notebook define.
fn all_guests(db: Option<&Path>) -> anyhow::Result<Vec<(String, GuestDef)>> {
    Ok(iolab_lab_core::notebook::guests_in(
        open_store(db).ok().as_ref(),
    ))
}

fn find(db: Option<&Path>, r: &GuestRef) -> anyhow::Result<(String, GuestDef)> {
    all_guests(db)?
        .into_iter()
        .find(|(p, g)| g.name == r.name && r.profile.as_ref().is_none_or(|w| w == p))
        .with_context(|| {
            format!(
                "no guest named '{}' in the profiles (see `iolab guest list`)",
                r.name
            )
        })
}

pub fn guest_cmd(db: Option<&Path>, cmd: GuestCmd) -> anyhow::Result<()> {
    match cmd {
        GuestCmd::List { json } => {
            #[derive(serde::Serialize)]
            struct Entry {
                name: String,
                profile: String,
                memory_mib: u64,
                vcpus: u32,
                state: String,
            }
            let mut guests = Vec::new();
            for (p, g) in all_guests(db)? {
                let st = lifecycle::paths(&g.name).map(|ps| lifecycle::status(&ps));
                guests.push(Entry {
                    state: st.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                    name: g.name,
                    profile: p,
                    memory_mib: u64::from(g.memory_mib),
                    vcpus: g.vcpus,
                });
            }
            if json {
                #[derive(serde::Serialize)]
                struct Guests {
                    guests: Vec<Entry>,
                }
                println!(
                    "{}",
                    crate::json::pretty("iolab.guests.v1", &Guests { guests })?
                );
                return Ok(());
            }
            println!(
                "{:<20} {:<16} {:>7} {:>5}  state",
                "guest", "profile", "MiB", "vcpus"
            );
            for g in guests {
                println!(
                    "{:<20} {:<16} {:>7} {:>5}  {}",
                    g.name, g.profile, g.memory_mib, g.vcpus, g.state
                );
            }
        }
        GuestCmd::Show(r) => {
            let (p, g) = find(db, &r)?;
            let ps = lifecycle::paths(&g.name)?;
            let (accel, warning) = resolve_accel(g.accel);
            println!(
                "guest {} (profile {p}): {} MiB, {} vCPUs",
                g.name, g.memory_mib, g.vcpus
            );
            println!("state: {}", lifecycle::status(&ps));
            for bdf in &g.pci {
                println!(
                    "passthrough {bdf} (the seed wrote `{}`; qemu now takes `-device vfio-pci,host={bdf}`)",
                    legacy_pcidevice(bdf)
                );
            }
            if let Some(w) = warning {
                println!("warning: {w}");
            }
            println!("{}", shell_line(QEMU, &qemu_args(&g, &ps, accel)));
            if let GuestState::Running { .. } = lifecycle::status(&ps)
                && let Ok(mut q) =
                    iolab_lab_core::guest::qmp::Qmp::connect(&ps.qmp(), Duration::from_secs(2))
            {
                for d in q.pci_devices()? {
                    let p = d.pci;
                    println!(
                        "  guest PCI {:02x}:{:02x}.{} [{:04x}:{:04x}]{}",
                        p.bus,
                        p.slot,
                        p.function,
                        p.vendor,
                        p.device,
                        if d.id.is_empty() {
                            String::new()
                        } else {
                            format!(" {}", d.id)
                        }
                    );
                }
            }
        }
        GuestCmd::Start(r) => {
            let (_, g) = find(db, &r)?;
            let ps = lifecycle::paths(&g.name)?;
            let (accel, warning) = resolve_accel(g.accel);
            println!("{}", shell_line(QEMU, &qemu_args(&g, &ps, accel)));
            if let Some(w) = warning {
                eprintln!("iolab: warning: {w}");
            }
            let s = lifecycle::start(&g, &ps, QEMU, true)?;
            println!(
                "guest {} started (pid {}); files in {}",
                g.name,
                s.pid,
                ps.dir.display()
            );
        }
        GuestCmd::Stop { name, grace } => {
            let how = lifecycle::stop(&lifecycle::paths(&name)?, grace)?;
            println!("guest {name}: {how}");
        }
        GuestCmd::Console { name } => {
            let ps = lifecycle::paths(&name)?;
            let text = std::fs::read_to_string(ps.serial()).with_context(|| {
                format!("no serial log for guest {name} ({})", ps.serial().display())
            })?;
            print!("{text}");
        }
        GuestCmd::Image {
            kernel,
            modules,
            busybox,
            out,
            iommu_lab,
        } => {
            let variant = if iommu_lab {
                image::Variant::IommuLab
            } else {
                image::Variant::Lab
            };
            let kernel = match kernel {
                Some(k) => k,
                None => image::find_kernel()?,
            };
            let modules = match modules {
                Some(m) => m,
                None => image::modules_for(&kernel)?,
            };
            let out = match out {
                Some(o) => o,
                None => lifecycle::state_dir(variant.dir_name())?,
            };
            let iolab = std::env::current_exe().context("finding the iolab binary")?;
            let img = image::build(&ImageSpec {
                kernel,
                modules,
                busybox,
                iolab,
                out,
                variant,
            })?;
            println!("kernel {}", img.kernel.display());
            println!("initrd {}", img.initrd.display());
        }
        GuestCmd::Boot(a) => return boot(*a),
    }
    Ok(())
}

/// Boots the micro-guest in the foreground and mirrors its serial console.
fn boot(a: BootArgs) -> anyhow::Result<()> {
    let forward = a
        .forward
        .iter()
        .map(|f| f.parse())
        .collect::<Result<Vec<_>, _>>()?;
    let nic = match a.nic.as_str() {
        "user" => Nic::User { forward },
        t => match t.strip_prefix("tap:") {
            Some(_) if !forward.is_empty() => {
                bail!("--forward works with --nic user (slirp); a tap NIC is reached directly")
            }
            Some(i) if !i.is_empty() => Nic::Tap { ifname: i.into() },
            _ => bail!("--nic takes user or tap:IFNAME, not '{t}'"),
        },
    };
    let gateway = (!a.gateway.is_empty()).then_some(a.gateway.as_str());
    let script: Vec<String> = match &a.script {
        Some(f) => {
            if !f.is_file() {
                bail!("--script {}: no such file", f.display());
            }
            // qemu hands the file over as is; a comma in its path would end the option.
            let path = f.display().to_string();
            if path.contains(',') {
                bail!("--script {path}: a path with a comma cannot be given to qemu's -fw_cfg");
            }
            vec![
                "-fw_cfg".into(),
                format!("name={},file={path}", image::SCRIPT_FW_CFG),
            ]
        }
        None => Vec::new(),
    };
    let def = GuestDef {
        name: a.name.clone(),
        memory_mib: a.memory_mib,
        vcpus: a.vcpus,
        pci: Vec::new(),
        disk: a.disk.first().cloned(),
        kernel: Some(a.kernel.display().to_string()),
        initrd: Some(a.initrd.display().to_string()),
        append: image::kernel_args(&a.name, &a.ip, gateway, &a.args),
        extra_args: a
            .disk
            .iter()
            .skip(1)
            .flat_map(|d| ["-drive".to_string(), command::drive(d)])
            .chain(script)
            .chain(a.qemu_args.iter().cloned())
            .collect(),
        iommu: a.iommu,
        nics: vec![nic],
        accel: match a.accel {
            AccelArg::Auto => Accel::Auto,
            AccelArg::Kvm => Accel::Kvm,
            AccelArg::Tcg => Accel::Tcg,
        },
        // The micro image: with no command it serves the agent channel.
        micro: Some(iolab_lab_core::guest::Micro {
            ip: a.ip.clone(),
            command: a.args.clone(),
        }),
    };
    let ps = GuestPaths::new(match a.dir {
        Some(d) => d,
        None => lifecycle::state_dir(&a.name)?,
    });
    let mut started = lifecycle::start(&def, &ps, QEMU, false)?;
    if let Some(w) = &started.warning {
        eprintln!("iolab: warning: {w}");
    }
    let deadline = Instant::now() + a.timeout;
    let mut serial = SerialTail::new(ps.serial());
    let mut code: Option<i32> = None;
    // Mirrors new console lines and picks up the guest command's exit status.
    let mut mirror = |serial: &mut SerialTail| {
        for line in serial.lines() {
            println!("{line}");
            if let Some(rc) = line.trim().strip_prefix("IOLAB-EXIT ") {
                code = rc.trim().parse().ok();
            }
        }
        let _ = std::io::stdout().flush();
    };
    loop {
        mirror(&mut serial);
        if let Ok(Some(_)) = started.child.try_wait() {
            // The last lines qemu wrote before it exited.
            mirror(&mut serial);
            break;
        }
        if Instant::now() > deadline {
            let _ = started.child.kill();
            let _ = started.child.wait();
            bail!(
                "the guest did not finish within {:?}; qemu was stopped",
                a.timeout
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    match code {
        Some(0) => Ok(()),
        Some(c) => bail!("the command in the guest exited with status {c}"),
        None => {
            let log = std::fs::read_to_string(ps.qemu_log()).unwrap_or_default();
            bail!(
                "the guest stopped without reporting an exit status (serial log {}){}",
                ps.serial().display(),
                if log.trim().is_empty() {
                    String::new()
                } else {
                    format!("; qemu said: {}", log.trim())
                }
            )
        }
    }
}

/// Reads lines appended to a file since the last call.
struct SerialTail {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl SerialTail {
    fn new(path: PathBuf) -> Self {
        SerialTail {
            path,
            offset: 0,
            partial: String::new(),
        }
    }

    fn lines(&mut self) -> Vec<String> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        self.offset += buf.len() as u64;
        self.partial += &String::from_utf8_lossy(&buf).replace('\r', "");
        let mut out = Vec::new();
        while let Some(i) = self.partial.find('\n') {
            out.push(self.partial[..i].to_string());
            self.partial.drain(..=i);
        }
        out
    }
}
