//! The parts of the `nfs` section measured inside this process: the
//! sendfile ceiling, and the cost of one READ reply of msgsplice's export
//! (system calls and heap allocations).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BufMut;
use msgsplice::FragCache;
use msgsplice_rpc::mount::MountProgram;
use msgsplice_rpc::nfs::{Export, NfsProgram, NFS_PROGRAM};
use msgsplice_rpc::rpc::{decode_reply, put_call, AuthSys, Credential};
use msgsplice_rpc::server::{Dispatcher, Handled, Program};
use msgsplice_rpc::transport::{ReplyTransport, SplicerTransport};
use msgsplice_rpc::xdr::{XdrDecoder, XdrPut};

use crate::alloc_count::thread_allocs;

/// The client address calls are taken to come from.
const PEER: std::net::SocketAddr = std::net::SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    1000,
));

/// The plain reader's buffer: as large as one READ, as libnfs reads.
const READ_BUF: usize = 1 << 20;
/// READ size of the per-request ceiling (the export's maximum, which is
/// what libnfs asks for).
const READ_SIZE: u32 = 1 << 20;

/// CPU time of the calling thread.
pub(super) fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.max(0) as u32)
}

/// How the ceiling's reader asks for the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ceiling {
    /// The whole file as one stream: one `sendfile` call, a reader that
    /// reads until the end.
    Stream,
    /// Like an NFS client: the reader asks for each MiB (a 4-byte request)
    /// and reads it whole before asking for the next; the sender answers
    /// each request with one `sendfile`. No RPC, no NFS: what the kernel
    /// allows for this access pattern.
    PerRequest,
}

/// One run of the ceiling.
pub struct CeilingRun {
    /// From connecting to the last byte read.
    pub elapsed: Duration,
    /// The sending thread's CPU time (accept to last `sendfile`).
    pub server_cpu: Duration,
    /// The reading thread's CPU time.
    pub client_cpu: Duration,
}

/// Sends every byte `how` says, from the accepted socket.
fn send_file(sock: &TcpStream, file: &File, size: u64, how: Ceiling) -> std::io::Result<()> {
    let mut offset = 0u64;
    while offset < size {
        let mut want = (size - offset).min(1 << 30);
        if how == Ceiling::PerRequest {
            let mut req = [0u8; 4];
            (&*sock).read_exact(&mut req)?;
            want = want.min(u64::from(u32::from_be_bytes(req)));
        }
        let end = offset + want;
        while offset < end {
            let count = (end - offset) as usize;
            match rustix::fs::sendfile(sock, file, Some(&mut offset), count) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Reads the file `how` says; returns the bytes received.
fn receive(sock: &mut TcpStream, size: u64, how: Ceiling) -> std::io::Result<u64> {
    let mut buf = vec![0u8; READ_BUF];
    let mut total = 0u64;
    loop {
        let mut want = usize::MAX;
        if how == Ceiling::PerRequest {
            if total == size {
                return Ok(total);
            }
            want = (size - total).min(u64::from(READ_SIZE)) as usize;
            sock.write_all(&(want as u32).to_be_bytes())?;
        }
        let mut got = 0;
        while got < want {
            let room = (want - got).min(buf.len());
            match sock.read(&mut buf[..room]) {
                Ok(0) if how == Ceiling::Stream => return Ok(total),
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    got += n;
                    total += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The whole file with `sendfile` over loopback TCP to a plain reader
/// (`read` into a 1 MiB buffer), as `how` says: what the kernel can do
/// with no protocol around the data. Both ends are threads of this process.
pub fn sendfile_ceiling(path: &Path, how: Ceiling) -> Result<CeilingRun, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let sender = std::thread::spawn(move || -> std::io::Result<Duration> {
        let (sock, _) = listener.accept()?;
        sock.set_nodelay(true)?;
        let start = thread_cpu();
        send_file(&sock, &file, size, how)?;
        Ok(thread_cpu() - start)
    });
    let start = Instant::now();
    let cpu0 = thread_cpu();
    let received = TcpStream::connect(addr).and_then(|mut sock| {
        sock.set_nodelay(true)?;
        receive(&mut sock, size, how)
    });
    let elapsed = start.elapsed();
    let client_cpu = thread_cpu() - cpu0;
    let server_cpu = sender
        .join()
        .map_err(|_| "the sendfile thread panicked".to_string())?
        .map_err(|e| format!("sendfile: {e}"))?;
    let received = received.map_err(|e| format!("reading: {e}"))?;
    if received != size {
        return Err(format!("the reader got {received} of {size} bytes"));
    }
    Ok(CeilingRun {
        elapsed,
        server_cpu,
        client_cpu,
    })
}

/// Per-READ costs of the export's reply path, one sample per READ.
pub struct ReplyCosts {
    /// System calls the transport made to send the reply.
    pub syscalls: Vec<f64>,
    /// Heap allocations from decoding the call to the last byte sent.
    pub allocs: Vec<f64>,
}

fn call(xid: u32, proc_num: u32, args: &[u8]) -> Result<Vec<u8>, String> {
    let cred = AuthSys::new(b"bench", 0, 0, &[]).ok_or("credential")?;
    let mut v = Vec::new();
    put_call(
        &mut v,
        xid,
        NFS_PROGRAM,
        3,
        proc_num,
        &Credential::Sys(cred),
    );
    v.put_slice(args);
    Ok(v)
}

/// Runs `reads` READs of `read_size` bytes of `name` (in `dir`, cycling
/// through the file) through the export's dispatcher and a [`SplicerTransport`] over
/// loopback TCP, on this thread, exactly as a connection thread of the
/// server does once a request is read; returns the costs of each after the
/// first `warm` (which open the file and warm the caches).
pub fn reply_costs(
    dir: &Path,
    name: &str,
    read_size: u32,
    reads: u32,
    warm: u32,
) -> Result<ReplyCosts, String> {
    let export = Arc::new(Export::open(dir, "/export", 64).map_err(|e| e.to_string())?);
    let programs: Vec<Arc<dyn Program>> = vec![
        Arc::new(NfsProgram::new(export.clone())),
        Arc::new(MountProgram::new(export.clone())),
    ];
    let dispatcher = Dispatcher::new(programs, FragCache::new());
    let size = std::fs::metadata(dir.join(name))
        .map_err(|e| e.to_string())?
        .len();

    // LOOKUP the file for its handle.
    let mut a = Vec::new();
    a.put_xdr_opaque(export.handle(0).as_bytes());
    a.put_xdr_opaque(name.as_bytes());
    let Ok(Handled::Reply(r)) = dispatcher.handle(&call(1, 3, &a)?, PEER) else {
        return Err("LOOKUP got no reply".into());
    };
    let head = r.head()[4..].to_vec();
    let (_, _, res) = decode_reply(&head).map_err(|e| e.to_string())?;
    let mut d = XdrDecoder::new(res);
    if d.u32() != Ok(0) {
        return Err(format!("LOOKUP {name} failed"));
    }
    let fh = d.opaque(64).map_err(|e| e.to_string())?.to_vec();

    let blocks = (size / u64::from(read_size)).max(1);
    let records = (0..reads)
        .map(|i| {
            let mut a = Vec::new();
            a.put_xdr_opaque(&fh);
            a.put_u64(u64::from(i) % blocks * u64::from(read_size));
            a.put_u32(read_size);
            call(100 + i, 6, &a)
        })
        .collect::<Result<Vec<_>, _>>()?;

    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let tx = TcpStream::connect(listener.local_addr().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let (mut rx, _) = listener.accept().map_err(|e| e.to_string())?;
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; READ_BUF];
        while matches!(rx.read(&mut buf), Ok(n) if n > 0) {}
    });
    let mut transport = SplicerTransport::new(tx).map_err(|e| e.to_string())?;
    let mut costs = ReplyCosts {
        syscalls: Vec::new(),
        allocs: Vec::new(),
    };
    for (i, rec) in records.iter().enumerate() {
        let (a0, s0) = (thread_allocs(), transport.syscalls());
        let Ok(Handled::Reply(reply)) = dispatcher.handle(rec, PEER) else {
            return Err("READ got no reply".into());
        };
        transport.send_reply(reply).map_err(|e| e.to_string())?;
        let (a1, s1) = (thread_allocs(), transport.syscalls());
        if i as u32 >= warm {
            costs.allocs.push((a1 - a0) as f64);
            costs.syscalls.push((s1 - s0) as f64);
        }
    }
    drop(transport);
    let _ = drain.join();
    Ok(costs)
}
