//! Serves a directory read-only over NFSv3 on 127.0.0.1 until killed.
//!
//! `cargo run -p msgsplice-rpc --example nfs_serve -- DIR [NFS_PORT [MOUNT_PORT]]`

use msgsplice_rpc::NfsServer;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| ".".into());
    let port = |a: Option<String>| a.and_then(|p| p.parse().ok()).unwrap_or(0);
    let nfs = port(args.next());
    let mount = port(args.next());
    let server = NfsServer::bind_local(&dir, nfs, mount)?;
    println!("{}", server.url());
    server.serve()
}
