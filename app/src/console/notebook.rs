//! The console's link to the lab notebook: fills the Profiles screen and
//! stores the runs made on the Run screen.

use std::path::Path;

use iolab_lab_core::profile::{self, Profile};
use iolab_profiles::{Run, Store};

use super::state::{NotebookView, ProfileEntry};

pub struct Notebook {
    store: Option<Store>,
}

impl Notebook {
    /// Opens the notebook; when it cannot be opened the console still runs and says why.
    pub fn open(db: Option<&Path>, view: &mut NotebookView) -> Notebook {
        match iolab_lab_core::notebook::open(db) {
            Ok(store) => {
                view.location = store.path().display().to_string();
                let mut n = Notebook { store: Some(store) };
                n.refresh(view);
                n
            }
            Err(e) => {
                view.location = format!("(notebook unavailable: {e:#})");
                view.profiles = builtin_entries();
                Notebook { store: None }
            }
        }
    }

    /// Reloads the profile and run lists.
    pub fn refresh(&mut self, view: &mut NotebookView) {
        let mut profiles = builtin_entries();
        let Some(store) = &self.store else {
            view.profiles = profiles;
            return;
        };
        if let Ok(saved) = store.profiles() {
            profiles.extend(saved.into_iter().map(|p| {
                ProfileEntry {
                    description: Profile::parse(&p.body, &p.name)
                        .map(|q| q.description)
                        .unwrap_or_else(|e| format!("(does not parse: {e})")),
                    name: p.name,
                    builtin: false,
                }
            }));
        }
        view.profiles = profiles;
        view.runs = store.runs().unwrap_or_default();
        view.selected = view.selected.min(view.runs.len().saturating_sub(1));
    }

    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    pub fn store_mut(&mut self) -> Option<&mut Store> {
        self.store.as_mut()
    }

    pub fn run(&self, id: i64) -> Result<Run, String> {
        match &self.store {
            Some(s) => s.run(id).map_err(|e| e.to_string()),
            None => Err("the notebook is unavailable".into()),
        }
    }

    pub fn add_run(&mut self, run: &Run) -> Result<i64, String> {
        match &mut self.store {
            Some(s) => s.add_run(run).map_err(|e| e.to_string()),
            None => Err("the notebook is unavailable".into()),
        }
    }

    /// A listed profile, parsed.
    pub fn profile(&self, name: &str) -> Result<Profile, String> {
        match &self.store {
            Some(s) => iolab_lab_core::notebook::load_profile(s, name)
                .map(|(_, p)| p)
                .map_err(|e| e.to_string()),
            None => profile::builtin(name)
                .ok_or_else(|| format!("no built-in profile {name}"))
                .and_then(|t| Profile::parse(t, name).map_err(|e| e.to_string())),
        }
    }
}

fn builtin_entries() -> Vec<ProfileEntry> {
    profile::builtins()
        .into_iter()
        .map(|(name, text)| ProfileEntry {
            name: name.into(),
            builtin: true,
            description: Profile::parse(text, name)
                .map(|p| p.description)
                .unwrap_or_default(),
        })
        .collect()
}
