//! The initiator's control requests against our target, in process: a
//! LOGICAL UNIT RESET returns when the target answered it, and a logout
//! returns when the Logout Response came (the target has dropped the
//! session by then), not after a guessed sleep.

use std::time::{Duration, Instant};

use bytes::Bytes;
use iolab_iscsi::initiator::{InitiatorOptions, IscsiUrl, Session};
use iolab_iscsi::target::{ServerConfig, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lun_reset_and_logout_wait_for_their_responses() {
    let cfg = ServerConfig::default_lab("127.0.0.1:0".parse().unwrap(), 16 << 20);
    let target = Target::start(cfg).await.unwrap();
    let url = IscsiUrl::parse(&target.lun_urls()[0], false).unwrap();
    let s = Session::connect(&url, &InitiatorOptions::default())
        .await
        .unwrap();
    s.write(0, Bytes::from(vec![7u8; 4096]), 512).await.unwrap();
    s.lun_reset()
        .await
        .expect("LOGICAL UNIT RESET answered with function complete");
    // After a reset the LU reports a unit attention once; the data is intact.
    let mut got = s.read(0, 8, 512).await;
    if got.is_err() {
        got = s.read(0, 8, 512).await;
    }
    assert_eq!(&got.expect("read after the reset")[..], &[7u8; 4096][..]);
    assert_eq!(target.sessions().len(), 1);
    let t = Instant::now();
    s.logout().await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "logout took {:?}",
        t.elapsed()
    );
    // The Logout Response leaves the target after it let the connection go.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !target.sessions().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        target.sessions().is_empty(),
        "the target still has the session"
    );
}
