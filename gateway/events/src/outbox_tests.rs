//! Unit tests of `outbox.rs`: durability, torn tails, cursors, reclaim, the disk budget.

use super::*;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("varco-outbox-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[tokio::test]
async fn appends_are_read_back_in_order_across_segments_and_reopen() {
    let d = dir("order");
    let ob = Outbox::open(&d, 1 << 16, 1 << 30).unwrap();
    let mut last = 0;
    for i in 0..2000u32 {
        last = ob.append(vec![Bytes::from(format!("event-{i}-{}", "x".repeat(100)))]).await.unwrap();
    }
    assert_eq!(last, 2000);
    assert!(ob.segments.lock().files.len() > 2, "segments did not roll");
    let mut r = ob.reader(1500);
    let (seq, p) = r.next().await.unwrap();
    assert_eq!(seq, 1500);
    assert!(p.starts_with(b"event-1499-"));
    drop(r);
    // A second process may not open the same folder.
    assert!(Outbox::open(&d, 1 << 16, 1 << 30).is_err());
    drop(ob);
    let ob = Outbox::open(&d, 1 << 16, 1 << 30).unwrap();
    assert_eq!(ob.committed(), 2000);
    assert_eq!(ob.append(vec![Bytes::from_static(b"after")]).await.unwrap(), 2001);
    let mut r = ob.reader(1);
    for want in 1..=2001 {
        assert_eq!(r.next().await.unwrap().0, want);
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_its_sequence_reused() {
    let d = dir("torn");
    let ob = Outbox::open(&d, 1 << 20, 1 << 30).unwrap();
    ob.append(vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")]).await.unwrap();
    drop(ob);
    // A crash mid-write: half a record after the synced ones.
    let path = segment_path(&d, 1);
    let mut partial = Vec::new();
    encode(3, b"three-never-acknowledged", &mut partial);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&partial[..partial.len() - 5]).unwrap();
    drop(f);
    let ob = Outbox::open(&d, 1 << 20, 1 << 30).unwrap();
    assert_eq!(ob.committed(), 2);
    assert_eq!(ob.append(vec![Bytes::from_static(b"three")]).await.unwrap(), 3);
    let mut r = ob.reader(1);
    let got: Vec<Bytes> =
        [r.next().await.unwrap(), r.next().await.unwrap(), r.next().await.unwrap()].into_iter().map(|x| x.1).collect();
    assert_eq!(got, vec![Bytes::from_static(b"one"), Bytes::from_static(b"two"), Bytes::from_static(b"three")]);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn the_budget_refuses_when_consumers_lag_and_frees_when_they_pass() {
    let d = dir("budget");
    let ob = Outbox::open(&d, 1 << 16, 1 << 18).unwrap();
    let mut c = ob.cursor("relay");
    let payload = Bytes::from(vec![b'x'; 4000]);
    let mut refused = false;
    for _ in 0..200 {
        match ob.append(vec![payload.clone()]).await {
            Ok(_) => {}
            Err(OutboxError::Full(_)) => {
                refused = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused, "the budget never refused");
    let segments = ob.segments.lock().files.len();
    c.advance(ob.committed() + 1);
    c.save().unwrap();
    // Once the consumer passed them, the old segments go and appends are taken again.
    ob.append(vec![payload.clone()]).await.unwrap();
    assert!(ob.segments.lock().files.len() < segments, "passed segments were not deleted");
    assert_eq!(ob.cursor("relay").next(), ob.committed());
    let _ = std::fs::remove_dir_all(&d);
}
