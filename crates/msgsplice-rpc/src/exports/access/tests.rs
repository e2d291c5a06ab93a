use super::access_bits::*;
use super::*;

const ALL: u32 = READ | LOOKUP | MODIFY | EXTEND | DELETE | EXECUTE;

fn who(uid: u32, gid: u32, gids: &[u32]) -> Identity {
    Identity {
        uid,
        gid,
        gids: gids.into(),
    }
}

fn file(perm: u32, uid: u32, gid: u32) -> FileOwner {
    FileOwner {
        mode: 0o100000 | perm,
        uid,
        gid,
    }
}

fn dir(perm: u32, uid: u32, gid: u32) -> FileOwner {
    FileOwner {
        mode: 0o040000 | perm,
        uid,
        gid,
    }
}

#[test]
fn one_class_applies_owner_then_group_then_other() {
    let f = file(0o640, 1000, 100);
    let owner = who(1000, 1, &[]);
    let group = who(2000, 100, &[]);
    let supp = who(2000, 1, &[7, 100]);
    let other = who(2000, 1, &[7]);
    assert_eq!(access(&owner, &f, ALL), READ);
    assert_eq!(access(&group, &f, ALL), READ);
    assert_eq!(access(&supp, &f, ALL), READ);
    assert_eq!(access(&other, &f, ALL), 0);
    assert!(may_read(&supp, &f) && !may_read(&other, &f));

    // The owner's bits decide for the owner, even when the group's or the
    // others' would allow more.
    let odd = file(0o047, 1000, 100);
    assert_eq!(access(&owner, &odd, ALL), 0);
    assert!(!may_read(&owner, &odd));
    assert_eq!(access(&group, &odd, ALL), READ);
    assert_eq!(access(&other, &odd, ALL), READ | EXECUTE);
}

#[test]
fn mode_0600_is_the_owners_alone() {
    let f = file(0o600, 1000, 100);
    assert!(may_read(&who(1000, 100, &[]), &f));
    assert!(!may_read(&who(1001, 100, &[100]), &f));
    assert!(!may_read(&who(65534, 65534, &[]), &f));
    assert_eq!(access(&who(1000, 0, &[]), &f, ALL), READ);
}

#[test]
fn only_what_is_asked_is_answered() {
    let f = file(0o755, 1000, 100);
    let u = who(1000, 100, &[]);
    assert_eq!(access(&u, &f, ALL), READ | EXECUTE);
    assert_eq!(access(&u, &f, READ), READ);
    assert_eq!(access(&u, &f, MODIFY | EXTEND | DELETE), 0);
    assert_eq!(access(&u, &f, LOOKUP), 0);
}

#[test]
fn directories_list_with_r_and_search_with_x() {
    let d = dir(0o711, 1000, 100);
    let owner = who(1000, 100, &[]);
    let other = who(2000, 200, &[]);
    assert_eq!(access(&owner, &d, ALL), READ | LOOKUP);
    assert_eq!(access(&other, &d, ALL), LOOKUP);
    assert!(may_search_dir(&other, &d) && !may_list_dir(&other, &d));
    assert!(may_list_dir(&owner, &d));

    let r_only = dir(0o744, 1000, 100);
    assert_eq!(access(&other, &r_only, ALL), READ);
    assert!(may_list_dir(&other, &r_only) && !may_search_dir(&other, &r_only));

    // The directory checks are for directories only, and may_read for
    // files only.
    assert!(!may_read(&owner, &d));
    assert!(!may_search_dir(&owner, &file(0o777, 1000, 100)));
    assert!(!may_list_dir(&owner, &file(0o777, 1000, 100)));
}

#[test]
fn root_reads_and_searches_everything_but_executes_only_executables() {
    let root = who(0, 0, &[]);
    assert_eq!(access(&root, &file(0o000, 1000, 100), ALL), READ);
    assert!(may_read(&root, &file(0o000, 1000, 100)));
    assert_eq!(access(&root, &file(0o001, 1000, 100), ALL), READ | EXECUTE);
    assert_eq!(access(&root, &file(0o600, 1000, 100), ALL), READ);
    assert_eq!(access(&root, &dir(0o000, 1000, 100), ALL), READ | LOOKUP);
    assert!(may_list_dir(&root, &dir(0o000, 1, 1)) && may_search_dir(&root, &dir(0o000, 1, 1)));
}

#[test]
fn squashing_maps_root_or_everyone() {
    let (au, ag) = (65534, 65534);
    assert_eq!(
        Squash::Root.apply(au, ag, 0, 0, &[0, 5]),
        who(au, ag, &[ag, 5])
    );
    assert_eq!(
        Squash::Root.apply(au, ag, 1000, 100, &[5]),
        who(1000, 100, &[5])
    );
    // gid 0 goes even for a user that is not root.
    assert_eq!(Squash::Root.apply(au, ag, 1000, 0, &[]), who(1000, ag, &[]));
    assert_eq!(Squash::All.apply(au, ag, 1000, 100, &[5]), who(au, ag, &[]));
    assert_eq!(Squash::All.apply(7, 8, 0, 0, &[0]), who(7, 8, &[]));
    assert_eq!(Squash::None.apply(au, ag, 0, 0, &[3]), who(0, 0, &[3]));
    assert_eq!(Squash::default(), Squash::Root);
}

#[test]
fn a_squashed_root_is_an_ordinary_user() {
    let secret = file(0o600, 0, 0);
    let me = Squash::Root.apply(65534, 65534, 0, 0, &[]);
    assert!(!may_read(&me, &secret));
    let unsquashed = Squash::None.apply(65534, 65534, 0, 0, &[]);
    assert!(may_read(&unsquashed, &file(0o000, 1000, 1000)));
    // A file owned by the anonymous user is the squashed root's own.
    assert!(may_read(&me, &file(0o400, 65534, 1)));
    // Group 0's bits no longer apply to a squashed root group.
    let group0 = file(0o040, 2000, 0);
    assert!(!may_read(
        &Squash::Root.apply(65534, 65534, 1000, 0, &[]),
        &group0
    ));
    assert!(may_read(
        &Squash::None.apply(65534, 65534, 1000, 0, &[]),
        &group0
    ));
}
