//! The export against a real client: libnfs-utils (nfs-ls, nfs-cat, nfs-cp)
//! with its default options (so MOUNT EXPORT is called after MNT).

mod common;

use std::path::Path;

use common::{checksum, nfs_ok, nfs_tool, pattern, TestServer};

/// Sizes around XDR padding, the page size, and the 1 MiB READ maximum
/// (where a read splits into two records).
const SIZES: &[usize] = &[
    0,
    1,
    3,
    4,
    5,
    4095,
    4096,
    4097,
    8191,
    8192,
    65535,
    65536,
    65537,
    (1 << 20) - 1,
    1 << 20,
    (1 << 20) + 1,
    (2 << 20) + 4093,
];

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn tree(root: &Path) {
    write(&root.join("hello.txt"), b"hello, world\n");
    write(&root.join("docs/a.md"), b"# a\n");
    write(&root.join("docs/deeper/b.txt"), b"b\n");
    std::fs::create_dir(root.join("empty")).unwrap();
    std::os::unix::fs::symlink("hello.txt", root.join("link")).unwrap();
    for (i, &n) in SIZES.iter().enumerate() {
        write(&root.join(format!("sizes/f{n}")), &pattern(n, i as u64 + 1));
    }
}

#[test]
fn nfs_ls_lists_the_tree() {
    let s = TestServer::start(tree);
    let out = String::from_utf8(nfs_ok("nfs-ls", &["-R", &s.url])).unwrap();
    for want in [
        "hello.txt",
        "docs",
        "docs/a.md",
        "docs/deeper",
        "docs/deeper/b.txt",
        "empty",
        "link",
        "sizes/f4096",
        "sizes/f1048577",
    ] {
        assert!(
            out.lines().any(|l| l.ends_with(&format!(" {want}"))),
            "nfs-ls -R output lacks {want}:\n{out}"
        );
    }
    // Sizes are reported as stored.
    let line = out.lines().find(|l| l.ends_with(" sizes/f65537")).unwrap();
    assert!(line.contains(" 65537 "), "{line}");
    // A directory with a few hundred entries needs several READDIRPLUS calls.
    drop(s);
    let s = TestServer::start(|root| {
        for i in 0..600 {
            write(
                &root.join(format!("many/entry-with-a-longish-name-{i:04}")),
                b"x",
            );
        }
    });
    let out = String::from_utf8(nfs_ok("nfs-ls", &[&s.url_for("many")])).unwrap();
    assert_eq!(out.lines().count(), 600, "{out}");
}

#[test]
fn nfs_cat_small_files_and_sizes_around_boundaries() {
    let s = TestServer::start(tree);
    assert_eq!(
        nfs_ok("nfs-cat", &[&s.url_for("hello.txt")]),
        b"hello, world\n"
    );
    assert_eq!(
        nfs_ok("nfs-cat", &[&s.url_for("docs/deeper/b.txt")]),
        b"b\n"
    );
    for (i, &n) in SIZES.iter().enumerate() {
        let got = nfs_ok("nfs-cat", &[&s.url_for(&format!("sizes/f{n}"))]);
        assert_eq!(got.len(), n, "size of f{n}");
        assert!(got == pattern(n, i as u64 + 1), "content of f{n}");
    }
}

#[test]
fn nfs_cat_of_missing_file_fails_cleanly() {
    let s = TestServer::start(tree);
    let out = nfs_tool("nfs-cat", &[&s.url_for("nope.txt")]);
    assert!(!out.status.success());
    // The server is still fine.
    assert_eq!(nfs_ok("nfs-cat", &[&s.url_for("docs/a.md")]), b"# a\n");
}

fn copy_and_compare(size: usize) {
    let s = TestServer::start(|root| {
        // Written in chunks: the pattern of a 256 MiB file is not held twice.
        use std::io::Write;
        let mut f = std::fs::File::create(root.join("large.bin")).unwrap();
        let chunk = 8 << 20;
        let mut left = size;
        let mut seed = 1;
        while left > 0 {
            let n = left.min(chunk);
            f.write_all(&pattern(n, seed)).unwrap();
            left -= n;
            seed += 1;
        }
    });
    let dest = s.dir.path().join("copy.bin");
    nfs_ok("nfs-cp", &[&s.url_for("large.bin"), dest.to_str().unwrap()]);
    let want = checksum(&s.root().join("large.bin"));
    let got = checksum(&dest);
    assert_eq!(got.0, size as u64, "copied length");
    assert_eq!(got, want, "checksums of source and copy");
    // nfs-cp refuses to overwrite: a second copy must go elsewhere.
    let again = s.dir.path().join("copy2.bin");
    nfs_ok(
        "nfs-cp",
        &[&s.url_for("large.bin"), again.to_str().unwrap()],
    );
    assert_eq!(checksum(&again), want);
}

#[test]
fn nfs_cp_large_file_64mib() {
    copy_and_compare((64 << 20) + 12345);
}
