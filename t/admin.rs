//! Admin API tests (entities, errors, persistence).

mod harness;
