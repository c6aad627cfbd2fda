//! What the operator configures, read and applied without nginx: the directives'
//! arguments ([`directives`]) and, by subject, the rules they set: client addresses
//! ([`access`]), credentials and trusted proxies ([`auth`]), constant labels, node id
//! and build ([`identity`]), what scrapes may hold in a worker ([`limits`]); and the
//! JSON the gateway's Admin API and files bring ([`json_input`]). The glue hands the
//! words in and maps the answers to nginx's.

pub mod access;
pub mod auth;
pub mod directives;
pub mod identity;
pub mod json_input;
pub mod limits;
pub mod record;
