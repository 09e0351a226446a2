//! LIO's `saveconfig.json` (targetcli-fb / rtslib-fb) in and out: storage
//! objects, iSCSI targets with their TPGs, LUNs, portals and node ACLs with
//! CHAP. Whatever iolab cannot represent is listed in the notes, never
//! dropped in silence.

use std::collections::BTreeMap;
use std::path::PathBuf;

use iolab_storage::BackstoreSpec;
use serde_json::{Map, Value, json};

use super::config::{Acl, LunConfig, Portal, ServerConfig, TargetConfig};
use crate::chap::ChapCredentials;

/// A configuration read from another tool's file, with what did not fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub config: ServerConfig,
    /// One line per setting iolab could not represent exactly.
    pub notes: Vec<String>,
}

/// Why a file could not be read as a configuration at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{origin}: not JSON: {source}")]
    Json {
        origin: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

fn invalid(origin: &str, message: impl Into<String>) -> ImportError {
    ImportError::Invalid {
        origin: origin.into(),
        message: message.into(),
    }
}

/// A storage object as saveconfig names it (`/backstores/PLUGIN/NAME`).
struct StorageObject {
    spec: Option<BackstoreSpec>,
    block_size: Option<u32>,
    read_only: bool,
    thin: Option<bool>,
}

fn str_of<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

fn u64_of(m: &Map<String, Value>, k: &str) -> Option<u64> {
    m.get(k).and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    })
}

fn bool_of(m: &Map<String, Value>, k: &str) -> Option<bool> {
    m.get(k).and_then(|v| {
        v.as_bool()
            .or_else(|| v.as_u64().map(|n| n != 0))
            .or_else(|| {
                v.as_str()
                    .map(|s| matches!(s, "1" | "true" | "yes" | "Yes"))
            })
    })
}

/// CHAP credentials under either spelling: `chap_userid`/`chap_password`
/// (rtslib-fb) or `userid`/`password` (older saves); `mutual` for the
/// target's answer (`chap_mutual_userid`, `mutual_userid`).
fn chap_of(m: &Map<String, Value>, mutual: bool) -> Option<ChapCredentials> {
    let (u, p) = if mutual {
        ("mutual_userid", "mutual_password")
    } else {
        ("userid", "password")
    };
    let user = str_of(m, &format!("chap_{u}")).or_else(|| str_of(m, u))?;
    let secret = str_of(m, &format!("chap_{p}")).or_else(|| str_of(m, p))?;
    (!user.is_empty() && !secret.is_empty()).then(|| ChapCredentials {
        user: user.into(),
        secret: secret.into(),
    })
}

const CHAP_KEYS: [&str; 8] = [
    "chap_userid",
    "chap_password",
    "chap_mutual_userid",
    "chap_mutual_password",
    "userid",
    "password",
    "mutual_userid",
    "mutual_password",
];

/// Keys of `m` not in `known`, as notes under `what`.
fn unknown_keys(m: &Map<String, Value>, known: &[&str], what: &str, notes: &mut Vec<String>) {
    for k in m.keys() {
        if !known.contains(&k.as_str()) {
            notes.push(format!(
                "{what}: '{k}' is not represented in iolab (ignored)"
            ));
        }
    }
}

fn storage_object(o: &Map<String, Value>, notes: &mut Vec<String>) -> (String, StorageObject) {
    let plugin = str_of(o, "plugin").unwrap_or("");
    let name = str_of(o, "name").unwrap_or("");
    let key = format!("/backstores/{plugin}/{name}");
    let attrs = o.get("attributes").and_then(Value::as_object);
    let mut so = StorageObject {
        spec: None,
        block_size: attrs
            .and_then(|a| u64_of(a, "block_size"))
            .map(|b| b as u32),
        read_only: bool_of(o, "readonly").unwrap_or(false),
        thin: attrs.and_then(|a| bool_of(a, "emulate_tpu")),
    };
    let dev = str_of(o, "dev").map(PathBuf::from);
    match plugin {
        "ramdisk" | "rd_mcp" => {
            if bool_of(o, "nullio") == Some(true) {
                notes.push(format!("{key}: nullio (discards writes) is served as an ordinary RAMDISK"));
            }
            match u64_of(o, "size") {
                Some(size) if size > 0 => so.spec = Some(BackstoreSpec::Ramdisk { size }),
                _ => notes.push(format!("{key}: a ramdisk without a size is skipped")),
            }
        }
        "fileio" => match dev {
            Some(path) => {
                if bool_of(o, "write_back") == Some(false) {
                    notes.push(format!(
                        "{key}: write_back=false (write-through) is served buffered; iolab honours FUA and SYNCHRONIZE CACHE"
                    ));
                }
                so.spec = Some(BackstoreSpec::Fileio {
                    path,
                    size: u64_of(o, "size").filter(|s| *s > 0),
                    direct: false,
                });
            }
            None => notes.push(format!("{key}: a fileio object without 'dev' is skipped")),
        },
        "block" | "iblock" => match dev {
            // LIO's IBLOCK submits bios to the device, past the page cache.
            Some(path) => so.spec = Some(BackstoreSpec::Block { path, direct: true }),
            None => notes.push(format!("{key}: a block object without 'dev' is skipped")),
        },
        other => notes.push(format!(
            "{key}: backstore plugin '{other}' is not one iolab serves (ramdisk, fileio, block): its LUNs are skipped"
        )),
    }
    let known = [
        "plugin",
        "name",
        "dev",
        "size",
        "wwn",
        "attributes",
        "write_back",
        "readonly",
        "nullio",
        "alua_tpgs",
        "aio",
        "pr",
        "lbas_per_hint",
    ];
    unknown_keys(o, &known, &key, notes);
    if let Some(a) = attrs {
        for (k, v) in a {
            let fits = match k.as_str() {
                "block_size" | "emulate_tpu" => true,
                // Settings iolab's emulation always has, or that only tune LIO's internals.
                "emulate_3pc"
                | "emulate_caw"
                | "emulate_tas"
                | "emulate_ua_intlck_ctrl"
                | "emulate_dpo"
                | "emulate_fua_read"
                | "emulate_fua_write"
                | "emulate_write_cache"
                | "emulate_model_alias"
                | "emulate_pr"
                | "emulate_rest_reord"
                | "emulate_tpws"
                | "enforce_pr_isids"
                | "force_pr_aptpl"
                | "is_nonrot"
                | "max_unmap_block_desc_count"
                | "max_unmap_lba_count"
                | "max_write_same_len"
                | "optimal_sectors"
                | "hw_block_size"
                | "hw_max_sectors"
                | "hw_pi_prot_type"
                | "hw_queue_depth"
                | "pi_prot_format"
                | "pi_prot_type"
                | "pi_prot_verify"
                | "queue_depth"
                | "unmap_granularity"
                | "unmap_granularity_alignment"
                | "unmap_zeroes_data"
                | "alua_support"
                | "pgr_support"
                | "submit_type" => {
                    if matches!(k.as_str(), "pi_prot_type" | "hw_pi_prot_type")
                        && v.as_u64().unwrap_or(0) != 0
                    {
                        notes.push(format!(
                            "{key}: T10 protection information ({k}={v}) is not emulated"
                        ));
                    }
                    true
                }
                _ => false,
            };
            if !fits {
                notes.push(format!(
                    "{key}: attribute '{k}' is not represented in iolab (ignored)"
                ));
            }
        }
    }
    (key, so)
}

/// Reads a `saveconfig.json`.
pub fn import(text: &str, origin: &str) -> Result<Imported, ImportError> {
    let root: Value = serde_json::from_str(text).map_err(|source| ImportError::Json {
        origin: origin.into(),
        source,
    })?;
    let root = root
        .as_object()
        .ok_or_else(|| invalid(origin, "the top level is not an object"))?;
    let mut notes = Vec::new();
    unknown_keys(
        root,
        &["fabric_modules", "storage_objects", "targets"],
        "saveconfig",
        &mut notes,
    );
    let mut objects = BTreeMap::new();
    for o in root
        .get("storage_objects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let o = o
            .as_object()
            .ok_or_else(|| invalid(origin, "a storage object is not an object"))?;
        let (key, so) = storage_object(o, &mut notes);
        objects.insert(key, so);
    }
    let mut listen: Vec<Portal> = Vec::new();
    let mut targets = Vec::new();
    for t in root
        .get("targets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let t = t
            .as_object()
            .ok_or_else(|| invalid(origin, "a target is not an object"))?;
        let iqn = str_of(t, "wwn").ok_or_else(|| invalid(origin, "a target has no 'wwn'"))?;
        let fabric = str_of(t, "fabric").unwrap_or("iscsi");
        if fabric != "iscsi" {
            notes.push(format!("{iqn}: fabric '{fabric}' is not iSCSI: skipped"));
            continue;
        }
        unknown_keys(t, &["wwn", "fabric", "tpgs"], iqn, &mut notes);
        let tpgs: Vec<&Map<String, Value>> = t
            .get("tpgs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .collect();
        let Some(tpg) = tpgs.first() else {
            notes.push(format!("{iqn}: no TPG: skipped"));
            continue;
        };
        for extra in &tpgs[1..] {
            notes.push(format!(
                "{iqn}: TPG {} is not served (iolab serves one portal group per target)",
                u64_of(extra, "tag").unwrap_or(0)
            ));
        }
        targets.push(target(iqn, tpg, &objects, &mut listen, &mut notes));
    }
    if listen.is_empty() {
        listen.push(Portal::new(
            ([127, 0, 0, 1], super::config::DEFAULT_PORT).into(),
        ));
        notes.push("no portal in the file: serving on 127.0.0.1:3260".into());
    }
    let config = ServerConfig { listen, targets };
    config.validate().map_err(|e| {
        invalid(
            origin,
            format!("the imported configuration does not hold: {e}"),
        )
    })?;
    Ok(Imported { config, notes })
}

fn target(
    iqn: &str,
    tpg: &Map<String, Value>,
    objects: &BTreeMap<String, StorageObject>,
    listen: &mut Vec<Portal>,
    notes: &mut Vec<String>,
) -> TargetConfig {
    let mut tc = TargetConfig::new(iqn);
    tc.tpgt = u64_of(tpg, "tag").unwrap_or(1) as u16;
    let known = [
        "tag",
        "enable",
        "attributes",
        "parameters",
        "luns",
        "portals",
        "node_acls",
    ];
    let chap_known: Vec<&str> = known.iter().chain(CHAP_KEYS.iter()).copied().collect();
    unknown_keys(tpg, &chap_known, &format!("{iqn} TPG"), notes);
    if bool_of(tpg, "enable") == Some(false) {
        notes.push(format!(
            "{iqn}: the TPG is disabled in the file; iolab serves it"
        ));
    }
    let attrs = tpg.get("attributes").and_then(Value::as_object);
    if let Some(a) = attrs {
        tc.demo_mode = bool_of(a, "generate_node_acls").unwrap_or(false);
        if let Some(d) = u64_of(a, "default_cmdsn_depth") {
            tc.queue_depth = d as u32;
        }
        if tc.demo_mode && bool_of(a, "demo_mode_write_protect") != Some(false) {
            notes.push(format!(
                "{iqn}: demo_mode_write_protect is not represented: demo-mode initiators may write"
            ));
        }
        for (k, _) in a.iter() {
            if !matches!(
                k.as_str(),
                "generate_node_acls"
                    | "default_cmdsn_depth"
                    | "demo_mode_write_protect"
                    | "authentication"
                    | "cache_dynamic_acls"
                    | "prod_mode_write_protect"
                    | "demo_mode_discovery"
                    | "netif_timeout"
                    | "login_timeout"
                    | "default_erl"
                    | "t10_pi"
                    | "fabric_prot_type"
                    | "tpg_enabled_sendtargets"
                    | "login_keys_workaround"
            ) {
                notes.push(format!(
                    "{iqn}: TPG attribute '{k}' is not represented in iolab (ignored)"
                ));
            }
        }
    } else {
        tc.demo_mode = false;
    }
    // TPG-wide CHAP (demo mode), as newer rtslib saves it.
    tc.chap = chap_of(tpg, false);
    tc.mutual_chap = chap_of(tpg, true);
    if let Some(p) = tpg.get("parameters").and_then(Value::as_object) {
        parameters(iqn, p, &mut tc, notes);
    }
    for p in tpg
        .get("portals")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(p) = p.as_object() else { continue };
        let ip = str_of(p, "ip_address").unwrap_or("0.0.0.0");
        let port = u64_of(p, "port").unwrap_or(3260) as u16;
        let text = if ip.contains(':') {
            format!("[{}]:{port}", ip.trim_matches(['[', ']']))
        } else {
            format!("{ip}:{port}")
        };
        match text.parse::<Portal>() {
            Ok(portal) if !listen.contains(&portal) => listen.push(portal),
            Ok(_) => {}
            Err(e) => notes.push(format!("{iqn}: {e}")),
        }
        if bool_of(p, "iser") == Some(true) || bool_of(p, "offload") == Some(true) {
            notes.push(format!(
                "{iqn}: portal {text}: iSER/offload is served as plain TCP"
            ));
        }
    }
    let mut lun_numbers = Vec::new();
    for l in tpg
        .get("luns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(l) = l.as_object() else { continue };
        let index = u64_of(l, "index").unwrap_or(0);
        let so_path = str_of(l, "storage_object").unwrap_or("");
        match objects
            .get(so_path)
            .and_then(|so| so.spec.clone().map(|s| (so, s)))
        {
            Some((so, spec)) => {
                let mut lc = LunConfig {
                    lun: index,
                    backstore: spec,
                    attributes: Default::default(),
                };
                if let Some(bs) = so.block_size {
                    lc.attributes.block_size = bs;
                    lc.attributes.physical_block_size = lc.attributes.physical_block_size.max(bs);
                }
                lc.attributes.read_only = so.read_only;
                if let Some(t) = so.thin {
                    lc.attributes.thin = t;
                }
                tc.luns.push(lc);
                lun_numbers.push(index);
            }
            None => notes.push(format!(
                "{iqn}: LUN {index} ({so_path}) has no backstore iolab serves: skipped"
            )),
        }
        if let Some(g) = str_of(l, "alua_tg_pt_gp_name").filter(|g| *g != "default_tg_pt_gp") {
            notes.push(format!(
                "{iqn}: LUN {index}: ALUA group '{g}' is not represented"
            ));
        }
    }
    for a in tpg
        .get("node_acls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(a) = a.as_object() else { continue };
        let Some(node) = str_of(a, "node_wwn") else {
            notes.push(format!("{iqn}: an ACL without 'node_wwn' is skipped"));
            continue;
        };
        let mut known: Vec<&str> =
            vec!["node_wwn", "mapped_luns", "attributes", "tcq_depth", "auth"];
        known.extend(CHAP_KEYS);
        unknown_keys(a, &known, &format!("{iqn} ACL {node}"), notes);
        // Some saves keep the credentials under "auth".
        let auth = a.get("auth").and_then(Value::as_object).unwrap_or(a);
        let acl = Acl {
            initiator: node.into(),
            chap: chap_of(auth, false),
            mutual_chap: chap_of(auth, true),
        };
        let mapped: Vec<(u64, u64, bool)> = a
            .get("mapped_luns")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .map(|m| {
                (
                    u64_of(m, "index").unwrap_or(0),
                    u64_of(m, "tpg_lun").unwrap_or(0),
                    bool_of(m, "write_protect").unwrap_or(false),
                )
            })
            .collect();
        let mut seen: Vec<u64> = mapped.iter().map(|m| m.1).collect();
        seen.sort_unstable();
        let mut all = lun_numbers.clone();
        all.sort_unstable();
        if mapped.iter().any(|(i, t, _)| i != t) || seen != all {
            notes.push(format!(
                "{iqn}: ACL {node} maps its own LUN set {:?}; iolab shows every LUN of the target to every ACL",
                mapped.iter().map(|(i, t, _)| format!("{i}->{t}")).collect::<Vec<_>>()
            ));
        }
        if mapped.iter().any(|m| m.2) {
            notes.push(format!(
                "{iqn}: ACL {node}: write-protected mapped LUNs are writable in iolab"
            ));
        }
        tc.acls.push(acl);
    }
    if !tc.demo_mode && tc.acls.is_empty() {
        notes.push(format!(
            "{iqn}: no ACL and demo mode off: nobody could log in; demo mode turned on"
        ));
        tc.demo_mode = true;
    }
    tc
}

fn parameters(iqn: &str, p: &Map<String, Value>, tc: &mut TargetConfig, notes: &mut Vec<String>) {
    let n = &mut tc.negotiation;
    for (k, v) in p {
        let Some(v) = v
            .as_str()
            .map(str::to_string)
            .or_else(|| v.as_u64().map(|x| x.to_string()))
        else {
            continue;
        };
        let num = v.parse::<u32>().ok();
        match (k.as_str(), num) {
            (k, _) if super::config::set_iscsi_key(n, k, &v) => {}
            ("TargetAlias", _) => tc.alias = Some(v.clone()),
            ("ErrorRecoveryLevel", Some(0)) => {}
            ("ErrorRecoveryLevel", _) => {
                notes.push(format!("{iqn}: ErrorRecoveryLevel={v}: iolab runs ERL 0"))
            }
            ("MaxConnections", None) => {
                notes.push(format!("{iqn}: MaxConnections='{v}' is not a number"))
            }
            // Defaults every iolab session has; nothing to carry over.
            (
                "AuthMethod"
                | "DataPDUInOrder"
                | "DataSequenceInOrder"
                | "IFMarker"
                | "OFMarker"
                | "IFMarkInt"
                | "OFMarkInt"
                | "MaxXmitDataSegmentLength",
                _,
            ) => {}
            _ => notes.push(format!(
                "{iqn}: parameter {k}={v} is not represented in iolab (ignored)"
            )),
        }
    }
}

/// Writes `cfg` as a `saveconfig.json` targetcli can restore; returns the
/// text and what LIO cannot hold of it.
pub fn export(cfg: &ServerConfig) -> (String, Vec<String>) {
    let mut notes = Vec::new();
    let mut objects = Vec::new();
    let mut targets = Vec::new();
    for t in &cfg.targets {
        let short = t.iqn.rsplit([':', '.']).next().unwrap_or("t");
        let mut luns = Vec::new();
        for l in &t.luns {
            let name = format!("{short}_lun{}", l.lun);
            let (plugin, mut o) = match &l.backstore {
                BackstoreSpec::Ramdisk { size } => {
                    ("ramdisk", json!({"size": size, "nullio": false}))
                }
                BackstoreSpec::Fileio { path, size, direct } => {
                    if *direct {
                        notes.push(format!("{} LUN {}: O_DIRECT has no LIO fileio equivalent (saved as write_back=false)", t.iqn, l.lun));
                    }
                    (
                        "fileio",
                        json!({"dev": path, "size": size.unwrap_or(0), "write_back": !direct}),
                    )
                }
                BackstoreSpec::Block { path, .. } => (
                    "block",
                    json!({"dev": path, "readonly": l.attributes.read_only, "write_back": false}),
                ),
            };
            o["name"] = json!(name);
            o["plugin"] = json!(plugin);
            o["attributes"] = json!({
                "block_size": l.attributes.block_size,
                "emulate_tpu": u8::from(l.attributes.thin),
            });
            if l.attributes.read_only && plugin != "block" {
                notes.push(format!(
                    "{} LUN {}: read-only is kept by LIO only for block objects",
                    t.iqn, l.lun
                ));
            }
            objects.push(o);
            luns.push(
                json!({"index": l.lun, "storage_object": format!("/backstores/{plugin}/{name}")}),
            );
        }
        let mapped: Vec<Value> = t
            .luns
            .iter()
            .map(|l| json!({"index": l.lun, "tpg_lun": l.lun, "write_protect": false}))
            .collect();
        let acls: Vec<Value> = t
            .acls
            .iter()
            .map(|a| {
                let mut o = json!({"node_wwn": a.initiator, "mapped_luns": mapped});
                if let Some(c) = &a.chap {
                    o["chap_userid"] = json!(c.user);
                    o["chap_password"] = json!(c.secret);
                }
                if let Some(c) = &a.mutual_chap {
                    o["chap_mutual_userid"] = json!(c.user);
                    o["chap_mutual_password"] = json!(c.secret);
                }
                o
            })
            .collect();
        let n = &t.negotiation;
        let mut tpg = json!({
            "tag": t.tpgt,
            "enable": true,
            "attributes": {
                "generate_node_acls": u8::from(t.demo_mode),
                "demo_mode_write_protect": 0,
                "cache_dynamic_acls": u8::from(t.demo_mode),
                "authentication": u8::from(t.chap.is_some() || t.acls.iter().any(|a| a.chap.is_some())),
                "default_cmdsn_depth": t.queue_depth,
            },
            "parameters": {
                "MaxConnections": n.max_connections.to_string(),
                "MaxRecvDataSegmentLength": n.max_recv_data_segment.to_string(),
                "MaxBurstLength": n.max_burst.to_string(),
                "FirstBurstLength": n.first_burst.to_string(),
                "ImmediateData": if n.immediate_data { "Yes" } else { "No" },
                "InitialR2T": if n.initial_r2t { "Yes" } else { "No" },
                "MaxOutstandingR2T": n.max_outstanding_r2t.to_string(),
                "DefaultTime2Wait": n.default_time2wait.to_string(),
                "DefaultTime2Retain": n.default_time2retain.to_string(),
                "HeaderDigest": n.header_digest.join(","),
                "DataDigest": n.data_digest.join(","),
            },
            "portals": cfg.listen.iter().map(|p| json!({
                "ip_address": p.bind.ip().to_string(),
                "port": p.bind.port(),
                "iser": false,
                "offload": false,
            })).collect::<Vec<_>>(),
            "luns": luns,
            "node_acls": acls,
        });
        if let Some(c) = &t.chap {
            tpg["chap_userid"] = json!(c.user);
            tpg["chap_password"] = json!(c.secret);
        }
        if let Some(c) = &t.mutual_chap {
            tpg["chap_mutual_userid"] = json!(c.user);
            tpg["chap_mutual_password"] = json!(c.secret);
        }
        if let Some(a) = &t.alias {
            tpg["parameters"]["TargetAlias"] = json!(a);
        }
        targets.push(json!({"fabric": "iscsi", "wwn": t.iqn, "tpgs": [tpg]}));
    }
    for p in &cfg.listen {
        if p.advertise.is_some() {
            notes.push(format!(
                "portal {p}: LIO has no advertised address; saved as {}",
                p.bind
            ));
        }
        if p.bind.port() == 0 {
            notes.push(format!(
                "portal {p}: port 0 (a free port) means nothing to LIO"
            ));
        }
    }
    let root = json!({"fabric_modules": [], "storage_objects": objects, "targets": targets});
    let text = serde_json::to_string_pretty(&root).unwrap_or_default();
    (text + "\n", notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg_with(acl: Value) -> String {
        json!({
            "storage_objects": [
                {"plugin": "ramdisk", "name": "r", "size": 1048576},
                {"plugin": "pscsi", "name": "p", "dev": "/dev/sg0"}
            ],
            "targets": [{
                "fabric": "iscsi",
                "wwn": "iqn.2026-12.org.example:t",
                "tpgs": [
                    {"tag": 1, "attributes": {"generate_node_acls": 0},
                     "luns": [
                        {"index": 0, "storage_object": "/backstores/ramdisk/r"},
                        {"index": 1, "storage_object": "/backstores/pscsi/p"}
                     ],
                     "node_acls": [acl],
                     "portals": [{"ip_address": "::1", "port": 3260}]},
                    {"tag": 2}
                ]
            }]
        })
        .to_string()
    }

    #[test]
    fn both_chap_spellings_and_what_does_not_fit() {
        for acl in [
            json!({"node_wwn": "iqn.2026-12.org.example:h", "chap_userid": "u", "chap_password": "secretsecret",
                   "chap_mutual_userid": "m", "chap_mutual_password": "mutualsecret",
                   "mapped_luns": [{"index": 0, "tpg_lun": 0}]}),
            json!({"node_wwn": "iqn.2026-12.org.example:h", "userid": "u", "password": "secretsecret",
                   "mutual_userid": "m", "mutual_password": "mutualsecret",
                   "mapped_luns": [{"index": 0, "tpg_lun": 0}]}),
        ] {
            let i = import(&cfg_with(acl), "s.json").unwrap();
            let t = &i.config.targets[0];
            let a = &t.acls[0];
            assert_eq!(
                a.chap.as_ref().map(|c| c.secret.as_str()),
                Some("secretsecret")
            );
            assert_eq!(a.mutual_chap.as_ref().map(|c| c.user.as_str()), Some("m"));
            assert_eq!(t.luns.len(), 1, "the pscsi LUN is skipped");
            assert_eq!(i.config.listen[0].to_string(), "[::1]:3260");
            for n in [
                "plugin 'pscsi'",
                "LUN 1 (/backstores/pscsi/p)",
                "TPG 2 is not served",
            ] {
                assert!(i.notes.iter().any(|x| x.contains(n)), "{n}: {:?}", i.notes);
            }
        }
    }

    #[test]
    fn not_json_is_an_error_naming_the_file() {
        let e = import("{ nope", "s.json").unwrap_err().to_string();
        assert!(e.starts_with("s.json: not JSON"), "{e}");
    }

    #[test]
    fn export_then_import_is_the_same_configuration() {
        let acl = json!({"node_wwn": "iqn.2026-12.org.example:h", "chap_userid": "u",
                         "chap_password": "secretsecret", "mapped_luns": [{"index": 0, "tpg_lun": 0}]});
        let i = import(&cfg_with(acl), "s.json").unwrap();
        let (text, _) = export(&i.config);
        assert_eq!(import(&text, "again").unwrap().config, i.config);
    }
}
