//! A warm READ through the tokio driver, from the request on the socket to
//! the reply on the wire, makes no heap allocation in the whole process:
//! the client here reuses prepared requests and one reply buffer, so
//! whatever the global allocator counts in the window is the server's
//! (the worker thread's read, dispatch and `AsyncSplicer` send). One test
//! in this binary: the count is process-wide.

mod common;
mod evented;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use bytes::BufMut;
use common::RpcClient;
use evented::TokioTestServer;
use msgsplice_rpc::nfs::NFS_PROGRAM;
use msgsplice_rpc::rpc::{put_call, Credential};
use msgsplice_rpc::xdr::XdrPut;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

fn bump() {
    if COUNTING.load(Relaxed) {
        ALLOCS.fetch_add(1, Relaxed);
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        bump();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const COUNT: u32 = 32 * 1024;

/// A marked READ call of `COUNT` bytes at `offset`.
fn read_call(xid: u32, fh: &[u8], offset: u64) -> Vec<u8> {
    let mut v = Vec::new();
    put_call(&mut v, xid, NFS_PROGRAM, 3, 6, &Credential::None);
    v.put_xdr_opaque(fh);
    v.put_u64(offset);
    v.put_u32(COUNT);
    let mut rec = (0x8000_0000 | v.len() as u32).to_be_bytes().to_vec();
    rec.extend_from_slice(&v);
    rec
}

/// Sends `BURST` NULL calls in one write and reads their replies: more
/// messages than a task's cooperative budget (128) in one run of the
/// connection's task.
fn warm_the_budget(mut stream: &std::net::TcpStream) {
    const BURST: u32 = 1000;
    let mut calls = Vec::new();
    for xid in 0..BURST {
        let mut v = Vec::new();
        put_call(
            &mut v,
            1_000_000 + xid,
            NFS_PROGRAM,
            3,
            0,
            &Credential::None,
        );
        calls.extend_from_slice(&(0x8000_0000 | v.len() as u32).to_be_bytes());
        calls.extend_from_slice(&v);
    }
    stream.write_all(&calls).unwrap();
    for xid in 0..BURST {
        let mut mark = [0u8; 4];
        stream.read_exact(&mut mark).unwrap();
        let len = (u32::from_be_bytes(mark) & 0x7fff_ffff) as usize;
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).unwrap();
        assert_eq!(&body[0..4], &(1_000_000 + xid).to_be_bytes(), "xid");
    }
}

#[test]
fn a_warm_read_through_the_tokio_driver_allocates_nothing() {
    let s = TokioTestServer::start(
        |root| std::fs::write(root.join("f"), vec![7u8; 4 << 20]).unwrap(),
        |c| c.worker_threads = Some(1),
    );
    let mut m = RpcClient::connect(s.mount);
    let root = m.mnt("/export").unwrap();
    let mut c = RpcClient::connect(s.nfs);
    let fh = c.lookup(&root, b"f").unwrap();
    let calls: Vec<Vec<u8>> = (0..600)
        .map(|i| read_call(i, &fh, u64::from(i % 100) * 4096))
        .collect();
    // Every reply has the same length: the first one says it.
    c.send_raw(&calls[0]);
    let first = c.recv_record().unwrap();
    let mut reply = vec![0u8; first.len() + 4];
    let mut stream = &c.stream;
    // The runtime's one-time growth: the first time a worker's task runs out
    // of its cooperative budget, tokio grows the worker's list of deferred
    // wakers (once per worker, kept for its life). Whether the READs below
    // ever run a task that far is a matter of timing, so make it happen
    // here: a burst of pipelined calls, answered in one run of the
    // connection's task, is more than one budget.
    warm_the_budget(stream);
    let mut read = |i: usize| {
        stream.write_all(&calls[i]).unwrap();
        stream.read_exact(&mut reply).unwrap();
        assert_eq!(&reply[4..8], &(i as u32).to_be_bytes(), "xid");
    };
    for i in 1..100 {
        read(i);
    }
    // The counter works: one allocation in the window is seen.
    COUNTING.store(true, Relaxed);
    let probe = std::hint::black_box(Vec::<u8>::with_capacity(1));
    COUNTING.store(false, Relaxed);
    drop(probe);
    assert_eq!(ALLOCS.swap(0, Relaxed), 1);

    COUNTING.store(true, Relaxed);
    for i in 100..600 {
        read(i);
    }
    COUNTING.store(false, Relaxed);
    let n = ALLOCS.load(Relaxed);
    eprintln!("heap allocations over 500 warm READs: {n}");
    assert_eq!(n, 0, "heap allocations over 500 warm READs");
}
