//! The bench's own NFSv3 READ load: C connections, one thread and one
//! blocking socket each, every one keeping K READs in flight (it writes K
//! calls, then sends the next call for each reply it takes in), at random
//! block-aligned offsets or sequentially through its own region of the
//! file.
//!
//! Every reply is checked: its xid must match a call in flight (replies
//! may come back in any order), the status must be OK, the count must be
//! the size asked for and the eof flag must agree with the file's size;
//! and every `verify_every`-th reply's data is compared with the local
//! copy of the file (read with `pread`), so that a fast wrong server
//! cannot win.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use super::client::{self, ClientError, Connection, Target};

/// Where the READs go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Uniformly random blocks of the whole file (xorshift, seeded; each
    /// connection its own stream).
    Random {
        /// The seed.
        seed: u64,
    },
    /// Each connection reads its own 1/C of the file from start to end,
    /// and again.
    Sequential,
}

/// When a run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// No new call after this long; the calls in flight are still taken in.
    After(Duration),
    /// After this many READs in all (split evenly over the connections).
    Count(u64),
}

/// What one load run does.
#[derive(Clone, Copy, Debug)]
pub struct LoadSpec {
    /// Connections, one thread each.
    pub conns: usize,
    /// READs in flight per connection.
    pub depth: usize,
    /// Bytes per READ; offsets are multiples of it.
    pub read_size: u32,
    /// Random or sequential.
    pub pattern: Pattern,
    /// When to stop.
    pub stop: Stop,
    /// Compare the data of one reply in this many with the file (1: all).
    pub verify_every: u64,
    /// Longest wait for a reply.
    pub timeout: Duration,
}

/// What one load run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadResult {
    /// READs completed and checked.
    pub reads: u64,
    /// Data bytes they returned.
    pub bytes: u64,
    /// Replies whose data was compared with the file.
    pub verified: u64,
    /// From the connections' common start to the last reply.
    pub elapsed: Duration,
    /// CPU time of the client's threads, summed.
    pub client_cpu: Duration,
}

impl LoadResult {
    /// READs per second.
    pub fn reads_per_sec(&self) -> f64 {
        self.reads as f64 / self.elapsed.as_secs_f64()
    }

    /// Data bytes per second.
    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `spec` against the server at `target`, reading `name` in the
/// export root, whose local copy is `local` (its size is the file's).
/// The first error of any connection ends the run and is returned.
pub fn run(
    target: &Target,
    name: &str,
    local: &Path,
    spec: &LoadSpec,
) -> Result<LoadResult, ClientError> {
    let file = File::open(local).map_err(ClientError::LocalFile)?;
    let size = file.metadata().map_err(ClientError::LocalFile)?.len();
    let blocks = size / u64::from(spec.read_size.max(1));
    if blocks < spec.conns.max(1) as u64 || spec.depth == 0 {
        return Err(ClientError::BadLoad(format!(
            "a file of {size} bytes has too few {}-byte blocks for {} connections \
             (or no READ may be in flight)",
            spec.read_size, spec.conns
        )));
    }
    let fh = client::file_handle(target, name, spec.timeout)?;
    let barrier = Barrier::new(spec.conns + 1);
    let (results, elapsed) = std::thread::scope(|s| {
        let threads: Vec<_> = (0..spec.conns)
            .map(|i| {
                let worker = Worker {
                    spec,
                    fh: &fh,
                    file: &file,
                    size,
                    offsets: Offsets::new(spec, i, blocks),
                    quota: match spec.stop {
                        Stop::Count(n) => {
                            n / spec.conns as u64 + u64::from((i as u64) < n % spec.conns as u64)
                        }
                        Stop::After(_) => u64::MAX,
                    },
                };
                let barrier = &barrier;
                s.spawn(move || worker.run(target.nfs, barrier))
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| Err(panicked())))
            .collect();
        (results, start.elapsed())
    });
    let mut total = LoadResult {
        elapsed,
        ..LoadResult::default()
    };
    for r in results {
        let r = r?;
        total.reads += r.reads;
        total.bytes += r.bytes;
        total.verified += r.verified;
        total.client_cpu += r.client_cpu;
    }
    Ok(total)
}

fn panicked() -> ClientError {
    ClientError::Io(std::io::Error::other("a load thread panicked"))
}

/// The offsets one connection reads.
struct Offsets {
    pattern: Pattern,
    read_size: u64,
    /// Random state, or the next block.
    state: u64,
    /// This connection's blocks: `first..first + count`.
    first: u64,
    count: u64,
}

impl Offsets {
    fn new(spec: &LoadSpec, conn: usize, blocks: u64) -> Offsets {
        let read_size = u64::from(spec.read_size);
        match spec.pattern {
            Pattern::Random { seed } => Offsets {
                pattern: spec.pattern,
                read_size,
                // Never zero (xorshift's one fixed point), different per
                // connection.
                state: (seed ^ (conn as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1,
                first: 0,
                count: blocks,
            },
            Pattern::Sequential => {
                let count = blocks / spec.conns as u64;
                Offsets {
                    pattern: spec.pattern,
                    read_size,
                    state: 0,
                    first: conn as u64 * count,
                    count,
                }
            }
        }
    }

    fn next(&mut self) -> u64 {
        let block = match self.pattern {
            Pattern::Random { .. } => {
                let mut x = self.state;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                self.state = x;
                x % self.count
            }
            Pattern::Sequential => {
                let b = self.state;
                self.state = (b + 1) % self.count;
                b
            }
        };
        (self.first + block) * self.read_size
    }
}

/// Checks a READ's data against the file's bytes at the same offset.
pub fn verify(offset: u64, data: &[u8], expected: &[u8]) -> Result<(), ClientError> {
    if data.len() != expected.len() {
        return Err(ClientError::ShortRead {
            offset,
            want: expected.len() as u32,
            got: data.len() as u32,
        });
    }
    match data.iter().zip(expected).position(|(a, b)| a != b) {
        Some(at) => Err(ClientError::WrongData { offset, at }),
        None => Ok(()),
    }
}

/// One connection's share of a run.
struct Worker<'a> {
    spec: &'a LoadSpec,
    fh: &'a [u8],
    file: &'a File,
    size: u64,
    offsets: Offsets,
    quota: u64,
}

/// A call in flight: its xid and offset.
#[derive(Clone, Copy)]
struct InFlight {
    xid: u32,
    offset: u64,
}

impl Worker<'_> {
    /// Connects, waits for the others, then runs the pipeline. The barrier
    /// is passed whether or not the connection succeeded, so that one
    /// failure cannot leave the others waiting.
    fn run(
        mut self,
        addr: std::net::SocketAddr,
        barrier: &Barrier,
    ) -> Result<LoadResult, ClientError> {
        let conn = Connection::connect(addr, self.spec.read_size, self.spec.timeout);
        barrier.wait();
        let mut conn = conn?;
        let cpu0 = super::inproc::thread_cpu();
        let deadline = match self.spec.stop {
            Stop::After(d) => Some(Instant::now() + d),
            Stop::Count(_) => None,
        };
        let mut r = LoadResult::default();
        let mut flight: Vec<InFlight> = Vec::with_capacity(self.spec.depth);
        let mut expected = vec![0u8; self.spec.read_size as usize];
        let mut issued = 0u64;
        let mut xid = 0x1000u32;
        let quota = self.quota;
        let may_issue = |issued: u64| issued < quota && deadline.is_none_or(|d| Instant::now() < d);
        while flight.len() < self.spec.depth && may_issue(issued) {
            self.issue(&mut conn, &mut flight, &mut xid)?;
            issued += 1;
        }
        while !flight.is_empty() {
            let record = conn.receive()?;
            let (got, res) = client::results(record, "READ")?;
            let i = flight
                .iter()
                .position(|f| f.xid == got)
                .ok_or(ClientError::UnknownXid(got))?;
            let call = flight.swap_remove(i);
            let ok = client::decode_read(res)?;
            self.check(call.offset, &ok)?;
            r.reads += 1;
            r.bytes += ok.data.len() as u64;
            if r.reads % self.spec.verify_every.max(1) == 0 {
                self.file
                    .read_exact_at(&mut expected, call.offset)
                    .map_err(ClientError::LocalFile)?;
                verify(call.offset, ok.data, &expected)?;
                r.verified += 1;
            }
            if may_issue(issued) {
                self.issue(&mut conn, &mut flight, &mut xid)?;
                issued += 1;
            }
        }
        r.client_cpu = super::inproc::thread_cpu().saturating_sub(cpu0);
        Ok(r)
    }

    fn issue(
        &mut self,
        conn: &mut Connection,
        flight: &mut Vec<InFlight>,
        xid: &mut u32,
    ) -> Result<(), ClientError> {
        let offset = self.offsets.next();
        *xid = xid.wrapping_add(1);
        let (fh, count) = (self.fh, self.spec.read_size);
        conn.send(*xid, client::READ_CALL, |o| {
            client::put_read_args(o, fh, offset, count)
        })?;
        flight.push(InFlight { xid: *xid, offset });
        Ok(())
    }

    /// The checks every reply passes: the full count (offsets are whole
    /// blocks inside the file), data of that length, and an eof flag that
    /// is not set before the end of the file.
    fn check(&self, offset: u64, ok: &client::ReadOk<'_>) -> Result<(), ClientError> {
        let want = self.spec.read_size;
        if ok.count != want || ok.data.len() != want as usize {
            let got = if ok.count != want {
                ok.count
            } else {
                ok.data.len() as u32
            };
            return Err(ClientError::ShortRead { offset, want, got });
        }
        // At the very end a server may or may not say eof; before it, never.
        if ok.eof && offset + u64::from(want) < self.size {
            return Err(ClientError::BadEof {
                offset,
                eof: ok.eof,
                size: self.size,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msgsplice_rpc::nfs::NfsServer;

    fn spec(pattern: Pattern, stop: Stop) -> LoadSpec {
        LoadSpec {
            conns: 2,
            depth: 4,
            read_size: 4096,
            pattern,
            stop,
            verify_every: 1,
            timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn random_offsets_are_aligned_blocks_of_the_file() {
        let s = spec(Pattern::Random { seed: 7 }, Stop::Count(1));
        let (mut a, mut b) = (Offsets::new(&s, 0, 100), Offsets::new(&s, 1, 100));
        let xs: Vec<u64> = (0..1000).map(|_| a.next()).collect();
        assert!(xs.iter().all(|&x| x % 4096 == 0 && x < 100 * 4096));
        let distinct: std::collections::BTreeSet<_> = xs.iter().collect();
        assert!(distinct.len() > 90, "{}", distinct.len());
        let ys: Vec<u64> = (0..1000).map(|_| b.next()).collect();
        assert_ne!(xs, ys, "each connection has its own stream");
    }

    #[test]
    fn sequential_offsets_stay_in_each_region() {
        let s = spec(Pattern::Sequential, Stop::Count(1));
        let mut o = Offsets::new(&s, 1, 10);
        let xs: Vec<u64> = (0..7).map(|_| o.next() / 4096).collect();
        assert_eq!(xs, [5, 6, 7, 8, 9, 5, 6]);
    }

    #[test]
    fn a_wrong_byte_is_detected() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
        let mut expected = data.clone();
        assert!(verify(8192, &data, &expected).is_ok());
        expected[1234] ^= 1;
        assert!(matches!(
            verify(8192, &data, &expected),
            Err(ClientError::WrongData {
                offset: 8192,
                at: 1234
            })
        ));
        assert!(matches!(
            verify(0, &data[..4095], &data),
            Err(ClientError::ShortRead { .. })
        ));
    }

    /// A file whose every 4 KiB block differs from the others.
    fn file_of(dir: &Path, blocks: u32) -> std::path::PathBuf {
        let mut v = Vec::new();
        for b in 0..blocks {
            for i in 0..1024u32 {
                v.extend_from_slice(&(b.wrapping_mul(2654435761) ^ i).to_le_bytes());
            }
        }
        let path = dir.join("data.bin");
        std::fs::write(&path, v).unwrap();
        path
    }

    #[test]
    fn reads_and_checks_msgsplice_export() {
        let dir = tempfile::tempdir().unwrap();
        let local = file_of(dir.path(), 64);
        let server = NfsServer::bind_local(dir.path(), 0, 0).unwrap();
        let target = Target::from_url(&server.url()).unwrap();
        let handle = server.spawn().unwrap();
        for pattern in [Pattern::Random { seed: 3 }, Pattern::Sequential] {
            let r = run(
                &target,
                "data.bin",
                &local,
                &spec(pattern, Stop::Count(200)),
            )
            .unwrap();
            assert_eq!(r.reads, 200);
            assert_eq!(r.bytes, 200 * 4096);
            assert_eq!(r.verified, 200, "every reply compared");
        }
        // The client compares with a copy that differs from what the
        // server sends by one byte (as if the server sent a wrong byte):
        // the run fails instead of counting the READs.
        let other = tempfile::tempdir().unwrap();
        let copy = other.path().join("copy.bin");
        std::fs::copy(&local, &copy).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
        f.write_all_at(b"X", 5 * 4096 + 9).unwrap();
        let s = spec(Pattern::Sequential, Stop::Count(64));
        let err = run(&target, "data.bin", &copy, &s).unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::WrongData {
                    offset: 20480,
                    at: 9
                }
            ),
            "{err}"
        );
        // A file that is not there is the server's NOENT.
        let err = run(&target, "missing.bin", &local, &s).unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Status {
                    what: "LOOKUP",
                    status: 2
                }
            ),
            "{err}"
        );
        handle.shutdown().unwrap();
    }
}
