//! PCIe functions from sysfs: enumeration with names from the `pci-ids`
//! database, IOMMU groups, what the host uses each for, and moving a
//! function to vfio-pci for a guest and back. The host's files sit under a
//! root directory that tests replace with a fake tree.

#![forbid(unsafe_code)]

pub mod addr;
pub mod bind;
pub mod device;
pub mod error;
#[doc(hidden)]
pub mod fake;
pub mod holders;
pub mod sysfs;

pub use addr::Bdf;
pub use bind::{BindOptions, BindPlan, DevicePlan, bind, plan_bind, plan_reattach, reattach};
pub use device::{PciDevice, device, enumerate};
pub use error::PciError;
pub use sysfs::{Kernel, RealKernel, Sysfs};
