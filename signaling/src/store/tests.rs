//! The two stores run through the same exercises.

use super::*;

fn name(s: &str) -> UserName {
    UserName::new(s).unwrap()
}

/// The behaviour every store must have.
pub(crate) fn exercise(store: &mut dyn Store) {
    let (a, b) = (name("alice"), name("bob"));
    let token = store.create_user(&a).unwrap();
    assert_eq!(token.len(), 64);
    assert!(matches!(store.create_user(&a), Err(Error::UserExists(_))));
    let acct = store.account(&a).unwrap().unwrap();
    assert_eq!(acct.token_hash, hash_token(&token));
    assert_eq!((acct.status, acct.note.as_str()), (Status::Online, ""));
    store.set_presence(&a, Status::Away, "lunch").unwrap();
    assert_eq!(store.account(&a).unwrap().unwrap().status, Status::Away);
    assert_eq!(store.account(&b).unwrap(), None);

    let rel = Relation {
        link: Link::Outgoing,
        blocked: false,
    };
    store.set_relation(&a, &b, Some(rel)).unwrap();
    store
        .set_relation(
            &a,
            &name("carol"),
            Some(Relation {
                link: Link::Stranger,
                blocked: true,
            }),
        )
        .unwrap();
    assert_eq!(store.relation(&a, &b).unwrap(), Some(rel));
    assert_eq!(store.relations(&a).unwrap().len(), 2);
    assert_eq!(store.relations(&a).unwrap()[0].0, b);
    store.set_relation(&a, &b, None).unwrap();
    assert_eq!(store.relation(&a, &b).unwrap(), None);

    assert_eq!(
        store
            .push_undelivered(&b, 10, Some((&a, "m1")), "one")
            .unwrap(),
        None
    );
    assert_eq!(store.push_undelivered(&b, 11, None, "two").unwrap(), None);
    assert_eq!(
        store
            .push_undelivered(&b, 12, Some((&a, "m1")), "again")
            .unwrap(),
        Some(10)
    );
    let kept: Vec<u64> = store
        .undelivered(&b)
        .unwrap()
        .iter()
        .map(|s| s.seq)
        .collect();
    assert_eq!(kept, vec![10, 11]);
    store.remove_undelivered(10).unwrap();
    assert_eq!(
        store.undelivered(&b).unwrap(),
        vec![Stored {
            seq: 11,
            body: "two".into()
        }]
    );
    assert!(store.undelivered(&a).unwrap().is_empty());

    assert_eq!(store.seq_floor().unwrap(), 1);
    store.set_seq_floor(4097).unwrap();
    assert_eq!(store.seq_floor().unwrap(), 4097);

    // Pages in seq order, and what a mailbox holds.
    let carol = name("carol");
    for seq in [30, 20, 40, 50] {
        store.push_undelivered(&carol, seq, None, "xy").unwrap();
    }
    let page = |store: &mut dyn Store, after, limit| -> Vec<u64> {
        let kept = store.undelivered_after(&carol, after, limit).unwrap();
        kept.iter().map(|s| s.seq).collect()
    };
    assert_eq!(page(store, 0, 2), vec![20, 30]);
    assert_eq!(page(store, 30, 10), vec![40, 50]);
    assert_eq!(
        store.mailbox(&carol).unwrap(),
        Mailbox {
            messages: 4,
            bytes: 8
        }
    );
    store.remove_undelivered_many(&[20, 40]).unwrap();
    assert_eq!(page(store, 0, 10), vec![30, 50]);

    // Tokens change and accounts go, each moving the generation on.
    let g0 = store.accounts_generation().unwrap();
    let fresh = store.rotate_token(&a).unwrap().unwrap();
    assert_eq!(
        store.account(&a).unwrap().unwrap().token_hash,
        hash_token(&fresh)
    );
    assert!(store.rotate_token(&name("nobody")).unwrap().is_none());
    assert!(store.set_token_hash(&a, REVOKED).unwrap());
    let g1 = store.accounts_generation().unwrap();
    assert!(g1 > g0);
    store.create_user(&carol).unwrap();
    store.set_relation(&a, &carol, Some(rel)).unwrap();
    store
        .push_undelivered(&a, 60, Some((&carol, "c1")), "from carol")
        .unwrap();
    assert!(store.delete_user(&carol).unwrap());
    assert!(!store.delete_user(&carol).unwrap());
    assert!(store.accounts_generation().unwrap() > g1);
    assert_eq!(store.account(&carol).unwrap(), None);
    assert!(store
        .relations(&a)
        .unwrap()
        .iter()
        .all(|(o, _)| *o != carol));
    assert!(store.undelivered(&carol).unwrap().is_empty());
    assert!(store.undelivered(&a).unwrap().is_empty());
}

#[test]
fn hashes_are_compared_whole() {
    let h = hash_token("t");
    assert!(hashes_match(&h, &h));
    for i in [0, 17, 31] {
        let mut other = h;
        other[i] ^= 1;
        assert!(!hashes_match(&h, &other), "byte {i}");
    }
}

#[test]
fn the_database_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("duet.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store.create_user(&name("alice")).unwrap();
    for file in ["duet.db", "duet.db-wal"] {
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}

#[test]
fn memory_store_behaves() {
    exercise(&mut MemoryStore::default());
}

#[test]
fn sqlite_store_behaves_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("duet.db");
    exercise(&mut SqliteStore::open(&path).unwrap());
    let mut again = SqliteStore::open(&path).unwrap();
    assert_eq!(again.seq_floor().unwrap(), 4097);
    assert_eq!(again.undelivered(&name("bob")).unwrap().len(), 1);
    assert_eq!(
        again.account(&name("alice")).unwrap().unwrap().note,
        "lunch"
    );
}

#[test]
fn tokens_are_random_and_hashed() {
    let (t1, t2) = (new_token(), new_token());
    assert_ne!(t1, t2);
    assert!(t1.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(hash_token(&t1), hash_token(&t2));
    assert_eq!(
        hex::encode(hash_token("abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
