//! The CmdSN rules of a session as plain state machines, shared by every
//! connection of the session (MC/S) and tested without sockets or tasks:
//! [`CmdWindow`] accepts or ignores each command's CmdSN (RFC 7143 4.2.2.1:
//! serial-number arithmetic, wrap at 2^32, immediate commands, duplicates,
//! gaps given up on), [`Delivery`] orders commands for the SCSI layer in
//! CmdSN order across connections (RFC 7143 3.2.2.1).

use std::collections::BTreeSet;

use crate::pdu::{sn_le, sn_lt};

/// At most this many given-up CmdSNs are remembered (oldest forgotten first).
pub(super) const MAX_SKIPPED: usize = 1024;

/// The command sequence window: ExpCmdSN, what arrived ahead of it, what a
/// skipped gap left behind, and the depth (MaxCmdSN = ExpCmdSN + depth - 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CmdWindow {
    exp: u32,
    /// Non-immediate commands received ahead of `exp` (arrived over other connections).
    ahead: BTreeSet<u32>,
    /// CmdSNs the window moved past without receiving them (a gap given up
    /// on): such a command that arrives late is still executed, never
    /// silently dropped, since ExpCmdSN already told the initiator we had it.
    skipped: BTreeSet<u32>,
    depth: u32,
}

impl CmdWindow {
    pub(super) fn new(exp: u32, depth: u32) -> Self {
        CmdWindow {
            exp,
            ahead: BTreeSet::new(),
            skipped: BTreeSet::new(),
            depth: depth.max(1),
        }
    }

    /// (ExpCmdSN, MaxCmdSN).
    pub(super) fn bounds(&self) -> (u32, u32) {
        (self.exp, self.exp.wrapping_add(self.depth - 1))
    }

    pub(super) fn depth(&self) -> u32 {
        self.depth
    }

    /// Accepts a command's CmdSN. Returns false when it must be ignored
    /// (outside the window, or a duplicate).
    pub(super) fn accept(&mut self, cmd_sn: u32, immediate: bool) -> bool {
        let (exp, max) = self.bounds();
        if immediate {
            // Immediate commands carry CmdSN without advancing it; it must lie in the window.
            return sn_le(exp, cmd_sn) && sn_le(cmd_sn, max) || cmd_sn == exp;
        }
        if sn_lt(cmd_sn, exp) && self.skipped.remove(&cmd_sn) {
            // A command whose gap was given up on, arriving after all.
            return true;
        }
        if sn_lt(cmd_sn, exp) || sn_lt(max, cmd_sn) || self.ahead.contains(&cmd_sn) {
            return false;
        }
        if cmd_sn == exp {
            self.exp = exp.wrapping_add(1);
            self.catch_up();
        } else {
            self.ahead.insert(cmd_sn);
        }
        true
    }

    /// Gives up on CmdSNs below `cmd_sn` that never arrived (a connection that
    /// carried them died): the window moves on instead of closing for good.
    pub(super) fn skip_to(&mut self, cmd_sn: u32) {
        if !sn_lt(self.exp, cmd_sn) {
            return;
        }
        let mut sn = self.exp;
        while sn_lt(sn, cmd_sn) {
            if !self.ahead.contains(&sn) {
                self.skipped.insert(sn);
            }
            sn = sn.wrapping_add(1);
        }
        while self.skipped.len() > MAX_SKIPPED {
            self.skipped.pop_first();
        }
        self.exp = cmd_sn;
        self.ahead.retain(|&x| !sn_lt(x, cmd_sn));
        self.catch_up();
    }

    /// ExpCmdSN past the commands already received ahead of it.
    fn catch_up(&mut self) {
        while self.ahead.remove(&self.exp) {
            self.exp = self.exp.wrapping_add(1);
        }
    }
}

/// The next CmdSN to hand to the SCSI layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Delivery {
    next: u32,
}

impl Delivery {
    pub(super) fn new(first: u32) -> Self {
        Delivery { next: first }
    }

    /// Whether `cmd_sn` may go to the SCSI layer now: it is next, or older
    /// (a command whose gap was skipped), or beyond `max` (its handler will
    /// ignore it, so it must not wait).
    pub(super) fn is_turn(&self, cmd_sn: u32, max: u32) -> bool {
        cmd_sn == self.next || sn_lt(cmd_sn, self.next) || sn_lt(max, cmd_sn)
    }

    /// The CmdSN the SCSI layer waits for.
    pub(super) fn waiting_for(&self) -> u32 {
        self.next
    }

    /// `cmd_sn` was delivered; true when that moved the turn on (wake waiters).
    pub(super) fn done(&mut self, cmd_sn: u32) -> bool {
        if self.next == cmd_sn {
            self.next = self.next.wrapping_add(1);
            return true;
        }
        false
    }

    /// Gives up waiting for what lies below `cmd_sn`.
    pub(super) fn skip_to(&mut self, cmd_sn: u32) {
        self.next = cmd_sn;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_slides_as_commands_arrive_in_any_order() {
        let mut w = CmdWindow::new(10, 4);
        assert_eq!(w.bounds(), (10, 13));
        assert!(w.accept(12, false), "ahead, within the window");
        assert_eq!(w.bounds(), (10, 13), "a hole keeps ExpCmdSN");
        assert!(!w.accept(12, false), "a duplicate is ignored");
        assert!(!w.accept(14, false), "beyond MaxCmdSN");
        assert!(w.accept(10, false));
        assert_eq!(w.bounds(), (11, 14));
        assert!(w.accept(11, false));
        assert_eq!(w.bounds(), (13, 16), "12 was already here");
        assert!(!w.accept(9, false), "below the window");
        assert!(!w.accept(11, false), "already taken");
    }

    #[test]
    fn immediate_commands_do_not_move_the_window() {
        let mut w = CmdWindow::new(100, 8);
        assert!(w.accept(100, true));
        assert!(w.accept(107, true), "anywhere in the window");
        assert!(!w.accept(108, true));
        assert!(!w.accept(99, true));
        assert_eq!(w.bounds(), (100, 107));
        // A depth of one: ExpCmdSN is the whole window.
        let mut one = CmdWindow::new(5, 1);
        assert!(one.accept(5, true));
        assert!(one.accept(5, false));
        assert!(!one.accept(7, false));
        assert_eq!(one.bounds(), (6, 6));
    }

    #[test]
    fn the_window_wraps_at_two_to_the_32() {
        let mut w = CmdWindow::new(u32::MAX - 1, 4);
        assert_eq!(w.bounds(), (u32::MAX - 1, 1));
        assert!(w.accept(0, false), "ahead, across the wrap");
        assert!(w.accept(1, false));
        assert!(!w.accept(2, false), "beyond MaxCmdSN 1");
        assert!(w.accept(u32::MAX - 1, false));
        assert!(w.accept(u32::MAX, false));
        assert_eq!(w.bounds(), (2, 5), "0 and 1 were already here");
        assert!(!w.accept(u32::MAX, false), "behind, across the wrap");
    }

    #[test]
    fn a_gap_given_up_on_still_takes_its_late_command_once() {
        let mut w = CmdWindow::new(20, 16);
        assert!(w.accept(23, false));
        assert!(w.accept(25, false));
        // 20..=22 never came (their connection died); 24 did not either.
        w.skip_to(23);
        assert_eq!(w.bounds().0, 24, "23 was here");
        w.skip_to(26);
        assert_eq!(w.bounds().0, 26, "25 was here, 24 is given up");
        assert!(w.accept(21, false), "a late one runs");
        assert!(!w.accept(21, false), "but once");
        assert!(w.accept(24, false));
        assert!(!w.accept(23, false), "23 was received, not skipped");
        // Skipping backwards changes nothing.
        let before = w.clone();
        w.skip_to(10);
        assert_eq!(w, before);
    }

    #[test]
    fn skipped_cmdsns_are_bounded() {
        let mut w = CmdWindow::new(0, 64);
        w.skip_to(5000);
        assert!(!w.accept(0, false), "the oldest were forgotten");
        assert!(w.accept(4999, false), "the newest are remembered");
        assert_eq!(w.skipped.len(), MAX_SKIPPED - 1);
    }

    #[test]
    fn delivery_goes_in_cmdsn_order_and_past_what_it_gives_up() {
        let mut d = Delivery::new(7);
        let max = 20;
        assert!(d.is_turn(7, max));
        assert!(!d.is_turn(8, max), "8 waits for 7");
        assert!(
            d.is_turn(21, max),
            "beyond the window: its handler drops it, no wait"
        );
        assert!(d.is_turn(6, max), "older: a skipped gap's late command");
        assert!(!d.done(8), "not its turn: nothing moves");
        assert!(d.done(7));
        assert!(d.is_turn(8, max));
        d.skip_to(12);
        assert_eq!(d.waiting_for(), 12);
        assert!(d.is_turn(9, max) && d.is_turn(12, max) && !d.is_turn(13, max));
        // Across the wrap.
        let mut d = Delivery::new(u32::MAX);
        assert!(d.done(u32::MAX));
        assert!(d.is_turn(0, 5) && !d.is_turn(1, 5));
    }
}
