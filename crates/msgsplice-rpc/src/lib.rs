//! msgsplice-rpc (crate docs written below).
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod record;
pub mod reply;
pub mod rpc;
pub mod transport;
pub mod xdr;
