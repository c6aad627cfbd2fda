//! Gateway tests: proxying, plugins, metrics.

mod harness;
