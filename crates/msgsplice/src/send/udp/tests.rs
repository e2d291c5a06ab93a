//! Unit tests of the UDP send path: limits, destinations, control
//! messages, and (as root, on the test kit's hosts) the ENOBUFS case
//! that must stop zero-copy.

use super::*;

#[test]
fn size_and_segment_limits() {
    assert!(check_len(MAX_UDP_PAYLOAD_V4, 0, true).is_ok());
    assert!(matches!(
        check_len(MAX_UDP_PAYLOAD_V4 + 1, 0, true),
        Err(SendError::MessageTooLarge { len: 65_508 })
    ));
    assert!(check_len(MAX_UDP_PAYLOAD_V4 + 1, 0, false).is_ok());
    assert!(check_len(MAX_UDP_PAYLOAD_V6 + 1, 1400, false).is_err());
    // 128 segments of 500 bytes fit, 129 do not.
    assert!(check_len(128 * 500, 500, true).is_ok());
    assert!(matches!(
        check_len(128 * 500 + 1, 500, true),
        Err(SendError::TooManySegments {
            segment: 500,
            max: 128,
            ..
        })
    ));
    assert!(check_len(0, 1, true).is_ok());
}

#[test]
fn destinations_follow_the_socket_family() {
    let v4 = Udp {
        v6: false,
        gso: 0,
        sock_gso: 0,
    };
    let v6 = Udp { v6: true, ..v4 };
    let a4: SocketAddr = "10.0.0.1:9".parse().unwrap();
    let a6: SocketAddr = "[fd00::1]:9".parse().unwrap();
    let mapped: SocketAddr = "[::ffff:10.0.0.1]:9".parse().unwrap();
    assert!(matches!(v4.dest(a4), Ok(RawAddr::V4(_))));
    assert!(matches!(v4.dest(mapped), Ok(RawAddr::V4(_))));
    assert!(matches!(
        v4.dest(a6),
        Err(SendError::WrongAddressFamily { .. })
    ));
    let m = v6.dest(a4).unwrap();
    assert!(matches!(m, RawAddr::V6(_)));
    assert!(goes_as_v4(&v6, Some(&m)), "mapped: IPv4 limits");
    assert!(!goes_as_v4(&v6, Some(&v6.dest(a6).unwrap())));
    assert!(goes_as_v4(&v4, None) && !goes_as_v4(&v6, None));
}

/// On a socket with `IP_RECVERR`, a packet dropped by a full queue
/// fails with `ENOBUFS` although the kernel had numbered the zero-copy
/// send. The Splicer cannot tell that from full option memory, so it
/// stops zero-copy; the sends before keep their ids, the stray id is
/// counted as unexpected and releases nothing, and later sends copy.
/// Runs as root on the test kit's hosts, with a link that drops every
/// packet (`tc qdisc ... pfifo limit 0`).
#[test]
fn enobufs_with_recverr_stops_zero_copy_and_keeps_ids_in_step() {
    use crate::sys::udp::set_recverr;
    use crate::{FragCache, Msg};
    use msgsplice_testkit::hosts::{Hosts, LinkMode, Side, RECEIVER_V4};
    use std::time::Duration;

    let test = "enobufs_with_recverr_stops_zero_copy_and_keeps_ids_in_step";
    let Some(hosts) = Hosts::for_test(test) else {
        return;
    };
    hosts.set_mode(LinkMode::Drop).expect("drop mode");
    let t = hosts.spawn_in(Side::Sender, || {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.connect((RECEIVER_V4, 9)).unwrap();
        let cache = FragCache::new();
        let mut sp = super::super::Builder::new()
            .on_copied(super::super::OnCopied::Keep)
            .gso_segment(1400)
            .build(&sock)
            .unwrap();
        let body = cache.memdup(&[7u8; 32 << 10]).unwrap();
        let send = |sp: &mut Splicer<&std::net::UdpSocket>| {
            let mut m = Msg::new();
            m.push(body.clone());
            sp.send(&mut m)
        };
        for _ in 0..5 {
            send(&mut sp).expect("dropped quietly");
        }
        set_recverr(sock.as_fd(), false, true).unwrap();
        let e = send(&mut sp).unwrap_err();
        let st = sp.stats();
        set_recverr(sock.as_fd(), false, false).unwrap();
        send(&mut sp).expect("copied");
        assert!(sp.wait_completions(Duration::from_secs(5)).unwrap());
        std::thread::sleep(Duration::from_millis(20));
        sp.poll_completions().unwrap();
        (e, st, sp.stats())
    });
    let (e, during, after) = t.join().unwrap();
    eprintln!("{e}\nafter: {after:?}");
    assert!(
        matches!(&e, SendError::Io(io) if io.raw_os_error() == Some(libc::ENOBUFS)),
        "{e:?}"
    );
    assert!(during.zerocopy_desynced, "{during:?}");
    assert_eq!(
        after.zerocopy_sends, 5,
        "nothing zero-copy after: {after:?}"
    );
    assert_eq!(after.completions, 5);
    assert!(after.unexpected_completions <= 1, "{after:?}");
    assert_eq!(after.messages, 6);
}

#[test]
fn a_control_message_only_when_the_socket_setting_differs() {
    let u = Udp {
        v6: false,
        gso: 1400,
        sock_gso: 1400,
    };
    assert_eq!(u.cmsg(), None);
    assert_eq!(Udp { gso: 0, ..u }.cmsg(), Some(0));
    assert_eq!(Udp { sock_gso: 0, ..u }.cmsg(), Some(1400));
}
