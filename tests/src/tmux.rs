//! The console in tmux: a session to type into and read back.

use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux session, killed on drop.
pub struct Tmux(pub String);

impl Tmux {
    /// A detached session `name` of `cols` x `rows` running a plain bash.
    pub fn start(name: &str, cols: &str, rows: &str) -> Tmux {
        let t = Tmux(name.to_string());
        t.cmd(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            cols,
            "-y",
            rows,
            "bash",
            "--norc",
            "--noprofile",
        ]);
        t
    }

    pub fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").args(args).output().expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    pub fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", &self.0])
    }
    pub fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", self.0.as_str()];
        a.extend_from_slice(keys);
        self.cmd(&a);
    }
    /// A screen that two captures 50 ms apart agree on: the console draws
    /// a frame as a run of writes, and a capture in the middle of one shows
    /// rows of two frames (a layout that moved by a row shows a line twice).
    /// The last capture if it never settles within two seconds.
    pub fn settled_screen(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut s = self.screen();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let again = self.screen();
            if again == s || Instant::now() >= deadline {
                return again;
            }
            s = again;
        }
    }
    /// Waits for `what` on a settled screen; panics with the screen after
    /// `within`.
    pub fn wait_for(&self, what: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let s = self.screen();
            if s.contains(what) {
                let s = self.settled_screen();
                if s.contains(what) {
                    return s;
                }
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "'{what}' never appeared; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}
