//! Helpers of the AsyncSplicer tests: random messages of every segment
//! kind, socket pairs, runtimes, and a future dropped after a set number of
//! polls.

use std::future::Future;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use msgsplice::send::{Builder, OnCopied};
use msgsplice::{FragCache, Msg};
use proptest::prelude::*;

/// Generous bound that turns a hang into a failure; never a verdict on speed.
pub const HANG: Duration = Duration::from_secs(30);

// ---- messages ----------------------------------------------------------

/// 4 MiB of pseudo-random bytes; segments are cut from it.
pub fn source() -> &'static [u8] {
    static SRC: OnceLock<Vec<u8>> = OnceLock::new();
    SRC.get_or_init(|| {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        (0..4 << 20)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 32) as u8
            })
            .collect()
    })
}

/// `source` in a file, for file-range segments. Unlinked once open.
pub fn source_file() -> &'static std::fs::File {
    static FILE: OnceLock<std::fs::File> = OnceLock::new();
    FILE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("msgsplice-async-{}", std::process::id()));
        std::fs::write(&path, source()).expect("write the source file");
        let f = std::fs::File::open(&path).expect("open the source file");
        std::fs::remove_file(&path).expect("unlink the source file");
        f
    })
}

/// One segment: its kind (0 Frag, 1 Bytes from a Vec, 2 Bytes over a Frag,
/// 3 borrowed, 4 owned, 5 file range), length, and where its data starts
/// in `source` (and so in `source_file`).
#[derive(Clone, Copy, Debug)]
pub struct Seg {
    pub kind: u8,
    pub len: usize,
    pub at: usize,
}

impl Seg {
    pub fn offset(&self) -> usize {
        self.at % (source().len() - self.len)
    }

    pub fn data(&self) -> &'static [u8] {
        &source()[self.offset()..][..self.len]
    }
}

pub fn seg(max: usize) -> impl Strategy<Value = Seg> {
    let len = prop_oneof![
        1 => Just(0usize),
        4 => 1usize..64,
        4 => 64usize..4096,
        3 => 4096usize..(64 << 10),
        1 => (64usize << 10)..=(512 << 10),
    ];
    (0u8..6, len, any::<usize>()).prop_map(move |(kind, len, at)| Seg {
        kind,
        len: len.min(max),
        at,
    })
}

pub fn build<'a>(segs: &'a [Seg], cache: &FragCache) -> Msg<'a> {
    let mut m = Msg::new();
    for s in segs {
        let d = s.data();
        match s.kind {
            0 => m.push(cache.memdup(d).expect("memdup")),
            1 => m.push(Bytes::from(d.to_vec())),
            2 => m.push(Bytes::from(cache.memdup(d).expect("memdup"))),
            3 => m.push(d),
            4 => m.push(d.to_vec()),
            _ => m.push_file(source_file(), s.offset() as u64, s.len as u64),
        };
    }
    m
}

pub fn concat(msgs: &[Vec<Seg>]) -> Vec<u8> {
    msgs.iter()
        .flatten()
        .flat_map(|s| s.data().iter().copied())
        .collect()
}

// ---- sockets and runtimes ----------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Transport {
    Tcp,
    Unix,
}

pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (b, _) = l.accept().expect("accept");
    (a, b)
}

pub fn pair(t: Transport) -> (OwnedFd, OwnedFd) {
    match t {
        Transport::Tcp => {
            let (a, b) = tcp_pair();
            (a.into(), b.into())
        }
        Transport::Unix => {
            let (a, b) = UnixStream::pair().expect("pair");
            (a.into(), b.into())
        }
    }
}

pub fn read_to_end(fd: OwnedFd) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(fd);
        let mut v = Vec::new();
        f.read_to_end(&mut v).expect("read");
        v
    })
}

pub fn runtime(multi: bool) -> tokio::runtime::Runtime {
    let mut b = if multi {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().expect("runtime")
}

/// Runs `fut` as a task (so that on a multi-thread runtime it runs on, and
/// may move between, worker threads), failing if it hangs.
pub fn run_task<F>(multi: bool, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = runtime(multi);
    rt.block_on(async move {
        let task = tokio::spawn(fut);
        tokio::time::timeout(HANG, task)
            .await
            .expect("the test task hung")
            .expect("the test task panicked")
    })
}

/// Polls `fut` at most `polls` times; drops it if it is still pending
/// then. Between polls it lets the runtime run (and the reader read).
pub async fn poll_at_most<F: Future>(fut: F, polls: u32) -> Option<F::Output> {
    let mut fut = pin!(fut);
    for _ in 0..polls {
        let step = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        if let Poll::Ready(out) = step {
            return Some(out);
        }
        tokio::task::yield_now().await;
    }
    None
}

pub fn zero_copy_on_loopback() -> Builder {
    Builder::new()
        .skip_zerocopy_to_local_peers(false)
        .on_copied(OnCopied::Keep)
}
