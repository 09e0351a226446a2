//! Labs that span hosts: `iolab agent` (the same binary, on another host,
//! spoken to over ssh on its standard input and output) and the controller
//! that drives a profile's `[roles]` hosts through their agents.
//!
//! - `proto.rs`: the versioned JSON-lines protocol.
//! - `serve.rs`: the agent's side.
//! - `client.rs`: the controller's link to one agent process.
//! - `ssh.rs`: starting an agent with OpenSSH (multiplexed, batch mode),
//!   copying this binary over.
//! - `run.rs`: a profile run across hosts, stored as one run.

pub mod client;
pub mod proto;
pub mod run;
pub mod serve;
pub mod ssh;

pub use client::{AgentError, AgentLink};
pub use run::{HostsEvent, HostsOptions, Side, run_across_hosts};
pub use serve::{AgentOptions, serve};
