//! SCSI status codes and sense data (SPC-4 4.5): fixed (0x70) and descriptor (0x72) formats.

/// SAM status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ScsiStatus {
    Good = 0x00,
    CheckCondition = 0x02,
    ConditionMet = 0x04,
    Busy = 0x08,
    ReservationConflict = 0x18,
    TaskSetFull = 0x28,
    TaskAborted = 0x40,
}

/// Sense keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SenseKey {
    NoSense = 0x0,
    NotReady = 0x2,
    MediumError = 0x3,
    HardwareError = 0x4,
    IllegalRequest = 0x5,
    UnitAttention = 0x6,
    DataProtect = 0x7,
    CopyAborted = 0xA,
    AbortedCommand = 0xB,
    Miscompare = 0xE,
}

/// Additional sense code and qualifier pairs used by the emulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asc(pub u8, pub u8);

impl Asc {
    pub const NO_ADDITIONAL: Asc = Asc(0x00, 0x00);
    pub const NOT_READY_MANUAL_INTERVENTION: Asc = Asc(0x04, 0x03);
    pub const NOT_READY_SANITIZE: Asc = Asc(0x04, 0x1B);
    pub const WRITE_ERROR: Asc = Asc(0x0C, 0x00);
    pub const UNRECOVERED_READ_ERROR: Asc = Asc(0x11, 0x00);
    pub const MISCOMPARE_DURING_VERIFY: Asc = Asc(0x1D, 0x00);
    pub const PARAMETER_LIST_LENGTH_ERROR: Asc = Asc(0x1A, 0x00);
    pub const INVALID_OPCODE: Asc = Asc(0x20, 0x00);
    pub const DATA_PHASE_ERROR: Asc = Asc(0x4B, 0x00);
    pub const LBA_OUT_OF_RANGE: Asc = Asc(0x21, 0x00);
    pub const INVALID_FIELD_IN_CDB: Asc = Asc(0x24, 0x00);
    pub const LU_NOT_SUPPORTED: Asc = Asc(0x25, 0x00);
    pub const INVALID_FIELD_IN_PARAMETER_LIST: Asc = Asc(0x26, 0x00);
    pub const INVALID_RELEASE_OF_PR: Asc = Asc(0x26, 0x04);
    pub const WRITE_PROTECTED: Asc = Asc(0x27, 0x00);
    pub const POWER_ON_RESET: Asc = Asc(0x29, 0x00);
    pub const BUS_DEVICE_RESET: Asc = Asc(0x29, 0x03);
    pub const IT_NEXUS_LOSS: Asc = Asc(0x29, 0x07);
    pub const MODE_PARAMETERS_CHANGED: Asc = Asc(0x2A, 0x01);
    pub const RESERVATIONS_PREEMPTED: Asc = Asc(0x2A, 0x03);
    pub const RESERVATIONS_RELEASED: Asc = Asc(0x2A, 0x04);
    pub const REGISTRATIONS_PREEMPTED: Asc = Asc(0x2A, 0x05);
    pub const COMMANDS_CLEARED_BY_ANOTHER: Asc = Asc(0x2F, 0x00);
    pub const SANITIZE_FAILED: Asc = Asc(0x31, 0x03);
    pub const REPORTED_LUNS_DATA_CHANGED: Asc = Asc(0x3F, 0x0E);
    pub const SAVING_PARAMETERS_NOT_SUPPORTED: Asc = Asc(0x39, 0x00);
    pub const MEDIUM_NOT_PRESENT: Asc = Asc(0x3A, 0x00);
    pub const MEDIUM_REMOVAL_PREVENTED: Asc = Asc(0x53, 0x02);
    pub const INSUFFICIENT_REGISTRATION_RESOURCES: Asc = Asc(0x55, 0x04);
    pub const INTERNAL_TARGET_FAILURE: Asc = Asc(0x44, 0x00);
}

/// Sense-key specific information (SPC-4 4.5.2.4.2: field pointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPointer {
    /// true when the field is in the CDB, false in the parameter data.
    pub in_cdb: bool,
    pub byte: u16,
    pub bit: Option<u8>,
}

/// One piece of sense data, rendered in the format the LU's D_SENSE bit selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sense {
    pub key: SenseKey,
    pub asc: Asc,
    pub information: Option<u64>,
    pub field: Option<FieldPointer>,
}

impl Sense {
    pub fn new(key: SenseKey, asc: Asc) -> Self {
        Sense {
            key,
            asc,
            information: None,
            field: None,
        }
    }
    pub fn illegal(asc: Asc) -> Self {
        Sense::new(SenseKey::IllegalRequest, asc)
    }
    pub fn invalid_cdb(byte: u16, bit: Option<u8>) -> Self {
        Sense {
            field: Some(FieldPointer {
                in_cdb: true,
                byte,
                bit,
            }),
            ..Sense::illegal(Asc::INVALID_FIELD_IN_CDB)
        }
    }
    pub fn invalid_param(byte: u16, bit: Option<u8>) -> Self {
        Sense {
            field: Some(FieldPointer {
                in_cdb: false,
                byte,
                bit,
            }),
            ..Sense::illegal(Asc::INVALID_FIELD_IN_PARAMETER_LIST)
        }
    }
    /// Points at byte `byte` of the parameter data (sense-key specific).
    pub fn with_param_field(mut self, byte: u16) -> Self {
        self.field = Some(FieldPointer {
            in_cdb: false,
            byte,
            bit: None,
        });
        self
    }
    pub fn with_information(mut self, info: u64) -> Self {
        self.information = Some(info);
        self
    }

    fn sks(&self) -> Option<[u8; 3]> {
        self.field.map(|f| {
            let mut b0 = 0x80u8; // SKSV
            if f.in_cdb {
                b0 |= 0x40; // C/D
            }
            if let Some(bit) = f.bit {
                b0 |= 0x08 | (bit & 7); // BPV + bit pointer
            }
            [b0, (f.byte >> 8) as u8, f.byte as u8]
        })
    }

    /// Fixed-format sense data (response code 0x70).
    pub fn fixed(&self) -> Vec<u8> {
        let mut s = vec![0u8; 18];
        s[0] = 0x70;
        s[2] = self.key as u8;
        if let Some(info) = self.information {
            s[0] |= 0x80; // VALID
            s[3..7].copy_from_slice(&(info as u32).to_be_bytes());
        }
        s[7] = 10;
        s[12] = self.asc.0;
        s[13] = self.asc.1;
        if let Some(sks) = self.sks() {
            s[15..18].copy_from_slice(&sks);
        }
        s
    }

    /// Descriptor-format sense data (response code 0x72).
    pub fn descriptor(&self) -> Vec<u8> {
        let mut s = vec![0u8; 8];
        s[0] = 0x72;
        s[1] = self.key as u8;
        s[2] = self.asc.0;
        s[3] = self.asc.1;
        if let Some(info) = self.information {
            s.extend_from_slice(&[0x00, 0x0A, 0x80, 0x00]);
            s.extend_from_slice(&info.to_be_bytes());
        }
        if let Some(sks) = self.sks() {
            s.extend_from_slice(&[0x02, 0x06, 0x00, 0x00]);
            s.extend_from_slice(&sks);
            s.push(0);
        }
        s[7] = (s.len() - 8) as u8;
        s
    }

    pub fn encode(&self, descriptor_format: bool) -> Vec<u8> {
        if descriptor_format {
            self.descriptor()
        } else {
            self.fixed()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_layout() {
        let s = Sense::invalid_cdb(2, Some(3)).fixed();
        assert_eq!(s.len(), 18);
        assert_eq!(s[0], 0x70);
        assert_eq!(s[2], 0x05);
        assert_eq!((s[12], s[13]), (0x24, 0x00));
        assert_eq!(s[15], 0x80 | 0x40 | 0x08 | 3);
        assert_eq!(s[17], 2);
    }

    #[test]
    fn descriptor_format_layout() {
        let s = Sense::new(SenseKey::Miscompare, Asc::MISCOMPARE_DURING_VERIFY)
            .with_information(513)
            .descriptor();
        assert_eq!(s[0], 0x72);
        assert_eq!(s[1], 0x0E);
        assert_eq!(s[7] as usize, s.len() - 8);
        assert_eq!(&s[8..12], &[0, 0x0A, 0x80, 0]);
        assert_eq!(u64::from_be_bytes(s[12..20].try_into().unwrap()), 513);
    }
}
