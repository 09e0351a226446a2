//! Operation codes the emulation implements, and the table REPORT SUPPORTED
//! OPERATION CODES reports (with CDB usage maps).

/// SCSI operation codes (SPC-4 / SBC-3).
pub mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0A;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const RESERVE_6: u8 = 0x16;
    pub const RELEASE_6: u8 = 0x17;
    pub const MODE_SENSE_6: u8 = 0x1A;
    pub const START_STOP_UNIT: u8 = 0x1B;
    pub const PREVENT_ALLOW: u8 = 0x1E;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2A;
    pub const WRITE_VERIFY_10: u8 = 0x2E;
    pub const VERIFY_10: u8 = 0x2F;
    pub const PREFETCH_10: u8 = 0x34;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const READ_DEFECT_DATA_10: u8 = 0x37;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const UNMAP: u8 = 0x42;
    pub const SANITIZE: u8 = 0x48;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const MODE_SENSE_10: u8 = 0x5A;
    pub const PERSISTENT_RESERVE_IN: u8 = 0x5E;
    pub const PERSISTENT_RESERVE_OUT: u8 = 0x5F;
    pub const EXTENDED_COPY: u8 = 0x83;
    pub const RECEIVE_COPY_RESULTS: u8 = 0x84;
    pub const READ_16: u8 = 0x88;
    pub const COMPARE_AND_WRITE: u8 = 0x89;
    pub const WRITE_16: u8 = 0x8A;
    pub const ORWRITE_16: u8 = 0x8B;
    pub const WRITE_VERIFY_16: u8 = 0x8E;
    pub const VERIFY_16: u8 = 0x8F;
    pub const PREFETCH_16: u8 = 0x90;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const WRITE_SAME_16: u8 = 0x93;
    pub const WRITE_ATOMIC_16: u8 = 0x9C;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
    pub const REPORT_LUNS: u8 = 0xA0;
    pub const MAINTENANCE_IN: u8 = 0xA3;
    pub const READ_12: u8 = 0xA8;
    pub const WRITE_12: u8 = 0xAA;
    pub const WRITE_VERIFY_12: u8 = 0xAE;
    pub const VERIFY_12: u8 = 0xAF;
    pub const READ_DEFECT_DATA_12: u8 = 0xB7;
}

/// Service actions of SERVICE ACTION IN(16).
pub mod sai {
    pub const READ_CAPACITY_16: u16 = 0x10;
    pub const GET_LBA_STATUS: u16 = 0x12;
}
/// Service actions of MAINTENANCE IN.
pub mod mi {
    pub const REPORT_SUPPORTED_OPCODES: u16 = 0x0C;
}
/// Service actions of SANITIZE.
pub mod sanitize {
    pub const OVERWRITE: u16 = 0x01;
    pub const BLOCK_ERASE: u16 = 0x02;
    pub const CRYPTO_ERASE: u16 = 0x03;
    pub const EXIT_FAILURE_MODE: u16 = 0x1F;
}
/// Service actions of RECEIVE COPY RESULTS.
pub mod rcr {
    pub const COPY_STATUS: u16 = 0x00;
    pub const OPERATING_PARAMETERS: u16 = 0x03;
}

/// One supported command: opcode, service action (when the opcode has them)
/// and the CDB usage map: bit set = that CDB bit is meaningful.
pub struct Supported {
    pub opcode: u8,
    pub service_action: Option<u16>,
    pub usage: &'static [u8],
}

const fn s(opcode: u8, usage: &'static [u8]) -> Supported {
    Supported {
        opcode,
        service_action: None,
        usage,
    }
}
const fn sa(opcode: u8, service_action: u16, usage: &'static [u8]) -> Supported {
    Supported {
        opcode,
        service_action: Some(service_action),
        usage,
    }
}

/// Everything this emulation implements; REPORT SUPPORTED OPERATION CODES reads it.
pub static SUPPORTED: &[Supported] = &[
    s(op::TEST_UNIT_READY, &[0x00, 0, 0, 0, 0, 0x07]),
    s(op::REQUEST_SENSE, &[0x03, 0x01, 0, 0, 0xff, 0x07]),
    s(op::READ_6, &[0x08, 0x1f, 0xff, 0xff, 0xff, 0x07]),
    s(op::WRITE_6, &[0x0a, 0x1f, 0xff, 0xff, 0xff, 0x07]),
    s(op::INQUIRY, &[0x12, 0x01, 0xff, 0xff, 0xff, 0x07]),
    s(op::MODE_SELECT_6, &[0x15, 0x11, 0, 0, 0xff, 0x07]),
    s(op::RESERVE_6, &[0x16, 0, 0, 0, 0, 0x07]),
    s(op::RELEASE_6, &[0x17, 0, 0, 0, 0, 0x07]),
    s(op::MODE_SENSE_6, &[0x1a, 0x08, 0xff, 0xff, 0xff, 0x07]),
    s(op::START_STOP_UNIT, &[0x1b, 0x01, 0, 0x0f, 0xf7, 0x07]),
    s(op::PREVENT_ALLOW, &[0x1e, 0, 0, 0, 0x03, 0x07]),
    s(op::READ_CAPACITY_10, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0x07]),
    s(
        op::READ_10,
        &[0x28, 0x18, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07],
    ),
    s(
        op::WRITE_10,
        &[0x2a, 0x18, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07],
    ),
    s(
        op::WRITE_VERIFY_10,
        &[0x2e, 0x12, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07],
    ),
    s(
        op::VERIFY_10,
        &[0x2f, 0x16, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07],
    ),
    s(
        op::PREFETCH_10,
        &[0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07],
    ),
    s(
        op::SYNCHRONIZE_CACHE_10,
        &[0x35, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07],
    ),
    s(
        op::READ_DEFECT_DATA_10,
        &[0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0x07],
    ),
    s(
        op::WRITE_SAME_10,
        &[0x41, 0x08, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07],
    ),
    s(op::UNMAP, &[0x42, 0, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0x07]),
    sa(
        op::SANITIZE,
        sanitize::OVERWRITE,
        &[0x48, 0xff, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07],
    ),
    sa(
        op::SANITIZE,
        sanitize::BLOCK_ERASE,
        &[0x48, 0xff, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07],
    ),
    sa(
        op::SANITIZE,
        sanitize::EXIT_FAILURE_MODE,
        &[0x48, 0xff, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07],
    ),
    s(
        op::MODE_SELECT_10,
        &[0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07],
    ),
    s(
        op::MODE_SENSE_10,
        &[0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0x07],
    ),
    sa(
        op::PERSISTENT_RESERVE_IN,
        0x00,
        &[0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07],
    ),
    sa(
        op::PERSISTENT_RESERVE_IN,
        0x01,
        &[0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07],
    ),
    sa(
        op::PERSISTENT_RESERVE_IN,
        0x02,
        &[0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07],
    ),
    sa(
        op::PERSISTENT_RESERVE_IN,
        0x03,
        &[0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07],
    ),
    sa(
        op::PERSISTENT_RESERVE_OUT,
        0x00,
        &[0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07],
    ),
    sa(
        op::PERSISTENT_RESERVE_OUT,
        0x01,
        &[0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07],
    ),
    sa(
        op::PERSISTENT_RESERVE_OUT,
        0x02,
        &[0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07],
    ),
    sa(
        op::PERSISTENT_RESERVE_OUT,
        0x03,
        &[0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07],
    ),
    sa(
        op::PERSISTENT_RESERVE_OUT,
        0x04,
        &[0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07],
    ),
    sa(
        op::PERSISTENT_RESERVE_OUT,
        0x05,
        &[0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07],
    ),
    sa(
        op::PERSISTENT_RESERVE_OUT,
        0x06,
        &[0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07],
    ),
    s(
        op::READ_16,
        &[
            0x88, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0x07,
        ],
    ),
    s(
        op::COMPARE_AND_WRITE,
        &[
            0x89, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0x1f, 0x07,
        ],
    ),
    s(
        op::WRITE_16,
        &[
            0x8a, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0x07,
        ],
    ),
    s(
        op::ORWRITE_16,
        &[
            0x8b, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0x07,
        ],
    ),
    s(
        op::WRITE_VERIFY_16,
        &[
            0x8e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0x07,
        ],
    ),
    s(
        op::VERIFY_16,
        &[
            0x8f, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0x07,
        ],
    ),
    s(
        op::PREFETCH_16,
        &[
            0x90, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0x07,
        ],
    ),
    s(
        op::SYNCHRONIZE_CACHE_16,
        &[
            0x91, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0x07,
        ],
    ),
    s(
        op::WRITE_SAME_16,
        &[
            0x93, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0x07,
        ],
    ),
    s(
        op::WRITE_ATOMIC_16,
        &[
            0x9c, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0xff, 0xff, 0x1f,
            0x07,
        ],
    ),
    sa(
        op::SERVICE_ACTION_IN_16,
        sai::READ_CAPACITY_16,
        &[
            0x9e, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x07,
        ],
    ),
    sa(
        op::SERVICE_ACTION_IN_16,
        sai::GET_LBA_STATUS,
        &[
            0x9e, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0x07,
        ],
    ),
    s(
        op::REPORT_LUNS,
        &[0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x07],
    ),
    sa(
        op::MAINTENANCE_IN,
        mi::REPORT_SUPPORTED_OPCODES,
        &[
            0xa3, 0x1f, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x07,
        ],
    ),
    s(
        op::READ_12,
        &[
            0xa8, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07,
        ],
    ),
    s(
        op::WRITE_12,
        &[
            0xaa, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07,
        ],
    ),
    s(
        op::WRITE_VERIFY_12,
        &[
            0xae, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07,
        ],
    ),
    s(
        op::VERIFY_12,
        &[
            0xaf, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07,
        ],
    ),
    s(
        op::READ_DEFECT_DATA_12,
        &[0xb7, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x07],
    ),
];

/// Whether an opcode carries a service action in its CDB byte 1 (bits 4..0).
pub fn has_service_action(opcode: u8) -> bool {
    SUPPORTED
        .iter()
        .any(|s| s.opcode == opcode && s.service_action.is_some())
}

/// Nominal command timeout reported in timeout descriptors, in seconds.
pub const NOMINAL_TIMEOUT_SECS: u32 = 30;

/// REPORT SUPPORTED OPERATION CODES reply (SPC-4 6.35).
/// Returns `Err(byte)` naming the invalid CDB byte.
pub fn report_supported(options: u8, rctd: bool, req_op: u8, req_sa: u16) -> Result<Vec<u8>, u16> {
    let timeouts = |out: &mut Vec<u8>| {
        out.extend_from_slice(&[0x00, 0x0A, 0, 0]);
        out.extend_from_slice(&NOMINAL_TIMEOUT_SECS.to_be_bytes());
        out.extend_from_slice(&(NOMINAL_TIMEOUT_SECS * 2).to_be_bytes());
    };
    match options {
        0 => {
            let mut body = Vec::new();
            for c in SUPPORTED {
                body.push(c.opcode);
                body.push(0);
                body.extend_from_slice(&c.service_action.unwrap_or(0).to_be_bytes());
                body.push(0);
                body.push((if rctd { 0x02 } else { 0 }) | u8::from(c.service_action.is_some()));
                body.extend_from_slice(&(c.usage.len() as u16).to_be_bytes());
                if rctd {
                    timeouts(&mut body);
                }
            }
            let mut out = (body.len() as u32).to_be_bytes().to_vec();
            out.extend_from_slice(&body);
            Ok(out)
        }
        1..=3 => {
            let found = match options {
                1 => {
                    if has_service_action(req_op) {
                        return Err(3);
                    }
                    SUPPORTED.iter().find(|c| c.opcode == req_op)
                }
                2 => {
                    if !has_service_action(req_op) && SUPPORTED.iter().any(|c| c.opcode == req_op) {
                        return Err(3);
                    }
                    SUPPORTED
                        .iter()
                        .find(|c| c.opcode == req_op && c.service_action == Some(req_sa))
                }
                _ => SUPPORTED
                    .iter()
                    .find(|c| c.opcode == req_op && c.service_action.is_none_or(|s| s == req_sa)),
            };
            let mut out = vec![0u8, 0];
            match found {
                Some(c) => {
                    out[1] = 0x03 | if rctd { 0x80 } else { 0 };
                    out.extend_from_slice(&(c.usage.len() as u16).to_be_bytes());
                    out.extend_from_slice(c.usage);
                    if rctd {
                        timeouts(&mut out);
                    }
                }
                None => {
                    out[1] = 0x01;
                    out.extend_from_slice(&[0, 0]);
                }
            }
            Ok(out)
        }
        _ => Err(2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_maps_start_with_their_opcode() {
        for c in SUPPORTED {
            assert_eq!(c.usage[0], c.opcode, "opcode {:#x}", c.opcode);
            assert!(
                matches!(c.usage.len(), 6 | 10 | 12 | 16),
                "opcode {:#x}",
                c.opcode
            );
        }
    }

    #[test]
    fn one_command_reporting() {
        let r = report_supported(1, false, op::READ_10, 0).unwrap();
        assert_eq!(r[1] & 7, 3);
        assert_eq!(u16::from_be_bytes([r[2], r[3]]), 10);
        assert_eq!(
            report_supported(1, false, op::SERVICE_ACTION_IN_16, 0),
            Err(3)
        );
        let r = report_supported(2, true, op::SERVICE_ACTION_IN_16, sai::READ_CAPACITY_16).unwrap();
        assert_eq!(r[1], 0x83);
        assert_eq!(r.len(), 4 + 16 + 12);
        let r = report_supported(1, false, 0xC5, 0).unwrap();
        assert_eq!(r[1] & 7, 1);
    }
}
