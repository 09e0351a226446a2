//! The lab notebook as the console and the command line both reach it:
//! where it is, profiles by name (built-in, saved, or a file), and tuning
//! profiles by name.

use std::path::Path;

use iolab_profiles::{Store, StoreError};

use crate::profile::{self, Profile, ProfileError};
use crate::tuning::TuningProfile;
use crate::tuning::apply::{HOST_DEFAULTS, host_defaults};
use crate::tuning::profile as tprofile;

/// Why the notebook or a profile in it could not be had.
#[derive(Debug, thiserror::Error)]
pub enum NotebookError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no profile named '{0}' (see `iolab profile list`), and no such file either")]
    NoProfile(String),
    #[error("profile {0} has no [tuning]")]
    NoTuning(String),
    #[error("{0}")]
    Tuning(String),
}

/// Opens the notebook at `db`, or at its default place.
pub fn open(db: Option<&Path>) -> Result<Store, NotebookError> {
    let path = match db {
        Some(p) => p.to_path_buf(),
        None => iolab_profiles::default_path()?,
    };
    Ok(Store::open(&path)?)
}

/// A profile by name (built-in, then saved) or by file path: its text and parsed form.
pub fn load_profile(store: &Store, name: &str) -> Result<(String, Profile), NotebookError> {
    let (text, origin) = if let Some(t) = profile::builtin(name) {
        (t.to_string(), format!("built-in profile {name}"))
    } else if let Some(p) = store.profile(name)? {
        (p.body, format!("profile {name}"))
    } else if Path::new(name).is_file() {
        let text = std::fs::read_to_string(name).map_err(|source| NotebookError::Read {
            path: name.into(),
            source,
        })?;
        (text, name.to_string())
    } else {
        return Err(NotebookError::NoProfile(name.into()));
    };
    let p = Profile::parse(&text, &origin)?;
    Ok((text, p))
}

/// A tuning profile by name: built-in, host-defaults (what this host had
/// before the lab changed it, from `scope`), a tuning file, or a lab
/// profile's `[tuning]`.
pub fn resolve_tuning(
    store: &Store,
    name: &str,
    scope: &str,
) -> Result<TuningProfile, NotebookError> {
    if let Some(t) = tprofile::builtin(name) {
        return Ok(t);
    }
    if name == HOST_DEFAULTS {
        return Ok(host_defaults(store, scope)?);
    }
    if Path::new(name).is_file() {
        let text = std::fs::read_to_string(name).map_err(|source| NotebookError::Read {
            path: name.into(),
            source,
        })?;
        if let Ok(t) = toml::from_str::<TuningProfile>(&text) {
            return Ok(t);
        }
    }
    match load_profile(store, name) {
        Ok((_, p)) => p.tuning.ok_or_else(|| NotebookError::NoTuning(name.into())),
        Err(e) => Err(NotebookError::Tuning(format!(
            "{e}\n(tuning profiles: {}, {HOST_DEFAULTS})",
            tprofile::builtins()
                .iter()
                .map(|t| t.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The guests of every profile (built-in, then saved), with the profile's name.
pub fn guests_in(store: Option<&Store>) -> Vec<(String, crate::guest::GuestDef)> {
    let mut out = Vec::new();
    for (name, text) in profile::builtins() {
        if let Ok(p) = Profile::parse(text, name) {
            out.extend(p.guests.into_iter().map(|g| (name.to_string(), g)));
        }
    }
    for sp in store.and_then(|s| s.profiles().ok()).unwrap_or_default() {
        if let Ok(p) = Profile::parse(&sp.body, &sp.name) {
            out.extend(p.guests.into_iter().map(|g| (sp.name.clone(), g)));
        }
    }
    out
}
