//! Shared memory: the only layer that knows the zone is raw memory shared between
//! processes. Everything above it sees offsets and atomics.

pub mod arena;
pub mod epoch;
#[cfg(feature = "debug-hooks")]
pub mod faults;
pub mod lock;
pub mod region;

pub use arena::{Arena, AttachError, Full, Kind};
pub use epoch::{Epochs, Slot};
pub use lock::{Guard, Liveness};
pub use region::{Offset, Region};
