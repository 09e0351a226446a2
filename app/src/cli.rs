//! Command-line syntax.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
pub use iolab_lab_core::units::parse_duration;

/// Terminal lab console for network block storage. With no command it opens the console.
#[derive(Debug, Parser)]
#[command(name = "iolab", version, about)]
pub struct Cli {
    /// More log detail (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Console: serve the embedded target's counters for Prometheus on ADDR:PORT (`/metrics`).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// The lab notebook (SQLite) [default: $XDG_DATA_HOME/iolab/iolab.db].
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Open the console on this profile's lab (a built-in or saved profile, or a TOML file).
    #[arg(long, value_name = "NAME|FILE")]
    pub profile: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The interactive console (what `iolab` alone opens), on a profile's lab.
    Console {
        /// A built-in or saved profile, or a profile TOML file.
        profile: Option<String>,
    },
    /// The embedded iSCSI target.
    #[command(subcommand)]
    Target(TargetCmd),
    /// Load generator in the spirit of LTP disktest, over the embedded initiator.
    Bench(BenchArgs),
    /// List the targets a portal offers (SendTargets), like iscsiadm -m discovery.
    Discover(DiscoverArgs),
    /// The seed page's matrix: modes x connections per session, one table of MB/s and IOPS.
    Matrix(MatrixArgs),
    /// Saved lab set-ups (profiles): list, show, save, copy, export, import, delete.
    #[command(subcommand)]
    Profile(ProfileCmd),
    /// Stored runs: list, show, compare, export, import, chart.
    #[command(subcommand)]
    Runs(RunsCmd),
    /// Shell completions for bash, zsh or fish, on stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The manual page (roff) on stdout: `iolab man | man -l -`.
    Man,
    /// Per-connection figures every interval from a running engine's /metrics
    /// (a table like iostat, or JSON lines), or a stored run's series.
    Watch(WatchArgs),
    /// Run a profile: start what it needs, run its matrix, store the run and print the table.
    Run(RunArgs),
    /// Host tuning: sysctls and MTUs with plan, apply and exact revert.
    #[command(subcommand)]
    Tune(TuneCmd),
    /// PCIe devices: list, show, bind to vfio-pci for a guest, reattach.
    Pci(PciArgs),
    /// qemu guests: list, show, start, stop, console; build and boot the lab micro-guest.
    #[command(subcommand)]
    Guest(GuestCmd),
    /// Serve a controller on standard input and output (started by iolab
    /// over ssh on a lab host; not for people).
    Agent {
        /// Say hello only after a first line arrives (a channel that exists
        /// before its controller connects, as a guest's virtio-serial port).
        #[arg(long)]
        wait_for_input: bool,
    },
    /// A profile's lab hosts: check how each is reached, copy iolab there.
    #[command(subcommand)]
    Hosts(HostsCmd),
    /// Labs on this machine: two network namespaces with sshd as two hosts.
    #[command(subcommand)]
    Lab(LabCmd),
}

#[derive(Debug, Subcommand)]
pub enum HostsCmd {
    /// Reach every host of a profile over ssh and show its agent and facts.
    Check {
        /// A built-in or saved profile, or a profile TOML file.
        profile: String,
        /// Copy this iolab to a host that has none or another build.
        #[arg(long)]
        push: bool,
    },
    /// Copy this iolab binary to a profile's hosts (`~/.cache/iolab/bin` there).
    Push {
        profile: String,
        /// Only this host (repeatable); all of them otherwise.
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LabCmd {
    /// Two network namespaces joined by a veth pair, each with its own sshd.
    #[command(subcommand)]
    Netns(NetnsCmd),
    /// Relay standard input and output to a TCP address (an ssh
    /// ProxyCommand) or a Unix socket's path (a guest's agent channel).
    #[command(hide = true)]
    Relay { addr: String },
}

#[derive(Debug, Subcommand)]
pub enum NetnsCmd {
    /// Build the lab: namespaces iolab-NAME-a and -b, veth lab0 (10.77.0.1 and
    /// .2), sshd in each, ssh configuration /run/iolab/netns-NAME/ssh_config.
    Up {
        #[arg(long, default_value = "lab")]
        name: String,
    },
    /// Stop everything running in the lab's namespaces and delete them.
    Down {
        #[arg(long, default_value = "lab")]
        name: String,
    },
    /// Whether the lab is up, and what runs in each namespace.
    Status {
        #[arg(long, default_value = "lab")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GuestCmd {
    /// Guests defined in the profiles, with their state.
    List {
        /// As JSON (schema iolab.guests.v1).
        #[arg(long)]
        json: bool,
    },
    /// A guest's definition and the exact qemu command line it would run.
    Show(GuestRef),
    /// Start a guest in the background (it keeps running after iolab exits).
    Start(GuestRef),
    /// Power a guest down (then quit qemu after a grace time).
    Stop {
        name: String,
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        grace: std::time::Duration,
    },
    /// A guest's serial console output so far.
    Console { name: String },
    /// Build the lab micro-guest: a stock kernel and an initramfs with busybox and iolab.
    Image {
        /// Kernel to boot (default: /boot, then $IOLAB_KERNEL_DIR/boot).
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// Its lib/modules/VERSION directory (default: beside the kernel, or /lib/modules).
        #[arg(long)]
        modules: Option<PathBuf>,
        #[arg(long, default_value = "/bin/busybox")]
        busybox: PathBuf,
        /// Output directory (default: $XDG_STATE_HOME/iolab/image, or
        /// image-iommu-lab).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The IOMMU lab: also the VFIO modules, the e1000e driver and qemu
        /// with its firmware, to bind and pass through PCI functions on a
        /// real kernel (boot it with `guest boot --iommu`).
        #[arg(long)]
        iommu_lab: bool,
    },
    /// Boot the micro-guest, run one iolab command in it, print its serial
    /// console and exit with that command's status.
    Boot(Box<BootArgs>),
}

#[derive(Debug, Args)]
pub struct GuestRef {
    pub name: String,
    /// The profile that defines it (default: the first that does).
    #[arg(long)]
    pub profile: Option<String>,
}

#[derive(Debug, Args)]
pub struct BootArgs {
    /// Kernel and initramfs from `iolab guest image`.
    #[arg(long)]
    pub kernel: PathBuf,
    #[arg(long)]
    pub initrd: PathBuf,
    #[arg(long, default_value = "micro")]
    pub name: String,
    #[arg(long = "memory", default_value_t = 512)]
    pub memory_mib: u32,
    #[arg(long, default_value_t = 1)]
    pub vcpus: u32,
    /// user (slirp: the host is 10.0.2.2) or tap:IFNAME.
    #[arg(long, default_value = "user")]
    pub nic: String,
    /// With --nic user: forward a host TCP port to the guest,
    /// [HOST_ADDR:]HOST_PORT=GUEST_PORT (host address 127.0.0.1 unless given).
    #[arg(long, value_name = "[ADDR:]PORT=GUEST_PORT")]
    pub forward: Vec<String>,
    /// A disk for the guest (/dev/vda, then vdb, ...; repeat for more): an
    /// image file (raw, or qcow2 by its name) or a URL qemu opens, such as
    /// nbd://HOST:PORT/EXPORT.
    #[arg(long)]
    pub disk: Vec<String>,
    /// One more argument for qemu, passed as it is (repeatable), e.g.
    /// --qemu-arg=-global --qemu-arg=virtio-blk-pci.physical_block_size=4096.
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub qemu_args: Vec<String>,
    /// A shell script the guest runs instead of one iolab command (handed
    /// over through qemu's fw_cfg; its exit status is the guest's).
    #[arg(long, conflicts_with = "args")]
    pub script: Option<PathBuf>,
    /// An emulated Intel VT-d (intel-iommu, interrupt remapping) and the
    /// kernel told to use it: the guest's kernel has real IOMMU groups.
    #[arg(long)]
    pub iommu: bool,
    /// The guest's address (CIDR).
    #[arg(long, default_value = "10.0.2.15/24")]
    pub ip: String,
    #[arg(long, default_value = "10.0.2.2")]
    pub gateway: String,
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelArg,
    /// Where the guest's files go (default: $XDG_STATE_HOME/iolab/guests/NAME).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// The iolab command to run inside, after `--`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Args)]
pub struct PciArgs {
    /// Root under which sys/ and proc/ are read (a fake tree in tests).
    #[arg(long = "sysfs-root", global = true, hide = true, default_value = "/")]
    pub root: PathBuf,
    #[command(subcommand)]
    pub cmd: PciCmd,
}

#[derive(Debug, Subcommand)]
pub enum PciCmd {
    /// Every PCI function with its names, driver, IOMMU group and NUMA node.
    List {
        #[arg(long)]
        json: bool,
        /// Only this class: net, storage, display, bridge, serial, multimedia, memory.
        #[arg(long)]
        class: Option<String>,
    },
    /// Everything known about one function.
    Show { bdf: String },
    /// Move a function (or its IOMMU group) to vfio-pci for a guest.
    Bind {
        bdf: String,
        /// Print the writes without making them.
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// Take a device that carries the default route or a mounted file system.
        #[arg(long)]
        force: bool,
        /// Move every member of the IOMMU group that is on a host driver.
        #[arg(long)]
        group: bool,
    },
    /// Give a function back to the driver it had before `bind` (or all of them).
    Reattach {
        #[arg(required_unless_present = "all")]
        bdf: Option<String>,
        #[arg(long, conflicts_with = "bdf")]
        all: bool,
        /// A guest iolab runs that still has the function is asked to
        /// unplug it first; how long to wait for its OS to let go.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        unplug_timeout: std::time::Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum TuneCmd {
    /// Tuning profiles, the host's values of their keys, interface MTUs and recorded originals.
    Show(TuneShowArgs),
    /// What applying PROFILE would change, key by key, with what the kernel would refuse.
    Plan(TuneProfileArgs),
    /// Apply PROFILE, recording every value it changes first.
    Apply(TuneProfileArgs),
    /// Put back every value the lab changed in this namespace.
    Revert(TuneTarget),
}

#[derive(Debug, Args)]
pub struct TuneTarget {
    /// A network namespace (`ip netns`) instead of the current one.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
}

#[derive(Debug, Args)]
pub struct TuneShowArgs {
    #[command(flatten)]
    pub target: TuneTarget,
    /// As JSON (schema iolab.tune-show.v1).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TuneProfileArgs {
    /// seed, network-throughput, network-latency, host-defaults, a lab profile with
    /// [tuning], or a TOML file.
    pub profile: String,
    #[command(flatten)]
    pub target: TuneTarget,
    /// Interfaces that get the MTU (repeatable).
    #[arg(long = "iface", value_name = "IF")]
    pub ifaces: Vec<String>,
    /// MTU for --iface (default: the profile's).
    #[arg(long)]
    pub mtu: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum ProfileCmd {
    /// Built-in and saved profiles.
    List {
        /// As JSON (schema iolab.profiles.v1).
        #[arg(long)]
        json: bool,
    },
    /// A profile's TOML.
    Show { name: String },
    /// Save a profile made from these options.
    Save(SaveArgs),
    /// Copy a profile under a new name (the way to change a built-in one).
    Copy { from: String, to: String },
    /// Write a profile's TOML to a file (or standard output).
    Export {
        name: String,
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Read a profile from a TOML file and save it.
    Import {
        file: PathBuf,
        /// Save it under this name instead of the file's.
        #[arg(long)]
        name: Option<String>,
        /// Replace a saved profile of the same name.
        #[arg(long)]
        replace: bool,
    },
    /// Delete a saved profile (built-in ones cannot be deleted).
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    pub name: String,
    #[arg(long, default_value = "")]
    pub description: String,
    /// LUN URL of a target elsewhere; without it the profile starts an embedded RAMDISK target.
    #[arg(long)]
    pub url: Option<String>,
    /// Size of the embedded RAMDISK.
    #[arg(long, default_value = "1G", conflicts_with = "url")]
    pub ramdisk: String,
    /// A built-in tuning profile to apply around the run (seed, network-throughput, network-latency).
    #[arg(long)]
    pub tuning: Option<String>,
    #[command(flatten)]
    pub shape: Shape,
    /// Connections per session, comma-separated: one cell each.
    #[arg(long = "conns", value_delimiter = ',', default_value = "1")]
    pub conns: Vec<u32>,
    #[arg(long, default_value = "30s")]
    pub time: String,
    #[arg(long, default_value_t = 1)]
    pub sessions: u32,
    #[arg(long, value_enum, default_value = "seq")]
    pub pattern: PatternArg,
    #[arg(long)]
    pub verify: bool,
    /// Replace a saved profile of the same name.
    #[arg(long)]
    pub replace: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunsCmd {
    /// Every stored run, oldest first.
    List {
        /// As JSON (schema iolab.runs.v1).
        #[arg(long)]
        json: bool,
    },
    /// One run: where and when, and its table.
    Show { id: i64 },
    /// Two runs' tables side by side with the change per cell.
    Compare { a: i64, b: i64 },
    /// A run as CSV (one row per cell) or JSON (everything, with the time series).
    Export {
        id: i64,
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Store a run exported as JSON (from another machine, say) under a new id.
    Import { file: PathBuf },
    /// Draw a run as a picture (SVG or PNG, by the output's extension): its
    /// per-connection throughput over time, its cells as grouped bars, or
    /// with --vs two runs' cells side by side.
    Chart {
        id: i64,
        /// Compare with this run: its cells beside ID's.
        #[arg(long, value_name = "ID2")]
        vs: Option<i64>,
        /// What to draw of one run (default: series when the run has them).
        #[arg(long, value_enum)]
        kind: Option<ChartKind>,
        /// FILE.svg or FILE.png.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Picture size in pixels, WIDTHxHEIGHT.
        #[arg(long, default_value = "1200x700", value_parser = parse_pixels)]
        size: (u32, u32),
    },
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// One JSON object per connection per interval (schema iolab.watch.v1).
    #[arg(long)]
    pub json: bool,
    /// Time between two scrapes.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: std::time::Duration,
    /// The /metrics of `target serve`, `bench`, `run` or the console started
    /// with --metrics ADDR:PORT, e.g. http://127.0.0.1:9464/metrics.
    #[arg(long, value_name = "URL", conflicts_with = "run")]
    pub metrics_url: Option<String>,
    /// Print this stored run's series (from the notebook, --db) instead.
    #[arg(long, value_name = "ID")]
    pub run: Option<i64>,
    /// Stop after this many intervals (default: until interrupted).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChartKind {
    /// Per-connection MB/s over time, cell after cell.
    Series,
    /// Each cell's read and write MB/s as grouped bars.
    Cells,
}

fn parse_pixels(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?}: expected WIDTHxHEIGHT, e.g. 1200x700");
    let (w, h) = s.split_once('x').ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if !(200..=8000).contains(&w) || !(150..=8000).contains(&h) {
        return Err(format!("{s}: each side must be 200..=8000 (height 150..)"));
    }
    Ok((w, h))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A built-in or saved profile, or a profile TOML file.
    pub profile: String,
    /// Leave the profile's tuning applied after the run.
    #[arg(long = "keep-tuning")]
    pub keep_tuning: bool,
    /// Apply the profile's tuning in this network namespace instead of the current one.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Interfaces that get the profile's MTU (repeatable).
    #[arg(long = "iface", value_name = "IF")]
    pub ifaces: Vec<String>,
    /// Run without applying the profile's tuning.
    #[arg(long = "no-tuning")]
    pub no_tuning: bool,
    /// Serve the initiator's counters (each cell's sessions) for Prometheus
    /// on ADDR:PORT (`/metrics`) during the run.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Time per cell instead of the profile's (stored with the run's profile).
    #[arg(long, value_name = "DURATION")]
    pub time: Option<String>,
    /// Only these LUNs of the profile's matrix (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "LUNS")]
    pub luns: Vec<u64>,
    /// Never copy this iolab to a lab host (across hosts: by default a host
    /// with no iolab or another build gets this one).
    #[arg(long = "no-push")]
    pub no_push: bool,
}

#[derive(Debug, Args)]
pub struct MatrixArgs {
    /// LUN URL: iscsi://[user%secret@]host[:port]/target-iqn/lun
    pub url: String,
    #[command(flatten)]
    pub shape: Shape,
    /// Connections per session to try, comma-separated (MC/S; --connections is ignored here).
    #[arg(long = "conns", value_delimiter = ',', default_value = "1,2,3,4")]
    pub conns: Vec<u32>,
    /// Time per cell.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub time: std::time::Duration,
    /// Initiators to compare, comma-separated: iolab (MC/S, every --conns)
    /// and open-iscsi (the kernel's, one connection).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "iolab")]
    pub initiators: Vec<Via>,
    #[command(flatten)]
    pub initiator: InitiatorArgs,
}

/// The lab's name for an initiator chosen on the command line.
pub fn initiator_of(v: Via) -> iolab_lab_core::profile::InitiatorKind {
    match v {
        Via::Iolab => iolab_lab_core::profile::InitiatorKind::Iolab,
        Via::OpenIscsi => iolab_lab_core::profile::InitiatorKind::OpenIscsi,
    }
}

/// An initiator that can run a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// iolab's embedded initiator.
    Iolab,
    /// The Linux kernel's (open-iscsi's iscsiadm and iscsid).
    #[value(name = "open-iscsi")]
    OpenIscsi,
}

/// The matrix a run covers: modes, I/O size, outstanding I/Os.
#[derive(Debug, Args, Clone)]
pub struct Shape {
    /// Modes to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "read,write,rw"
    )]
    pub modes: Vec<ModeArg>,
    /// I/O size.
    #[arg(long, default_value = "256k")]
    pub bs: String,
    /// Outstanding I/Os.
    #[arg(long, default_value_t = 64)]
    pub threads: u32,
}

#[derive(Debug, Args, Clone)]
pub struct InitiatorArgs {
    /// Initiator IQN.
    #[arg(long = "initiator-name", value_name = "IQN")]
    pub initiator_name: Option<String>,
    /// Connections per session (MC/S), up to what the target grants.
    #[arg(long, default_value_t = 1)]
    pub connections: u32,
    /// Commands in flight per session (the SCSI host's can_queue).
    #[arg(long = "queue-depth", default_value_t = 128)]
    pub queue_depth: u32,
    /// Commands in flight per LUN (the SCSI device's cmd_per_lun; the seed's Open-iSCSI used 32).
    #[arg(long = "cmd-per-lun", default_value_t = 128)]
    pub cmd_per_lun: u32,
    /// Offer CRC32C header digests.
    #[arg(long = "header-digest")]
    pub header_digest: bool,
    /// Offer CRC32C data digests.
    #[arg(long = "data-digest")]
    pub data_digest: bool,
    /// Offer ImmediateData=No.
    #[arg(long = "no-immediate-data")]
    pub no_immediate_data: bool,
    /// Offer InitialR2T=Yes.
    #[arg(long = "initial-r2t")]
    pub initial_r2t: bool,
    /// Seconds to wait for a command before failing it.
    #[arg(long = "io-timeout", default_value = "30s", value_parser = parse_duration)]
    pub io_timeout: std::time::Duration,
    /// Seconds to wait for connect and login.
    #[arg(long = "login-timeout", default_value = "10s", value_parser = parse_duration)]
    pub login_timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Portal URL: iscsi://[user%secret@]host[:port]
    pub portal: String,
    #[command(flatten)]
    pub initiator: InitiatorArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Read,
    Write,
    Rw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PatternArg {
    Seq,
    Random,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// LUN URL: iscsi://[user%secret@]host[:port]/target-iqn/lun; or the path
    /// of a block device or file, run with O_DIRECT (as disktest runs on a disk).
    pub url: String,
    /// Which initiator logs in to the URL: iolab's own, or the kernel's
    /// (open-iscsi: iscsiadm logs in, the workload runs on its /dev/sdX).
    #[arg(long, value_enum, default_value = "iolab")]
    pub via: Via,
    /// Serve the initiator's counters for Prometheus on ADDR:PORT (`/metrics`) during the run.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    #[arg(long, value_enum, default_value = "read")]
    pub mode: ModeArg,
    /// I/O size (disktest -b).
    #[arg(long, default_value = "256k")]
    pub bs: String,
    /// Outstanding I/Os (disktest -K).
    #[arg(long, default_value_t = 64)]
    pub threads: u32,
    /// How long to run (30s, 2m, 500ms).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub time: std::time::Duration,
    /// Sessions to the LUN (multipath-style, 1-256), each with --connections connections; the
    /// --threads are dealt over them evenly (each keeps one session when there are as many).
    #[arg(long, default_value_t = 1)]
    pub sessions: u32,
    #[arg(long, value_enum, default_value = "seq")]
    pub pattern: PatternArg,
    /// Write a self-checking pattern and check every block read back.
    #[arg(long)]
    pub verify: bool,
    /// Use only the first SIZE bytes of the LUN.
    #[arg(long, value_name = "SIZE")]
    pub range: Option<String>,
    /// Heartbeat interval (disktest -h).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub heartbeat: std::time::Duration,
    /// Print the result as JSON (after the human-readable lines, on stdout's last line).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub initiator: InitiatorArgs,
}

#[derive(Debug, Subcommand)]
pub enum TargetCmd {
    /// Serve LUNs over iSCSI until Ctrl-C. With no options: a 1 GiB RAMDISK on 127.0.0.1:3260.
    Serve(Box<ServeArgs>),
    /// Read targetcli's saveconfig.json or tgt's targets.conf (or iolab's TOML)
    /// and write iolab's TOML, listing on stderr what iolab cannot represent.
    Import {
        file: PathBuf,
        /// The file's format (default: told from its content).
        #[arg(long, value_parser = parse_format)]
        format: Option<iolab_lab_core::target_file::Format>,
        /// Where to write the TOML (default: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Write a target configuration as targetcli's saveconfig.json or tgt's targets.conf.
    Export {
        /// The configuration to write (iolab TOML, saveconfig.json or targets.conf).
        #[arg(long)]
        config: PathBuf,
        #[arg(long, value_parser = parse_format)]
        format: iolab_lab_core::target_file::Format,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

fn parse_format(
    s: &str,
) -> Result<iolab_lab_core::target_file::Format, iolab_lab_core::target_file::UnknownFormat> {
    s.parse()
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Print JSON lines instead of text: the LUNs (schema iolab.lun.v1), the
    /// metrics address, reconfiguration results and --stats lines.
    #[arg(long)]
    pub json: bool,
    /// Serve the engine's counters for Prometheus on ADDR:PORT (`/metrics`).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Portal to listen on (repeatable). Port 0 picks a free port; a wildcard
    /// (0.0.0.0, [::]) is named by the address each initiator reached.
    /// `=ADDR:PORT` after it is the address to advertise instead (behind a NAT).
    #[arg(long = "listen", value_name = "ADDR:PORT[=ADVERTISED]")]
    pub listen: Vec<iolab_iscsi::target::Portal>,
    /// Target IQN.
    #[arg(long)]
    pub iqn: Option<String>,
    /// A RAMDISK LUN of this size (repeatable), e.g. 1G, 256M.
    #[arg(long = "ramdisk", value_name = "SIZE")]
    pub ramdisk: Vec<String>,
    /// A FILEIO LUN backed by a file, created or grown to SIZE when given (repeatable).
    #[arg(long = "fileio", value_name = "PATH[:SIZE]")]
    pub fileio: Vec<String>,
    /// Open FILEIO and BLOCK backstores with O_DIRECT.
    #[arg(long)]
    pub direct: bool,
    /// A BLOCK LUN backed by a block device (repeatable).
    #[arg(long = "block", value_name = "DEV")]
    pub block: Vec<PathBuf>,
    /// A target configuration file (TOML); command-line LUNs are added to it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Require CHAP from initiators.
    #[arg(long, value_name = "USER:SECRET")]
    pub chap: Option<String>,
    /// Credentials the target answers with for mutual CHAP.
    #[arg(long = "mutual-chap", value_name = "USER:SECRET")]
    pub mutual_chap: Option<String>,
    /// Allow only these initiator IQNs (repeatable); turns demo mode off.
    #[arg(long = "acl", value_name = "IQN")]
    pub acl: Vec<String>,
    /// Commands per session window (MaxCmdSN - ExpCmdSN + 1).
    #[arg(long = "queue-depth", value_name = "N")]
    pub queue_depth: Option<u32>,
    /// Export every LUN read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Report every LUN as removable medium (PREVENT ALLOW MEDIUM REMOVAL, eject and load).
    #[arg(long)]
    pub removable: bool,
    /// Seconds of silence before the target pings a connection with NOP-In (0: never).
    #[arg(long = "nop-interval", value_name = "SECS")]
    pub nop_interval: Option<u32>,
    /// Physical block size to report (512e: 4096 with 512-byte logical blocks).
    #[arg(long = "physical-block-size", value_name = "BYTES")]
    pub physical_block_size: Option<u32>,
    /// Print each connection's counters at this interval when they changed (e.g. 1s).
    #[arg(long, value_name = "INTERVAL", value_parser = parse_duration)]
    pub stats: Option<std::time::Duration>,
}

/// The workload pattern a `--pattern` names.
pub fn pattern_of(p: PatternArg) -> iolab_lab_core::workload::Pattern {
    match p {
        PatternArg::Seq => iolab_lab_core::workload::Pattern::Seq,
        PatternArg::Random => iolab_lab_core::workload::Pattern::Random,
    }
}

/// The workload mode a `--mode` names.
pub fn mode_of(m: ModeArg) -> iolab_lab_core::workload::Mode {
    match m {
        ModeArg::Read => iolab_lab_core::workload::Mode::Read,
        ModeArg::Write => iolab_lab_core::workload::Mode::Write,
        ModeArg::Rw => iolab_lab_core::workload::Mode::Rw,
    }
}

/// The workload modes `--modes` names, in order.
pub fn modes_of(m: &[ModeArg]) -> Vec<iolab_lab_core::workload::Mode> {
    m.iter().map(|m| mode_of(*m)).collect()
}
