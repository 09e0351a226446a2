//! INQUIRY: standard data and the VPD pages (SPC-4 6.6, 7.8; SBC-3 6.6).

use super::LogicalUnit;
use super::sense::Sense;

/// VPD page codes.
pub mod vpd {
    pub const SUPPORTED_PAGES: u8 = 0x00;
    pub const UNIT_SERIAL: u8 = 0x80;
    pub const DEVICE_IDENTIFICATION: u8 = 0x83;
    pub const EXTENDED_INQUIRY: u8 = 0x86;
    pub const BLOCK_LIMITS: u8 = 0xB0;
    pub const THIRD_PARTY_COPY: u8 = 0x8F;
    pub const BLOCK_DEVICE_CHARACTERISTICS: u8 = 0xB1;
    pub const LOGICAL_BLOCK_PROVISIONING: u8 = 0xB2;
}

/// Peripheral device type: direct-access block device.
pub const DEVICE_TYPE_DISK: u8 = 0x00;

const PAGES: &[u8] = &[
    vpd::SUPPORTED_PAGES,
    vpd::UNIT_SERIAL,
    vpd::DEVICE_IDENTIFICATION,
    vpd::EXTENDED_INQUIRY,
    vpd::BLOCK_LIMITS,
    vpd::BLOCK_DEVICE_CHARACTERISTICS,
    vpd::LOGICAL_BLOCK_PROVISIONING,
    vpd::THIRD_PARTY_COPY,
];

/// Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3.
const VERSION_DESCRIPTORS: &[u16] = &[0x00A0, 0x0960, 0x0460, 0x04C0];

fn padded(text: &str, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = text
        .bytes()
        .filter(|b| (0x20..0x7f).contains(b))
        .take(len)
        .collect();
    v.resize(len, b' ');
    v
}

/// Limits the emulation reports in the Block Limits page and enforces.
pub mod limits {
    /// MAXIMUM COMPARE AND WRITE LENGTH, in blocks.
    pub const MAX_COMPARE_AND_WRITE: u8 = 255;
    /// MAXIMUM TRANSFER LENGTH, in blocks (32 MiB at 512 bytes).
    pub const MAX_TRANSFER: u32 = 65536;
    pub const MAX_UNMAP_LBA_COUNT: u32 = 0x0010_0000;
    pub const MAX_UNMAP_DESCRIPTORS: u32 = 256;
    pub const MAX_WRITE_SAME: u64 = 0x0040_0000;
    pub const MAX_ATOMIC_TRANSFER: u32 = 65536;
}

impl LogicalUnit {
    pub(super) fn standard_inquiry(&self) -> Vec<u8> {
        let mut d = vec![0u8; 36];
        d[0] = DEVICE_TYPE_DISK;
        d[1] = if self.cfg.removable { 0x80 } else { 0 };
        d[2] = 0x06; // SPC-4
        d[3] = 0x02 | 0x10; // response data format 2, HISUP
        d[5] = 0x08; // 3PC: EXTENDED COPY supported
        d[6] = 0x00;
        d[7] = 0x02; // CMDQUE
        d[8..16].copy_from_slice(&padded(&self.cfg.vendor, 8));
        d[16..32].copy_from_slice(&padded(&self.cfg.product, 16));
        d[32..36].copy_from_slice(&padded(&self.cfg.revision, 4));
        d.resize(58, 0);
        for v in VERSION_DESCRIPTORS {
            d.extend_from_slice(&v.to_be_bytes());
        }
        d.resize(96, 0);
        d[4] = (d.len() - 5) as u8;
        d
    }

    pub(super) fn vpd_page(&self, page: u8) -> Result<Vec<u8>, Sense> {
        let mut d = vec![DEVICE_TYPE_DISK, page, 0, 0];
        match page {
            vpd::SUPPORTED_PAGES => d.extend_from_slice(PAGES),
            vpd::UNIT_SERIAL => d.extend_from_slice(self.cfg.serial.as_bytes()),
            vpd::DEVICE_IDENTIFICATION => d.extend_from_slice(&self.designators()),
            vpd::EXTENDED_INQUIRY => {
                let mut p = vec![0u8; 60];
                p[1] = 0x07; // HEADSUP ORDSUP SIMPSUP
                p[2] = 0x00;
                p[3] = 0x00;
                d.extend_from_slice(&p);
            }
            vpd::BLOCK_LIMITS => {
                let mut p = vec![0u8; 60];
                p[1] = limits::MAX_COMPARE_AND_WRITE;
                // OPTIMAL TRANSFER LENGTH GRANULARITY: one physical block.
                let per_physical = 1u16 << self.physical_exponent();
                p[2..4].copy_from_slice(&per_physical.to_be_bytes());
                p[4..8].copy_from_slice(&limits::MAX_TRANSFER.to_be_bytes());
                p[8..12].copy_from_slice(&(256u32 * 1024 / self.block_size()).to_be_bytes());
                p[12..16].copy_from_slice(&limits::MAX_TRANSFER.to_be_bytes());
                if self.cfg.thin {
                    p[16..20].copy_from_slice(&limits::MAX_UNMAP_LBA_COUNT.to_be_bytes());
                    p[20..24].copy_from_slice(&limits::MAX_UNMAP_DESCRIPTORS.to_be_bytes());
                    p[24..28].copy_from_slice(&(per_physical as u32).to_be_bytes());
                }
                p[32..40].copy_from_slice(&limits::MAX_WRITE_SAME.to_be_bytes());
                p[40..44].copy_from_slice(&limits::MAX_ATOMIC_TRANSFER.to_be_bytes());
                p[44..48].copy_from_slice(&1u32.to_be_bytes());
                p[48..52].copy_from_slice(&1u32.to_be_bytes());
                d.extend_from_slice(&p);
            }
            vpd::BLOCK_DEVICE_CHARACTERISTICS => {
                let mut p = vec![0u8; 60];
                p[0..2].copy_from_slice(&1u16.to_be_bytes()); // non-rotating medium
                p[3] = 0x40; // WABEREQ 01b: reads after BLOCK ERASE return zeros
                d.extend_from_slice(&p);
            }
            vpd::LOGICAL_BLOCK_PROVISIONING => {
                let mut p = vec![0u8; 4];
                if self.cfg.thin {
                    p[1] = 0x80 | 0x40 | 0x20 | 0x04; // LBPU LBPWS LBPWS10 LBPRZ
                    p[2] = 0x02; // thin provisioned
                }
                d.extend_from_slice(&p);
            }
            vpd::THIRD_PARTY_COPY => d.extend_from_slice(&super::xcopy::third_party_copy_page()),
            _ => return Err(Sense::invalid_cdb(2, None)),
        }
        let len = (d.len() - 4) as u16;
        d[2..4].copy_from_slice(&len.to_be_bytes());
        Ok(d)
    }

    pub(super) fn designators(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // NAA IEEE Registered (type 3, code set binary, association LU).
        out.extend_from_slice(&[0x01, 0x03, 0x00, 0x08]);
        out.extend_from_slice(&self.cfg.naa.to_be_bytes());
        // T10 vendor ID based (type 1, ASCII, association LU).
        let mut t10 = padded(&self.cfg.vendor, 8);
        t10.extend_from_slice(self.cfg.serial.as_bytes());
        out.extend_from_slice(&[0x02, 0x01, 0x00, t10.len() as u8]);
        out.extend_from_slice(&t10);
        // Relative target port (type 4, association target port, PIV, protocol iSCSI).
        out.extend_from_slice(&[0x51, 0x94, 0x00, 0x04, 0, 0, 0, 1]);
        // Target port group (type 5).
        out.extend_from_slice(&[0x51, 0x95, 0x00, 0x04, 0, 0, 0, 1]);
        // SCSI name string of the target port (type 8, UTF-8, association target port).
        if !self.cfg.target_port_name.is_empty() {
            let mut name = self.cfg.target_port_name.clone().into_bytes();
            name.push(0);
            while !name.len().is_multiple_of(4) {
                name.push(0);
            }
            out.extend_from_slice(&[0x53, 0x98, 0x00, name.len() as u8]);
            out.extend_from_slice(&name);
        }
        out
    }
}
