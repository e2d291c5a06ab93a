//! A tokio server that answers each request with a header, a range of a
//! file (sent by `sendfile`, never read into user memory) and a trailer,
//! through an `AsyncSplicer`; and a client that checks the replies.
//!
//! ```text
//! cargo run -p msgsplice --features tokio --example async_file_server
//! ```
//!
//! A request is 16 bytes: the range's offset and length, big-endian. The
//! reply is the length (8 bytes), the range, and `END\n`. The connection
//! waits for its next request in `AsyncSplicer::recv`, which also releases
//! the buffers of zero-copy replies as their completions arrive.

use std::error::Error;
use std::fs::File;
use std::io::Write;
use std::sync::Arc;

use msgsplice::send::Builder;
use msgsplice::{AsyncSplicer, Msg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TRAILER: &[u8] = b"END\n";

/// Serves one connection until the client closes it.
async fn serve(stream: TcpStream, file: Arc<File>) -> Result<(), Box<dyn Error + Send + Sync>> {
    let mut sp = AsyncSplicer::from_tokio_tcp(stream, Builder::default())?;
    let mut req = [0u8; 16];
    loop {
        // Requests are small; a real server would reassemble them.
        let n = sp.recv(&mut req).await?;
        if n == 0 {
            break;
        }
        if n != req.len() {
            return Err("short request".into());
        }
        let offset = u64::from_be_bytes(req[..8].try_into()?);
        let len = u64::from_be_bytes(req[8..].try_into()?);
        let mut msg = Msg::new();
        msg.push(len.to_be_bytes().to_vec())
            .push_file(&*file, offset, len)
            .push(TRAILER);
        // A range past the end of the file fails before any byte is sent.
        sp.send(&mut msg).await?;
    }
    let stats = sp.close().await;
    println!(
        "server: {} replies, {} system calls, {} bytes spliced",
        stats.messages, stats.syscalls, stats.bytes_spliced
    );
    Ok(())
}

/// Asks for a few ranges and checks them against the file's contents.
async fn client(addr: std::net::SocketAddr, contents: &[u8]) -> Result<(), Box<dyn Error>> {
    let mut c = TcpStream::connect(addr).await?;
    for (offset, len) in [(0u64, 100u64), (4096, 64 << 10), (1000, 300 << 10)] {
        let mut req = [0u8; 16];
        req[..8].copy_from_slice(&offset.to_be_bytes());
        req[8..].copy_from_slice(&len.to_be_bytes());
        c.write_all(&req).await?;
        let mut head = [0u8; 8];
        c.read_exact(&mut head).await?;
        let mut body = vec![0u8; u64::from_be_bytes(head) as usize + TRAILER.len()];
        c.read_exact(&mut body).await?;
        let (data, trailer) = body.split_at(len as usize);
        assert_eq!(data, &contents[offset as usize..][..len as usize]);
        assert_eq!(trailer, TRAILER);
        println!("client: {len} bytes from offset {offset}, as in the file");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let contents: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let path = std::env::temp_dir().join(format!("msgsplice-example-{}", std::process::id()));
    File::create(&path)?.write_all(&contents)?;
    let file = Arc::new(File::open(&path)?);
    std::fs::remove_file(&path)?; // the open file stays readable

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await?;
        serve(stream, file).await
    });
    client(addr, &contents).await?;
    server.await?.map_err(|e| e.to_string())?;
    Ok(())
}
