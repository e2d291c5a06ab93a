//! The `uring` section's parts checked against known answers: what each
//! way sends (bytes counted at the TCP receiver), its counters, the GSO
//! segment the io_uring rows' sockets carry, and the target lines. Nothing
//! here looks at a clock.

use std::net::UdpSocket;
use std::os::fd::OwnedFd;

use msgsplice::uring::UringBuilder;
use msgsplice_testkit::skip::skip_unsupported;

use super::*;

/// Whether io_uring can be used here (else a skip is reported), and
/// whether registered folios can.
fn uring_here(test: &str) -> Option<bool> {
    match probe() {
        Ok(fixed) => Some(fixed.is_ok()),
        Err(why) => {
            skip_unsupported(test, why);
            None
        }
    }
}

/// The ways this kernel can run.
fn ways(fixed: bool) -> Vec<Way> {
    Way::ALL[..if fixed { 4 } else { 3 }].to_vec()
}

/// A few messages of each way on two sockets, on both paths: every way
/// sends, zero-copy ways send zero-copy, counters agree with each other,
/// and the TCP receiver gets every byte sent.
#[test]
fn every_way_sends_and_counts() {
    let test = "uring::every_way_sends_and_counts";
    let Some(fixed) = uring_here(test) else {
        return;
    };
    let Some(hosts) = Hosts::for_test(test) else {
        return;
    };
    let hosts = &hosts;
    std::thread::scope(|sc| {
        sc.spawn(move || {
            hosts.enter(Side::Sender).unwrap();
            hosts.set_mode(LinkMode::Drop).unwrap();
            check_link(hosts, Link::UdpDrop, None, fixed);
            hosts.set_mode(LinkMode::Deliver).unwrap();
            let drain = Drain::start(hosts).unwrap();
            check_link(hosts, Link::TcpDeliver, Some(&drain), fixed);
        })
        .join()
        .unwrap()
    });
}

fn check_link(_hosts: &Hosts, link: Link, drain: Option<&Drain>, fixed: bool) {
    let spec = Spec {
        link,
        big: link == Link::TcpDeliver,
        sockets: 2,
    };
    let shape = spec.shape();
    let to = drain.map_or(SocketAddr::new(hosts::receiver(false), 9), |d| d.addr);
    let payload = Arc::new(Payload::new(shape.len, 1 << 20).unwrap());
    let mut sent = 0;
    for w in ways(fixed) {
        let mut s = Sender::new(w, shape, &mut || open(link, to), &payload, 1 << 20).unwrap();
        s.warm(2).unwrap();
        let x = s
            .turn(Duration::ZERO, &|| sender_cpu(drain))
            .unwrap_or_else(|e| panic!("{w:?} on {link:?}: {e}"));
        let what = format!("{w:?} on {link:?}: {x:?}");
        // At least one round of one message per socket.
        assert!(x.messages >= 2 && x.messages % 2 == 0, "{what}");
        assert_eq!(x.bytes, x.messages * shape.len as u64, "{what}");
        assert!(x.gbps() > 0.0 && x.syscalls > 0, "{what}");
        match w {
            Way::Copy => {
                assert_eq!(x.zerocopy_sends + x.notifications, 0, "{what}");
                if link == Link::UdpDrop {
                    // One sendmsg per datagram, nothing else.
                    assert_eq!(x.syscalls, x.messages, "{what}");
                }
            }
            Way::ZeroCopy => {
                assert!(x.zerocopy_sends >= x.messages, "{what}");
                assert!(x.notifications >= 1, "{what}");
                assert!(
                    x.syscalls > x.messages,
                    "sends and completion reads: {what}"
                );
            }
            Way::Ring | Way::RingFixed => {
                assert!(x.zerocopy_sends >= x.messages, "{what}");
                // One notification CQE per zero-copy entry, all in by the
                // end of the turn.
                assert_eq!(x.notifications, x.zerocopy_sends, "{what}");
                // Two sockets share every round's io_uring_enter.
                assert!(x.syscalls <= x.messages, "{what}");
                if w == Way::RingFixed {
                    assert_eq!(x.fixed_sends, x.zerocopy_sends, "{what}");
                } else {
                    assert_eq!(x.fixed_sends, 0, "{what}");
                }
            }
        }
        sent += s.bytes_sent();
    }
    if let Some(d) = drain {
        assert!(
            d.wait_for(sent, Duration::from_secs(10)),
            "the receiver got {} of {sent} bytes",
            d.bytes()
        );
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(d.bytes(), sent, "the receiver got more than was sent");
    }
}

/// The io_uring rows get their GSO segment from the policy: a 4 KiB
/// message sent by the UringSplicer arrives on loopback as three datagrams
/// of at most one segment each.
#[test]
fn ring_sockets_cut_messages_into_segments() {
    if uring_here("uring::ring_sockets_cut_messages_into_segments").is_none() {
        return;
    }
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(rx.local_addr().unwrap()).unwrap();
    let policy = msgsplice::send::Builder::new().gso_segment(SEGMENT);
    let mut sp = UringBuilder::new()
        .policy(policy)
        .build(OwnedFd::from(tx))
        .unwrap();
    let payload = Payload::new(4096, 4096).unwrap();
    let mut m = payload.msg(0);
    assert_eq!(sp.send(&mut m).unwrap(), 4096);
    let mut buf = [0u8; 8192];
    // This thread owns the ring: the kernel wakes it to run the send's
    // notification, and a recv with a timeout then fails with EINTR.
    let mut recv = || loop {
        match rx.recv(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r.unwrap(),
        }
    };
    let got: Vec<usize> = (0..3).map(|_| recv()).collect();
    assert_eq!(got, [1472, 1472, 4096 - 2 * 1472]);
}

/// A group of made-up samples, the MSG_ZEROCOPY row the baseline.
fn made_up(cpu: [f64; 4], mpc: [f64; 4], calls: [f64; 4]) -> Group {
    let mut s = GroupSamples::new(4, 5);
    for i in 0..4 {
        s.push(
            i,
            &[
                Some(1.0),
                Some(cpu[i]),
                Some(mpc[i]),
                Some(calls[i]),
                Some(0.0),
            ],
        );
    }
    group(&s, "g".into(), &Way::ALL)
}

#[test]
fn groups_compare_with_msg_zerocopy() {
    let g = made_up([0.4, 0.2, 0.15, 0.1], [1.0, 2.0, 3.0, 4.0], [1.0; 4]);
    assert_eq!(g.rows.len(), 4);
    assert!(g.rows[1].baseline && !g.rows[0].baseline);
    assert_eq!(g.rows[3].extras[CPU_VS].median, 0.5);
    assert_eq!(g.rows[0].extras[MPC_VS].median, 0.5);
    assert_eq!(g.rows[1].extras[CPU_VS].median, 1.0);
}

#[test]
fn target_lines_say_met_or_not() {
    let big = Spec {
        link: Link::UdpDrop,
        big: true,
        sockets: 64,
    };
    let g = made_up([0.4, 0.2, 0.15, 0.1], [1.0; 4], [1.0, 1.0, 0.02, 0.2]);
    let v = verdicts(big, &g);
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[0].contains("0.50x") && v[0].ends_with(": met"), "{v:?}");
    assert!(
        v[1].contains("0.020 and 0.200") && v[1].ends_with("NOT met"),
        "{v:?}"
    );

    let small = Spec {
        big: false,
        sockets: 1,
        ..big
    };
    // 1.5x MSG_ZEROCOPY, but below the plain copy.
    let g = made_up([1.0; 4], [5.0, 2.0, 2.0, 3.0], [1.0; 4]);
    let v = verdicts(small, &g);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("1.50x") && v[0].contains("0.60x"), "{v:?}");
    assert!(v[0].ends_with("NOT met"), "{v:?}");
    let g = made_up([1.0; 4], [2.0, 2.0, 2.0, 3.0], [1.0; 4]);
    assert!(verdicts(small, &g)[0].ends_with(": met"));
}

#[test]
fn udp_messages_fit_a_datagram() {
    assert!(UDP_BIG <= 65_507 && UDP_BIG + usize::from(SEGMENT) > 65_507);
    for s in SPECS {
        let shape = s.shape();
        assert_eq!(shape.gso.is_some(), s.link == Link::UdpDrop);
        assert_eq!(s.name().contains("64 KiB"), s.big);
    }
}
