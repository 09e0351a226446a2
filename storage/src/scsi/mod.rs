//! SCSI block-command emulation (SPC-4 / SBC-3) over a [`Backstore`].

mod block_io;
mod inquiry;
mod mode;
pub mod opcode;
mod reservation;
mod sanitize;
pub mod sense;
mod xcopy;

use bytes::Bytes;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::backstore::{Backstore, IoKind};
use crate::error::StorageError;
pub use block_io::{BlockIo, Prepared, Transfer};
use inquiry::limits;
pub use mode::ModeState;
use opcode::{op, sai};
pub use reservation::Access;
use reservation::Reservations;
pub use sanitize::SanitizeJob;
pub use sense::{Asc, ScsiStatus, Sense, SenseKey};

/// A command's outcome: now, or when a background operation (SANITIZE) ends.
pub enum Completion {
    Now(ScsiResponse),
    Later(Arc<SanitizeJob>),
}

/// An I_T nexus: the initiator port (iSCSI name + ISID) as the LU sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NexusId {
    pub initiator: Arc<str>,
    pub isid: u64,
}

impl NexusId {
    pub fn new(initiator: &str, isid: u64) -> Self {
        NexusId {
            initiator: initiator.into(),
            isid,
        }
    }
    /// The ",i,0x<ISID>" suffix of an iSCSI initiator port name.
    pub fn port_suffix(&self) -> String {
        format!(",i,0x{:012x}", self.isid)
    }
}

/// The initiator side of a command, as the transport identifies it.
#[derive(Debug, Clone)]
pub struct Nexus {
    pub id: NexusId,
    pub initiator_name: String,
}

impl Nexus {
    pub fn new(initiator_name: &str, isid: u64) -> Self {
        Nexus {
            id: NexusId::new(initiator_name, isid),
            initiator_name: initiator_name.to_owned(),
        }
    }
}

/// Per-LU settings, as targetcli shows them under a backstore's attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LuConfig {
    pub block_size: u32,
    /// Physical block size reported (a power-of-two multiple of `block_size`).
    pub physical_block_size: u32,
    pub read_only: bool,
    /// Thin provisioning: UNMAP, WRITE SAME with UNMAP, LBPME in READ CAPACITY(16).
    pub thin: bool,
    pub removable: bool,
    pub vendor: String,
    pub product: String,
    pub revision: String,
    pub serial: String,
    /// NAA IEEE Registered designator (type 6 NAA in the top nibble).
    pub naa: u64,
    /// SCSI name string of the target port (the target IQN), reported in VPD 0x83.
    pub target_port_name: String,
    /// Pace of SANITIZE OVERWRITE in MiB/s (0: as fast as the backstore goes),
    /// so a sanitize runs in the background without starving the host, as md
    /// paces a resync with sync_speed_max.
    pub sanitize_rate_mib: u32,
}

impl Default for LuConfig {
    fn default() -> Self {
        LuConfig {
            block_size: 512,
            physical_block_size: 512,
            read_only: false,
            thin: true,
            removable: false,
            vendor: "IOLAB".into(),
            product: "VIRTUAL-DISK".into(),
            revision: "0001".into(),
            serial: "00000000".into(),
            naa: 0x6001_4050_0000_0000,
            target_port_name: String::new(),
            sanitize_rate_mib: 64,
        }
    }
}

/// What a command produced: status, Data-In bytes and (with CHECK CONDITION) encoded sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiResponse {
    pub status: ScsiStatus,
    pub data: Vec<u8>,
    /// Data-In as views of the backstore's memory (RAMDISK reads, no copy);
    /// when not empty it is the data and `data` is empty.
    pub shared: Vec<Bytes>,
    pub sense: Option<Vec<u8>>,
}

impl ScsiResponse {
    pub fn good(data: Vec<u8>) -> Self {
        ScsiResponse {
            status: ScsiStatus::Good,
            data,
            shared: Vec::new(),
            sense: None,
        }
    }
    pub fn status(status: ScsiStatus) -> Self {
        ScsiResponse {
            status,
            data: Vec::new(),
            shared: Vec::new(),
            sense: None,
        }
    }
    pub fn check(sense: &Sense, descriptor: bool) -> Self {
        ScsiResponse {
            status: ScsiStatus::CheckCondition,
            data: Vec::new(),
            shared: Vec::new(),
            sense: Some(sense.encode(descriptor)),
        }
    }

    /// Good status with data that are views of the backstore's memory.
    pub fn good_shared(shared: Vec<Bytes>) -> Self {
        ScsiResponse {
            shared,
            ..ScsiResponse::good(Vec::new())
        }
    }

    /// How many Data-In bytes the command produced.
    pub fn data_len(&self) -> usize {
        self.data.len() + self.shared.iter().map(Bytes::len).sum::<usize>()
    }

    /// The Data-In bytes as one buffer (copies shared data).
    #[cfg(test)]
    pub fn data_vec(&self) -> Vec<u8> {
        let mut v = self.data.clone();
        for s in &self.shared {
            v.extend_from_slice(s);
        }
        v
    }
}

#[derive(Debug, Default)]
struct LuState {
    mode: ModeState,
    res: Reservations,
    unit_attention: Vec<(NexusId, Asc)>,
    prevent: HashSet<NexusId>,
    /// A removable medium was ejected (START STOP UNIT with LOEJ).
    medium_absent: bool,
    /// A SANITIZE in progress: media access is refused until it ends.
    sanitize: Option<Arc<SanitizeJob>>,
    /// Finished EXTENDED COPY lists whose results are held for RECEIVE COPY
    /// RESULTS, per I_T nexus, oldest first.
    copies: std::collections::VecDeque<(NexusId, xcopy::CopyResult)>,
}

impl LuState {
    /// Whether any command needs the locked path (reservations, attentions, medium ejected).
    fn quiet(&self) -> bool {
        self.res.is_empty()
            && self.unit_attention.is_empty()
            && !self.medium_absent
            && !self.mode.swp
            && self.mode.wce
            && self.sanitize.is_none()
    }
}

/// A logical unit: the command emulation plus its backstore.
pub struct LogicalUnit {
    cfg: LuConfig,
    /// What this LU served, as LIO counts per LUN.
    stats: LuStats,
    /// Resets (LU and target) so far: a task that began before one was
    /// aborted by it, whichever session it came from.
    resets: AtomicU64,
    store: Box<dyn Backstore>,
    state: Mutex<LuState>,
    /// Mirrors `!state.quiet()` so the data path takes no lock when nothing special is set.
    slow: AtomicBool,
    /// Serializes read-modify-write commands (COMPARE AND WRITE, ORWRITE).
    atomic: Mutex<()>,
}

type CmdResult = Result<ScsiResponse, Sense>;

/// Counters of one logical unit, bumped with relaxed atomics as commands
/// complete: payload read and written, commands by kind, errors.
#[derive(Debug, Default)]
pub struct LuStats {
    read_bytes: AtomicU64,
    write_bytes: AtomicU64,
    read_commands: AtomicU64,
    write_commands: AtomicU64,
    commands: AtomicU64,
    errors: AtomicU64,
}

/// A copy of an LU's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LuStatsSnapshot {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_commands: u64,
    pub write_commands: u64,
    pub commands: u64,
    pub errors: u64,
}

/// Whether a command moves blocks in (Some(false)) or out (Some(true)).
fn reads_blocks(opcode: u8) -> Option<bool> {
    match opcode {
        op::READ_6 | op::READ_10 | op::READ_12 | op::READ_16 => Some(true),
        op::WRITE_6
        | op::WRITE_10
        | op::WRITE_12
        | op::WRITE_16
        | op::WRITE_VERIFY_10
        | op::WRITE_VERIFY_12
        | op::WRITE_VERIFY_16
        | op::WRITE_ATOMIC_16 => Some(false),
        _ => None,
    }
}

impl LuStats {
    fn count(&self, opcode: u8, data_out: usize, r: &ScsiResponse) {
        self.commands.fetch_add(1, Ordering::Relaxed);
        if r.status != ScsiStatus::Good {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match reads_blocks(opcode) {
            Some(true) => {
                self.read_commands.fetch_add(1, Ordering::Relaxed);
                self.read_bytes
                    .fetch_add(r.data_len() as u64, Ordering::Relaxed);
            }
            Some(false) => {
                self.write_commands.fetch_add(1, Ordering::Relaxed);
                self.write_bytes
                    .fetch_add(data_out as u64, Ordering::Relaxed);
            }
            None => {}
        }
    }

    pub fn snapshot(&self) -> LuStatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LuStatsSnapshot {
            read_bytes: l(&self.read_bytes),
            write_bytes: l(&self.write_bytes),
            read_commands: l(&self.read_commands),
            write_commands: l(&self.write_commands),
            commands: l(&self.commands),
            errors: l(&self.errors),
        }
    }
}

fn be16(b: &[u8]) -> u64 {
    u16::from_be_bytes([b[0], b[1]]) as u64
}
fn be32(b: &[u8]) -> u64 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64
}
fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Truncates Data-In to the CDB's allocation length.
fn alloc(mut data: Vec<u8>, len: u64) -> Vec<u8> {
    data.truncate(len as usize);
    data
}

/// The minimum CDB length of an opcode's group (SPC-4 4.2.5.1).
pub fn cdb_len(opcode: u8) -> usize {
    match opcode >> 5 {
        0 => 6,
        1 | 2 => 10,
        4 => 16,
        5 => 12,
        _ => 16,
    }
}

/// Commands that touch the medium and fail with MEDIUM NOT PRESENT while it is ejected.
fn needs_medium(opcode: u8) -> bool {
    !matches!(
        opcode,
        op::INQUIRY
            | op::REPORT_LUNS
            | op::REQUEST_SENSE
            | op::START_STOP_UNIT
            | op::PREVENT_ALLOW
            | op::MODE_SENSE_6
            | op::MODE_SENSE_10
            | op::MODE_SELECT_6
            | op::MODE_SELECT_10
            | op::PERSISTENT_RESERVE_IN
            | op::PERSISTENT_RESERVE_OUT
            | op::MAINTENANCE_IN
            | op::RESERVE_6
            | op::RELEASE_6
    )
}

fn access_of(opcode: u8) -> Access {
    match opcode {
        op::INQUIRY
        | op::REPORT_LUNS
        | op::REQUEST_SENSE
        | op::PERSISTENT_RESERVE_IN
        | op::PERSISTENT_RESERVE_OUT
        | op::MAINTENANCE_IN
        | op::TEST_UNIT_READY
        | op::READ_CAPACITY_10
        | op::RELEASE_6
        | op::RESERVE_6 => Access::None,
        op::READ_6
        | op::READ_10
        | op::READ_12
        | op::READ_16
        | op::VERIFY_10
        | op::VERIFY_12
        | op::VERIFY_16
        | op::PREFETCH_10
        | op::PREFETCH_16
        | op::MODE_SENSE_6
        | op::MODE_SENSE_10
        | op::READ_DEFECT_DATA_10
        | op::READ_DEFECT_DATA_12
        | op::SERVICE_ACTION_IN_16
        | op::RECEIVE_COPY_RESULTS => Access::Read,
        _ => Access::Write,
    }
}

/// Commands that report rather than consume a pending unit attention (SAM-5 5.14).
fn ua_exempt(opcode: u8) -> bool {
    matches!(opcode, op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE)
}

impl LogicalUnit {
    pub fn new(store: Box<dyn Backstore>, mut cfg: LuConfig) -> Result<Self, StorageError> {
        // A block device cannot address less than its own blocks.
        if let Some((logical, physical)) = store.device_block_sizes() {
            cfg.block_size = cfg.block_size.max(logical);
            cfg.physical_block_size = cfg.physical_block_size.max(physical).max(cfg.block_size);
        }
        let bs = cfg.block_size;
        if !matches!(bs, 512 | 1024 | 2048 | 4096) || store.size_bytes() < bs as u64 {
            return Err(StorageError::BadSize(store.size_bytes(), bs));
        }
        let pbs = cfg.physical_block_size;
        if pbs < bs || !pbs.is_power_of_two() || pbs / bs > 1 << 15 {
            return Err(StorageError::BadSize(pbs as u64, bs));
        }
        Ok(LogicalUnit {
            cfg,
            stats: LuStats::default(),
            resets: AtomicU64::new(0),
            store,
            state: Mutex::new(LuState::default()),
            slow: AtomicBool::new(false),
            atomic: Mutex::new(()),
        })
    }

    pub fn config(&self) -> &LuConfig {
        &self.cfg
    }
    /// Whether `nexus` may write this LU as far as its reservations go (an
    /// EXTENDED COPY addressed to another LU of the target writing here).
    fn admits_write(&self, nexus: &Nexus) -> bool {
        if !self.slow.load(Ordering::Acquire) {
            return true;
        }
        self.lock().res.check(nexus, Access::Write, false).is_ok()
    }

    /// How many resets this LU has had (see [`LogicalUnit::reset`]).
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Acquire)
    }
    /// What this LU served so far.
    pub fn stats(&self) -> LuStatsSnapshot {
        self.stats.snapshot()
    }
    pub fn backstore(&self) -> &dyn Backstore {
        &*self.store
    }
    pub fn block_size(&self) -> u32 {
        self.cfg.block_size
    }
    pub fn num_blocks(&self) -> u64 {
        self.store.size_bytes() / self.cfg.block_size as u64
    }

    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (READ CAPACITY 16):
    /// 0 for 512n, 3 for 512e (4096-byte physical blocks).
    pub fn physical_exponent(&self) -> u8 {
        (self.cfg.physical_block_size / self.cfg.block_size)
            .max(1)
            .trailing_zeros() as u8
    }

    fn lock(&self) -> MutexGuard<'_, LuState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn update(&self, st: &LuState) {
        self.slow.store(!st.quiet(), Ordering::Release);
    }
    fn mode_state(&self) -> ModeState {
        self.lock().mode
    }
    fn set_mode_state(&self, m: ModeState) {
        let mut st = self.lock();
        st.mode = m;
        self.update(&st);
    }
    fn descriptor_sense(&self) -> bool {
        self.lock().mode.d_sense
    }
    fn write_protected(&self) -> bool {
        self.cfg.read_only || (self.slow.load(Ordering::Acquire) && self.lock().mode.swp)
    }

    /// Queues a unit attention for each listed nexus.
    pub fn add_unit_attention(&self, nexuses: &[NexusId], asc: Asc) {
        let mut st = self.lock();
        for n in nexuses {
            st.unit_attention.retain(|(x, a)| !(x == n && *a == asc));
            st.unit_attention.push((n.clone(), asc));
        }
        self.update(&st);
    }

    /// Clears one kind of pending unit attention for a nexus (REPORT LUNS
    /// clears REPORTED LUNS DATA HAS CHANGED, SPC-4 6.33).
    pub fn clear_unit_attention(&self, nexus: &NexusId, asc: Asc) {
        let mut st = self.lock();
        st.unit_attention
            .retain(|(x, a)| !(x == nexus && *a == asc));
        self.update(&st);
    }

    /// LOGICAL UNIT RESET (and target resets): SPC-2 reservations and
    /// PREVENT state go. Like LIO, no unit attention is queued for the reset
    /// itself (initiators such as libiscsi's test suite expect none).
    pub fn reset(&self, nexuses: &[NexusId]) {
        self.resets.fetch_add(1, Ordering::AcqRel);
        let mut st = self.lock();
        st.res.release6_all();
        st.prevent.clear();
        for n in nexuses {
            tracing::debug!(initiator = %n.initiator, isid = n.isid, "unit attention queued: LU reset");
            st.unit_attention.retain(|(x, _)| x != n);
            st.unit_attention.push((n.clone(), Asc::BUS_DEVICE_RESET));
        }
        self.update(&st);
    }

    /// I_T nexus loss (logout or a dropped session): its SPC-2 reservation and
    /// PREVENT go; persistent reservations stay.
    pub fn nexus_lost(&self, nexus: &NexusId) {
        let mut st = self.lock();
        st.res.nexus_lost(nexus);
        st.prevent.remove(nexus);
        st.unit_attention.retain(|(x, _)| x != nexus);
        st.copies.retain(|(x, _)| x != nexus);
        self.update(&st);
    }

    /// Executes one command and waits for it. `data_out` holds what the initiator sent.
    pub fn execute(self: &Arc<Self>, nexus: &Nexus, cdb: &[u8], data_out: &[u8]) -> ScsiResponse {
        self.execute_with(nexus, cdb, data_out, &[])
    }

    /// [`LogicalUnit::execute`] with the other logical units of the target,
    /// which an EXTENDED COPY may name.
    pub fn execute_with(
        self: &Arc<Self>,
        nexus: &Nexus,
        cdb: &[u8],
        data_out: &[u8],
        peers: &[Arc<LogicalUnit>],
    ) -> ScsiResponse {
        match self.start_with(nexus, cdb, data_out, peers) {
            Completion::Now(r) => r,
            Completion::Later(job) => job.wait_response(self.descriptor_sense()),
        }
    }

    /// Whether a command that only moves blocks between the medium and the
    /// initiator (READ and WRITE 6/10/12/16) or makes written blocks durable
    /// (SYNCHRONIZE CACHE) may wait for the device (see
    /// [`Backstore::would_block`]). With the SIMPLE task attribute such
    /// commands may run beside each other in any order (SAM-5 8.6), so a
    /// transport may hand them to I/O workers while it reads the next. False
    /// for every other command (they change or report state that later
    /// commands depend on) and for RAMDISK.
    pub fn would_block(&self, cdb: &[u8]) -> bool {
        if syncs_cache(cdb) {
            return self.store.would_block(0, 0, IoKind::Flush);
        }
        let Some((lba, n, flags)) = rw_extent(cdb) else {
            return false;
        };
        let access = if reads_blocks(cdb[0]) == Some(true) {
            IoKind::Read
        } else {
            IoKind::Write {
                durable: self.fua(flags),
            }
        };
        let bs = self.block_size() as u64;
        let (offset, len) = (lba.saturating_mul(bs), n.saturating_mul(bs) as usize);
        self.store.would_block(offset, len, access)
    }

    /// Starts one command: most complete at once; a SANITIZE without IMMED
    /// completes when its background job ends.
    pub fn start(self: &Arc<Self>, nexus: &Nexus, cdb: &[u8], data_out: &[u8]) -> Completion {
        self.start_with(nexus, cdb, data_out, &[])
    }

    /// [`LogicalUnit::start`] with the other logical units of the target.
    pub fn start_with(
        self: &Arc<Self>,
        nexus: &Nexus,
        cdb: &[u8],
        data_out: &[u8],
        peers: &[Arc<LogicalUnit>],
    ) -> Completion {
        if cdb.is_empty() || cdb.len() < cdb_len(cdb[0]) {
            return Completion::Now(ScsiResponse::check(
                &Sense::illegal(Asc::INVALID_OPCODE),
                false,
            ));
        }
        let opcode = cdb[0];
        if opcode == op::SANITIZE {
            return match self.sanitize(nexus, cdb, data_out) {
                Ok(c) => c,
                Err(sense) => {
                    tracing::debug!(?sense, "sanitize refused");
                    Completion::Now(ScsiResponse::check(&sense, self.descriptor_sense()))
                }
            };
        }
        let r = self.execute_now(nexus, cdb, data_out, peers);
        self.stats.count(opcode, data_out.len(), &r);
        Completion::Now(r)
    }

    fn execute_now(
        &self,
        nexus: &Nexus,
        cdb: &[u8],
        data_out: &[u8],
        peers: &[Arc<LogicalUnit>],
    ) -> ScsiResponse {
        let opcode = cdb[0];
        if let Some(r) = self.admission(nexus, opcode) {
            return r;
        }
        match self.dispatch(nexus, cdb, data_out, peers) {
            Ok(r) => r,
            Err(sense) => ScsiResponse::check(&sense, self.descriptor_sense()),
        }
    }

    /// Unit attentions, reservation conflicts, an ejected medium and a running
    /// SANITIZE stop a command before it runs.
    fn admission(&self, nexus: &Nexus, opcode: u8) -> Option<ScsiResponse> {
        if self.slow.load(Ordering::Acquire) {
            let mut st = self.lock();
            if let Some(job) = st.sanitize.clone() {
                let sense = job.not_ready_sense();
                if opcode == op::REQUEST_SENSE {
                    return Some(ScsiResponse::good(sense.encode(st.mode.d_sense)));
                }
                if !matches!(opcode, op::INQUIRY | op::REPORT_LUNS) {
                    return Some(ScsiResponse::check(&sense, st.mode.d_sense));
                }
            }
            if !ua_exempt(opcode)
                && let Some(i) = st.unit_attention.iter().position(|(n, _)| n == &nexus.id)
            {
                let (_, asc) = st.unit_attention.remove(i);
                tracing::debug!(initiator = %nexus.id.initiator, isid = nexus.id.isid, opcode, "unit attention reported");
                let d = st.mode.d_sense;
                self.update(&st);
                return Some(ScsiResponse::check(
                    &Sense::new(SenseKey::UnitAttention, asc),
                    d,
                ));
            }
            if let Err((status, sense)) =
                st.res
                    .check(nexus, access_of(opcode), opcode == op::RELEASE_6)
            {
                let d = st.mode.d_sense;
                return Some(match sense {
                    Some(s) => ScsiResponse::check(&s, d),
                    None => ScsiResponse::status(status),
                });
            }
            if st.medium_absent && needs_medium(opcode) {
                let d = st.mode.d_sense;
                return Some(ScsiResponse::check(
                    &Sense::new(SenseKey::NotReady, Asc::MEDIUM_NOT_PRESENT),
                    d,
                ));
            }
        }
        None
    }

    fn dispatch(
        &self,
        nexus: &Nexus,
        cdb: &[u8],
        data_out: &[u8],
        peers: &[Arc<LogicalUnit>],
    ) -> CmdResult {
        let opcode = cdb[0];
        match opcode {
            op::TEST_UNIT_READY => Ok(ScsiResponse::good(Vec::new())),
            op::EXTENDED_COPY => {
                let may_write = |lu: &LogicalUnit| lu.admits_write(nexus);
                let done = match xcopy::extended_copy(self, peers, cdb, data_out, &may_write)? {
                    xcopy::Outcome::Copied(done) => done,
                    xcopy::Outcome::ReservationConflict => {
                        return Ok(ScsiResponse::status(ScsiStatus::ReservationConflict));
                    }
                };
                if let Some(done) = done {
                    let mut st = self.lock();
                    st.copies
                        .retain(|(n, r)| !(n == &nexus.id && r.list_id == done.list_id));
                    st.copies.push_back((nexus.id.clone(), done));
                    if st.copies.len() > xcopy::limits::HELD_RESULTS {
                        st.copies.pop_front();
                    }
                }
                Ok(ScsiResponse::good(Vec::new()))
            }
            op::RECEIVE_COPY_RESULTS => {
                let held: Vec<_> = self.lock().copies.iter().cloned().collect();
                xcopy::receive_copy_results(cdb, &held, &nexus.id).map(ScsiResponse::good)
            }
            op::READ_6 | op::READ_10 | op::READ_12 | op::READ_16 => {
                let (lba, n, flags) = rw_extent(cdb).unwrap_or_default();
                self.read(lba, n, flags)
            }
            op::WRITE_6 => {
                let (lba, n, flags) = rw_extent(cdb).unwrap_or_default();
                self.write(lba, n, flags, data_out)
            }
            op::WRITE_10 | op::WRITE_VERIFY_10 => {
                self.write(be32(&cdb[2..]), be16(&cdb[7..]), cdb[1], data_out)
            }
            op::WRITE_12 | op::WRITE_VERIFY_12 => {
                self.write(be32(&cdb[2..]), be32(&cdb[6..]), cdb[1], data_out)
            }
            op::WRITE_16 | op::WRITE_VERIFY_16 | op::WRITE_ATOMIC_16 => {
                let n = if opcode == op::WRITE_ATOMIC_16 {
                    be16(&cdb[12..])
                } else {
                    be32(&cdb[10..])
                };
                if opcode == op::WRITE_ATOMIC_16 && n > limits::MAX_ATOMIC_TRANSFER as u64 {
                    return Err(Sense::invalid_cdb(12, None));
                }
                let _g = (opcode == op::WRITE_ATOMIC_16).then(|| self.atomic.lock());
                self.write(be64(&cdb[2..]), n, cdb[1], data_out)
            }
            op::VERIFY_10 => self.verify(be32(&cdb[2..]), be16(&cdb[7..]), cdb[1], data_out),
            op::VERIFY_12 => self.verify(be32(&cdb[2..]), be32(&cdb[6..]), cdb[1], data_out),
            op::VERIFY_16 => self.verify(be64(&cdb[2..]), be32(&cdb[10..]), cdb[1], data_out),
            op::ORWRITE_16 => self.orwrite(be64(&cdb[2..]), be32(&cdb[10..]), cdb[1], data_out),
            op::COMPARE_AND_WRITE => {
                self.compare_and_write(be64(&cdb[2..]), cdb[13] as u64, cdb[1], data_out)
            }
            op::PREFETCH_10 => self.range_only(be32(&cdb[2..]), be16(&cdb[7..])),
            op::PREFETCH_16 => self.range_only(be64(&cdb[2..]), be32(&cdb[10..])),
            op::SYNCHRONIZE_CACHE_10 | op::SYNCHRONIZE_CACHE_16 => {
                let (lba, n) = sync_extent(cdb);
                self.check_range(lba, n)?;
                self.store.flush().map_err(Self::medium_error_write)?;
                Ok(ScsiResponse::good(Vec::new()))
            }
            op::WRITE_SAME_10 => {
                self.write_same(be32(&cdb[2..]), be16(&cdb[7..]), cdb[1], data_out, false)
            }
            op::WRITE_SAME_16 => {
                self.write_same(be64(&cdb[2..]), be32(&cdb[10..]), cdb[1], data_out, true)
            }
            op::UNMAP => self.unmap(cdb, data_out),
            op::INQUIRY => {
                let evpd = cdb[1] & 0x01 != 0;
                if cdb[1] & 0xfe != 0 {
                    return Err(Sense::invalid_cdb(1, None));
                }
                let len = be16(&cdb[3..]);
                let data = if evpd {
                    self.vpd_page(cdb[2])?
                } else if cdb[2] != 0 {
                    return Err(Sense::invalid_cdb(2, None));
                } else {
                    self.standard_inquiry()
                };
                Ok(ScsiResponse::good(alloc(data, len)))
            }
            op::REQUEST_SENSE => {
                let desc = cdb[1] & 0x01 != 0;
                let mut st = self.lock();
                let sense = match st.unit_attention.iter().position(|(n, _)| n == &nexus.id) {
                    Some(i) => {
                        let (_, asc) = st.unit_attention.remove(i);
                        Sense::new(SenseKey::UnitAttention, asc)
                    }
                    None => Sense::new(SenseKey::NoSense, Asc::NO_ADDITIONAL),
                };
                self.update(&st);
                Ok(ScsiResponse::good(alloc(sense.encode(desc), cdb[4] as u64)))
            }
            op::READ_CAPACITY_10 => {
                let last = self.num_blocks() - 1;
                let mut d = (last.min(0xFFFF_FFFF) as u32).to_be_bytes().to_vec();
                d.extend_from_slice(&self.block_size().to_be_bytes());
                Ok(ScsiResponse::good(d))
            }
            op::SERVICE_ACTION_IN_16 => match (cdb[1] & 0x1f) as u16 {
                sai::READ_CAPACITY_16 => {
                    let mut d = vec![0u8; 32];
                    d[0..8].copy_from_slice(&(self.num_blocks() - 1).to_be_bytes());
                    d[8..12].copy_from_slice(&self.block_size().to_be_bytes());
                    d[13] = self.physical_exponent();
                    if self.cfg.thin {
                        d[14] = 0x80 | 0x40; // LBPME LBPRZ
                    }
                    Ok(ScsiResponse::good(alloc(d, be32(&cdb[10..]))))
                }
                sai::GET_LBA_STATUS => self.get_lba_status(be64(&cdb[2..]), be32(&cdb[10..])),
                _ => Err(Sense::invalid_cdb(1, Some(4))),
            },
            op::MODE_SENSE_6 => Ok(ScsiResponse::good(alloc(
                self.mode_sense(cdb, false)?,
                cdb[4] as u64,
            ))),
            op::MODE_SENSE_10 => Ok(ScsiResponse::good(alloc(
                self.mode_sense(cdb, true)?,
                be16(&cdb[7..]),
            ))),
            op::MODE_SELECT_6 => {
                let len = (cdb[4] as usize).min(data_out.len());
                self.mode_select(cdb, false, &data_out[..len])?;
                Ok(ScsiResponse::good(Vec::new()))
            }
            op::MODE_SELECT_10 => {
                let len = (be16(&cdb[7..]) as usize).min(data_out.len());
                self.mode_select(cdb, true, &data_out[..len])?;
                Ok(ScsiResponse::good(Vec::new()))
            }
            op::START_STOP_UNIT => {
                let power = cdb[4] >> 4;
                let loej = cdb[4] & 0x02 != 0;
                let start = cdb[4] & 0x01 != 0;
                let mut st = self.lock();
                // Power conditions and spinning up or down are accepted: the medium is virtual.
                if power == 0 && loej && self.cfg.removable {
                    if !st.prevent.is_empty() {
                        return Err(Sense::illegal(Asc::MEDIUM_REMOVAL_PREVENTED));
                    }
                    st.medium_absent = !start;
                }
                self.update(&st);
                Ok(ScsiResponse::good(Vec::new()))
            }
            op::PREVENT_ALLOW => {
                let mut st = self.lock();
                if cdb[4] & 0x03 != 0 {
                    st.prevent.insert(nexus.id.clone());
                } else {
                    st.prevent.remove(&nexus.id);
                }
                Ok(ScsiResponse::good(Vec::new()))
            }
            op::RESERVE_6 | op::RELEASE_6 => {
                let mut st = self.lock();
                let r = if opcode == op::RESERVE_6 {
                    st.res.reserve6(nexus)
                } else {
                    st.res.release6(nexus)
                };
                self.update(&st);
                Ok(match r {
                    Ok(()) => ScsiResponse::good(Vec::new()),
                    Err((status, _)) => ScsiResponse::status(status),
                })
            }
            op::PERSISTENT_RESERVE_IN => {
                let st = self.lock();
                let d = st.res.persistent_in(cdb)?;
                Ok(ScsiResponse::good(alloc(d, be16(&cdb[7..]))))
            }
            op::PERSISTENT_RESERVE_OUT => {
                let mut st = self.lock();
                let r = st.res.persistent_out(nexus, cdb, data_out);
                let out = match r {
                    Ok(notices) => {
                        for (n, asc) in notices {
                            st.unit_attention.push((n, asc));
                        }
                        Ok(ScsiResponse::good(Vec::new()))
                    }
                    Err((_, Some(sense))) => Err(sense),
                    Err((status, None)) => Ok(ScsiResponse::status(status)),
                };
                self.update(&st);
                out
            }
            op::MAINTENANCE_IN
                if (cdb[1] & 0x1f) as u16 == opcode::mi::REPORT_SUPPORTED_OPCODES =>
            {
                let rctd = cdb[2] & 0x80 != 0;
                let d =
                    opcode::report_supported(cdb[2] & 0x07, rctd, cdb[3], be16(&cdb[4..]) as u16)
                        .map_err(|b| Sense::invalid_cdb(b, None))?;
                Ok(ScsiResponse::good(alloc(d, be32(&cdb[6..]))))
            }
            op::READ_DEFECT_DATA_10 => {
                let fmt = cdb[2] & 0x1f;
                Ok(ScsiResponse::good(alloc(
                    vec![0, fmt & 0x07, 0, 0],
                    be16(&cdb[7..]),
                )))
            }
            op::READ_DEFECT_DATA_12 => {
                let fmt = cdb[1] & 0x1f;
                Ok(ScsiResponse::good(alloc(
                    vec![0, fmt & 0x07, 0, 0, 0, 0, 0, 0],
                    be32(&cdb[6..]),
                )))
            }
            op::REPORT_LUNS => {
                Ok(report_luns(&[0], cdb).unwrap_or_else(|s| ScsiResponse::check(&s, false)))
            }
            _ => Err(Sense::illegal(Asc::INVALID_OPCODE)),
        }
    }

    fn check_range(&self, lba: u64, n: u64) -> Result<(), Sense> {
        let total = self.num_blocks();
        match lba.checked_add(n) {
            Some(end) if end <= total && lba < total => Ok(()),
            Some(_) if n == 0 && lba < total => Ok(()),
            _ => Err(Sense::illegal(Asc::LBA_OUT_OF_RANGE)),
        }
    }

    /// The checks every block I/O command starts with: no protection
    /// information requested (RD/WR/VRPROTECT), the range inside the LU, the
    /// length within MAXIMUM TRANSFER LENGTH, and for writes a writable LU.
    fn io_prologue(
        &self,
        lba: u64,
        n: u64,
        flags: u8,
        len_byte: u16,
        write: bool,
    ) -> Result<(), Sense> {
        if flags & 0xe0 != 0 {
            return Err(Sense::invalid_cdb(1, Some(7)));
        }
        self.check_range(lba, n)?;
        self.check_transfer(n, len_byte)?;
        if write {
            self.check_writable()?;
        }
        Ok(())
    }

    fn check_transfer(&self, n: u64, len_byte: u16) -> Result<(), Sense> {
        if n > limits::MAX_TRANSFER as u64 {
            return Err(Sense::invalid_cdb(len_byte, None));
        }
        Ok(())
    }

    fn range_only(&self, lba: u64, n: u64) -> CmdResult {
        self.check_range(lba, n)?;
        Ok(ScsiResponse::good(Vec::new()))
    }

    fn medium_error_read<E>(_e: E) -> Sense {
        Sense::new(SenseKey::MediumError, Asc::UNRECOVERED_READ_ERROR)
    }
    fn medium_error_write<E>(_e: E) -> Sense {
        Sense::new(SenseKey::MediumError, Asc::WRITE_ERROR)
    }

    fn read(&self, lba: u64, n: u64, flags: u8) -> CmdResult {
        self.io_prologue(lba, n, flags, 7, false)?;
        let bs = self.block_size() as u64;
        if let Some(views) = self.store.read_shared(lba * bs, (n * bs) as usize) {
            return views
                .map(ScsiResponse::good_shared)
                .map_err(Self::medium_error_read);
        }
        // A pooled buffer: read_at overwrites every byte of it.
        let mut data = crate::pool::take((n * bs) as usize);
        if let Err(e) = self.store.read_at(&mut data, lba * bs) {
            crate::pool::give(data);
            return Err(Self::medium_error_read(e));
        }
        Ok(ScsiResponse::good(data))
    }

    fn check_writable(&self) -> Result<(), Sense> {
        if self.write_protected() {
            return Err(Sense::new(SenseKey::DataProtect, Asc::WRITE_PROTECTED));
        }
        Ok(())
    }

    /// Force unit access: the FUA bit, or every write while the write cache is disabled.
    fn fua(&self, flags: u8) -> bool {
        flags & 0x08 != 0 || (self.slow.load(Ordering::Acquire) && !self.lock().mode.wce)
    }

    fn write(&self, lba: u64, n: u64, flags: u8, data: &[u8]) -> CmdResult {
        self.io_prologue(lba, n, flags, 7, true)?;
        let bs = self.block_size() as u64;
        let len = arrived_blocks(n, bs, data.len());
        if len > 0 {
            self.store
                .write_at(&data[..len], lba * bs, self.fua(flags))
                .map_err(Self::medium_error_write)?;
        }
        Ok(ScsiResponse::good(Vec::new()))
    }

    fn verify(&self, lba: u64, n: u64, flags: u8, data: &[u8]) -> CmdResult {
        if flags & 0xe0 != 0 {
            return Err(Sense::invalid_cdb(1, Some(7)));
        }
        let bytchk = (flags >> 1) & 0x03;
        if bytchk == 2 {
            return Err(Sense::invalid_cdb(1, Some(2)));
        }
        self.check_range(lba, n)?;
        self.check_transfer(n, 7)?;
        if bytchk == 0 || n == 0 {
            return Ok(ScsiResponse::good(Vec::new()));
        }
        let bs = self.block_size() as usize;
        let len = n as usize * bs;
        let mut medium = vec![0u8; len];
        self.store
            .read_at(&mut medium, lba * bs as u64)
            .map_err(Self::medium_error_read)?;
        let expected: Vec<u8> = if bytchk == 3 {
            if data.len() < bs {
                return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
            }
            data[..bs].repeat(n as usize)
        } else {
            if data.len() < len {
                return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
            }
            data[..len].to_vec()
        };
        match medium.iter().zip(&expected).position(|(a, b)| a != b) {
            None => Ok(ScsiResponse::good(Vec::new())),
            Some(off) => Err(
                Sense::new(SenseKey::Miscompare, Asc::MISCOMPARE_DURING_VERIFY)
                    .with_information(off as u64),
            ),
        }
    }

    fn compare_and_write(&self, lba: u64, n: u64, flags: u8, data: &[u8]) -> CmdResult {
        if flags & 0xe0 != 0 {
            return Err(Sense::invalid_cdb(1, Some(7)));
        }
        if n > limits::MAX_COMPARE_AND_WRITE as u64 {
            return Err(Sense::invalid_cdb(13, None));
        }
        self.check_range(lba, n)?;
        self.check_writable()?;
        let bs = self.block_size() as usize;
        let len = n as usize * bs;
        if data.len() != 2 * len {
            return Err(Sense::invalid_cdb(13, None));
        }
        if n == 0 {
            return Ok(ScsiResponse::good(Vec::new()));
        }
        let _g = self.atomic.lock().unwrap_or_else(|e| e.into_inner());
        let mut medium = vec![0u8; len];
        self.store
            .read_at(&mut medium, lba * bs as u64)
            .map_err(Self::medium_error_read)?;
        if let Some(off) = medium.iter().zip(&data[..len]).position(|(a, b)| a != b) {
            return Err(
                Sense::new(SenseKey::Miscompare, Asc::MISCOMPARE_DURING_VERIFY)
                    .with_information(off as u64),
            );
        }
        self.store
            .write_at(&data[len..], lba * bs as u64, self.fua(flags))
            .map_err(Self::medium_error_write)?;
        Ok(ScsiResponse::good(Vec::new()))
    }

    fn orwrite(&self, lba: u64, n: u64, flags: u8, data: &[u8]) -> CmdResult {
        self.io_prologue(lba, n, flags, 10, true)?;
        let bs = self.block_size() as usize;
        let len = n as usize * bs;
        if data.len() < len {
            return Err(Sense::invalid_cdb(10, None));
        }
        let _g = self.atomic.lock().unwrap_or_else(|e| e.into_inner());
        let mut medium = vec![0u8; len];
        self.store
            .read_at(&mut medium, lba * bs as u64)
            .map_err(Self::medium_error_read)?;
        for (m, d) in medium.iter_mut().zip(&data[..len]) {
            *m |= *d;
        }
        self.store
            .write_at(&medium, lba * bs as u64, self.fua(flags))
            .map_err(Self::medium_error_write)?;
        Ok(ScsiResponse::good(Vec::new()))
    }

    fn write_same(&self, lba: u64, n: u64, flags: u8, data: &[u8], sixteen: bool) -> CmdResult {
        if flags & 0xe0 != 0 {
            return Err(Sense::invalid_cdb(1, Some(7)));
        }
        if flags & 0x10 != 0 {
            return Err(Sense::invalid_cdb(1, Some(4))); // ANCHOR: not supported
        }
        let unmap = flags & 0x08 != 0;
        let ndob = sixteen && flags & 0x01 != 0;
        if unmap && !self.cfg.thin {
            return Err(Sense::invalid_cdb(1, Some(3)));
        }
        let total = self.num_blocks();
        let n = if n == 0 { total.saturating_sub(lba) } else { n };
        self.check_range(lba, n)?;
        if n > limits::MAX_WRITE_SAME {
            return Err(Sense::invalid_cdb(if sixteen { 10 } else { 7 }, None));
        }
        self.check_writable()?;
        let bs = self.block_size() as usize;
        let block: Vec<u8> = if ndob {
            vec![0u8; bs]
        } else {
            if data.len() != bs {
                return Err(Sense::invalid_cdb(if sixteen { 10 } else { 7 }, None));
            }
            data.to_vec()
        };
        let offset = lba * bs as u64;
        // UNMAP=1 deallocates the range (it then reads back as zeros, LBPRZ),
        // as LIO does, whatever the Data-Out block holds.
        if unmap {
            self.store
                .unmap(offset, n * bs as u64)
                .map_err(Self::medium_error_write)?;
            return Ok(ScsiResponse::good(Vec::new()));
        }
        let per = (1usize << 20) / bs;
        let buf = block.repeat(per.min(n as usize).max(1));
        let mut done = 0u64;
        while done < n {
            let k = (n - done).min(per as u64) as usize;
            self.store
                .write_at(&buf[..k * bs], offset + done * bs as u64, false)
                .map_err(Self::medium_error_write)?;
            done += k as u64;
        }
        Ok(ScsiResponse::good(Vec::new()))
    }

    fn unmap(&self, cdb: &[u8], data: &[u8]) -> CmdResult {
        if !self.cfg.thin {
            return Err(Sense::illegal(Asc::INVALID_OPCODE));
        }
        if cdb[1] & 0x01 != 0 {
            return Err(Sense::invalid_cdb(1, Some(0))); // ANCHOR
        }
        self.check_writable()?;
        let plen = (be16(&cdb[7..]) as usize).min(data.len());
        if plen == 0 {
            return Ok(ScsiResponse::good(Vec::new()));
        }
        if plen < 8 {
            return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
        }
        let p = &data[..plen];
        let bdl = (be16(&p[2..]) as usize).min(plen - 8);
        let count = bdl / 16;
        if count as u32 > limits::MAX_UNMAP_DESCRIPTORS {
            return Err(Sense::invalid_param(2, None));
        }
        let descs: Vec<(u64, u64)> = (0..count)
            .map(|i| (be64(&p[8 + i * 16..]), be32(&p[16 + i * 16..])))
            .collect();
        for (i, &(lba, n)) in descs.iter().enumerate() {
            if n > limits::MAX_UNMAP_LBA_COUNT as u64 {
                return Err(Sense::invalid_param((16 + i * 16) as u16, None));
            }
            // A descriptor of zero blocks is not an error, wherever it points.
            if n > 0 {
                self.check_range(lba, n)?;
            }
        }
        let bs = self.block_size() as u64;
        for (lba, n) in descs {
            if n > 0 {
                self.store
                    .unmap(lba * bs, n * bs)
                    .map_err(Self::medium_error_write)?;
            }
        }
        Ok(ScsiResponse::good(Vec::new()))
    }

    fn get_lba_status(&self, lba: u64, alloc_len: u64) -> CmdResult {
        let total = self.num_blocks();
        if lba >= total {
            return Err(Sense::illegal(Asc::LBA_OUT_OF_RANGE));
        }
        let bs = self.block_size() as u64;
        let max_desc = (alloc_len.saturating_sub(8) / 16).clamp(1, 64);
        let mut descs = Vec::new();
        let mut start = lba;
        while start < total && (descs.len() as u64) < max_desc {
            let (mapped, end_byte) = self.store.extent(start * bs);
            // Runs end on block boundaries; a partial block counts as mapped.
            let end = end_byte
                .div_ceil(bs)
                .clamp(start + 1, total)
                .min(start + u32::MAX as u64);
            descs.push((start, end - start, if mapped { 0u8 } else { 1u8 }));
            start = end;
        }
        let mut d = vec![0u8; 8];
        for (l, n, s) in &descs {
            d.extend_from_slice(&l.to_be_bytes());
            d.extend_from_slice(&(*n as u32).to_be_bytes());
            d.push(*s);
            d.extend_from_slice(&[0, 0, 0]);
        }
        let len = (d.len() - 4) as u32;
        d[0..4].copy_from_slice(&len.to_be_bytes());
        Ok(ScsiResponse::good(alloc(d, alloc_len)))
    }
}

/// How many Data-Out bytes a command's CDB asks for, for residual accounting.
/// `None` for commands whose Data-Out size the transport need not check.
pub fn data_out_len(cdb: &[u8], block_size: u32) -> Option<u64> {
    let bs = block_size as u64;
    let op = *cdb.first()?;
    if cdb.len() < cdb_len(op) {
        return None;
    }
    Some(match op {
        op::WRITE_6 => (if cdb[4] == 0 { 256 } else { cdb[4] as u64 }) * bs,
        op::WRITE_10 | op::WRITE_VERIFY_10 => be16(&cdb[7..]) * bs,
        op::WRITE_12 | op::WRITE_VERIFY_12 => be32(&cdb[6..]) * bs,
        op::WRITE_16 | op::WRITE_VERIFY_16 | op::ORWRITE_16 => be32(&cdb[10..]) * bs,
        op::WRITE_ATOMIC_16 => be16(&cdb[12..]) * bs,
        op::COMPARE_AND_WRITE => 2 * cdb[13] as u64 * bs,
        _ => return None,
    })
}

/// The most Data-Out bytes a CDB can take: the blocks of a write, one block
/// for WRITE SAME, the parameter list length of the commands that carry one,
/// 0 for commands that transfer nothing to the target (or are unknown). A
/// transport sizes its buffer by this, never by what the initiator announced.
pub fn data_out_limit(cdb: &[u8], block_size: u32) -> u64 {
    if let Some(n) = data_out_len(cdb, block_size) {
        return n;
    }
    let Some(&op) = cdb.first() else {
        return 0;
    };
    if cdb.len() < cdb_len(op) {
        return 0;
    }
    match op {
        op::WRITE_SAME_10 => block_size as u64,
        // NDOB: no data-out buffer.
        op::WRITE_SAME_16 if cdb[1] & 0x01 != 0 => 0,
        op::WRITE_SAME_16 => block_size as u64,
        op::MODE_SELECT_6 => cdb[4] as u64,
        op::MODE_SELECT_10 | op::UNMAP | op::SANITIZE => be16(&cdb[7..]),
        op::PERSISTENT_RESERVE_OUT => be32(&cdb[5..]),
        op::EXTENDED_COPY => be32(&cdb[10..]),
        _ => 0,
    }
}

/// The bytes of a WRITE of `n` blocks of `bs` bytes to write when `arrived`
/// bytes came: with an iSCSI Expected Data Transfer Length short of the
/// CDB's, only the whole blocks that arrived (the transport reports the
/// overflow).
fn arrived_blocks(n: u64, bs: u64, arrived: usize) -> usize {
    (n * bs).min(arrived as u64 / bs * bs) as usize
}

/// SYNCHRONIZE CACHE (10) or (16).
fn syncs_cache(cdb: &[u8]) -> bool {
    matches!(
        cdb.first().copied(),
        Some(op::SYNCHRONIZE_CACHE_10 | op::SYNCHRONIZE_CACHE_16)
    )
}

/// The blocks a SYNCHRONIZE CACHE (10 or 16) names (a CDB of full length).
fn sync_extent(cdb: &[u8]) -> (u64, u64) {
    if cdb[0] == op::SYNCHRONIZE_CACHE_10 {
        (be32(&cdb[2..]), be16(&cdb[7..]))
    } else {
        (be64(&cdb[2..]), be32(&cdb[10..]))
    }
}

/// The blocks a READ or WRITE (6/10/12/16) names: (LBA, count, byte 1's
/// flags); None for any other command or a short CDB.
fn rw_extent(cdb: &[u8]) -> Option<(u64, u64, u8)> {
    let &op = cdb.first()?;
    if cdb.len() < cdb_len(op) {
        return None;
    }
    Some(match op {
        op::READ_6 | op::WRITE_6 => {
            let lba = be32(&[0, cdb[1] & 0x1f, cdb[2], cdb[3]]);
            (lba, if cdb[4] == 0 { 256 } else { cdb[4] as u64 }, 0)
        }
        op::READ_10 | op::WRITE_10 => (be32(&cdb[2..]), be16(&cdb[7..]), cdb[1]),
        op::READ_12 | op::WRITE_12 => (be32(&cdb[2..]), be32(&cdb[6..]), cdb[1]),
        op::READ_16 | op::WRITE_16 => (be64(&cdb[2..]), be32(&cdb[10..]), cdb[1]),
        _ => return None,
    })
}

/// REPORT LUNS (SPC-4 6.33) for the LUNs a target maps.
pub fn report_luns(luns: &[u64], cdb: &[u8]) -> Result<ScsiResponse, Sense> {
    if cdb.len() < 12 {
        return Err(Sense::illegal(Asc::INVALID_OPCODE));
    }
    let select = cdb[2];
    if !matches!(select, 0x00..=0x02) {
        return Err(Sense::invalid_cdb(2, None));
    }
    let alloc_len = be32(&cdb[6..]);
    if alloc_len < 16 {
        return Err(Sense::invalid_cdb(6, None));
    }
    let list: Vec<u64> = if select == 0x01 {
        Vec::new()
    } else {
        luns.to_vec()
    };
    let mut d = ((list.len() * 8) as u32).to_be_bytes().to_vec();
    d.extend_from_slice(&[0, 0, 0, 0]);
    for lun in list {
        d.extend_from_slice(&encode_lun(lun));
    }
    Ok(ScsiResponse::good(alloc(d, alloc_len)))
}

/// SAM LUN encoding: peripheral addressing below 256, flat space addressing above.
pub fn encode_lun(lun: u64) -> [u8; 8] {
    let mut b = [0u8; 8];
    if lun < 256 {
        b[1] = lun as u8;
    } else {
        b[0] = 0x40 | ((lun >> 8) & 0x3f) as u8;
        b[1] = lun as u8;
    }
    b
}

/// Decodes the 8-byte LUN field of an iSCSI PDU.
pub fn decode_lun(b: [u8; 8]) -> u64 {
    // Single-level addressing only: a second level (bytes 2-7) names a LU
    // we do not have, never LUN 0.
    if b[2..].iter().any(|&x| x != 0) {
        return u64::MAX;
    }
    match b[0] >> 6 {
        0 if b[0] == 0 => b[1] as u64,
        1 => (((b[0] & 0x3f) as u64) << 8) | b[1] as u64,
        _ => u64::MAX,
    }
}

/// The reply for a command addressed to a LUN that is not mapped.
pub fn unmapped_lun_response(cdb: &[u8]) -> ScsiResponse {
    match cdb.first() {
        Some(&op::INQUIRY) => {
            let mut d = vec![0u8; 36];
            d[0] = 0x7F; // peripheral qualifier 011b: no LU
            d[2] = 0x06;
            d[3] = 0x02;
            d[4] = 31;
            let len = if cdb.len() >= 5 { be16(&cdb[3..]) } else { 36 };
            ScsiResponse::good(alloc(d, len))
        }
        Some(&op::REQUEST_SENSE) => {
            let s = Sense::illegal(Asc::LU_NOT_SUPPORTED).fixed();
            ScsiResponse::good(s)
        }
        _ => ScsiResponse::check(&Sense::illegal(Asc::LU_NOT_SUPPORTED), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backstore::RamDisk;

    fn lu() -> Arc<LogicalUnit> {
        Arc::new(
            LogicalUnit::new(
                Box::new(RamDisk::new(8 << 20).unwrap()),
                LuConfig::default(),
            )
            .unwrap(),
        )
    }
    fn nexus(n: u64) -> Nexus {
        Nexus::new("iqn.test:init", n)
    }
    fn asc_of(r: &ScsiResponse) -> (u8, u8, u8) {
        let s = r.sense.as_ref().expect("sense");
        (s[2] & 0x0f, s[12], s[13])
    }

    #[test]
    fn write_then_read_back() {
        let lu = lu();
        let data = vec![0xA5u8; 1024];
        let w = lu.execute(&nexus(1), &[0x2a, 0, 0, 0, 0, 8, 0, 0, 2, 0], &data);
        assert_eq!(w.status, ScsiStatus::Good);
        let r = lu.execute(&nexus(1), &[0x28, 0, 0, 0, 0, 8, 0, 0, 2, 0], &[]);
        assert!(r.data.is_empty(), "RAMDISK reads are views, not copies");
        assert_eq!(r.data_vec(), data);
    }

    #[test]
    fn out_of_range_and_bad_opcode() {
        let lu = lu();
        let last = (lu.num_blocks() as u32).to_be_bytes();
        let r = lu.execute(
            &nexus(1),
            &[0x28, 0, last[0], last[1], last[2], last[3], 0, 0, 1, 0],
            &[],
        );
        assert_eq!(asc_of(&r), (5, 0x21, 0));
        let r = lu.execute(
            &nexus(1),
            &[0xC7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[],
        );
        assert_eq!(asc_of(&r), (5, 0x20, 0));
    }

    #[test]
    fn compare_and_write_miscompare_reports_offset() {
        let lu = lu();
        let mut data = vec![0u8; 1024];
        data[512 + 7] = 1; // new data
        data[3] = 9; // compare half differs at byte 3
        let cdb = [0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0];
        let r = lu.execute(&nexus(1), &cdb, &data);
        assert_eq!(asc_of(&r), (0x0E, 0x1D, 0));
        assert_eq!(r.sense.as_ref().unwrap()[6], 3);
        data[3] = 0;
        assert_eq!(lu.execute(&nexus(1), &cdb, &data).status, ScsiStatus::Good);
    }

    #[test]
    fn reserve6_conflicts_across_nexuses_and_reset_releases() {
        let lu = lu();
        assert_eq!(
            lu.execute(&nexus(1), &[0x16, 0, 0, 0, 0, 0], &[]).status,
            ScsiStatus::Good
        );
        let r = lu.execute(&nexus(2), &[0x00, 0, 0, 0, 0, 0], &[]);
        assert_eq!(r.status, ScsiStatus::Good, "TUR is allowed");
        let r = lu.execute(&nexus(2), &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[]);
        assert_eq!(r.status, ScsiStatus::ReservationConflict);
        lu.reset(&[nexus(1).id, nexus(2).id]);
        let r = lu.execute(&nexus(2), &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[]);
        assert_eq!(asc_of(&r), (6, 0x29, 0x03));
        let r = lu.execute(&nexus(2), &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[]);
        assert_eq!(r.status, ScsiStatus::Good);
    }

    #[test]
    fn persistent_write_exclusive_blocks_other_writers_only() {
        let lu = lu();
        let mut p = vec![0u8; 24];
        p[8..16].copy_from_slice(&0xABu64.to_be_bytes());
        let reg = [0x5f, 0x00, 0, 0, 0, 0, 0, 0, 24, 0];
        assert_eq!(lu.execute(&nexus(1), &reg, &p).status, ScsiStatus::Good);
        let mut k = vec![0u8; 24];
        k[0..8].copy_from_slice(&0xABu64.to_be_bytes());
        let res = [0x5f, 0x01, 0x01, 0, 0, 0, 0, 0, 24, 0];
        assert_eq!(lu.execute(&nexus(1), &res, &k).status, ScsiStatus::Good);
        let read = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        let write = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(lu.execute(&nexus(2), &read, &[]).status, ScsiStatus::Good);
        assert_eq!(
            lu.execute(&nexus(2), &write, &[0u8; 512]).status,
            ScsiStatus::ReservationConflict
        );
        assert_eq!(
            lu.execute(&nexus(1), &write, &[0u8; 512]).status,
            ScsiStatus::Good
        );
    }

    #[test]
    fn mode_select_sets_d_sense() {
        let lu = lu();
        let ms = lu.execute(&nexus(1), &[0x1a, 0x08, 0x0a, 0, 255, 0], &[]);
        let mut param = ms.data.clone();
        param[0] = 0;
        param[4 + 2] |= 0x04;
        let r = lu.execute(&nexus(1), &[0x15, 0x10, 0, 0, param.len() as u8, 0], &param);
        assert_eq!(r.status, ScsiStatus::Good);
        let r = lu.execute(
            &nexus(1),
            &[0xC7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[],
        );
        assert_eq!(r.sense.unwrap()[0], 0x72);
    }

    #[test]
    fn luns_with_a_second_level_are_not_lun_0() {
        assert_eq!(decode_lun([0, 0, 0, 0, 0, 0, 0, 0]), 0);
        assert_eq!(decode_lun([0, 5, 0, 0, 0, 0, 0, 0]), 5);
        assert_eq!(decode_lun([0x41, 0x01, 0, 0, 0, 0, 0, 0]), 0x101);
        assert_eq!(decode_lun([0, 0, 0, 1, 0, 0, 0, 0]), u64::MAX);
        assert_eq!(decode_lun([0, 0, 1, 0, 0, 0, 0, 0]), u64::MAX);
        assert_eq!(decode_lun([0, 0, 0, 0, 0, 0, 0, 9]), u64::MAX);
        assert_eq!(decode_lun([0x01, 0, 0, 0, 0, 0, 0, 0]), u64::MAX, "bus 1");
        assert_eq!(decode_lun([0x80, 0, 0, 0, 0, 0, 0, 0]), u64::MAX);
    }

    #[test]
    fn data_out_limits_follow_the_cdb() {
        let mut tur = [0u8; 6];
        assert_eq!(data_out_limit(&tur, 512), 0);
        tur[0] = op::INQUIRY;
        assert_eq!(data_out_limit(&tur, 512), 0);
        let mut w10 = [0u8; 10];
        w10[0] = op::WRITE_10;
        w10[7..9].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(data_out_limit(&w10, 4096), 32768);
        let mut ws = [0u8; 16];
        ws[0] = op::WRITE_SAME_16;
        ws[10..14].copy_from_slice(&1_000_000u32.to_be_bytes());
        assert_eq!(data_out_limit(&ws, 512), 512);
        ws[1] = 0x01;
        assert_eq!(data_out_limit(&ws, 512), 0, "NDOB");
        let mut unmap = [0u8; 10];
        unmap[0] = op::UNMAP;
        unmap[7..9].copy_from_slice(&24u16.to_be_bytes());
        assert_eq!(data_out_limit(&unmap, 512), 24);
        let mut pr = [0u8; 10];
        pr[0] = op::PERSISTENT_RESERVE_OUT;
        pr[5..9].copy_from_slice(&24u32.to_be_bytes());
        assert_eq!(data_out_limit(&pr, 512), 24);
        assert_eq!(data_out_limit(&[op::WRITE_10, 0, 0], 512), 0, "short CDB");
        assert_eq!(data_out_limit(&[], 512), 0);
    }
}
