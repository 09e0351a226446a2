//! The Target screen's editor: the running target's configuration as a
//! tree in LIO's terms (portals; targets with their LUNs over backstores and
//! their ACLs), forms to add and change each kind of node, and deletions
//! that ask first. Everything here is pure: a finished form produces the
//! whole new configuration, which the event loop hands to the running
//! target (`Target::reconfigure`), which applies it whole or not at all.

use crossterm::event::KeyCode;
use iolab_iscsi::chap::ChapCredentials;
use iolab_iscsi::initiator::IscsiUrl;
use iolab_iscsi::target::config::valid_iscsi_name;
use iolab_iscsi::target::{Acl, LunConfig, Portal, ServerConfig, TargetConfig};
use iolab_lab_core::guest::GuestDef;
use iolab_lab_core::profile::MAX_SESSIONS;
use iolab_lab_core::run::RunForm;
use iolab_lab_core::workload::Mode;
use iolab_storage::BackstoreSpec;
use iolab_storage::backstore::parse_size;

/// One row of the configuration tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// The "Portals" heading.
    Portals,
    /// A portal, by index in `listen`.
    Portal(usize),
    /// A target, by index in `targets`.
    Target(usize),
    /// A LUN mapping: (target, index in its `luns`).
    Lun(usize, usize),
    /// An ACL: (target, index in its `acls`).
    Acl(usize, usize),
}

/// The rows of the tree, in display order.
pub fn rows(cfg: &ServerConfig) -> Vec<Node> {
    let mut out = vec![Node::Portals];
    out.extend((0..cfg.listen.len()).map(Node::Portal));
    for (t, tc) in cfg.targets.iter().enumerate() {
        out.push(Node::Target(t));
        out.extend((0..tc.luns.len()).map(|l| Node::Lun(t, l)));
        out.extend((0..tc.acls.len()).map(|a| Node::Acl(t, a)));
    }
    out
}

/// What a form adds or changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormKind {
    /// A portal: new (None) or the one at this index.
    Portal(Option<usize>),
    Target(Option<usize>),
    /// A LUN of target `.0`.
    Lun(usize, Option<usize>),
    /// An ACL of target `.0`.
    Acl(usize, Option<usize>),
    /// The Run screen's workload.
    Workload,
    /// The name to save the lab under.
    Save,
    /// A guest of the lab: new, or the lab's guest at this index.
    Guest(Option<usize>),
    /// Targets from a saveconfig.json, targets.conf or iolab TOML file.
    Import,
}

/// One field of a form: free text, or one of fixed choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub label: &'static str,
    pub value: String,
    /// The values a choice field cycles through (empty: free text).
    pub choices: &'static [&'static str],
    /// What goes in, shown beside the focused field.
    pub hint: &'static str,
    /// Values a text field offers with Left/Right (typing stays free).
    pub options: Vec<String>,
}

impl Field {
    fn text(label: &'static str, value: impl Into<String>, hint: &'static str) -> Field {
        Field {
            label,
            value: value.into(),
            choices: &[],
            hint,
            options: Vec::new(),
        }
    }
    fn choice(label: &'static str, choices: &'static [&'static str], value: &str) -> Field {
        Field {
            label,
            value: value.into(),
            choices,
            hint: "Left/Right or Space to choose",
            options: Vec::new(),
        }
    }
    fn cycle(&mut self, step: isize) {
        if self.choices.is_empty() {
            if !self.options.is_empty() {
                let n = self.options.len() as isize;
                let next = match self.options.iter().position(|o| *o == self.value) {
                    Some(i) => (i as isize + step).rem_euclid(n),
                    None if step > 0 => 0,
                    None => n - 1,
                };
                self.value = self.options[next as usize].clone();
            }
            return;
        }
        let n = self.choices.len() as isize;
        let i = self
            .choices
            .iter()
            .position(|c| *c == self.value)
            .unwrap_or(0) as isize;
        self.value = self.choices[((i + step).rem_euclid(n)) as usize].into();
    }
}

const YES_NO: &[&str] = &["yes", "no"];
const NO_YES: &[&str] = &["no", "yes"];
const KINDS: &[&str] = &["ramdisk", "fileio", "block"];
const BLOCK_SIZES: &[&str] = &["512", "4096"];
const MODES: &[&str] = &["read", "write", "rw"];
/// The run form's hint and error for its sessions field.
const SESSIONS_HINT: &str = "1-256";
const GUEST_KINDS: &[&str] = &["micro", "kernel", "disk"];
const NICS: &[&str] = &["user", "tap", "none"];
const ACCELS: &[&str] = &["auto", "kvm", "tcg"];

/// An open form: its fields, the focused one, and why the last try failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub kind: FormKind,
    pub fields: Vec<Field>,
    pub focus: usize,
    pub error: Option<String>,
}

pub use iolab_lab_core::units::size_text;

fn chap_text(c: &Option<ChapCredentials>) -> String {
    c.as_ref()
        .map(|c| format!("{}:{}", c.user, c.secret))
        .unwrap_or_default()
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

impl Form {
    /// A form for `kind`, filled from the configuration (or with defaults for a new node).
    pub fn new(kind: FormKind, cfg: &ServerConfig) -> Form {
        let fields = match kind {
            FormKind::Portal(i) => {
                let p = i.and_then(|i| cfg.listen.get(i));
                vec![Field::text(
                    "address",
                    p.map(|p| p.to_string())
                        .unwrap_or_else(|| "127.0.0.1:3260".into()),
                    "ADDR:PORT, [IPv6]:PORT; =ADDR:PORT to advertise another",
                )]
            }
            FormKind::Target(i) => {
                let fresh = TargetConfig::new(&next_iqn(cfg));
                let t = i.and_then(|i| cfg.targets.get(i)).unwrap_or(&fresh);
                vec![
                    Field::text("IQN", t.iqn.clone(), "iqn.YYYY-MM.reverse.domain[:name]"),
                    Field::choice("demo mode", YES_NO, yes(t.demo_mode)),
                    Field::text(
                        "CHAP",
                        chap_text(&t.chap),
                        "USER:SECRET asked of initiators without an ACL; empty for none",
                    ),
                    Field::text(
                        "mutual CHAP",
                        chap_text(&t.mutual_chap),
                        "USER:SECRET the target answers with; empty for none",
                    ),
                    Field::text(
                        "queue depth",
                        t.queue_depth.to_string(),
                        "commands per session, 1-1024",
                    ),
                    Field::text(
                        "max connections",
                        t.negotiation.max_connections.to_string(),
                        "per session (MC/S), 1-8",
                    ),
                ]
            }
            FormKind::Lun(t, l) => {
                let target = cfg.targets.get(t);
                let existing = l.and_then(|l| target?.luns.get(l));
                let next = target
                    .map(|t| t.luns.iter().map(|l| l.lun + 1).max().unwrap_or(0))
                    .unwrap_or(0);
                let (kind, size, path, direct) = match existing.map(|l| &l.backstore) {
                    Some(BackstoreSpec::Ramdisk { size }) => {
                        ("ramdisk", size_text(*size), "", false)
                    }
                    Some(BackstoreSpec::Fileio { path, size, direct }) => (
                        "fileio",
                        size.map(size_text).unwrap_or_default(),
                        path.to_str().unwrap_or(""),
                        *direct,
                    ),
                    Some(BackstoreSpec::Block { path, direct }) => {
                        ("block", String::new(), path.to_str().unwrap_or(""), *direct)
                    }
                    None => ("ramdisk", "1G".into(), "", false),
                };
                let attrs = existing.map(|l| l.attributes.clone()).unwrap_or_default();
                vec![
                    Field::text(
                        "LUN",
                        existing.map(|l| l.lun).unwrap_or(next).to_string(),
                        "0-16383",
                    ),
                    Field::choice("backstore", KINDS, kind),
                    Field::text(
                        "size",
                        size,
                        "RAMDISK/FILEIO: 1G, 256M, 4096 (FILEIO: empty = the file's size)",
                    ),
                    Field::text(
                        "path",
                        path,
                        "FILEIO: a file (created if missing); BLOCK: a device",
                    ),
                    Field::choice("O_DIRECT", NO_YES, yes(direct)),
                    Field::choice("read-only", NO_YES, yes(attrs.read_only)),
                    Field::choice(
                        "block size",
                        BLOCK_SIZES,
                        if attrs.block_size == 4096 {
                            "4096"
                        } else {
                            "512"
                        },
                    ),
                ]
            }
            FormKind::Acl(t, a) => {
                let acl = a.and_then(|a| cfg.targets.get(t)?.acls.get(a));
                vec![
                    Field::text(
                        "initiator",
                        acl.map(|a| a.initiator.clone()).unwrap_or_default(),
                        "the initiator's IQN",
                    ),
                    Field::text(
                        "CHAP",
                        acl.map(|a| chap_text(&a.chap)).unwrap_or_default(),
                        "USER:SECRET this initiator must prove; empty for none",
                    ),
                    Field::text(
                        "mutual CHAP",
                        acl.map(|a| chap_text(&a.mutual_chap)).unwrap_or_default(),
                        "USER:SECRET the target answers with; empty for none",
                    ),
                ]
            }
            FormKind::Import => vec![Field::text(
                "file",
                "",
                "targetcli's saveconfig.json, tgt's targets.conf or iolab's TOML: its targets replace these",
            )],
            FormKind::Workload | FormKind::Save | FormKind::Guest(_) => Vec::new(),
        };
        Form {
            kind,
            fields,
            focus: 0,
            error: None,
        }
    }

    pub fn title(&self) -> String {
        let verb = |new: bool| if new { "Add" } else { "Change" };
        match self.kind {
            FormKind::Portal(i) => format!("{} portal", verb(i.is_none())),
            FormKind::Target(i) => format!("{} target", verb(i.is_none())),
            FormKind::Lun(_, i) => format!("{} LUN", verb(i.is_none())),
            FormKind::Acl(_, i) => format!("{} ACL", verb(i.is_none())),
            FormKind::Workload => "Workload".into(),
            FormKind::Save => "Save the lab as a profile".into(),
            FormKind::Guest(i) => format!("{} guest", verb(i.is_none())),
            FormKind::Import => "Import targets".into(),
        }
    }

    fn value(&self, label: &str) -> &str {
        self.fields
            .iter()
            .find(|f| f.label == label)
            .map(|f| f.value.trim())
            .unwrap_or("")
    }

    fn chap(&self, label: &str) -> Result<Option<ChapCredentials>, String> {
        let v = self.value(label);
        if v.is_empty() {
            return Ok(None);
        }
        ChapCredentials::parse(v)
            .map(Some)
            .ok_or_else(|| format!("{label}: '{v}' is not USER:SECRET"))
    }

    fn number<T: std::str::FromStr>(&self, label: &str) -> Result<T, String> {
        let v = self.value(label);
        v.parse()
            .map_err(|_| format!("{label}: '{v}' is not a number"))
    }

    /// The whole configuration as it will be with this form's values, or
    /// why not (checked as the target would: names, numbers, duplicates);
    /// with it, what an imported file held that iolab cannot represent
    /// (nothing for the other forms).
    pub fn apply(&self, cfg: &ServerConfig) -> Result<(ServerConfig, Vec<String>), String> {
        let mut new = cfg.clone();
        let mut notes = Vec::new();
        match self.kind {
            FormKind::Portal(i) => {
                let p: Portal = self.value("address").parse()?;
                match i {
                    Some(i) => *new.listen.get_mut(i).ok_or("no such portal")? = p,
                    None => new.listen.push(p),
                }
            }
            FormKind::Target(i) => {
                let iqn = self.value("IQN").to_string();
                if !valid_iscsi_name(&iqn) {
                    return Err(format!(
                        "IQN: '{iqn}' is not an iSCSI name (iqn.YYYY-MM.reverse.domain[:name])"
                    ));
                }
                let mut t = match i {
                    Some(i) => new.targets.get(i).cloned().ok_or("no such target")?,
                    None => TargetConfig::new(&iqn),
                };
                t.iqn = iqn;
                t.demo_mode = self.value("demo mode") == "yes";
                t.chap = self.chap("CHAP")?;
                t.mutual_chap = self.chap("mutual CHAP")?;
                if t.mutual_chap.is_some() && t.chap.is_none() {
                    return Err("mutual CHAP needs CHAP".into());
                }
                t.queue_depth = self.number("queue depth")?;
                t.negotiation.max_connections = self.number("max connections")?;
                match i {
                    Some(i) => new.targets[i] = t,
                    None => new.targets.push(t),
                }
            }
            FormKind::Lun(t, i) => {
                let lun: u64 = self.number("LUN")?;
                let size = match self.value("size") {
                    "" => None,
                    s => Some(
                        parse_size(s)
                            .map_err(|_| format!("size: '{s}' is not a size (1G, 256M, 4096)"))?,
                    ),
                };
                let path = self.value("path");
                let direct = self.value("O_DIRECT") == "yes";
                let backstore = match self.value("backstore") {
                    "ramdisk" => BackstoreSpec::Ramdisk {
                        size: size
                            .filter(|s| *s > 0)
                            .ok_or("size: a RAMDISK needs a size")?,
                    },
                    "fileio" if path.is_empty() => return Err("path: FILEIO needs a file".into()),
                    "fileio" => BackstoreSpec::Fileio {
                        path: path.into(),
                        size,
                        direct,
                    },
                    _ if path.is_empty() => return Err("path: BLOCK needs a device".into()),
                    _ => BackstoreSpec::Block {
                        path: path.into(),
                        direct,
                    },
                };
                let target = new.targets.get_mut(t).ok_or("no such target")?;
                let mut l = match i {
                    Some(i) => target.luns.get(i).cloned().ok_or("no such LUN")?,
                    None => LunConfig {
                        lun,
                        backstore: backstore.clone(),
                        attributes: Default::default(),
                    },
                };
                l.lun = lun;
                l.backstore = backstore;
                l.attributes.read_only = self.value("read-only") == "yes";
                l.attributes.block_size = self.number("block size")?;
                l.attributes.physical_block_size = l
                    .attributes
                    .physical_block_size
                    .max(l.attributes.block_size);
                match i {
                    Some(i) => target.luns[i] = l,
                    None => target.luns.push(l),
                }
            }
            FormKind::Acl(t, i) => {
                let initiator = self.value("initiator").to_string();
                if !valid_iscsi_name(&initiator) {
                    return Err(format!("initiator: '{initiator}' is not an iSCSI name"));
                }
                let acl = Acl {
                    initiator,
                    chap: self.chap("CHAP")?,
                    mutual_chap: self.chap("mutual CHAP")?,
                };
                if acl.mutual_chap.is_some() && acl.chap.is_none() {
                    return Err("mutual CHAP needs CHAP".into());
                }
                let target = new.targets.get_mut(t).ok_or("no such target")?;
                if target
                    .acls
                    .iter()
                    .enumerate()
                    .any(|(j, a)| a.initiator == acl.initiator && Some(j) != i)
                {
                    return Err(format!("{} already has an ACL", acl.initiator));
                }
                match i {
                    Some(i) => target.acls[i] = acl,
                    None => target.acls.push(acl),
                }
            }
            FormKind::Import => {
                let path = self.value("file");
                if path.is_empty() {
                    return Err("file: which file?".into());
                }
                let imported = iolab_lab_core::target_file::load(std::path::Path::new(path), None)
                    .map_err(|e| e.to_string())?;
                // The portals stay as they are: the file's targets are served on them.
                new.targets = imported.config.targets;
                notes = imported.notes;
            }
            FormKind::Workload | FormKind::Save | FormKind::Guest(_) => {
                return Err("not a form of the target's configuration".into());
            }
        }
        new.validate()?;
        Ok((new, notes))
    }

    /// The Run screen's workload form, `urls` offered for the target.
    pub fn workload(f: &RunForm, urls: &[String]) -> Form {
        let mut target = Field::text(
            "target",
            f.url.clone().unwrap_or_default(),
            "a LUN URL iscsi://[user%secret@]host[:port]/IQN/LUN; Left/Right: the embedded target's; empty: its first",
        );
        target.options = urls.to_vec();
        let mode = match f.mode {
            Mode::Read => "read",
            Mode::Write => "write",
            Mode::Rw => "rw",
        };
        Form {
            kind: FormKind::Workload,
            fields: vec![
                target,
                Field::choice("mode", MODES, mode),
                Field::text(
                    "block size",
                    size_text(f.block_bytes as u64),
                    "256K, 64K, 4K (a multiple of 512)",
                ),
                Field::text(
                    "outstanding I/Os",
                    f.threads.to_string(),
                    "commands in flight, 1-4096 (disktest -K)",
                ),
                Field::text("time", format!("{}s", f.seconds), "30s, 2m"),
                Field::text(
                    "connections",
                    f.connections.to_string(),
                    "per session (MC/S), 1-8",
                ),
                Field::text("sessions", f.sessions.to_string(), SESSIONS_HINT),
                Field::choice("verify", NO_YES, yes(f.verify)),
                Field::text(
                    "range",
                    if f.range_bytes == 0 {
                        String::new()
                    } else {
                        size_text(f.range_bytes)
                    },
                    "use only the first SIZE of the LUN (64M); empty: all of it",
                ),
            ],
            focus: 0,
            error: None,
        }
    }

    /// The guest form: a new micro-guest, or `def` (the lab's guest at `index`).
    pub fn guest(index: Option<usize>, def: Option<&GuestDef>, taken: &[GuestDef]) -> Form {
        use iolab_lab_core::guest::{Accel, Nic};
        let fresh = (1..)
            .map(|i| format!("guest{i}"))
            .find(|n| !taken.iter().any(|g| &g.name == n))
            .unwrap_or_default();
        let kind = match def {
            Some(d) if d.micro.is_some() => "micro",
            Some(d) if d.kernel.is_some() => "kernel",
            Some(_) => "disk",
            None => "micro",
        };
        let (nic, nic_opt) = match def.map(|d| d.nics.first()) {
            None => ("user", String::new()),
            Some(None) => ("none", String::new()),
            Some(Some(Nic::User { forward })) => (
                "user",
                forward
                    .iter()
                    .map(|f| String::from(*f))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            Some(Some(Nic::Tap { ifname })) => ("tap", ifname.clone()),
        };
        let micro = def.and_then(|d| d.micro.clone());
        let accel = match def.map(|d| d.accel) {
            Some(Accel::Kvm) => "kvm",
            Some(Accel::Tcg) => "tcg",
            _ => "auto",
        };
        let text = |v: Option<&String>| v.cloned().unwrap_or_default();
        Form {
            kind: FormKind::Guest(index),
            fields: vec![
                Field::text(
                    "name",
                    def.map(|d| d.name.clone()).unwrap_or(fresh),
                    "no spaces or '/'",
                ),
                Field::choice("kind", GUEST_KINDS, kind),
                Field::text(
                    "memory MiB",
                    def.map_or(256, |d| d.memory_mib).to_string(),
                    "64 or more",
                ),
                Field::text("vCPUs", def.map_or(1, |d| d.vcpus).to_string(), "1-255"),
                Field::text(
                    "command",
                    micro
                        .as_ref()
                        .map(|m| m.command.join(" "))
                        .unwrap_or_default(),
                    "micro: the iolab command it runs (bench iscsi://10.0.2.2:PORT/IQN/0 --time 10s); empty: a shell",
                ),
                Field::text(
                    "IP",
                    micro.map(|m| m.ip).unwrap_or_else(|| "10.0.2.15/24".into()),
                    "micro: its address (CIDR); 10.0.2.15/24 on the user network",
                ),
                Field::text(
                    "kernel",
                    text(
                        def.and_then(|d| d.kernel.as_ref())
                            .filter(|_| kind == "kernel"),
                    ),
                    "kernel: a bzImage to boot",
                ),
                Field::text(
                    "initrd",
                    text(
                        def.and_then(|d| d.initrd.as_ref())
                            .filter(|_| kind == "kernel"),
                    ),
                    "kernel: its initramfs (may be empty)",
                ),
                Field::text(
                    "append",
                    def.filter(|_| kind == "kernel")
                        .map(|d| d.append.clone())
                        .unwrap_or_default(),
                    "kernel: its command line",
                ),
                Field::text(
                    "disk",
                    text(def.and_then(|d| d.disk.as_ref())),
                    "disk: an image file or an iscsi:// URL",
                ),
                Field::choice("NIC", NICS, nic),
                Field::text(
                    "NIC option",
                    nic_opt,
                    "user: forwards HOST_PORT=GUEST_PORT,... (loopback); tap: the interface name",
                ),
                Field::choice("accel", ACCELS, accel),
            ],
            focus: 0,
            error: None,
        }
    }

    /// The guest this form defines, or why not. `taken` are the lab's
    /// guests (the one edited is at `index`).
    pub fn apply_guest(&self, taken: &[GuestDef]) -> Result<GuestDef, String> {
        use iolab_lab_core::guest::{Accel, Micro, Nic};
        let index = match self.kind {
            FormKind::Guest(i) => i,
            _ => return Err("not a guest form".into()),
        };
        let name = self.value("name").to_string();
        if taken
            .iter()
            .enumerate()
            .any(|(i, g)| g.name == name && Some(i) != index)
        {
            return Err(format!("name: the lab has a guest named {name} already"));
        }
        let memory_mib: u32 = self.number("memory MiB")?;
        let vcpus: u32 = self.number("vCPUs")?;
        let opt = self.value("NIC option");
        let nics = match self.value("NIC") {
            "none" => Vec::new(),
            "tap" if opt.is_empty() => {
                return Err("NIC option: a tap NIC needs its interface name".into());
            }
            "tap" => vec![Nic::Tap { ifname: opt.into() }],
            _ => vec![Nic::User {
                forward: opt
                    .split(',')
                    .map(str::trim)
                    .filter(|f| !f.is_empty())
                    .map(|f| {
                        f.parse()
                            .map_err(|e: iolab_lab_core::guest::GuestError| e.to_string())
                    })
                    .collect::<Result<_, _>>()?,
            }],
        };
        let accel = match self.value("accel") {
            "kvm" => Accel::Kvm,
            "tcg" => Accel::Tcg,
            _ => Accel::Auto,
        };
        let some = |label: &str| Some(self.value(label).to_string()).filter(|v| !v.is_empty());
        let def = match self.value("kind") {
            "micro" => iolab_lab_core::guest::image::micro_guest(
                &name,
                memory_mib,
                vcpus,
                Micro {
                    ip: self.value("IP").to_string(),
                    command: self
                        .value("command")
                        .split_whitespace()
                        .map(String::from)
                        .collect(),
                },
                nics,
                accel,
            )
            .map_err(|e| e.to_string())?,
            kind => {
                if kind == "kernel" && some("kernel").is_none() {
                    return Err("kernel: a kernel guest needs a kernel".into());
                }
                if kind == "disk" && some("disk").is_none() {
                    return Err("disk: a disk guest needs an image".into());
                }
                let old = index.and_then(|i| taken.get(i));
                GuestDef {
                    name,
                    memory_mib,
                    vcpus,
                    pci: old.map(|g| g.pci.clone()).unwrap_or_default(),
                    disk: some("disk"),
                    kernel: some("kernel").filter(|_| kind == "kernel"),
                    initrd: some("initrd").filter(|_| kind == "kernel"),
                    append: if kind == "kernel" {
                        self.value("append").to_string()
                    } else {
                        String::new()
                    },
                    extra_args: old.map(|g| g.extra_args.clone()).unwrap_or_default(),
                    nics,
                    accel,
                    iommu: old.is_some_and(|g| g.iommu),
                    micro: None,
                }
            }
        };
        // Passthrough functions given to it on the Devices screen stay.
        let def = GuestDef {
            pci: index
                .and_then(|i| taken.get(i))
                .map(|g| g.pci.clone())
                .unwrap_or(def.pci),
            ..def
        };
        match def.problems().first() {
            Some(p) => Err(p.clone()),
            None => Ok(def),
        }
    }

    /// The Save form: a profile name, and whether to replace a saved one.
    pub fn save(name: &str) -> Form {
        Form {
            kind: FormKind::Save,
            fields: vec![
                Field::text("name", name, "1-64 letters, digits, '-', '_', '.'"),
                Field::choice("replace", NO_YES, "no"),
            ],
            focus: 0,
            error: None,
        }
    }

    /// The name and replace choice of a Save form, or why not.
    pub fn save_choice(&self) -> Result<(String, bool), String> {
        let name = self.value("name");
        if !iolab_lab_core::profile::valid_name(name) {
            return Err(format!(
                "name: '{name}' must be 1-64 letters, digits, '-', '_' or '.'"
            ));
        }
        if iolab_lab_core::profile::builtin(name).is_some() {
            return Err(format!("name: '{name}' is a built-in profile"));
        }
        Ok((name.to_string(), self.value("replace") == "yes"))
    }

    /// The workload as this form sets it, or why not.
    pub fn apply_workload(&self) -> Result<RunForm, String> {
        let url = match self.value("target") {
            "" => None,
            u => {
                IscsiUrl::parse(u, false).map_err(|e| format!("target: {e}"))?;
                Some(u.to_string())
            }
        };
        let block = parse_size(self.value("block size"))
            .ok()
            .filter(|b| *b > 0 && b % 512 == 0 && *b <= 16 << 20)
            .ok_or_else(|| {
                format!(
                    "block size: '{}' is not a multiple of 512 up to 16M",
                    self.value("block size")
                )
            })?;
        let threads: u32 = self.number("outstanding I/Os")?;
        let time = iolab_lab_core::units::parse_duration(self.value("time"))
            .ok()
            .filter(|d| d.as_secs() >= 1)
            .ok_or_else(|| {
                format!(
                    "time: '{}' is not a duration of a second or more",
                    self.value("time")
                )
            })?;
        let connections: u32 = self.number("connections")?;
        let sessions: u32 = self.number("sessions")?;
        if !(1..=4096).contains(&threads) {
            return Err("outstanding I/Os: 1-4096".into());
        }
        if !(1..=8).contains(&connections) {
            return Err("connections: 1-8".into());
        }
        if !(1..=MAX_SESSIONS).contains(&sessions) {
            return Err(format!("sessions: {SESSIONS_HINT}"));
        }
        let range_bytes = match self.value("range") {
            "" => 0,
            r => parse_size(r).map_err(|_| format!("range: '{r}' is not a size"))?,
        };
        Ok(RunForm {
            mode: match self.value("mode") {
                "write" => Mode::Write,
                "rw" => Mode::Rw,
                _ => Mode::Read,
            },
            block_bytes: block as u32,
            threads,
            seconds: time.as_secs() as u32,
            connections,
            sessions,
            url,
            verify: self.value("verify") == "yes",
            range_bytes,
            initiator: Some(self.value("initiator").to_string())
                .filter(|n| !n.is_empty() && *n != iolab_iscsi::initiator::DEFAULT_INITIATOR),
        })
    }

    /// A key while the form is open: `Some(true)` to apply, `Some(false)` to cancel.
    pub fn on_key(&mut self, code: KeyCode) -> Option<bool> {
        let n = self.fields.len();
        let f = &mut self.fields[self.focus];
        match code {
            KeyCode::Esc => return Some(false),
            KeyCode::Enter => return Some(true),
            KeyCode::Tab | KeyCode::Down => self.focus = (self.focus + 1) % n,
            KeyCode::BackTab | KeyCode::Up => self.focus = (self.focus + n - 1) % n,
            KeyCode::Left => f.cycle(-1),
            KeyCode::Right => f.cycle(1),
            KeyCode::Char(' ') if !f.choices.is_empty() => f.cycle(1),
            KeyCode::Backspace if f.choices.is_empty() => {
                f.value.pop();
            }
            KeyCode::Char(c) if f.choices.is_empty() => f.value.push(c),
            _ => {}
        }
        None
    }
}

/// A name for a new target that no target has yet.
fn next_iqn(cfg: &ServerConfig) -> String {
    (0..)
        .map(|i| format!("iqn.2026-11.io.iolab:target{i}"))
        .find(|n| !cfg.targets.iter().any(|t| &t.iqn == n))
        .unwrap_or_default()
}

/// A deletion waiting for y/n.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub node: Node,
    pub question: String,
}

/// What the editor asks of the event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditorAction {
    None,
    /// Apply `proposed` to the running target.
    Apply,
}

/// The Target screen's editor.
#[derive(Debug, Clone, Default)]
pub struct TargetEditor {
    /// The configuration in force on the running target (None: no target).
    pub config: Option<ServerConfig>,
    pub cursor: usize,
    pub form: Option<Form>,
    pub confirm: Option<Confirm>,
    /// Why the last change was not made, shown until the next key.
    pub notice: Option<String>,
    /// What an import in flight could not represent, shown once it applied.
    pub import_notes: Vec<String>,
    /// The configuration handed to the target and not yet answered.
    pub proposed: Option<ServerConfig>,
    /// The target IQN of each session logged in (from the statistics snapshot).
    pub sessions: Vec<String>,
}

impl TargetEditor {
    pub fn rows(&self) -> Vec<Node> {
        self.config.as_ref().map(rows).unwrap_or_default()
    }

    /// Whether the editor takes this key (a form or question open, or one of its own keys).
    pub fn wants(&self, code: KeyCode) -> bool {
        self.form.is_some()
            || self.confirm.is_some()
            || self.notice.is_some()
            || matches!(
                code,
                KeyCode::Char('j' | 'k' | 'a' | 'A' | 'T' | 'e' | 'd' | 'i')
                    | KeyCode::Up
                    | KeyCode::Down
                    | KeyCode::Enter
            )
    }

    /// How many sessions are logged in to the target named `iqn`.
    pub fn sessions_on(&self, iqn: &str) -> usize {
        self.sessions.iter().filter(|i| *i == iqn).count()
    }

    pub fn on_key(&mut self, code: KeyCode) -> EditorAction {
        let Some(cfg) = self.config.clone() else {
            return EditorAction::None;
        };
        if self.proposed.is_some() {
            // One change at a time: keys wait until the target has answered.
            return EditorAction::None;
        }
        if let Some(form) = self.form.as_mut() {
            match form.on_key(code) {
                Some(false) => self.form = None,
                Some(true) => match form.apply(&cfg) {
                    Ok((new, notes)) => {
                        form.error = None;
                        self.import_notes = notes;
                        self.proposed = Some(new);
                        return EditorAction::Apply;
                    }
                    Err(e) => form.error = Some(e),
                },
                None => {}
            }
            return EditorAction::None;
        }
        if self.notice.take().is_some() {
            return EditorAction::None;
        }
        if let Some(c) = self.confirm.take() {
            if code == KeyCode::Char('y') {
                match delete(&cfg, c.node) {
                    Ok(new) => {
                        self.proposed = Some(new);
                        return EditorAction::Apply;
                    }
                    Err(e) => self.notice = Some(format!("cannot delete: {e}")),
                }
            }
            return EditorAction::None;
        }
        let rows = rows(&cfg);
        let sel = rows.get(self.cursor).copied();
        let target_of = |n: Option<Node>| match n {
            Some(Node::Target(t) | Node::Lun(t, _) | Node::Acl(t, _)) => Some(t),
            _ => None,
        };
        match code {
            KeyCode::Down | KeyCode::Char('j') if self.cursor + 1 < rows.len() => self.cursor += 1,
            KeyCode::Up | KeyCode::Char('k') => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Char('a') => {
                let kind = match sel {
                    Some(Node::Portals | Node::Portal(_)) | None => FormKind::Portal(None),
                    Some(Node::Acl(t, _)) => FormKind::Acl(t, None),
                    Some(Node::Target(t) | Node::Lun(t, _)) => FormKind::Lun(t, None),
                };
                self.form = Some(Form::new(kind, &cfg));
            }
            KeyCode::Char('A') => {
                if let Some(t) = target_of(sel) {
                    self.form = Some(Form::new(FormKind::Acl(t, None), &cfg));
                }
            }
            KeyCode::Char('T') => self.form = Some(Form::new(FormKind::Target(None), &cfg)),
            KeyCode::Char('i') => self.form = Some(Form::new(FormKind::Import, &cfg)),
            KeyCode::Char('e') | KeyCode::Enter => {
                let kind = match sel {
                    Some(Node::Portal(i)) => Some(FormKind::Portal(Some(i))),
                    Some(Node::Target(t)) => Some(FormKind::Target(Some(t))),
                    Some(Node::Lun(t, l)) => Some(FormKind::Lun(t, Some(l))),
                    Some(Node::Acl(t, a)) => Some(FormKind::Acl(t, Some(a))),
                    _ => None,
                };
                self.form = kind.map(|k| Form::new(k, &cfg));
            }
            KeyCode::Char('d') => {
                if let Some(node) = sel.filter(|n| *n != Node::Portals) {
                    let what = describe(&cfg, node);
                    let users =
                        target_of(Some(node)).map_or(0, |t| self.sessions_on(&cfg.targets[t].iqn));
                    let question = match (node, users) {
                        (Node::Portal(_), _) | (_, 0) => format!("delete {what}? y/n"),
                        (_, n) => format!(
                            "{n} session(s) are logged in to this target: delete {what} anyway? y/n"
                        ),
                    };
                    self.confirm = Some(Confirm { node, question });
                }
            }
            _ => {}
        }
        EditorAction::None
    }

    /// The target's answer to `proposed`.
    pub fn applied(&mut self, result: Result<ServerConfig, String>) {
        self.proposed = None;
        match result {
            Ok(cfg) => {
                self.form = None;
                self.cursor = self.cursor.min(rows(&cfg).len().saturating_sub(1));
                self.config = Some(cfg);
                let notes = std::mem::take(&mut self.import_notes);
                if !notes.is_empty() {
                    self.notice = Some(format!("imported; not represented: {}", notes.join("; ")));
                }
            }
            Err(e) => match self.form.as_mut() {
                Some(f) => {
                    self.import_notes.clear();
                    f.error = Some(e)
                }
                None => self.notice = Some(format!("not changed: {e}")),
            },
        }
    }
}

/// The configuration without `node`.
fn delete(cfg: &ServerConfig, node: Node) -> Result<ServerConfig, String> {
    let mut new = cfg.clone();
    match node {
        Node::Portals => return Err("select a portal, target, LUN or ACL".into()),
        Node::Portal(i) => {
            new.listen.remove(i);
        }
        Node::Target(t) => {
            new.targets.remove(t);
        }
        Node::Lun(t, l) => {
            new.targets[t].luns.remove(l);
        }
        Node::Acl(t, a) => {
            new.targets[t].acls.remove(a);
        }
    }
    new.validate()?;
    Ok(new)
}

/// A node in words: "LUN 1 of iqn...", "portal 127.0.0.1:3260".
pub fn describe(cfg: &ServerConfig, node: Node) -> String {
    match node {
        Node::Portals => "portals".into(),
        Node::Portal(i) => format!("portal {}", cfg.listen[i]),
        Node::Target(t) => format!("target {}", cfg.targets[t].iqn),
        Node::Lun(t, l) => format!(
            "LUN {} of {}",
            cfg.targets[t].luns[l].lun, cfg.targets[t].iqn
        ),
        Node::Acl(t, a) => format!(
            "the ACL of {} on {}",
            cfg.targets[t].acls[a].initiator, cfg.targets[t].iqn
        ),
    }
}

/// A backstore in one phrase: `RAMDISK 1G`, `FILEIO /x.img 1G O_DIRECT`.
pub fn backstore_text(b: &BackstoreSpec) -> String {
    let direct = |d: bool| if d { " O_DIRECT" } else { "" };
    match b {
        BackstoreSpec::Ramdisk { size } => format!("RAMDISK {}", size_text(*size)),
        BackstoreSpec::Fileio {
            path,
            size,
            direct: d,
        } => format!(
            "FILEIO {} {}{}",
            path.display(),
            size.map(size_text)
                .unwrap_or_else(|| "(file's size)".into()),
            direct(*d)
        ),
        BackstoreSpec::Block { path, direct: d } => {
            format!("BLOCK {}{}", path.display(), direct(*d))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn editor() -> TargetEditor {
        TargetEditor {
            config: Some(ServerConfig::default_lab(
                "127.0.0.1:3260".parse().unwrap(),
                1 << 30,
            )),
            ..Default::default()
        }
    }

    fn keys(e: &mut TargetEditor, ks: &[KeyCode]) -> EditorAction {
        let mut last = EditorAction::None;
        for k in ks {
            last = e.on_key(*k);
        }
        last
    }

    fn typed(e: &mut TargetEditor, text: &str) {
        for c in text.chars() {
            e.on_key(KeyCode::Char(c));
        }
    }

    fn clear(e: &mut TargetEditor) {
        for _ in 0..64 {
            e.on_key(KeyCode::Backspace);
        }
    }

    #[test]
    fn the_run_form_takes_as_many_sessions_as_a_profile() {
        assert_eq!(SESSIONS_HINT, format!("1-{MAX_SESSIONS}"));
        let mut f = Form::workload(&RunForm::default(), &[]);
        let set = |f: &mut Form, n: &str| {
            let field = f.fields.iter_mut().find(|x| x.label == "sessions").unwrap();
            field.value = n.into();
        };
        set(&mut f, "256");
        assert_eq!(f.apply_workload().unwrap().sessions, 256);
        set(&mut f, "257");
        assert_eq!(f.apply_workload().unwrap_err(), "sessions: 1-256");
        set(&mut f, "0");
        assert!(f.apply_workload().is_err());
    }

    #[test]
    fn tree_lists_portals_targets_luns_and_acls() {
        let mut cfg = editor().config.unwrap();
        cfg.targets[0].acls.push(Acl {
            initiator: "iqn.2026-12.org.example:host1".into(),
            chap: None,
            mutual_chap: None,
        });
        assert_eq!(
            rows(&cfg),
            vec![
                Node::Portals,
                Node::Portal(0),
                Node::Target(0),
                Node::Lun(0, 0),
                Node::Acl(0, 0)
            ]
        );
        assert_eq!(
            describe(&cfg, Node::Lun(0, 0)),
            "LUN 0 of iqn.2026-11.io.iolab:target0"
        );
    }

    #[test]
    fn adding_a_fileio_lun_proposes_the_whole_new_configuration() {
        let mut e = editor();
        keys(&mut e, &[KeyCode::Down, KeyCode::Down, KeyCode::Char('a')]);
        let form = e.form.as_ref().unwrap();
        assert_eq!(form.kind, FormKind::Lun(0, None));
        assert_eq!(form.fields[0].value, "1", "the next free LUN number");
        // backstore: fileio; size 64M; path.
        keys(&mut e, &[KeyCode::Tab, KeyCode::Right, KeyCode::Tab]);
        clear(&mut e);
        typed(&mut e, "64M");
        e.on_key(KeyCode::Tab);
        typed(&mut e, "/var/tmp/lun1.img");
        keys(&mut e, &[KeyCode::Tab, KeyCode::Char(' ')]);
        assert_eq!(e.on_key(KeyCode::Enter), EditorAction::Apply);
        let new = e.proposed.clone().unwrap();
        let l = &new.targets[0].luns[1];
        assert_eq!(l.lun, 1);
        assert_eq!(
            l.backstore,
            BackstoreSpec::Fileio {
                path: "/var/tmp/lun1.img".into(),
                size: Some(64 << 20),
                direct: true
            }
        );
        assert_eq!(
            new.targets[0].luns[0],
            e.config.as_ref().unwrap().targets[0].luns[0]
        );
        // While the target has not answered, keys wait.
        assert_eq!(e.on_key(KeyCode::Esc), EditorAction::None);
        assert!(e.form.is_some());
        // The target refused: the form stays, with the reason.
        e.applied(Err("cannot open /var/tmp/lun1.img".into()));
        assert_eq!(
            e.form.as_ref().unwrap().error.as_deref(),
            Some("cannot open /var/tmp/lun1.img")
        );
        assert_eq!(
            e.config.as_ref().unwrap().targets[0].luns.len(),
            1,
            "nothing changed"
        );
        // Applied: the form closes and the tree shows the LUN.
        assert_eq!(e.on_key(KeyCode::Enter), EditorAction::Apply);
        e.applied(Ok(e.proposed.clone().unwrap()));
        assert!(e.form.is_none() && e.proposed.is_none());
        assert!(e.rows().contains(&Node::Lun(0, 1)));
    }

    #[test]
    fn bad_values_are_refused_in_the_form_with_the_reason() {
        let cases: [(Node, FormKind, &str, &str, &str); 6] = [
            (
                Node::Lun(0, 0),
                FormKind::Lun(0, None),
                "size",
                "12X",
                "size: '12X' is not a size",
            ),
            (
                Node::Lun(0, 0),
                FormKind::Lun(0, None),
                "LUN",
                "0",
                "LUN 0 is mapped twice",
            ),
            (
                Node::Portal(0),
                FormKind::Portal(None),
                "address",
                "localhost",
                "is not ADDR:PORT",
            ),
            (
                Node::Portal(0),
                FormKind::Portal(None),
                "address",
                "127.0.0.1:3260",
                "listed twice",
            ),
            (
                Node::Target(0),
                FormKind::Target(None),
                "IQN",
                "target1",
                "not an iSCSI name",
            ),
            (
                Node::Acl(0, 0),
                FormKind::Acl(0, None),
                "CHAP",
                "alice",
                "'alice' is not USER:SECRET",
            ),
        ];
        let cfg = editor().config.unwrap();
        for (_, kind, label, value, why) in cases {
            let mut form = Form::new(kind, &cfg);
            if let FormKind::Acl(..) = kind {
                form.fields[0].value = "iqn.2026-12.org.example:host1".into();
            }
            let f = form.fields.iter_mut().find(|f| f.label == label).unwrap();
            f.value = value.into();
            let e = form.apply(&cfg).unwrap_err();
            assert!(e.contains(why), "{label}={value}: {e}");
        }
        // Demo mode off without any ACL: nobody could log in.
        let mut form = Form::new(FormKind::Target(Some(0)), &cfg);
        form.fields[1].value = "no".into();
        assert!(
            form.apply(&cfg)
                .unwrap_err()
                .contains("no ACL allows any initiator")
        );
    }

    #[test]
    fn acls_with_mutual_chap_and_no_duplicates() {
        let mut e = editor();
        keys(&mut e, &[KeyCode::Down, KeyCode::Down, KeyCode::Char('A')]);
        typed(&mut e, "iqn.2026-12.org.example:host1");
        e.on_key(KeyCode::Tab);
        typed(&mut e, "alice:secret12345");
        e.on_key(KeyCode::Tab);
        typed(&mut e, "tgt:othersecret12");
        assert_eq!(e.on_key(KeyCode::Enter), EditorAction::Apply);
        let new = e.proposed.clone().unwrap();
        e.applied(Ok(new.clone()));
        let acl = &new.targets[0].acls[0];
        assert_eq!(acl.chap.as_ref().unwrap().user, "alice");
        assert_eq!(acl.mutual_chap.as_ref().unwrap().secret, "othersecret12");
        // The same initiator again is refused.
        let mut form = Form::new(FormKind::Acl(0, None), &new);
        form.fields[0].value = "iqn.2026-12.org.example:host1".into();
        assert!(form.apply(&new).unwrap_err().contains("already has an ACL"));
        // Editing it keeps one ACL.
        let mut form = Form::new(FormKind::Acl(0, Some(0)), &new);
        form.fields[2].value.clear();
        let (edited, _) = form.apply(&new).unwrap();
        assert_eq!(edited.targets[0].acls.len(), 1);
        assert!(edited.targets[0].acls[0].mutual_chap.is_none());
    }

    #[test]
    fn import_replaces_the_targets_keeps_the_portals_and_lists_what_did_not_fit() {
        let dir = std::env::temp_dir().join(format!("iolab-editor-import-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("targets.conf");
        std::fs::write(
            &file,
            "<target iqn.2026-12.org.example:t>\n backing-store /srv/a.img\n initiator-address 10.0.0.9\n</target>\n",
        )
        .unwrap();
        let mut e = editor();
        e.on_key(KeyCode::Char('i'));
        assert_eq!(e.form.as_ref().unwrap().title(), "Import targets");
        assert_eq!(
            e.on_key(KeyCode::Enter),
            EditorAction::None,
            "no file named"
        );
        typed(&mut e, file.to_str().unwrap());
        assert_eq!(e.on_key(KeyCode::Enter), EditorAction::Apply);
        let new = e.proposed.clone().unwrap();
        assert_eq!(
            new.listen,
            e.config.as_ref().unwrap().listen,
            "portals stay"
        );
        assert_eq!(new.targets.len(), 1);
        assert_eq!(new.targets[0].iqn, "iqn.2026-12.org.example:t");
        e.applied(Ok(new));
        let notice = e.notice.clone().unwrap();
        assert!(
            notice.starts_with("imported; not represented:")
                && notice.contains("initiator-address 10.0.0.9"),
            "{notice}"
        );
        // A file that is not there says so in the form.
        e.on_key(KeyCode::Char('x'));
        e.on_key(KeyCode::Char('i'));
        typed(&mut e, "/nonexistent/saveconfig.json");
        e.on_key(KeyCode::Enter);
        let err = e.form.as_ref().unwrap().error.clone().unwrap();
        assert!(err.contains("/nonexistent/saveconfig.json"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn deleting_asks_first_and_says_who_is_logged_in() {
        let mut e = editor();
        e.sessions = vec!["iqn.2026-11.io.iolab:target0".into(); 2];
        keys(
            &mut e,
            &[
                KeyCode::Down,
                KeyCode::Down,
                KeyCode::Down,
                KeyCode::Char('d'),
            ],
        );
        let q = &e.confirm.as_ref().unwrap().question;
        assert!(q.starts_with("2 session(s) are logged in"), "{q}");
        assert!(q.contains("LUN 0 of iqn.2026-11.io.iolab:target0"), "{q}");
        assert_eq!(e.on_key(KeyCode::Char('n')), EditorAction::None);
        assert!(e.confirm.is_none() && e.proposed.is_none(), "declined");
        e.on_key(KeyCode::Char('d'));
        assert_eq!(e.on_key(KeyCode::Char('y')), EditorAction::Apply);
        assert!(e.proposed.as_ref().unwrap().targets[0].luns.is_empty());
        e.applied(Ok(e.proposed.clone().unwrap()));
        // The only portal cannot go: the target would listen nowhere.
        keys(
            &mut e,
            &[KeyCode::Up, KeyCode::Up, KeyCode::Up, KeyCode::Down],
        );
        e.on_key(KeyCode::Char('d'));
        assert_eq!(
            e.confirm.as_ref().unwrap().question,
            "delete portal 127.0.0.1:3260? y/n"
        );
        assert_eq!(e.on_key(KeyCode::Char('y')), EditorAction::None);
        assert_eq!(
            e.notice.as_deref(),
            Some("cannot delete: no portal to listen on")
        );
        e.on_key(KeyCode::Char('x'));
        assert!(e.notice.is_none(), "any key dismisses the notice");
    }
}
