//! The registry's rules, driven directly (no network).

use std::time::Duration;

use albatross_proto::domain::{CollectiveOp, ElementType, Generation, WorkerId};

use super::*;

fn worker(i: usize) -> WorkerRef {
    WorkerRef { id: WorkerId::new(format!("w{i}")).expect("id"), incarnation: 1 }
}

fn tag(generation: u64, op_seq: u64) -> OpTag {
    OpTag { generation: Generation(generation), step: 1, op_seq }
}

fn members(n: usize) -> Arc<[Member]> {
    (0..n)
        .map(|i| Member {
            worker: worker(i),
            address: format!("127.0.0.1:{}", 1000 + i),
            rank: i as u32,
        })
        .collect()
}

fn op(tag: OpTag, rank: usize, expect: Expect) -> (ActiveOp, mpsc::Receiver<Incoming>) {
    let (inbox, rx) = mpsc::channel(4);
    let (failures, _) = mpsc::unbounded_channel();
    let op = ActiveOp {
        tag,
        kind: CollectiveOp::AllReduceSum,
        members: members(3),
        rank,
        total_elements: 10,
        expect,
        inbox,
        failures,
    };
    (op, rx)
}

fn ring() -> Expect {
    Expect::Ring { recvs: Arc::from(Vec::new()), dtype: ElementType::F32 }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_millis(200)
}

#[tokio::test]
async fn one_operation_at_a_time_and_tags_must_grow() {
    let registry = Arc::new(Registry::default());
    let (first, _rx) = op(tag(1, 0), 0, ring());
    let guard = registry.begin(first).expect("first op");
    let (second, _rx2) = op(tag(1, 1), 0, ring());
    let busy = registry.begin(second).expect_err("busy");
    assert!(matches!(busy, CollectiveError::Busy { .. }), "{busy}");
    drop(guard);
    let (again, _rx3) = op(tag(1, 0), 0, ring());
    let stale = registry.begin(again).expect_err("same tag again");
    assert!(stale.to_string().contains("not newer than g1/step 1/op 0"), "{stale}");
    let (next, _rx4) = op(tag(2, 0), 0, ring());
    assert!(registry.begin(next).is_ok());
}

#[tokio::test]
async fn an_early_stream_waits_for_the_operation_to_start() {
    let registry = Arc::new(Registry::default());
    let waiting = {
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            registry.claim(tag(1, 0), &worker(2), Instant::now() + Duration::from_secs(5)).await
        })
    };
    tokio::task::yield_now().await;
    let (active, _rx) = op(tag(1, 0), 0, ring());
    let _guard = registry.begin(active).expect("begin");
    let link = waiting.await.expect("join").expect("claimed once started");
    assert_eq!((link.sender_rank, link.world), (2, 3));
}

#[tokio::test]
async fn stale_foreign_duplicate_and_late_streams_are_refused() {
    let registry = Arc::new(Registry::default());
    let (active, _rx) = op(tag(3, 0), 0, ring());
    let guard = registry.begin(active).expect("begin");
    let stale = registry.claim(tag(2, 9), &worker(2), soon()).await.expect_err("stale");
    assert!(matches!(stale, Reject::Stale(ref m) if m.contains("this rank is at g3")), "{stale:?}");
    let stranger = WorkerRef { incarnation: 7, ..worker(2) };
    let foreign = registry.claim(tag(3, 0), &stranger, soon()).await.expect_err("foreign");
    assert!(matches!(foreign, Reject::NotMember(_)), "{foreign:?}");
    // Rank 1 is a member but not rank 0's predecessor (rank 2).
    let wrong = registry.claim(tag(3, 0), &worker(1), soon()).await.expect_err("not pred");
    assert!(matches!(wrong, Reject::NotMember(ref m) if m.contains("predecessor")), "{wrong:?}");
    registry.claim(tag(3, 0), &worker(2), soon()).await.expect("predecessor");
    let dup = registry.claim(tag(3, 0), &worker(2), soon()).await.expect_err("duplicate");
    assert!(matches!(dup, Reject::Duplicate(_)), "{dup:?}");
    drop(guard);
    let late = registry.claim(tag(3, 0), &worker(2), soon()).await.expect_err("ended");
    assert!(matches!(late, Reject::Stale(ref m) if m.contains("already ended")), "{late:?}");
}

#[tokio::test]
async fn a_stream_for_an_operation_that_never_starts_gives_up_at_its_deadline() {
    let registry = Registry::default();
    let started = Instant::now();
    let err = registry.claim(tag(1, 0), &worker(1), soon()).await.expect_err("gives up");
    assert!(matches!(err, Reject::Stale(ref m) if m.contains("did not start")), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn scalar_sums_accept_every_other_member_once() {
    let registry = Arc::new(Registry::default());
    let (active, _rx) = op(tag(1, 0), 1, Expect::Scalar { len: 2 });
    let _guard = registry.begin(active).expect("begin");
    for sender in [0, 2] {
        registry.claim(tag(1, 0), &worker(sender), soon()).await.expect("member");
    }
    let own = registry.claim(tag(1, 0), &worker(1), soon()).await.expect_err("own rank");
    assert!(matches!(own, Reject::NotMember(_)), "{own:?}");
}
