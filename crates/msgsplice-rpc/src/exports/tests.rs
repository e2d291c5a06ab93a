//! Parsing, good and bad; lookups; access end to end.

use std::net::IpAddr;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn kind(line: &str) -> ExportErrorKind {
    parse_export(line).unwrap_err()
}

#[test]
fn a_bare_export_takes_the_defaults() {
    let e = parse_export("data=/srv/data").unwrap();
    assert_eq!(e.name, "data");
    assert_eq!(e.path(), "/data");
    assert_eq!(e.dir, PathBuf::from("/srv/data"));
    assert!(e.clients.is_empty());
    assert_eq!(e.squash, Squash::Root);
    assert_eq!((e.anon_uid, e.anon_gid), (65534, 65534));
    assert!(e.admits(ip("203.0.113.9")) && e.admits(ip("2001:db8::1")));
}

#[test]
fn every_option_is_read() {
    let e = parse_export(
        " pub = /srv/pub , clients=10.0.0.0/8;2001:db8::/32;192.0.2.7 ,all_squash,anonuid=1000, anongid=100",
    )
    .unwrap();
    assert_eq!(e.name, "pub");
    assert_eq!(e.dir, PathBuf::from("/srv/pub"));
    assert_eq!(e.clients.len(), 3);
    assert_eq!(e.squash, Squash::All);
    assert_eq!((e.anon_uid, e.anon_gid), (1000, 100));
    assert!(e.admits(ip("10.200.0.1")));
    assert!(e.admits(ip("::ffff:10.200.0.1")));
    assert!(e.admits(ip("2001:db8::5")));
    assert!(e.admits(ip("192.0.2.7")));
    assert!(!e.admits(ip("192.0.2.8")));
    assert!(!e.admits(ip("::1")));
    assert_eq!(
        e.identity(0, 0, &[1, 2]),
        Identity {
            uid: 1000,
            gid: 100,
            gids: Default::default()
        }
    );

    let e = parse_export("x=rel/dir,no_root_squash").unwrap();
    assert_eq!(e.squash, Squash::None);
    assert_eq!(e.dir, PathBuf::from("rel/dir"));
    assert_eq!(
        e.identity(0, 0, &[0]),
        Identity {
            uid: 0,
            gid: 0,
            gids: Groups::from_slice(&[0])
        }
    );
    let e = parse_export("x=/d,root_squash,anonuid=7").unwrap();
    assert_eq!(
        e.identity(0, 0, &[0]),
        Identity {
            uid: 7,
            gid: 65534,
            gids: Groups::from_slice(&[65534])
        }
    );
}

#[test]
fn bad_names_are_refused() {
    for name in ["", " ", ".", "..", "a/b", "/a", "a b", "a\tb", "a,b"] {
        let line = format!("{name}=/srv");
        match parse_export(&line) {
            Err(ExportErrorKind::BadName { .. }) => {}
            // "a,b=/srv" has a comma in the name.
            other => panic!("{line:?}: {other:?}"),
        }
    }
    // Dots inside a name are fine.
    assert_eq!(parse_export("a.b..c=/srv").unwrap().name, "a.b..c");
}

#[test]
fn bad_lines_say_what_is_wrong() {
    use ExportErrorKind::*;
    assert_eq!(kind("/srv/data"), NoEquals);
    assert_eq!(kind("data="), NoDir("data".into()));
    assert_eq!(kind("data=,all_squash"), NoDir("data".into()));
    assert_eq!(kind("data=/srv,rw"), UnknownOption("rw".into()));
    assert_eq!(kind("data=/srv,clients"), UnknownOption("clients".into()));
    assert_eq!(
        kind("data=/srv,root_squash=1"),
        UnknownOption("root_squash=1".into())
    );
    assert_eq!(kind("data=/srv,,all_squash"), EmptyOption);
    assert_eq!(kind("data=/srv,"), EmptyOption);
    assert_eq!(
        kind("data=/srv,all_squash,no_root_squash"),
        Conflict("all_squash", "no_root_squash")
    );
    assert_eq!(
        kind("data=/srv,no_root_squash,root_squash"),
        Conflict("no_root_squash", "root_squash")
    );
    assert_eq!(
        kind("data=/srv,all_squash,all_squash"),
        Repeated("all_squash")
    );
    assert_eq!(kind("data=/srv,anonuid=1,anonuid=2"), Repeated("anonuid"));
    assert_eq!(
        kind("data=/srv,clients=::1,clients=::2"),
        Repeated("clients")
    );
    assert!(matches!(
        kind("data=/srv,anonuid=-1"),
        BadNumber {
            option: "anonuid",
            ..
        }
    ));
    assert!(matches!(
        kind("data=/srv,anongid=4294967296"),
        BadNumber {
            option: "anongid",
            ..
        }
    ));
    assert!(matches!(kind("data=/srv,anongid=+5"), BadNumber { .. }));
    assert!(matches!(kind("data=/srv,anonuid="), BadNumber { .. }));
    assert_eq!(kind("data=/srv,clients="), NoClients);
    assert_eq!(kind("data=/srv,clients=10.0.0.1;"), NoClients);
    assert!(matches!(
        kind("data=/srv,clients=example.org"),
        BadClient(ClientRuleError::BadAddress(_))
    ));
    assert!(matches!(
        kind("data=/srv,clients=10.0.0.1/8"),
        BadClient(ClientRuleError::HostBits { .. })
    ));
}

#[test]
fn a_file_names_the_line_of_its_error() {
    let text = "# exports\n\ndata=/srv/data\n  # indented comment\npub=/srv/pub,rw\n";
    let e = Exports::parse(text).unwrap_err();
    assert_eq!(e.at, Location::Line(5));
    assert_eq!(e.to_string(), "line 5: unknown option \"rw\" (known: clients=, root_squash, all_squash, no_root_squash, anonuid=, anongid=)");
    let e = Exports::parse("a=/x\nb=/y\na=/z\n").unwrap_err();
    assert_eq!(e.at, Location::Line(3));
    assert_eq!(e.kind, ExportErrorKind::Duplicate("a".into()));
    assert!(e.to_string().starts_with("line 3: "), "{e}");
}

#[test]
fn a_file_and_flags_read_alike() {
    let text = "# two exports\r\ndata=/srv/data,clients=127.0.0.1\r\n\r\npub=/srv/pub,all_squash\n";
    let file = Exports::parse(text).unwrap();
    let flags = Exports::from_flags([
        "data=/srv/data,clients=127.0.0.1",
        "pub=/srv/pub,all_squash",
    ])
    .unwrap();
    assert_eq!(file, flags);
    assert_eq!(file.len(), 2);
    assert_eq!(Exports::parse("\n# nothing\n").unwrap(), Exports::new());

    let e = Exports::from_flags(["a=/x", "b=/y,rw"]).unwrap_err();
    assert_eq!(e.at, Location::Flag("b=/y,rw".into()));
    assert!(
        e.to_string()
            .starts_with("--export b=/y,rw: unknown option \"rw\""),
        "{e}"
    );
    let e = Exports::from_flags(["a=/x", "a=/y"]).unwrap_err();
    assert_eq!(e.kind, ExportErrorKind::Duplicate("a".into()));
}

#[test]
fn lookups_by_name_and_path() {
    let all = Exports::from_flags(["data=/srv/data", "data2=/srv/d2"]).unwrap();
    assert_eq!(all.by_name("data2").unwrap().dir, PathBuf::from("/srv/d2"));
    assert!(all.by_name("/data").is_none());
    assert_eq!(all.by_path(b"/data").unwrap().name, "data");
    assert!(all.by_path(b"data").is_none());
    assert!(all.by_path(b"/data/").is_none());
    assert!(all.by_path(b"/dat").is_none());
    assert!(all.by_path(b"/\xff").is_none());

    let (e, rest) = all.by_mount_path(b"/data/sub/dir").unwrap();
    assert_eq!((e.name.as_str(), rest), ("data", &b"/sub/dir"[..]));
    let (e, rest) = all.by_mount_path(b"/data2").unwrap();
    assert_eq!((e.name.as_str(), rest), ("data2", &b""[..]));
    assert!(all.by_mount_path(b"/data3/x").is_none());
    assert!(all.by_mount_path(b"").is_none());
    assert!(all.by_mount_path(b"/").is_none());
    assert_eq!(
        all.iter().map(|e| e.path()).collect::<Vec<_>>(),
        ["/data", "/data2"]
    );
}

#[test]
fn access_through_an_export() {
    use access_bits::*;
    let e = parse_export("data=/srv,anonuid=500,anongid=500").unwrap();
    let root = e.identity(0, 0, &[]);
    let secret = FileOwner {
        mode: 0o100600,
        uid: 0,
        gid: 0,
    };
    let mine = FileOwner {
        mode: 0o100600,
        uid: 500,
        gid: 500,
    };
    assert_eq!(access(&root, &secret, READ), 0);
    assert_eq!(access(&root, &mine, READ | MODIFY), READ);
    let open = parse_export("data=/srv,no_root_squash").unwrap();
    assert_eq!(
        access(&open.identity(0, 0, &[]), &secret, READ | MODIFY),
        READ
    );
}
