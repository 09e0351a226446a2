//! Target configuration files of every kind iolab reads: its own TOML, LIO's
//! `saveconfig.json` (targetcli) and tgt's `targets.conf` (tgt-admin), told
//! apart by their content; and writing a configuration in each.

use std::path::Path;

use iolab_iscsi::target::{ImportError, Imported, ServerConfig, saveconfig, tgt_conf};

/// The formats a target configuration is read from and written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// iolab's own TOML (`ServerConfig`).
    Toml,
    /// LIO's `saveconfig.json`.
    Saveconfig,
    /// tgt's `targets.conf`.
    TargetsConf,
}

/// A format name that is none of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format '{0}' (toml, saveconfig, targets.conf)")]
pub struct UnknownFormat(pub String);

impl std::str::FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        match s {
            "toml" | "iolab" => Ok(Format::Toml),
            "saveconfig" | "saveconfig.json" | "lio" | "targetcli" => Ok(Format::Saveconfig),
            "targets.conf" | "tgt" => Ok(Format::TargetsConf),
            _ => Err(UnknownFormat(s.to_string())),
        }
    }
}

/// Why a configuration file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TargetFileError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error("{origin}: {message}")]
    Toml { origin: String, message: String },
}

/// The format of a configuration's text: JSON is a saveconfig, `<target`
/// blocks a targets.conf, anything else iolab's TOML.
pub fn detect(text: &str) -> Format {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    match first {
        Some(l) if l.starts_with('{') => Format::Saveconfig,
        _ if text.lines().any(|l| l.trim_start().starts_with("<target")) => Format::TargetsConf,
        _ => Format::Toml,
    }
}

/// Reads a configuration's text in `format` (None: detected).
pub fn parse(
    text: &str,
    origin: &str,
    format: Option<Format>,
) -> Result<Imported, TargetFileError> {
    match format.unwrap_or_else(|| detect(text)) {
        Format::Saveconfig => Ok(saveconfig::import(text, origin)?),
        Format::TargetsConf => Ok(tgt_conf::import(text, origin)?),
        Format::Toml => {
            let config: ServerConfig = toml::from_str(text).map_err(|e| TargetFileError::Toml {
                origin: origin.into(),
                message: e.to_string(),
            })?;
            Ok(Imported {
                config,
                notes: Vec::new(),
            })
        }
    }
}

/// Reads a configuration file in `format` (None: detected).
pub fn load(path: &Path, format: Option<Format>) -> Result<Imported, TargetFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TargetFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string(), format)
}

/// A configuration written in `format`, with what that format cannot hold.
pub fn export(
    cfg: &ServerConfig,
    format: Format,
) -> Result<(String, Vec<String>), TargetFileError> {
    Ok(match format {
        Format::Saveconfig => saveconfig::export(cfg),
        Format::TargetsConf => tgt_conf::export(cfg),
        Format::Toml => (
            toml::to_string(cfg).map_err(|e| TargetFileError::Toml {
                origin: "configuration".into(),
                message: e.to_string(),
            })?,
            Vec::new(),
        ),
    })
}
