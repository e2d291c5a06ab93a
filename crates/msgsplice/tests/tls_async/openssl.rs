//! The asynchronous API against OpenSSL's command-line client and server.

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use msgsplice::tls::Builder;
use msgsplice::Msg;

use msgsplice_testkit::skip;

use super::tls_support::*;
use super::{data_file, runtimes};

/// `openssl s_client` (verifying our certificate) reads a message of a
/// header, 300 KiB, a file range and a trailer from an asynchronous
/// server, TLS 1.3 on a current-thread runtime and TLS 1.2 on a
/// multi-thread one.
#[test]
fn openssl_s_client_reads_the_async_server() {
    if !have_openssl() {
        return skip(
            "openssl_s_client_reads_the_async_server",
            "no openssl binary",
        );
    }
    let pem = pem_files("async-s_client");
    let cert_pem = &pem.cert;
    let (file, file_data) = data_file();
    for ((flavour, rt), proto) in runtimes().into_iter().zip(["-tls1_3", "-tls1_2"]) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let child = Command::new("openssl")
            .args(["s_client", "-connect", &addr, "-quiet", proto])
            .args(["-servername", "localhost", "-verify_hostname", "localhost"])
            .arg("-verify_return_error")
            .arg("-CAfile")
            .arg(cert_pem)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openssl s_client");
        let (sock, _) = l.accept().expect("accept");
        let payload = pattern(9, 300 << 10);
        let mut want = b"HEADER\n".to_vec();
        want.extend_from_slice(&payload);
        want.extend_from_slice(&file_data[1000..101_000]);
        want.extend_from_slice(b"\nTRAILER");
        rt.block_on(async {
            // s_client keeps its side open after close_notify: don't wait long.
            let mut tls = Builder::new()
                .linger(Duration::from_millis(200))
                .accept_async(server_config(None), sock)
                .await
                .expect("async handshake with openssl");
            let mut msg = Msg::new();
            msg.push(&b"HEADER\n"[..])
                .push(payload.clone())
                .push_file(file, 1000, 100_000)
                .push(&b"\nTRAILER"[..]);
            tls.send(&mut msg).await.expect("send");
            tls.close().await.expect("close");
        });
        let out = wait_output(child, Duration::from_secs(20));
        assert!(
            out.stdout == want,
            "{flavour} {proto}: openssl printed {} bytes, expected {}; stderr: {}",
            out.stdout.len(),
            want.len(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// An asynchronous client against `openssl s_server`: OpenSSL decrypts
/// what we seal; both runtime flavours.
#[test]
fn openssl_s_server_reads_the_async_client() {
    if !have_openssl() {
        return skip(
            "openssl_s_server_reads_the_async_client",
            "no openssl binary",
        );
    }
    let pem = pem_files("async-s_server");
    let (cert_pem, key_pem) = (&pem.cert, &pem.key);
    for (flavour, rt) in runtimes() {
        // A free port for s_server: bind, note it, release it.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("openssl")
            .args(["s_server", "-accept", &port.to_string(), "-naccept", "1"])
            .args(["-quiet", "-tls1_3", "-cert"])
            .arg(cert_pem)
            .arg("-key")
            .arg(key_pem)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openssl s_server");
        let deadline = Instant::now() + Duration::from_secs(10);
        let sock = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("s_server did not listen: {e}"),
            }
        };
        let payload = pattern(5, 200 << 10);
        rt.block_on(async {
            let mut tls = Builder::new()
                .linger(Duration::from_millis(500))
                .connect_async(client_config(None), localhost(), sock)
                .await
                .expect("async handshake with openssl");
            let mut msg = Msg::new();
            msg.push(&b"BEGIN\n"[..])
                .push(payload.clone())
                .push(&b"\nEND\n"[..]);
            tls.send(&mut msg).await.expect("send");
            tls.close().await.expect("close");
        });
        let out = wait_output(child, Duration::from_secs(20));
        let mut want = b"BEGIN\n".to_vec();
        want.extend_from_slice(&payload);
        want.extend_from_slice(b"\nEND\n");
        assert!(
            out.stdout.starts_with(&want),
            "{flavour}: s_server printed {} bytes, expected {} first; stderr: {}",
            out.stdout.len(),
            want.len(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
