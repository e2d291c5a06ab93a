//! ONC RPC version 2 messages (RFC 5531): call headers in, reply headers out.
//!
//! [`decode_call`] turns a complete record into a validated [`CallHeader`]
//! plus the undecoded procedure arguments, or a [`CallError`] that says
//! whether the server must answer (a denied reply: wrong RPC version, bad
//! credentials) or just drop the record (no xid, not a call). Credentials
//! are checked here, once: AUTH_NONE and AUTH_SYS (body at most 400 bytes,
//! machine name at most 255 bytes, at most 16 supplementary groups, nothing
//! left over in the body), with an AUTH_NONE verifier. Handlers never see an
//! unchecked credential.
//!
//! The encoders write reply headers (accepted or denied) into any
//! [`bytes::BufMut`]; [`put_call`] and [`decode_reply`] are the client side,
//! used by tests and tools.

use bytes::BufMut;

use crate::xdr::{XdrDecoder, XdrError, XdrPut};

/// The RPC protocol version this module speaks.
pub const RPC_VERSION: u32 = 2;
/// Largest credential or verifier body (RFC 5531, `opaque body<400>`).
pub const MAX_AUTH_BYTES: u32 = 400;
/// Largest AUTH_SYS machine name.
pub const MAX_MACHINE_NAME: u32 = 255;
/// Largest number of supplementary groups in AUTH_SYS.
pub const MAX_GIDS: usize = 16;

const CALL: u32 = 0;
const REPLY: u32 = 1;
const MSG_ACCEPTED: u32 = 0;
const MSG_DENIED: u32 = 1;
const RPC_MISMATCH: u32 = 0;
const AUTH_ERROR: u32 = 1;

/// Authentication flavor numbers (RFC 5531 section 8.2).
pub mod flavor {
    /// No authentication.
    pub const AUTH_NONE: u32 = 0;
    /// Unix-style uid/gid credentials (also called AUTH_UNIX).
    pub const AUTH_SYS: u32 = 1;
}

/// Why a credential or verifier was refused (`auth_stat`, RFC 5531).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[non_exhaustive]
pub enum AuthStat {
    /// Bad credential (malformed, or a flavor this server does not know).
    BadCred = 1,
    /// The client must begin a new session.
    RejectedCred = 2,
    /// Bad verifier.
    BadVerf = 3,
    /// Verifier expired or replayed.
    RejectedVerf = 4,
    /// Rejected for security reasons.
    TooWeak = 5,
}

/// AUTH_SYS supplementary groups, held inline (at most [`MAX_GIDS`]).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Gids {
    ids: [u32; MAX_GIDS],
    len: u8,
}

impl Gids {
    /// The groups as a slice.
    pub fn as_slice(&self) -> &[u32] {
        &self.ids[..self.len as usize]
    }
}

impl std::fmt::Debug for Gids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// A validated AUTH_SYS credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthSys<'a> {
    /// Arbitrary client stamp.
    pub stamp: u32,
    /// The caller's machine name (at most 255 bytes, not necessarily UTF-8).
    pub machine_name: &'a [u8],
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    /// Supplementary groups.
    pub gids: Gids,
}

impl<'a> AuthSys<'a> {
    fn decode(body: &'a [u8]) -> Result<AuthSys<'a>, XdrError> {
        let mut d = XdrDecoder::new(body);
        let stamp = d.u32()?;
        let machine_name = d.string(MAX_MACHINE_NAME)?;
        let uid = d.u32()?;
        let gid = d.u32()?;
        let n = d.array_len(MAX_GIDS as u32)? as usize;
        let mut gids = Gids::default();
        for slot in &mut gids.ids[..n] {
            *slot = d.u32()?;
        }
        gids.len = n as u8;
        d.finish()?;
        Ok(AuthSys {
            stamp,
            machine_name,
            uid,
            gid,
            gids,
        })
    }

    /// Encodes the credential body (for [`put_call`]).
    pub fn put<B: BufMut>(&self, buf: &mut B) {
        buf.put_u32(self.stamp);
        buf.put_xdr_opaque(self.machine_name);
        buf.put_u32(self.uid);
        buf.put_u32(self.gid);
        buf.put_u32(self.gids.len as u32);
        for g in self.gids.as_slice() {
            buf.put_u32(*g);
        }
    }

    /// An AUTH_SYS credential (for clients). Fails if there are more than
    /// [`MAX_GIDS`] groups or the name is longer than 255 bytes.
    pub fn new(machine_name: &'a [u8], uid: u32, gid: u32, groups: &[u32]) -> Option<AuthSys<'a>> {
        if groups.len() > MAX_GIDS || machine_name.len() > MAX_MACHINE_NAME as usize {
            return None;
        }
        let mut gids = Gids::default();
        gids.ids[..groups.len()].copy_from_slice(groups);
        gids.len = groups.len() as u8;
        Some(AuthSys {
            stamp: 0,
            machine_name,
            uid,
            gid,
            gids,
        })
    }
}

/// The caller's validated credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// AUTH_NONE: anonymous.
    None,
    /// AUTH_SYS: uid, gid and groups as the client claims them.
    Sys(AuthSys<'a>),
}

/// A validated call header. The procedure's arguments follow it in the
/// record, undecoded (see [`Call::args`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallHeader<'a> {
    /// Transaction id, echoed in the reply.
    pub xid: u32,
    /// Program number (100003 is NFS, 100005 MOUNT).
    pub prog: u32,
    /// Program version.
    pub vers: u32,
    /// Procedure number.
    pub proc_num: u32,
    /// The caller's credential.
    pub cred: Credential<'a>,
}

/// A decoded call: its header and the procedure's argument bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call<'a> {
    /// The header.
    pub header: CallHeader<'a>,
    /// XDR-encoded procedure arguments, borrowed from the record.
    pub args: &'a [u8],
}

/// Why a record is not a call this server can run.
///
/// [`CallError::rejection`] says what to answer; `None` means drop the
/// record without a reply (there is nothing to reply to).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The record is too short for a header, or the header is malformed.
    #[error("malformed RPC header: {0}")]
    Malformed(XdrError),
    /// The message is a reply (or an unknown type), not a call.
    #[error("RPC message type {msg_type} is not a call (xid {xid:#x})")]
    NotACall {
        /// Transaction id.
        xid: u32,
        /// The message type found.
        msg_type: u32,
    },
    /// An RPC version other than 2.
    #[error("RPC version {vers} is not supported (xid {xid:#x})")]
    RpcVersion {
        /// Transaction id.
        xid: u32,
        /// The version found.
        vers: u32,
    },
    /// The credential or verifier was refused.
    #[error("RPC authentication refused: {stat:?} (xid {xid:#x})")]
    Auth {
        /// Transaction id.
        xid: u32,
        /// Why.
        stat: AuthStat,
    },
}

impl CallError {
    /// The denied reply this error calls for, with the xid to send it to, or
    /// `None` if the record is to be dropped silently.
    pub fn rejection(&self) -> Option<(u32, Rejection)> {
        match *self {
            CallError::Malformed(_) | CallError::NotACall { .. } => None,
            CallError::RpcVersion { xid, .. } => Some((
                xid,
                Rejection::RpcMismatch {
                    low: RPC_VERSION,
                    high: RPC_VERSION,
                },
            )),
            CallError::Auth { xid, stat } => Some((xid, Rejection::AuthError(stat))),
        }
    }
}

/// Decodes and validates a call header at the start of `record`.
///
/// Costs: no allocation, no copy. The returned [`Call`] borrows `record`.
pub fn decode_call(record: &[u8]) -> Result<Call<'_>, CallError> {
    let mut d = XdrDecoder::new(record);
    let xid = d.u32().map_err(CallError::Malformed)?;
    let msg_type = d.u32().map_err(CallError::Malformed)?;
    if msg_type != CALL {
        return Err(CallError::NotACall { xid, msg_type });
    }
    let vers = d.u32().map_err(CallError::Malformed)?;
    if vers != RPC_VERSION {
        return Err(CallError::RpcVersion { xid, vers });
    }
    let prog = d.u32().map_err(CallError::Malformed)?;
    let pvers = d.u32().map_err(CallError::Malformed)?;
    let proc_num = d.u32().map_err(CallError::Malformed)?;

    let bad = |stat| CallError::Auth { xid, stat };
    let cred_flavor = d.u32().map_err(|_| bad(AuthStat::BadCred))?;
    let cred_body = d
        .opaque(MAX_AUTH_BYTES)
        .map_err(|_| bad(AuthStat::BadCred))?;
    let cred = match cred_flavor {
        flavor::AUTH_NONE => Credential::None,
        flavor::AUTH_SYS => {
            Credential::Sys(AuthSys::decode(cred_body).map_err(|_| bad(AuthStat::BadCred))?)
        }
        _ => return Err(bad(AuthStat::BadCred)),
    };
    // With AUTH_NONE and AUTH_SYS the verifier must be an empty AUTH_NONE.
    let verf_flavor = d.u32().map_err(|_| bad(AuthStat::BadVerf))?;
    let verf_body = d
        .opaque(MAX_AUTH_BYTES)
        .map_err(|_| bad(AuthStat::BadVerf))?;
    if verf_flavor != flavor::AUTH_NONE || !verf_body.is_empty() {
        return Err(bad(AuthStat::BadVerf));
    }
    Ok(Call {
        header: CallHeader {
            xid,
            prog,
            vers: pvers,
            proc_num,
            cred,
        },
        args: d.rest(),
    })
}

/// Outcome of an accepted call (`accept_stat`, RFC 5531).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptStat {
    /// The procedure ran; its results follow the header.
    Success,
    /// The program is not served here.
    ProgUnavail,
    /// The program is served, but not in this version.
    ProgMismatch {
        /// Lowest version served.
        low: u32,
        /// Highest version served.
        high: u32,
    },
    /// The program does not have this procedure.
    ProcUnavail,
    /// The arguments could not be decoded.
    GarbageArgs,
    /// The server failed (e.g. out of memory).
    SystemErr,
}

impl AcceptStat {
    fn code(self) -> u32 {
        match self {
            AcceptStat::Success => 0,
            AcceptStat::ProgUnavail => 1,
            AcceptStat::ProgMismatch { .. } => 2,
            AcceptStat::ProcUnavail => 3,
            AcceptStat::GarbageArgs => 4,
            AcceptStat::SystemErr => 5,
        }
    }
}

/// Why a call was denied (`rejected_reply`, RFC 5531).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The RPC version is not supported; these are the ones that are.
    RpcMismatch {
        /// Lowest RPC version supported.
        low: u32,
        /// Highest RPC version supported.
        high: u32,
    },
    /// Authentication failed.
    AuthError(AuthStat),
}

/// Largest encoded accepted-reply header (PROG_MISMATCH): xid, type,
/// reply_stat, verifier (2 words), accept_stat, low, high.
pub const MAX_ACCEPTED_HEADER: usize = 32;
/// Largest encoded denied reply.
pub const MAX_DENIED_REPLY: usize = 24;

/// Writes an accepted reply header. For [`AcceptStat::Success`] the
/// procedure's results follow; for the others the reply is complete.
/// Writes at most [`MAX_ACCEPTED_HEADER`] bytes.
pub fn put_accepted<B: BufMut>(buf: &mut B, xid: u32, stat: AcceptStat) {
    buf.put_u32(xid);
    buf.put_u32(REPLY);
    buf.put_u32(MSG_ACCEPTED);
    put_null_auth(buf);
    buf.put_u32(stat.code());
    if let AcceptStat::ProgMismatch { low, high } = stat {
        buf.put_u32(low);
        buf.put_u32(high);
    }
}

/// Writes a complete denied reply (at most [`MAX_DENIED_REPLY`] bytes).
pub fn put_rejected<B: BufMut>(buf: &mut B, xid: u32, why: Rejection) {
    buf.put_u32(xid);
    buf.put_u32(REPLY);
    buf.put_u32(MSG_DENIED);
    match why {
        Rejection::RpcMismatch { low, high } => {
            buf.put_u32(RPC_MISMATCH);
            buf.put_u32(low);
            buf.put_u32(high);
        }
        Rejection::AuthError(stat) => {
            buf.put_u32(AUTH_ERROR);
            buf.put_u32(stat as u32);
        }
    }
}

/// Writes a call header (client side): the procedure's arguments follow.
pub fn put_call<B: BufMut>(
    buf: &mut B,
    xid: u32,
    prog: u32,
    vers: u32,
    proc_num: u32,
    cred: &Credential<'_>,
) {
    buf.put_u32(xid);
    buf.put_u32(CALL);
    buf.put_u32(RPC_VERSION);
    buf.put_u32(prog);
    buf.put_u32(vers);
    buf.put_u32(proc_num);
    match cred {
        Credential::None => put_null_auth(buf),
        Credential::Sys(sys) => {
            let mut body = Vec::with_capacity(MAX_AUTH_BYTES as usize);
            sys.put(&mut body);
            buf.put_u32(flavor::AUTH_SYS);
            buf.put_xdr_opaque(&body);
        }
    }
    put_null_auth(buf);
}

/// Writes an AUTH_NONE `opaque_auth`: the flavor and an empty body.
fn put_null_auth<B: BufMut>(buf: &mut B) {
    buf.put_u32(flavor::AUTH_NONE);
    buf.put_xdr_opaque(&[]);
}

/// A decoded reply header (client side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyHeader {
    /// Accepted; for `Success` the results follow.
    Accepted(AcceptStat),
    /// Denied.
    Denied(Rejection),
}

/// Decodes a reply (client side): its xid, header, and the result bytes
/// that follow an accepted header.
pub fn decode_reply(record: &[u8]) -> Result<(u32, ReplyHeader, &[u8]), XdrError> {
    let mut d = XdrDecoder::new(record);
    let xid = d.u32()?;
    d.enumeration("msg_type", |v| v == REPLY)?;
    let hdr = match d.enumeration("reply_stat", |v| v <= MSG_DENIED)? {
        MSG_ACCEPTED => {
            d.u32()?;
            d.opaque(MAX_AUTH_BYTES)?;
            let stat = match d.enumeration("accept_stat", |v| v <= 5)? {
                0 => AcceptStat::Success,
                1 => AcceptStat::ProgUnavail,
                2 => AcceptStat::ProgMismatch {
                    low: d.u32()?,
                    high: d.u32()?,
                },
                3 => AcceptStat::ProcUnavail,
                4 => AcceptStat::GarbageArgs,
                _ => AcceptStat::SystemErr,
            };
            ReplyHeader::Accepted(stat)
        }
        _ => match d.enumeration("reject_stat", |v| v <= 1)? {
            0 => ReplyHeader::Denied(Rejection::RpcMismatch {
                low: d.u32()?,
                high: d.u32()?,
            }),
            _ => {
                let stat = match d.enumeration("auth_stat", |v| (1..=5).contains(&v))? {
                    1 => AuthStat::BadCred,
                    2 => AuthStat::RejectedCred,
                    3 => AuthStat::BadVerf,
                    4 => AuthStat::RejectedVerf,
                    _ => AuthStat::TooWeak,
                };
                ReplyHeader::Denied(Rejection::AuthError(stat))
            }
        },
    };
    Ok((xid, hdr, d.rest()))
}

#[cfg(test)]
mod tests;
