//! The common case must allocate nothing: a
//! READ, from the record to the bytes on the socket, makes no heap
//! allocation once warm, with the server's default transport (a Splicer
//! over TCP) and with the plain one. Counted with a global allocator, so
//! this file holds one test only (tests in one binary share the allocator;
//! the count is per thread).

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use bytes::BufMut;
use msgsplice::FragCache;
use msgsplice_rpc::mount::MountProgram;
use msgsplice_rpc::nfs::{Export, NfsProgram, NFS_PROGRAM};
use msgsplice_rpc::rpc::{decode_reply, put_call, AuthSys, Credential};
use msgsplice_rpc::server::{Dispatcher, Handled, Program};
use msgsplice_rpc::transport::{ReplyTransport, SocketTransport, SplicerTransport};
use msgsplice_rpc::xdr::{XdrDecoder, XdrPut};
use msgsplice_testkit::alloc::{count_allocs, CountingAlloc};

/// The client address calls are taken to come from.
const PEER: std::net::SocketAddr = std::net::SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    1000,
));

// Counted per thread: the server decodes, handles and sends a request on
// the connection's thread, and other threads of the test binary (the
// harness, the socket drain) must not disturb the count.
#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn call(xid: u32, proc_num: u32, args: &[u8]) -> Vec<u8> {
    // Groups too: the caller's identity on the export is made per call.
    let sys = AuthSys::new(
        b"t",
        0,
        0,
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
    )
    .unwrap();
    let mut v = Vec::new();
    put_call(&mut v, xid, NFS_PROGRAM, 3, proc_num, &Credential::Sys(sys));
    v.put_slice(args);
    v
}

#[test]
fn a_warm_read_reply_allocates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), vec![7u8; 1 << 20]).unwrap();
    let export = Arc::new(Export::open(dir.path(), "/export", 64).unwrap());
    let programs: Vec<Arc<dyn Program>> = vec![
        Arc::new(NfsProgram::new(export.clone())),
        Arc::new(MountProgram::new(export.clone())),
    ];
    let dispatcher = Dispatcher::new(programs, FragCache::new());

    // LOOKUP the file to get its handle.
    let mut a = Vec::new();
    a.put_xdr_opaque(export.handle(0).as_bytes());
    a.put_xdr_opaque(b"f");
    let Handled::Reply(r) = dispatcher.handle(&call(1, 3, &a), PEER).unwrap() else {
        panic!("no reply")
    };
    let head = r.head()[4..].to_vec();
    let (_, _, res) = decode_reply(&head).unwrap();
    let mut d = XdrDecoder::new(res);
    assert_eq!(d.u32().unwrap(), 0);
    let fh = d.opaque(64).unwrap().to_vec();

    // The counter works: one allocation in the window is seen.
    let (probe, n) = count_allocs(|| std::hint::black_box(Vec::<u8>::with_capacity(1)));
    drop(probe);
    assert_eq!(n, 1);

    // The server's default: a Splicer (SPLICE on) over TCP.
    let (tx, rx) = msgsplice_testkit::sockets::tcp_pair(false).unwrap();
    let splicer = SplicerTransport::new(tx).unwrap();
    let allocs = warm_reads(&dispatcher, &fh, Box::new(splicer), rx);
    assert!(
        allocs[8..].iter().all(|&n| n == 0),
        "heap allocations per READ with the Splicer (decode + handle + send): {allocs:?}"
    );

    // The plain transport, over a Unix socket.
    let (tx, rx) = UnixStream::pair().unwrap();
    let allocs = warm_reads(&dispatcher, &fh, Box::new(SocketTransport::new(tx)), rx);
    assert!(
        allocs[8..].iter().all(|&n| n == 0),
        "heap allocations per READ with writev/sendfile (decode + handle + send): {allocs:?}"
    );
}

/// Runs 64 READs of 32 KiB and a bit at odd offsets through the dispatcher
/// and `transport`, with a thread draining `rx`; returns the heap
/// allocations of each, counted from the ninth on (the first warm up).
fn warm_reads(
    dispatcher: &Dispatcher,
    fh: &[u8],
    mut transport: Box<dyn ReplyTransport>,
    mut rx: impl Read + Send + 'static,
) -> Vec<usize> {
    let drain = std::thread::spawn(move || {
        let mut total = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match rx.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    });
    let reads: Vec<Vec<u8>> = (0..64u32)
        .map(|i| {
            let mut a = Vec::new();
            a.put_xdr_opaque(fh);
            a.put_u64(u64::from(i) * 4093);
            a.put_u32(32 * 1024 + i);
            call(100 + i, 6, &a)
        })
        .collect();
    let mut sent = 0u64;
    let mut allocs = Vec::new();
    for (i, rec) in reads.iter().enumerate() {
        let ((), n) = count_allocs(|| {
            let Handled::Reply(reply) = dispatcher.handle(rec, PEER).unwrap() else {
                panic!("no reply")
            };
            // A refusal (ACCES, STALE) would allocate nothing too: insist
            // on data.
            assert!(!reply.data().is_empty(), "READ {i} carried no data");
            sent += reply.wire_len();
            transport.send_reply(reply).unwrap();
        });
        // The first few warm up.
        allocs.push(if i >= 8 { n as usize } else { 0 });
    }
    drop(transport);
    assert_eq!(drain.join().unwrap() as u64, sent);
    allocs
}
