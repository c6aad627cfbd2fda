//! What a worker reads and writes of its machine beside nginx: its own memory, CPU
//! time and descriptors from the kernel ([`process`]), and files replaced whole
//! ([`atomic_file`]: the node id, the gateway's state).

pub mod atomic_file;
pub mod process;
