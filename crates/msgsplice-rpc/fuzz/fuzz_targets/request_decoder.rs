//! Arbitrary records through the whole request path: RPC header and
//! credential decoding, program/version routing, and every MOUNT and NFS
//! procedure's argument decoder, against a small real export. Whatever the
//! input, the server must answer or drop the record, never panic, and a
//! reply's marker must count exactly the bytes that follow it.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use msgsplice::FragCache;
use msgsplice_rpc::mount::MountProgram;
use msgsplice_rpc::nfs::{Export, NfsProgram};
use msgsplice_rpc::server::{Dispatcher, Handled, Program};

/// The client address calls are taken to come from.
const PEER: std::net::SocketAddr =
    std::net::SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 1000));

struct Fixture {
    _dir: std::path::PathBuf,
    dispatcher: Dispatcher,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("msgsplice-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(dir.join("sub"));
        let _ = std::fs::write(dir.join("file"), b"0123456789");
        let _ = std::os::unix::fs::symlink("/", dir.join("link"));
        let export = Arc::new(Export::open(&dir, "/export", 1024).expect("export"));
        let programs: Vec<Arc<dyn Program>> = vec![
            Arc::new(NfsProgram::new(export.clone())),
            Arc::new(MountProgram::new(export)),
        ];
        Fixture {
            _dir: dir,
            dispatcher: Dispatcher::new(programs, FragCache::new()),
        }
    })
}

/// Half the inputs are raw records; the other half get a valid call header
/// (program and procedure from the first two bytes) in front, so the
/// fuzzer spends its time in the procedures' argument decoders.
fn record(data: &[u8]) -> Vec<u8> {
    match data {
        [mode, sel, args @ ..] if mode & 1 == 1 => {
            let (prog, procs) = if sel & 0x80 == 0 {
                (100003u32, 22)
            } else {
                (100005, 6)
            };
            let mut v = Vec::with_capacity(40 + args.len());
            for w in [1u32, 0, 2, prog, 3, u32::from(sel & 0x7f) % procs, 0, 0, 0, 0] {
                v.extend_from_slice(&w.to_be_bytes());
            }
            v.extend_from_slice(args);
            v
        }
        _ => data.to_vec(),
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    if let Ok(Handled::Reply(reply)) = f.dispatcher.handle(&record(data), PEER) {
        let head = reply.head();
        let marker = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        assert_eq!(marker & 0x8000_0000, 0x8000_0000);
        assert_eq!(u64::from(marker & 0x7fff_ffff) + 4, reply.wire_len());
    }
});
