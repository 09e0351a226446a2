//! tgt's `targets.conf` (tgt-admin) in and out: `<target IQN>` blocks with
//! backing-store/direct-store LUNs (one-line or `<backing-store PATH>`
//! blocks), initiator-name ACLs, incominguser/outgoinguser CHAP and iSCSI
//! keys. LUNs are numbered as tgt-admin numbers them: an explicit `lun`
//! first, the rest from 1 in sorted path order, backing-stores before
//! direct-stores (LUN 0 is tgt's controller, which iolab does not serve).

use std::path::{Path, PathBuf};

use iolab_storage::BackstoreSpec;

use super::config::{Acl, LunConfig, Portal, ServerConfig, TargetConfig};
use super::saveconfig::{ImportError, Imported};
use crate::chap::ChapCredentials;

/// One `<target>` block's LUN, before numbering.
#[derive(Debug, Default, Clone)]
struct Store {
    path: String,
    direct_store: bool,
    options: Vec<(String, String)>,
}

#[derive(Debug, Default)]
struct Block {
    iqn: String,
    options: Vec<(String, String)>,
    stores: Vec<Store>,
}

fn invalid(origin: &str, line: usize, message: impl Into<String>) -> ImportError {
    ImportError::Invalid {
        origin: format!("{origin}:{line}"),
        message: message.into(),
    }
}

/// Splits `key value...` (a value may be quoted).
fn directive(line: &str) -> (String, String) {
    let mut it = line.splitn(2, char::is_whitespace);
    let k = it.next().unwrap_or("").to_string();
    let v = it.next().unwrap_or("").trim().trim_matches('"').to_string();
    (k, v)
}

fn parse(text: &str, origin: &str, notes: &mut Vec<String>) -> Result<Vec<Block>, ImportError> {
    let mut blocks = Vec::new();
    let mut target: Option<Block> = None;
    let mut store: Option<Store> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(tag) = line.strip_prefix("</") {
            let tag = tag.trim_end_matches('>').trim();
            match tag {
                "target" => {
                    if store.is_some() {
                        return Err(invalid(origin, n, "</target> inside a LUN block"));
                    }
                    blocks.push(
                        target
                            .take()
                            .ok_or_else(|| invalid(origin, n, "</target> without <target>"))?,
                    );
                }
                "backing-store" | "direct-store" => {
                    let s = store
                        .take()
                        .ok_or_else(|| invalid(origin, n, format!("</{tag}> without <{tag}>")))?;
                    target
                        .as_mut()
                        .ok_or_else(|| invalid(origin, n, "a LUN block outside <target>"))?
                        .stores
                        .push(s);
                }
                other => {
                    return Err(invalid(
                        origin,
                        n,
                        format!("unknown closing tag </{other}>"),
                    ));
                }
            }
            continue;
        }
        if let Some(open) = line.strip_prefix('<') {
            let open = open.trim_end_matches('>').trim();
            let (tag, value) = directive(open);
            match tag.as_str() {
                "target" if target.is_none() => {
                    target = Some(Block {
                        iqn: value,
                        ..Block::default()
                    })
                }
                "target" => return Err(invalid(origin, n, "<target> inside <target>")),
                "backing-store" | "direct-store" if target.is_some() && store.is_none() => {
                    store = Some(Store {
                        path: value,
                        direct_store: tag == "direct-store",
                        options: Vec::new(),
                    })
                }
                other => return Err(invalid(origin, n, format!("unexpected <{other}>"))),
            }
            continue;
        }
        let (k, v) = directive(line);
        match (&mut target, &mut store) {
            (_, Some(s)) => s.options.push((k, v)),
            (Some(t), None) if k == "backing-store" || k == "direct-store" => {
                t.stores.push(Store {
                    path: v,
                    direct_store: k == "direct-store",
                    options: Vec::new(),
                })
            }
            (Some(t), None) => t.options.push((k, v)),
            (None, None) => match k.as_str() {
                "default-driver" if v == "iscsi" => {}
                "ignore-errors" => {}
                "include" => notes.push(format!(
                    "{origin}:{n}: 'include {v}' is not followed: import those files too"
                )),
                _ => notes.push(format!(
                    "{origin}:{n}: global '{k} {v}' is not represented in iolab (ignored)"
                )),
            },
        }
    }
    if target.is_some() || store.is_some() {
        return Err(invalid(
            origin,
            text.lines().count(),
            "a block is not closed",
        ));
    }
    Ok(blocks)
}

fn chap(v: &str) -> Option<ChapCredentials> {
    let mut it = v.split_whitespace();
    let (u, s) = (it.next()?, it.next()?);
    Some(ChapCredentials {
        user: u.into(),
        secret: s.into(),
    })
}

/// Reads a `targets.conf`.
pub fn import(text: &str, origin: &str) -> Result<Imported, ImportError> {
    let mut notes = Vec::new();
    let blocks = parse(text, origin, &mut notes)?;
    let mut targets = Vec::new();
    for b in blocks {
        targets.push(target(b, &mut notes));
    }
    let config = ServerConfig {
        listen: vec![Portal::new(
            ([127, 0, 0, 1], super::config::DEFAULT_PORT).into(),
        )],
        targets,
    };
    notes.push(
        "targets.conf names no portal (tgtd's --iscsi portal=): serving on 127.0.0.1:3260".into(),
    );
    config.validate().map_err(|e| ImportError::Invalid {
        origin: origin.into(),
        message: format!("the imported configuration does not hold: {e}"),
    })?;
    Ok(Imported { config, notes })
}

fn target(b: Block, notes: &mut Vec<String>) -> TargetConfig {
    let iqn = b.iqn.clone();
    let mut tc = TargetConfig::new(&iqn);
    let mut incoming = Vec::new();
    let (mut names, mut addresses) = (Vec::new(), Vec::new());
    let mut lun_defaults = Vec::new();
    for (k, v) in &b.options {
        let n = &mut tc.negotiation;
        let num = v.parse::<u32>().ok();
        match (k.as_str(), num) {
            ("initiator-name", _) => names.push(v.clone()),
            ("initiator-address", _) => addresses.push(v.clone()),
            ("incominguser", _) => incoming.extend(chap(v)),
            ("outgoinguser", _) => tc.mutual_chap = chap(v),
            (k, _) if super::config::set_iscsi_key(n, k, v) => {}
            ("TargetAlias", _) => tc.alias = Some(v.clone()),
            ("QueueDepth" | "MaxQueueCmd", Some(x)) => tc.queue_depth = x.clamp(1, 1024),
            ("driver", _) if v == "iscsi" => {}
            ("MaxXmitDataSegmentLength" | "controller_tid" | "allow-in-use", _) => {}
            // LUN-level directives at the target level apply to every LUN.
            (
                "bs-type" | "write-cache" | "readonly" | "vendor_id" | "product_id" | "product_rev"
                | "scsi_sn" | "scsi_id" | "block-size" | "removable" | "lbppbe" | "device-type"
                | "sense_format" | "params" | "mode_page" | "optimal_xfer_gran"
                | "optimal_xfer_len" | "la_lba" | "path" | "lun",
                _,
            ) => lun_defaults.push((k.clone(), v.clone())),
            _ => notes.push(format!(
                "{iqn}: '{k} {v}' is not represented in iolab (ignored)"
            )),
        }
    }
    if let Some(first) = incoming.first() {
        tc.chap = Some(first.clone());
        for extra in &incoming[1..] {
            notes.push(format!(
                "{iqn}: incominguser {} is not served: iolab takes one CHAP user per target or ACL ({})",
                extra.user, first.user
            ));
        }
    }
    if tc.mutual_chap.is_some() && tc.chap.is_none() {
        notes.push(format!(
            "{iqn}: outgoinguser without incominguser: mutual CHAP dropped"
        ));
        tc.mutual_chap = None;
    }
    for a in &addresses {
        notes.push(format!(
            "{iqn}: initiator-address {a} is not represented: iolab allows by initiator name (and CHAP), not by address"
        ));
    }
    if !names.is_empty() {
        // tgt asks the same CHAP of every initiator it allows by name.
        tc.demo_mode = false;
        tc.acls = names
            .iter()
            .map(|n| Acl {
                initiator: n.clone(),
                chap: tc.chap.clone(),
                mutual_chap: tc.mutual_chap.clone(),
            })
            .collect();
    } else if !addresses.is_empty() {
        notes.push(format!(
            "{iqn}: allowed by address only: served in demo mode (any initiator)"
        ));
    }
    tc.luns = luns(&iqn, &b.stores, &lun_defaults, notes);
    tc
}

/// tgt's LUN-level directives, at the target level (every LUN) or in a LUN block.
const LUN_DIRECTIVES: [&str; 18] = [
    "readonly",
    "removable",
    "vendor_id",
    "product_id",
    "product_rev",
    "scsi_sn",
    "block-size",
    "write-cache",
    "scsi_id",
    "lbppbe",
    "device-type",
    "sense_format",
    "params",
    "mode_page",
    "optimal_xfer_gran",
    "optimal_xfer_len",
    "la_lba",
    "path",
];

fn luns(
    iqn: &str,
    stores: &[Store],
    defaults: &[(String, String)],
    notes: &mut Vec<String>,
) -> Vec<LunConfig> {
    // tgt-admin: sorted by path, backing-stores before direct-stores.
    let mut order: Vec<&Store> = stores.iter().collect();
    order.sort_by(|a, b| (a.direct_store, &a.path).cmp(&(b.direct_store, &b.path)));
    let get = |s: &Store, k: &str| {
        s.options
            .iter()
            .rev()
            .chain(defaults.iter().rev())
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let mut taken: Vec<u64> = order
        .iter()
        .filter_map(|s| s.options.iter().find(|(k, _)| k == "lun"))
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    let mut out = Vec::new();
    for s in order {
        let explicit = s
            .options
            .iter()
            .find(|(k, _)| k == "lun")
            .and_then(|(_, v)| v.parse::<u64>().ok());
        let lun = explicit.unwrap_or_else(|| {
            let mut l = 1;
            while taken.contains(&l) {
                l += 1;
            }
            taken.push(l);
            l
        });
        let bs_type = get(s, "bs-type").unwrap_or_else(|| "rdwr".into());
        let path = PathBuf::from(&s.path);
        let device = Path::new(&s.path).starts_with("/dev");
        let direct = match bs_type.as_str() {
            "rdwr" => false,
            "aio" => true,
            other => {
                notes.push(format!(
                    "{iqn}: LUN {lun} ({}): bs-type '{other}' is not one iolab serves (rdwr, aio): skipped",
                    s.path
                ));
                continue;
            }
        };
        if s.direct_store {
            notes.push(format!(
                "{iqn}: LUN {lun}: direct-store {} is served as an emulated BLOCK LUN (tgt copies the device's INQUIRY data)",
                s.path
            ));
        }
        let backstore = if device || s.direct_store {
            BackstoreSpec::Block { path, direct }
        } else {
            BackstoreSpec::Fileio {
                path,
                size: None,
                direct,
            }
        };
        let mut lc = LunConfig {
            lun,
            backstore,
            attributes: Default::default(),
        };
        let a = &mut lc.attributes;
        for key in LUN_DIRECTIVES {
            let Some(v) = get(s, key) else { continue };
            match key {
                "readonly" => a.read_only = v == "1" || v.eq_ignore_ascii_case("yes") || v == "on",
                "removable" => a.removable = v == "1" || v.eq_ignore_ascii_case("yes") || v == "on",
                "vendor_id" => a.vendor = v,
                "product_id" => a.product = v,
                "product_rev" => a.revision = v,
                "scsi_sn" => a.serial = v,
                "block-size" => match v.parse::<u32>() {
                    Ok(bs) if bs.is_power_of_two() && (512..=4096).contains(&bs) => {
                        a.block_size = bs;
                        a.physical_block_size = a.physical_block_size.max(bs);
                    }
                    _ => notes.push(format!("{iqn}: LUN {lun}: block-size {v} is not served (512-4096)")),
                },
                "write-cache" if v == "off" => notes.push(format!(
                    "{iqn}: LUN {lun}: write-cache off is not represented: iolab reports a write cache and honours FUA and SYNCHRONIZE CACHE"
                )),
                "write-cache" => {}
                "device-type" if v == "disk" => {}
                _ => notes.push(format!("{iqn}: LUN {lun}: '{key} {v}' is not represented in iolab (ignored)")),
            }
        }
        for (k, v) in &s.options {
            let known = LUN_DIRECTIVES.contains(&k.as_str())
                || matches!(k.as_str(), "lun" | "bs-type" | "allow-in-use");
            if !known {
                notes.push(format!(
                    "{iqn}: LUN {lun}: '{k} {v}' is not represented in iolab (ignored)"
                ));
            }
        }
        out.push(lc);
    }
    out.sort_by_key(|l| l.lun);
    out
}

/// Writes `cfg` as a `targets.conf` tgt-admin can load; returns the text
/// and what tgt cannot hold of it.
pub fn export(cfg: &ServerConfig) -> (String, Vec<String>) {
    let mut notes = Vec::new();
    let mut out = String::from(
        "# Written by iolab (target export --format targets.conf).\ndefault-driver iscsi\n",
    );
    for t in &cfg.targets {
        out.push_str(&format!("\n<target {}>\n", t.iqn));
        for l in &t.luns {
            let (path, bs) = match &l.backstore {
                BackstoreSpec::Ramdisk { size } => {
                    notes.push(format!(
                        "{} LUN {}: a RAMDISK of {size} bytes has no tgt equivalent: left out",
                        t.iqn, l.lun
                    ));
                    continue;
                }
                BackstoreSpec::Fileio { path, direct, .. }
                | BackstoreSpec::Block { path, direct } => (
                    path.display().to_string(),
                    if *direct { "aio" } else { "rdwr" },
                ),
            };
            if l.lun == 0 {
                notes.push(format!(
                    "{} LUN 0 becomes LUN 1 under tgt (its LUN 0 is the controller)",
                    t.iqn
                ));
            }
            out.push_str(&format!("    <backing-store {path}>\n"));
            out.push_str(&format!("        lun {}\n", l.lun.max(1)));
            out.push_str(&format!("        bs-type {bs}\n"));
            if l.attributes.read_only {
                out.push_str("        readonly 1\n");
            }
            if l.attributes.block_size != 512 {
                out.push_str(&format!("        block-size {}\n", l.attributes.block_size));
            }
            out.push_str("    </backing-store>\n");
        }
        let chap = t
            .acls
            .iter()
            .find_map(|a| a.chap.clone())
            .or(t.chap.clone());
        let mutual = t
            .acls
            .iter()
            .find_map(|a| a.mutual_chap.clone())
            .or(t.mutual_chap.clone());
        if t.acls.iter().any(|a| a.chap != chap) {
            notes.push(format!(
                "{}: the ACLs' CHAP users differ; tgt asks every initiator of a target the same ones",
                t.iqn
            ));
        }
        for a in &t.acls {
            out.push_str(&format!("    initiator-name {}\n", a.initiator));
        }
        if let Some(c) = chap {
            out.push_str(&format!("    incominguser {} {}\n", c.user, c.secret));
        }
        if let Some(c) = mutual {
            out.push_str(&format!("    outgoinguser {} {}\n", c.user, c.secret));
        }
        if !t.demo_mode && t.acls.is_empty() {
            notes.push(format!(
                "{}: no ACL and demo mode off cannot be said in targets.conf",
                t.iqn
            ));
        }
        let n = &t.negotiation;
        out.push_str(&format!("    MaxConnections {}\n", n.max_connections));
        out.push_str(&format!(
            "    MaxRecvDataSegmentLength {}\n",
            n.max_recv_data_segment
        ));
        out.push_str(&format!("    MaxBurstLength {}\n", n.max_burst));
        out.push_str(&format!("    FirstBurstLength {}\n", n.first_burst));
        out.push_str(&format!(
            "    ImmediateData {}\n    InitialR2T {}\n",
            if n.immediate_data { "Yes" } else { "No" },
            if n.initial_r2t { "Yes" } else { "No" }
        ));
        out.push_str("</target>\n");
    }
    if !cfg.listen.is_empty() {
        notes.push(format!(
            "tgt takes portals on its command line, not in targets.conf: tgtd --iscsi portal={}",
            cfg.listen[0].bind
        ));
    }
    (out, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = "
default-driver iscsi
<target iqn.2026-12.org.example:t>
    backing-store /srv/z.img
    direct-store /dev/sdz
    <backing-store /srv/a.img>
        lun 1
    </backing-store>
    backing-store /srv/m.img
    incominguser u1 secret1secret
    incominguser u2 secret2secret
    initiator-name iqn.2026-12.org.example:h
    readonly 1
</target>
";

    #[test]
    fn luns_are_numbered_as_tgt_admin_numbers_them() {
        let i = import(CONF, "t.conf").unwrap();
        let luns: Vec<(u64, String)> = i.config.targets[0]
            .luns
            .iter()
            .map(|l| {
                let p = match &l.backstore {
                    BackstoreSpec::Fileio { path, .. } | BackstoreSpec::Block { path, .. } => {
                        path.clone()
                    }
                    BackstoreSpec::Ramdisk { .. } => PathBuf::new(),
                };
                (l.lun, p.display().to_string())
            })
            .collect();
        // a.img keeps its explicit 1; the others from 2 in sorted order;
        // direct-stores after backing-stores.
        assert_eq!(
            luns,
            vec![
                (1, "/srv/a.img".into()),
                (2, "/srv/m.img".into()),
                (3, "/srv/z.img".into()),
                (4, "/dev/sdz".into())
            ]
        );
        let t = &i.config.targets[0];
        assert!(
            t.luns.iter().all(|l| l.attributes.read_only),
            "target-level readonly"
        );
        assert!(matches!(t.luns[3].backstore, BackstoreSpec::Block { .. }));
        assert!(!t.demo_mode);
        assert_eq!(t.acls[0].chap.as_ref().unwrap().user, "u1");
        assert!(
            i.notes
                .iter()
                .any(|n| n.contains("incominguser u2 is not served")),
            "{:?}",
            i.notes
        );
        assert!(
            i.notes.iter().any(|n| n.contains("direct-store /dev/sdz")),
            "{:?}",
            i.notes
        );
    }

    #[test]
    fn broken_files_say_where() {
        let e = import(
            "<target iqn.2026-12.org.example:t>\n backing-store /x\n",
            "t.conf",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("t.conf:2") && e.contains("not closed"), "{e}");
        let e = import("</target>\n", "t.conf").unwrap_err().to_string();
        assert!(e.contains("t.conf:1"), "{e}");
        let e = import("<target not-an-iqn>\n</target>\n", "t.conf")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not-an-iqn"), "{e}");
    }

    #[test]
    fn export_then_import_keeps_luns_acls_and_chap() {
        let i = import(CONF, "t.conf").unwrap();
        let (text, _) = export(&i.config);
        let back = import(&text, "exported").unwrap();
        let (a, b) = (&i.config.targets[0], &back.config.targets[0]);
        assert_eq!(a.luns, b.luns);
        assert_eq!(a.acls, b.acls);
        assert_eq!(a.negotiation.max_connections, b.negotiation.max_connections);
    }
}
