//! MODE SENSE / MODE SELECT (SPC-4 6.11-6.14) with the pages a disk reports.

use super::LogicalUnit;
use super::sense::{Asc, Sense};

/// Mode page codes.
pub mod page {
    pub const RW_ERROR_RECOVERY: u8 = 0x01;
    pub const DISCONNECT_RECONNECT: u8 = 0x02;
    pub const CACHING: u8 = 0x08;
    pub const CONTROL: u8 = 0x0A;
    pub const INFORMATIONAL_EXCEPTIONS: u8 = 0x1C;
    pub const ALL: u8 = 0x3F;
}

/// Page-control field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageControl {
    Current,
    Changeable,
    Default,
}

/// Values a MODE SELECT may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeState {
    pub d_sense: bool,
    pub swp: bool,
    pub wce: bool,
}

impl Default for ModeState {
    fn default() -> Self {
        ModeState {
            d_sense: false,
            swp: false,
            wce: true,
        }
    }
}

const ORDER: &[u8] = &[
    page::RW_ERROR_RECOVERY,
    page::DISCONNECT_RECONNECT,
    page::CACHING,
    page::CONTROL,
    page::INFORMATIONAL_EXCEPTIONS,
];

fn page_bytes(code: u8, pc: PageControl, st: &ModeState) -> Vec<u8> {
    let changeable = pc == PageControl::Changeable;
    let st = if pc == PageControl::Default {
        ModeState::default()
    } else {
        *st
    };
    let mut p = match code {
        page::RW_ERROR_RECOVERY => vec![0u8; 12],
        page::DISCONNECT_RECONNECT => vec![0u8; 16],
        page::CACHING => vec![0u8; 20],
        page::CONTROL => vec![0u8; 12],
        _ => vec![0u8; 12], // INFORMATIONAL_EXCEPTIONS
    };
    p[0] = code;
    p[1] = (p.len() - 2) as u8;
    match code {
        // WCE: changeable, and set while the write cache is enabled.
        page::CACHING if changeable || st.wce => p[2] = 0x04,
        page::CONTROL => {
            if changeable {
                p[2] = 0x04; // D_SENSE
                p[4] = 0x08; // SWP
            } else {
                p[2] = if st.d_sense { 0x04 } else { 0 };
                p[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
                p[4] = if st.swp { 0x08 } else { 0 };
                p[5] = 0x40; // TAS
                p[8..10].copy_from_slice(&0xFFFFu16.to_be_bytes());
            }
        }
        page::RW_ERROR_RECOVERY if !changeable => {
            p[3] = 0; // read retry count
        }
        _ => {}
    }
    p
}

impl LogicalUnit {
    /// MODE SENSE (6) and (10).
    pub(super) fn mode_sense(&self, cdb: &[u8], ten: bool) -> Result<Vec<u8>, Sense> {
        let dbd = cdb[1] & 0x08 != 0;
        let llbaa = ten && cdb[1] & 0x10 != 0;
        let pc = match cdb[2] >> 6 {
            0 => PageControl::Current,
            1 => PageControl::Changeable,
            2 => PageControl::Default,
            _ => return Err(Sense::illegal(Asc::SAVING_PARAMETERS_NOT_SUPPORTED)),
        };
        let code = cdb[2] & 0x3f;
        let subpage = cdb[3];
        let st = self.mode_state();
        let mut pages = Vec::new();
        if subpage != 0 && subpage != 0xff {
            return Err(Sense::invalid_cdb(3, None));
        }
        if code == page::ALL {
            for &c in ORDER {
                pages.extend_from_slice(&page_bytes(c, pc, &st));
            }
        } else if ORDER.contains(&code) {
            pages.extend_from_slice(&page_bytes(code, pc, &st));
        } else {
            return Err(Sense::invalid_cdb(2, Some(5)));
        }
        let blocks = self.num_blocks();
        let bd: Vec<u8> = if dbd {
            Vec::new()
        } else if llbaa {
            let mut b = blocks.to_be_bytes().to_vec();
            b.extend_from_slice(&[0, 0, 0, 0]);
            b.extend_from_slice(&self.block_size().to_be_bytes());
            b
        } else {
            let n = blocks.min(0xFF_FFFF) as u32;
            let mut b = n.to_be_bytes().to_vec();
            b[0] = 0;
            b.extend_from_slice(&self.block_size().to_be_bytes());
            b
        };
        let wp = self.cfg.read_only || st.swp;
        let dsp = (if wp { 0x80 } else { 0 }) | 0x10; // WP, DPOFUA
        let mut out = if ten {
            let mut h = vec![0u8; 8];
            h[3] = dsp;
            h[4] = u8::from(llbaa);
            h[6..8].copy_from_slice(&(bd.len() as u16).to_be_bytes());
            h
        } else {
            vec![0, 0, dsp, bd.len() as u8]
        };
        out.extend_from_slice(&bd);
        out.extend_from_slice(&pages);
        if ten {
            let len = (out.len() - 2) as u16;
            out[0..2].copy_from_slice(&len.to_be_bytes());
        } else {
            out[0] = (out.len() - 1).min(255) as u8;
        }
        Ok(out)
    }

    /// MODE SELECT (6) and (10): only D_SENSE, SWP and WCE may change.
    pub(super) fn mode_select(&self, cdb: &[u8], ten: bool, param: &[u8]) -> Result<(), Sense> {
        let pf = cdb[1] & 0x10 != 0;
        let sp = cdb[1] & 0x01 != 0;
        if sp {
            return Err(Sense::invalid_cdb(1, Some(0)));
        }
        if param.is_empty() {
            return Ok(());
        }
        if !pf {
            return Err(Sense::invalid_cdb(1, Some(4)));
        }
        let (hdr, bdl) = if ten {
            if param.len() < 8 {
                return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
            }
            (8usize, u16::from_be_bytes([param[6], param[7]]) as usize)
        } else {
            if param.len() < 4 {
                return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
            }
            (4usize, param[3] as usize)
        };
        let mut pos = hdr + bdl;
        if pos > param.len() {
            return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
        }
        let mut st = self.mode_state();
        while pos < param.len() {
            if pos + 2 > param.len() {
                return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
            }
            let code = param[pos] & 0x3f;
            if param[pos] & 0x40 != 0 {
                return Err(Sense::invalid_param(pos as u16, Some(6)));
            }
            let len = param[pos + 1] as usize + 2;
            if pos + len > param.len() {
                return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
            }
            if !ORDER.contains(&code) {
                return Err(Sense::invalid_param(pos as u16, None));
            }
            let given = &param[pos..pos + len];
            let current = page_bytes(code, PageControl::Current, &st);
            let mask = page_bytes(code, PageControl::Changeable, &st);
            if given.len() != current.len() {
                return Err(Sense::invalid_param(pos as u16 + 1, None));
            }
            for i in 2..given.len() {
                if (given[i] ^ current[i]) & !mask[i] != 0 {
                    return Err(Sense::invalid_param((pos + i) as u16, None));
                }
            }
            match code {
                page::CONTROL => {
                    st.d_sense = given[2] & 0x04 != 0;
                    st.swp = given[4] & 0x08 != 0;
                }
                page::CACHING => st.wce = given[2] & 0x04 != 0,
                _ => {}
            }
            pos += len;
        }
        self.set_mode_state(st);
        Ok(())
    }
}
