//! Actor tests of the terminal sessions, on the fake runtime's echo PTY: a supervisor and its
//! sessions driven through the [`Terminals`] handle the gateway uses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use agenttier_crds::Sandbox;
use bytes::Bytes;
use ractor::Actor;

use crate::runtime::fake::{FAKE_CRASH, FAKE_EOF, FakeRuntime};
use crate::runtime::{Runtime, WorkspaceSeed};
use crate::sandbox::{ActorRegistry, SandboxKey, SandboxNotice, StopReason, runtime_id};
use crate::store::sqlite::SqliteStore;
use crate::store::{EventFilter, Store};

use super::*;

struct Rig {
    terminals: Terminals,
    fake: Arc<FakeRuntime>,
    store: Arc<dyn Store>,
    notices: tokio::sync::broadcast::Sender<SandboxNotice>,
    sandbox: Sandbox,
}

async fn rig() -> Rig {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    let fake = Arc::new(FakeRuntime::default());
    let (notices, _) = tokio::sync::broadcast::channel(16);
    let args = TerminalSupervisorArgs {
        store: store.clone(),
        registry: ActorRegistry::default(),
        notices: notices.clone(),
    };
    let (supervisor, _) = Actor::spawn(None, TerminalSupervisor, args).await.unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(supervisor);
    let terminals = Terminals::new(rx, fake.clone() as Arc<dyn Runtime>, store.clone());
    let mut sandbox = Sandbox::new("box", Default::default());
    sandbox.metadata.namespace = Some("default".into());
    sandbox.metadata.uid = Some("uid-1".into());
    let id = runtime_id(&sandbox);
    fake.prepare(&id, WorkspaceSeed::Empty).await.unwrap();
    fake.start(&id, &Default::default()).await.unwrap();
    Rig {
        terminals,
        fake,
        store,
        notices,
        sandbox,
    }
}

fn options(window: Duration) -> SessionOptions {
    SessionOptions {
        reconnect_window: window,
        ring_bytes: 1024,
    }
}

async fn open(rig: &Rig, can_write: bool, window: Duration) -> Attachment {
    rig.terminals
        .open(OpenTerminal {
            sandbox: rig.sandbox.clone(),
            user: "alice".into(),
            can_write,
            cols: 120,
            rows: 40,
            options: options(window),
        })
        .await
        .unwrap()
}

async fn next(events: &mut tokio::sync::mpsc::Receiver<ClientEvent>) -> ClientEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("no event within 5s")
        .expect("session closed the channel")
}

fn key() -> SandboxKey {
    SandboxKey::new("default", "box")
}

#[tokio::test]
async fn input_echoes_to_every_client_and_viewers_cannot_type() {
    let rig = rig().await;
    let mut owner = open(&rig, true, Duration::from_secs(30)).await;
    assert_eq!(owner.session_id.len(), 32);
    assert_eq!(
        rig.fake.pty_size(&runtime_id(&rig.sandbox)),
        Some((120, 40))
    );
    let mut viewer = rig
        .terminals
        .attach(&key(), &owner.session_id, false)
        .await
        .unwrap();
    owner.client.input(Bytes::from("ls\r"));
    for events in [&mut owner.events, &mut viewer.events] {
        assert_eq!(
            next(events).await,
            ClientEvent::Output {
                data: Bytes::from("ls\r"),
                end: 3
            }
        );
    }
    viewer.client.input(Bytes::from("rm -rf /\r"));
    assert!(
        matches!(next(&mut viewer.events).await, ClientEvent::Notice(n) if n.contains("read-only"))
    );
    viewer.client.resize(10, 10);
    owner.client.resize(90, 30);
    owner.client.input(Bytes::from("x"));
    assert!(
        matches!(next(&mut owner.events).await, ClientEvent::Output { data, .. } if data == "x")
    );
    assert_eq!(rig.fake.pty_size(&runtime_id(&rig.sandbox)), Some((90, 30)));
    // Another sandbox's session id is not found.
    let other = SandboxKey::new("default", "other");
    assert!(
        rig.terminals
            .attach(&other, &owner.session_id, true)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_reconnect_within_the_window_replays_what_was_missed() {
    let rig = rig().await;
    let first = open(&rig, true, Duration::from_secs(30)).await;
    let id = first.session_id.clone();
    let mut events = first.events;
    first.client.input(Bytes::from("seen"));
    let ClientEvent::Output { end, .. } = next(&mut events).await else {
        panic!("no output");
    };
    first.client.delivered(end);
    // A second client types while the first is away, then the first comes back.
    let second = rig.terminals.attach(&key(), &id, true).await.unwrap();
    drop(first.client);
    drop(events);
    second.client.input(Bytes::from("missed"));
    let mut second_events = second.events;
    assert!(matches!(
        next(&mut second_events).await,
        ClientEvent::Output { .. }
    ));
    drop(second.client);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut back = rig.terminals.attach(&key(), &id, true).await.unwrap();
    assert_eq!(
        next(&mut back.events).await,
        ClientEvent::Output {
            data: Bytes::from("missed"),
            end: 10
        },
        "only what the last client missed is replayed"
    );
}

#[tokio::test]
async fn after_the_window_the_session_is_gone_and_the_pty_hung_up() {
    let rig = rig().await;
    let attachment = open(&rig, true, Duration::from_millis(200)).await;
    let id = attachment.session_id.clone();
    drop(attachment);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let err = rig.terminals.attach(&key(), &id, true).await.err().unwrap();
    assert!(err.to_string().contains("not found"), "{err}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while rig.fake.pty_hangups() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the PTY was never hung up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let events = rig
        .store
        .list_events(&EventFilter {
            object_name: Some("box".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    assert!(
        reasons.contains(&OPENED_REASON) && reasons.contains(&CLOSED_REASON),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn sandbox_notices_warn_and_close_with_the_contract_reason() {
    let rig = rig().await;
    let mut a = open(&rig, true, Duration::from_secs(30)).await;
    rig.notices
        .send(SandboxNotice::StopPending {
            key: key(),
            reason: StopReason::IdleTimeout,
            grace: Duration::from_secs(60),
        })
        .unwrap();
    assert_eq!(
        next(&mut a.events).await,
        ClientEvent::Notice("sandbox stops in 60s (idle timeout)".into())
    );
    // A notice about another sandbox changes nothing here.
    rig.notices
        .send(SandboxNotice::Deleted {
            key: SandboxKey::new("default", "other"),
        })
        .unwrap();
    rig.notices
        .send(SandboxNotice::Stopped {
            key: key(),
            reason: StopReason::User,
        })
        .unwrap();
    assert_eq!(
        next(&mut a.events).await,
        ClientEvent::Closed {
            reason: "sandbox_stopped",
            code: CLOSE_SANDBOX
        }
    );
    assert!(
        rig.terminals
            .attach(&key(), &a.session_id, true)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn shell_exit_ends_the_session() {
    let rig = rig().await;
    let mut a = open(&rig, true, Duration::from_secs(30)).await;
    a.client.input(Bytes::from_static(&[FAKE_EOF]));
    assert!(matches!(
        next(&mut a.events).await,
        ClientEvent::Output { .. }
    ));
    assert_eq!(
        next(&mut a.events).await,
        ClientEvent::Exited { code: Some(0) }
    );
}

#[tokio::test]
async fn a_broken_pty_waits_for_the_sandbox_notice_then_closes() {
    let rig = rig().await;
    let mut a = open(&rig, true, Duration::from_secs(30)).await;
    a.client.input(Bytes::from_static(&[FAKE_CRASH]));
    // The stop notice that follows a killed agent gives the real reason.
    tokio::time::sleep(Duration::from_millis(100)).await;
    rig.notices
        .send(SandboxNotice::Stopped {
            key: key(),
            reason: StopReason::IdleTimeout,
        })
        .unwrap();
    assert_eq!(
        next(&mut a.events).await,
        ClientEvent::Closed {
            reason: "idle_timeout",
            code: CLOSE_SANDBOX
        }
    );
    // Without a notice the clients hear "error" once the grace passed.
    let mut b = open(&rig, true, Duration::from_secs(30)).await;
    b.client.input(Bytes::from_static(&[FAKE_CRASH]));
    assert_eq!(
        next(&mut b.events).await,
        ClientEvent::Closed {
            reason: "error",
            code: CLOSE_SANDBOX
        }
    );
}
