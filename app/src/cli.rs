//! Command-line syntax.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Terminal lab console for network block storage. With no command it opens the console.
#[derive(Debug, Parser)]
#[command(name = "iolab", version, about)]
pub struct Cli {
    /// More log detail (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The embedded iSCSI target.
    #[command(subcommand)]
    Target(TargetCmd),
}

#[derive(Debug, Subcommand)]
pub enum TargetCmd {
    /// Serve LUNs over iSCSI until Ctrl-C. With no options: a 1 GiB RAMDISK on 127.0.0.1:3260.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Portal to listen on (repeatable). Port 0 picks a free port.
    #[arg(long = "listen", value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,
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
}
