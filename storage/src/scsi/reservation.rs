//! Persistent reservations (SPC-4 5.13) and SPC-2 RESERVE/RELEASE(6).

use super::sense::{Asc, ScsiStatus, Sense};
use super::{Nexus, NexusId};

/// Persistent reservation types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PrType {
    WriteExclusive = 1,
    ExclusiveAccess = 3,
    WriteExclusiveRegistrantsOnly = 5,
    ExclusiveAccessRegistrantsOnly = 6,
    WriteExclusiveAllRegistrants = 7,
    ExclusiveAccessAllRegistrants = 8,
}

impl PrType {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => PrType::WriteExclusive,
            3 => PrType::ExclusiveAccess,
            5 => PrType::WriteExclusiveRegistrantsOnly,
            6 => PrType::ExclusiveAccessRegistrantsOnly,
            7 => PrType::WriteExclusiveAllRegistrants,
            8 => PrType::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }
    fn all_registrants(self) -> bool {
        matches!(
            self,
            PrType::WriteExclusiveAllRegistrants | PrType::ExclusiveAccessAllRegistrants
        )
    }
    fn registrants_access(self) -> bool {
        !matches!(self, PrType::WriteExclusive | PrType::ExclusiveAccess)
    }
    fn exclusive_access(self) -> bool {
        matches!(
            self,
            PrType::ExclusiveAccess
                | PrType::ExclusiveAccessRegistrantsOnly
                | PrType::ExclusiveAccessAllRegistrants
        )
    }
}

/// PERSISTENT RESERVE OUT service actions.
mod prout {
    pub const REGISTER: u8 = 0x00;
    pub const RESERVE: u8 = 0x01;
    pub const RELEASE: u8 = 0x02;
    pub const CLEAR: u8 = 0x03;
    pub const PREEMPT: u8 = 0x04;
    pub const PREEMPT_AND_ABORT: u8 = 0x05;
    pub const REGISTER_AND_IGNORE: u8 = 0x06;
}
/// PERSISTENT RESERVE IN service actions.
mod prin {
    pub const READ_KEYS: u8 = 0x00;
    pub const READ_RESERVATION: u8 = 0x01;
    pub const REPORT_CAPABILITIES: u8 = 0x02;
    pub const READ_FULL_STATUS: u8 = 0x03;
}

#[derive(Debug, Clone)]
struct Registration {
    nexus: NexusId,
    initiator_name: String,
    key: u64,
}

#[derive(Debug, Clone)]
struct Reservation {
    holder_nexus: NexusId,
    kind: PrType,
    key: u64,
}

/// How a command touches the medium, for reservation conflict checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Never conflicts (INQUIRY, REPORT LUNS, REQUEST SENSE, PR IN/OUT, ...).
    None,
    Read,
    Write,
}

/// What a PR-OUT caused that other I_T nexuses must be told (unit attentions).
pub type Notices = Vec<(NexusId, Asc)>;

#[derive(Debug, Default)]
pub struct Reservations {
    generation: u32,
    registrations: Vec<Registration>,
    reservation: Option<Reservation>,
    /// SPC-2 RESERVE(6) holder.
    reserve6: Option<NexusId>,
}

fn conflict() -> Result<(), (ScsiStatus, Option<Sense>)> {
    Err((ScsiStatus::ReservationConflict, None))
}

type PrResult = Result<(), (ScsiStatus, Option<Sense>)>;

impl Reservations {
    pub fn is_empty(&self) -> bool {
        self.registrations.is_empty() && self.reservation.is_none() && self.reserve6.is_none()
    }

    fn registered(&self, nexus: &NexusId) -> Option<usize> {
        self.registrations.iter().position(|r| &r.nexus == nexus)
    }

    fn is_holder(&self, nexus: &NexusId) -> bool {
        match &self.reservation {
            None => false,
            Some(r) if r.kind.all_registrants() => self.registered(nexus).is_some(),
            Some(r) => &r.holder_nexus == nexus,
        }
    }

    /// SPC-4 table 49 / SPC-2 reservations: may this nexus run a command of this access kind?
    pub fn check(&self, nexus: &Nexus, access: Access, opcode_is_release6: bool) -> PrResult {
        if let Some(holder) = &self.reserve6
            && holder != &nexus.id
            && access != Access::None
            && !opcode_is_release6
        {
            return conflict();
        }
        let Some(res) = &self.reservation else {
            return Ok(());
        };
        if access == Access::None || self.is_holder(&nexus.id) {
            return Ok(());
        }
        let registrant = self.registered(&nexus.id).is_some();
        if res.kind.registrants_access() && registrant {
            return Ok(());
        }
        match access {
            Access::Write => conflict(),
            Access::Read if res.kind.exclusive_access() => conflict(),
            _ => Ok(()),
        }
    }

    pub fn reserve6(&mut self, nexus: &Nexus) -> PrResult {
        if self.reservation.is_some() || !self.registrations.is_empty() {
            return conflict();
        }
        match &self.reserve6 {
            Some(h) if h != &nexus.id => conflict(),
            _ => {
                self.reserve6 = Some(nexus.id.clone());
                Ok(())
            }
        }
    }

    pub fn release6(&mut self, nexus: &Nexus) -> PrResult {
        if self.reservation.is_some() {
            return conflict();
        }
        if self.reserve6.as_ref() == Some(&nexus.id) {
            self.reserve6 = None;
        }
        Ok(())
    }

    /// LU reset, target reset and I_T nexus loss release SPC-2 reservations.
    pub fn release6_all(&mut self) {
        self.reserve6 = None;
    }
    pub fn nexus_lost(&mut self, nexus: &NexusId) {
        if self.reserve6.as_ref() == Some(nexus) {
            self.reserve6 = None;
        }
    }

    pub fn persistent_in(&self, cdb: &[u8]) -> Result<Vec<u8>, Sense> {
        let sa = cdb[1] & 0x1f;
        let mut out = Vec::new();
        out.extend_from_slice(&self.generation.to_be_bytes());
        match sa {
            prin::READ_KEYS => {
                let keys: Vec<u8> = self
                    .registrations
                    .iter()
                    .flat_map(|r| r.key.to_be_bytes())
                    .collect();
                out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
                out.extend_from_slice(&keys);
            }
            prin::READ_RESERVATION => match &self.reservation {
                Some(r) => {
                    out.extend_from_slice(&16u32.to_be_bytes());
                    let key = if r.kind.all_registrants() { 0 } else { r.key };
                    out.extend_from_slice(&key.to_be_bytes());
                    out.extend_from_slice(&[0, 0, 0, 0, 0, r.kind as u8, 0, 0]);
                }
                None => out.extend_from_slice(&0u32.to_be_bytes()),
            },
            prin::REPORT_CAPABILITIES => {
                out.clear();
                out.extend_from_slice(&8u16.to_be_bytes());
                // CRH=0 SIP_C=1 ATP_C=1 PTPL_C=0; TMV=1; type mask.
                out.push(0x0C);
                out.push(0x80);
                // WR_EX_AR(7) EX_AC_RO(6) WR_EX_RO(5) EX_AC(3) WR_EX(1); EX_AC_AR(0) in the next byte.
                out.push(0x80 | 0x40 | 0x20 | 0x08 | 0x02);
                out.push(0x01);
                out.extend_from_slice(&[0, 0]);
            }
            prin::READ_FULL_STATUS => {
                let mut body = Vec::new();
                for r in &self.registrations {
                    let mut d = Vec::new();
                    d.extend_from_slice(&r.key.to_be_bytes());
                    d.extend_from_slice(&[0, 0, 0, 0]);
                    let holder = self.is_holder(&r.nexus);
                    d.push(u8::from(holder)); // R_HOLDER
                    let kind = self.reservation.as_ref().map(|x| x.kind as u8).unwrap_or(0);
                    d.push(if holder { kind } else { 0 });
                    d.extend_from_slice(&[0, 0, 0, 0]);
                    d.extend_from_slice(&1u16.to_be_bytes()); // relative target port
                    let tid = transport_id(&r.initiator_name, &r.nexus);
                    d.extend_from_slice(&(tid.len() as u32).to_be_bytes());
                    d.extend_from_slice(&tid);
                    body.extend_from_slice(&d);
                }
                out.extend_from_slice(&(body.len() as u32).to_be_bytes());
                out.extend_from_slice(&body);
            }
            _ => return Err(Sense::invalid_cdb(1, Some(4))),
        }
        Ok(out)
    }

    /// PERSISTENT RESERVE OUT. On success returns the unit attentions to queue.
    pub fn persistent_out(
        &mut self,
        nexus: &Nexus,
        cdb: &[u8],
        param: &[u8],
    ) -> Result<Notices, (ScsiStatus, Option<Sense>)> {
        let sa = cdb[1] & 0x1f;
        let scope = cdb[2] >> 4;
        let kind_raw = cdb[2] & 0x0f;
        let plen = u32::from_be_bytes([cdb[5], cdb[6], cdb[7], cdb[8]]) as usize;
        let illegal = |s: Sense| Err((ScsiStatus::CheckCondition, Some(s)));
        if plen != 24 {
            return illegal(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
        }
        if param.len() < 24 {
            return illegal(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
        }
        let key = u64::from_be_bytes(param[0..8].try_into().unwrap_or([0; 8]));
        let sa_key = u64::from_be_bytes(param[8..16].try_into().unwrap_or([0; 8]));
        let flags = param[20];
        if flags & 0x08 != 0 {
            // SPEC_I_PT is not supported.
            return illegal(Sense::invalid_param(20, Some(3)));
        }
        if self.reserve6.is_some() && self.reserve6.as_ref() != Some(&nexus.id) {
            return Err((ScsiStatus::ReservationConflict, None));
        }
        let me = self.registered(&nexus.id);
        let mut notices = Notices::new();
        match sa {
            prout::REGISTER | prout::REGISTER_AND_IGNORE => {
                let ignore = sa == prout::REGISTER_AND_IGNORE;
                match me {
                    None => {
                        if !ignore && key != 0 {
                            return Err((ScsiStatus::ReservationConflict, None));
                        }
                        if sa_key != 0 {
                            self.registrations.push(Registration {
                                nexus: nexus.id.clone(),
                                initiator_name: nexus.initiator_name.clone(),
                                key: sa_key,
                            });
                        }
                    }
                    Some(i) => {
                        if !ignore && key != self.registrations[i].key {
                            return Err((ScsiStatus::ReservationConflict, None));
                        }
                        if sa_key == 0 {
                            self.unregister(i, &mut notices);
                        } else {
                            self.registrations[i].key = sa_key;
                            if let Some(r) = &mut self.reservation
                                && r.holder_nexus == nexus.id
                            {
                                r.key = sa_key;
                            }
                        }
                    }
                }
                self.generation = self.generation.wrapping_add(1);
            }
            prout::RESERVE => {
                let Some(i) = me else {
                    return Err((ScsiStatus::ReservationConflict, None));
                };
                if self.registrations[i].key != key {
                    return Err((ScsiStatus::ReservationConflict, None));
                }
                if scope != 0 {
                    return illegal(Sense::invalid_cdb(2, Some(7)));
                }
                let Some(kind) = PrType::from_u8(kind_raw) else {
                    return illegal(Sense::invalid_cdb(2, Some(3)));
                };
                match &self.reservation {
                    Some(r) if self.is_holder(&nexus.id) => {
                        if r.kind != kind {
                            return Err((ScsiStatus::ReservationConflict, None));
                        }
                    }
                    Some(_) => return Err((ScsiStatus::ReservationConflict, None)),
                    None => {
                        self.reservation = Some(Reservation {
                            holder_nexus: nexus.id.clone(),
                            kind,
                            key,
                        });
                    }
                }
            }
            prout::RELEASE => {
                let Some(i) = me else {
                    return Err((ScsiStatus::ReservationConflict, None));
                };
                if self.registrations[i].key != key {
                    return Err((ScsiStatus::ReservationConflict, None));
                }
                let Some(r) = self.reservation.clone() else {
                    return Ok(notices);
                };
                if !self.is_holder(&nexus.id) {
                    return Ok(notices);
                }
                if r.kind as u8 != kind_raw || scope != 0 {
                    return illegal(Sense::illegal(Asc::INVALID_RELEASE_OF_PR));
                }
                self.reservation = None;
                if r.kind.registrants_access() {
                    for reg in &self.registrations {
                        if reg.nexus != nexus.id {
                            notices.push((reg.nexus.clone(), Asc::RESERVATIONS_RELEASED));
                        }
                    }
                }
            }
            prout::CLEAR => {
                let Some(i) = me else {
                    return Err((ScsiStatus::ReservationConflict, None));
                };
                if self.registrations[i].key != key {
                    return Err((ScsiStatus::ReservationConflict, None));
                }
                for reg in &self.registrations {
                    if reg.nexus != nexus.id {
                        notices.push((reg.nexus.clone(), Asc::RESERVATIONS_PREEMPTED));
                    }
                }
                self.registrations.clear();
                self.reservation = None;
                self.generation = self.generation.wrapping_add(1);
            }
            prout::PREEMPT | prout::PREEMPT_AND_ABORT => {
                let Some(i) = me else {
                    return Err((ScsiStatus::ReservationConflict, None));
                };
                if self.registrations[i].key != key {
                    return Err((ScsiStatus::ReservationConflict, None));
                }
                let res = self.reservation.clone();
                let holder_key_matches = res
                    .as_ref()
                    .is_some_and(|r| !r.kind.all_registrants() && r.key == sa_key);
                if sa_key == 0 && !res.as_ref().is_some_and(|r| r.kind.all_registrants()) {
                    return illegal(Sense::invalid_param(8, None));
                }
                let Some(kind) = PrType::from_u8(kind_raw) else {
                    return illegal(Sense::invalid_cdb(2, Some(3)));
                };
                // Remove every registration with the preempted key (all others when 0 under AR).
                let victims: Vec<usize> = self
                    .registrations
                    .iter()
                    .enumerate()
                    .filter(|(j, r)| {
                        *j != i
                            && (r.key == sa_key
                                || (sa_key == 0
                                    && res.as_ref().is_some_and(|x| x.kind.all_registrants())))
                    })
                    .map(|(j, _)| j)
                    .collect();
                if victims.is_empty()
                    && !holder_key_matches
                    && !res.as_ref().is_some_and(|r| r.kind.all_registrants())
                {
                    return Err((ScsiStatus::ReservationConflict, None));
                }
                for &j in victims.iter().rev() {
                    let reg = self.registrations.remove(j);
                    notices.push((reg.nexus, Asc::REGISTRATIONS_PREEMPTED));
                }
                let preempt_reservation = match &res {
                    None => false,
                    Some(r) if r.kind.all_registrants() => true,
                    Some(r) => r.key == sa_key,
                };
                if preempt_reservation {
                    self.reservation = Some(Reservation {
                        holder_nexus: nexus.id.clone(),
                        kind,
                        key,
                    });
                }
                self.generation = self.generation.wrapping_add(1);
            }
            _ => return illegal(Sense::invalid_cdb(1, Some(4))),
        }
        Ok(notices)
    }

    fn unregister(&mut self, i: usize, notices: &mut Notices) {
        let reg = self.registrations.remove(i);
        if let Some(r) = self.reservation.clone() {
            let released = if r.kind.all_registrants() {
                self.registrations.is_empty()
            } else {
                r.holder_nexus == reg.nexus
            };
            if released {
                self.reservation = None;
                if r.kind.registrants_access() {
                    for other in &self.registrations {
                        notices.push((other.nexus.clone(), Asc::RESERVATIONS_RELEASED));
                    }
                }
            }
        }
    }
}

/// iSCSI TransportID (SPC-4 7.6.4.6), format 01b: name + ",i,0x" + ISID.
fn transport_id(initiator_name: &str, nexus: &NexusId) -> Vec<u8> {
    let text = format!("{initiator_name}{}", nexus.port_suffix());
    let mut name = text.into_bytes();
    name.push(0);
    while name.len() % 4 != 0 {
        name.push(0);
    }
    let mut out = vec![0x40 | 0x05, 0];
    out.extend_from_slice(&(name.len() as u16).to_be_bytes());
    out.extend_from_slice(&name);
    out
}
