//! One conformance suite for both stores: every test here runs against
//! SQLite and against a real PostgreSQL (a schema of its own per test).

mod common;

use std::sync::Arc;

use common::pg::PgSchema;
use mailroom_backend::pg::PgStore;
use mailroom_backend::queue::{
    AttemptRecord, Enqueued, IdempotencyKey, Lease, ListFilter, NewMessage, Queue, RecipientOutcome,
};
use mailroom_backend::store::{
    CertRow, CertSlot, EventAbout, FailureStore, NewDelivery, ProfileDelete, ProfileRow, Record,
    SessionStore, SettingsStore, SqliteStore, StoreError, WebhookRow, WebhookStore,
};
use mailroom_shared::api::Stage;
use mailroom_shared::sending::{Attempt, Paused, Status};
use serde_json::{json, Value};

/// Where a test's database is; [`Fixture::open`] opens it again, as another
/// server would.
enum Fixture {
    Sqlite(tempfile::TempDir),
    Postgres(PgSchema),
}

struct Stores {
    settings: Arc<dyn SettingsStore>,
    queue: Arc<dyn Queue>,
    sessions: Arc<dyn SessionStore>,
    failures: Arc<dyn FailureStore>,
}

impl Fixture {
    async fn sqlite() -> Fixture {
        Fixture::Sqlite(tempfile::tempdir().unwrap())
    }

    async fn postgres() -> Fixture {
        Fixture::Postgres(PgSchema::new().await)
    }

    /// Rows in `table`, read past the traits (to see what a delete left).
    async fn rows(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match self {
            Fixture::Sqlite(dir) => rusqlite::Connection::open(dir.path().join("m.db"))
                .unwrap()
                .query_row(&sql, [], |r| r.get(0))
                .unwrap(),
            Fixture::Postgres(schema) => {
                let (c, conn) = tokio_postgres::connect(&schema.url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                c.query_one(&sql, &[]).await.unwrap().get(0)
            }
        }
    }

    /// Runs one statement past the traits.
    async fn exec(&self, sql: &str) {
        match self {
            Fixture::Sqlite(dir) => {
                let c = rusqlite::Connection::open(dir.path().join("m.db")).unwrap();
                // As the store opens it.
                c.pragma_update(None, "foreign_keys", "ON").unwrap();
                c.execute_batch(sql).unwrap();
            }
            Fixture::Postgres(schema) => {
                let (c, conn) = tokio_postgres::connect(&schema.url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                c.batch_execute(sql).await.unwrap();
            }
        }
    }

    fn is_pg(&self) -> bool {
        matches!(self, Fixture::Postgres(_))
    }

    async fn open(&self) -> Stores {
        match self {
            Fixture::Sqlite(dir) => {
                let s = Arc::new(SqliteStore::open(&dir.path().join("m.db")).unwrap());
                Stores {
                    settings: s.clone(),
                    queue: s.clone(),
                    sessions: s.clone(),
                    failures: s,
                }
            }
            Fixture::Postgres(schema) => {
                let s = Arc::new(
                    PgStore::connect(&schema.url, common::pg::tls(None))
                        .await
                        .unwrap(),
                );
                Stores {
                    settings: s.clone(),
                    queue: s.clone(),
                    sessions: s.clone(),
                    failures: s,
                }
            }
        }
    }
}

/// Each test, once per store.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Fixture::sqlite().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Fixture::postgres().await).await
            }
        }
    )*};
}

both!(
    webhook_events_commit_with_the_attempts_they_report_or_not_at_all,
    a_late_webhook_outcome_leaves_the_delivery_to_its_holder,
    the_last_event_of_a_type_is_found_per_profile_or_app,
    a_pending_certificate_passes_and_a_save_makes_it_active_for_every_server,
    concurrent_saves_conflict_and_one_wins,
    the_same_idempotency_key_queues_one_message,
    a_message_is_claimed_once_and_a_lapsed_lease_is_taken_over,
    a_lapsed_retry_of_a_partly_sent_message_hands_out_only_the_rest,
    cancelling_a_partly_sent_message_cancels_the_recipients_left,
    the_day_keeps_only_the_recipients_an_attempt_delivered,
    a_claim_takes_at_most_its_bytes_of_bodies,
    parallel_claimers_never_share_a_message,
    pause_is_shared_and_keeps_its_first_since,
    retention_purges_final_messages_only,
    a_large_purge_goes_in_batches,
    a_session_made_on_one_server_is_valid_on_another,
    the_delivery_slot_is_shared_where_servers_share_a_store,
    failed_sign_ins_are_counted_for_every_server_and_start_over_after_the_window,
    search_takes_backslash_percent_and_underscore_literally,
    app_limits_hold_under_parallel_submissions,
    queued_max_counts_the_queue_and_a_batch_of_changed_limits,
    window_limits_count_submissions_per_second_and_forget_them_after_a_day,
    due_messages_are_claimed_in_turn_per_app,
    apps_keep_their_limits_and_changes,
    released_messages_are_queued_again_for_any_server,
    a_release_gives_back_only_what_its_owner_holds,
    a_late_attempt_leaves_the_message_to_whoever_holds_it,
    deleting_a_message_takes_its_recipients_and_attempts,
    profiles_keep_their_own_settings_pause_and_messages,
    the_daily_count_holds_for_parallel_servers,
    connection_slots_are_shared_and_lapse,
    due_messages_of_a_profile_are_claimed_in_turn_per_app,
    a_quota_wait_adds_no_attempt_and_never_expires,
    an_expired_message_a_recipient_had_ends_sent_with_its_event,
    a_webhooks_new_secret_keeps_the_old_one_until_its_time,
);

/// A new secret moves the current one to `previous` with its end; a
/// second one moves the new one there and the oldest is gone; no webhook
/// (or a NUL in its id) changes nothing. *End old secret* drops the
/// previous one before its time, and leaves the current one.
async fn a_webhooks_new_secret_keeps_the_old_one_until_its_time(f: Fixture) {
    let (hooks, id) = store_with_webhook(&f, "message.sent").await;
    let row = |hooks: Arc<dyn WebhookStore>| async move {
        let all = hooks.webhooks().await.unwrap();
        (all[0].secret.clone(), all[0].previous.clone())
    };
    assert_eq!(row(hooks.clone()).await, (vec![1], None));
    assert!(hooks
        .replace_webhook_secret(&id, vec![2], 100)
        .await
        .unwrap());
    assert_eq!(row(hooks.clone()).await, (vec![2], Some((vec![1], 100))));
    assert!(hooks
        .replace_webhook_secret(&id, vec![3], 200)
        .await
        .unwrap());
    assert_eq!(row(hooks.clone()).await, (vec![3], Some((vec![2], 200))));
    for missing in ["wh_none", "wh_\0"] {
        assert!(!hooks
            .replace_webhook_secret(missing, vec![9], 300)
            .await
            .unwrap());
    }
    assert_eq!(row(hooks.clone()).await, (vec![3], Some((vec![2], 200))));
    // Past its time, the replaced secret is dropped, not kept.
    assert_eq!(hooks.forget_old_webhook_secrets(199).await.unwrap(), 0);
    assert_eq!(row(hooks.clone()).await, (vec![3], Some((vec![2], 200))));
    assert_eq!(hooks.forget_old_webhook_secrets(200).await.unwrap(), 1);
    assert_eq!(row(hooks.clone()).await, (vec![3], None));
    assert!(hooks
        .replace_webhook_secret(&id, vec![4], 300)
        .await
        .unwrap());
    assert!(hooks.end_old_webhook_secret(&id).await.unwrap());
    assert_eq!(row(hooks.clone()).await, (vec![4], None));
    // Again (none left): the webhook is there, nothing changes.
    assert!(hooks.end_old_webhook_secret(&id).await.unwrap());
    assert_eq!(row(hooks.clone()).await, (vec![4], None));
    for missing in ["wh_none", "wh_\0"] {
        assert!(!hooks.end_old_webhook_secret(missing).await.unwrap());
    }
}

/// `--max-queue-time` ends a message one recipient had as `sent` (the rule
/// of docs/API.md §8), the recipient left `failed`; one nobody had as
/// `failed`; each with its webhook event in the same transaction, at most
/// `limit` a call. Before, both were `failed`, the recipient left `deferred`
/// for ever, and no event went out.
async fn an_expired_message_a_recipient_had_ends_sent_with_its_event(f: Fixture) {
    use mailroom_backend::queue::ExpiryEvents;
    let s = f.open().await;
    let (_hooks, webhook_id) = store_with_webhook(&f, "message.failed").await;
    for id in ["msg_part", "msg_none", "msg_young"] {
        let mut m = message(id, None);
        if id == "msg_young" {
            m.now_unix = T0 + 86_400;
        }
        s.queue.enqueue(m).await.unwrap();
    }
    let now = "2026-11-26T00:00:01Z";
    let claimed = s
        .queue
        .claim("default", T0 + 86_400, 3, &lease("srv", 60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    let mut none = partly_sent("srv", now, T0 + 600);
    none.recipients[1] = none.recipients[0].clone();
    none.recipients[1].idx = 1;
    let batch = vec![
        ("msg_part".to_string(), partly_sent("srv", now, T0 + 600)),
        ("msg_none".to_string(), none.clone()),
        ("msg_young".to_string(), none),
    ];
    s.queue
        .record_many(batch.into(), now, Vec::new().into())
        .await
        .unwrap();
    let bodies = "messages WHERE body IS NOT NULL";
    assert_eq!(f.rows(bodies).await, 3);
    let hook = webhook_id.clone();
    let events: ExpiryEvents = Arc::new(move |id, status| {
        vec![NewDelivery {
            id: format!("evt_{id}"),
            webhook_id: hook.clone(),
            event: format!("message.{}", status.as_str()),
            body: "{}".into(),
            at: "2026-11-27T00:00:00Z".into(),
            at_unix: T0 + 86_400,
            message: Some(id.into()),
        }]
    });
    let cutoff = T0 + 3_600;
    let first = s
        .queue
        .expire_some(cutoff, "2026-11-27T00:00:00Z", 1, events.clone())
        .await
        .unwrap();
    assert_eq!(first.len(), 1, "at most the limit");
    let rest = s
        .queue
        .expire_some(cutoff, "2026-11-27T00:00:00Z", 10, events)
        .await
        .unwrap();
    let mut ended: Vec<_> = first
        .iter()
        .chain(&rest)
        .map(|e| (e.id.as_str(), e.app.as_deref(), e.status, e.missed))
        .collect();
    ended.sort();
    // With the recipients each did not reach, which /metrics counts.
    assert_eq!(
        ended,
        vec![
            ("msg_none", Some("app_1"), Status::Failed, 2),
            ("msg_part", Some("app_1"), Status::Sent, 1),
        ]
    );
    let part = s.queue.details("msg_part").await.unwrap().unwrap();
    assert_eq!(part.summary.status, Status::Sent);
    let states: Vec<_> = part.recipients.iter().map(|r| r.status).collect();
    assert_eq!(states, vec![Status::Failed, Status::Sent]);
    assert_eq!(
        part.recipients[0].code.as_deref(),
        Some("4.2.1"),
        "the last reply stays"
    );
    assert!(part
        .summary
        .last_error
        .unwrap()
        .message
        .contains("without reaching every recipient"));
    let none = s.queue.details("msg_none").await.unwrap().unwrap();
    assert_eq!(none.summary.status, Status::Failed);
    assert!(none.recipients.iter().all(|r| r.status == Status::Failed));
    let young = s.queue.details("msg_young").await.unwrap().unwrap();
    assert_eq!(young.summary.status, Status::Deferred, "not old enough");
    assert_eq!(
        f.rows(bodies).await,
        2,
        "the sent one's body goes; a failed one keeps it for a retry"
    );
    assert_eq!(f.rows("webhook_deliveries").await, 2);
    assert_eq!(
        f.rows("webhook_deliveries WHERE event = 'message.sent' AND id = 'evt_msg_part'")
            .await,
        1
    );
    // Nothing is left to end.
    assert_eq!(expire_all(&*s.queue, cutoff, "t").await.unwrap(), 0);
}

async fn a_quota_wait_adds_no_attempt_and_never_expires(f: Fixture) {
    let s = f.open().await;
    s.queue.enqueue(message("msg_w", None)).await.unwrap();
    s.queue.enqueue(message("msg_e", None)).await.unwrap();
    let claimed = s
        .queue
        .claim("default", T0 + 1, 1, &lease("srv_a", 120))
        .await
        .unwrap();
    assert_eq!(claimed[0].id, "msg_w");
    s.queue
        .quota_wait(
            "msg_w",
            T0 + 86_400,
            "waits for the day",
            "t",
            T0 + 1,
            false,
        )
        .await
        .unwrap();
    let d = s.queue.details("msg_w").await.unwrap().unwrap();
    assert_eq!(d.summary.status, Status::Deferred);
    assert_eq!(d.summary.attempt_count, 0);
    assert!(d.attempts.is_empty(), "no attempt is added");
    let at = mailroom_backend::clock::rfc3339_at;
    assert_eq!(
        d.next_attempt_at,
        at(T0 + 86_400),
        "tried when the day frees"
    );
    let e = d.summary.last_error.unwrap();
    assert_eq!(e.code.as_deref(), Some("quota"));
    assert_eq!(e.message, "waits for the day");
    // Not due before its time; --max-queue-time fails the other, never it.
    assert!(s
        .queue
        .claim("default", T0 + 100, 5, &lease("srv_a", 120))
        .await
        .unwrap()
        .iter()
        .all(|m| m.id != "msg_w"));
    s.queue
        .release(vec!["msg_e".into()], "srv_a")
        .await
        .unwrap();
    assert_eq!(
        expire_all(&*s.queue, T0 + 10 * 86_400, "t").await.unwrap(),
        1
    );
    let w = s.queue.details("msg_w").await.unwrap().unwrap();
    assert_eq!(w.summary.status, Status::Deferred);
    let e = s.queue.details("msg_e").await.unwrap().unwrap();
    assert_eq!(e.summary.status, Status::Failed);

    // Its day comes and its try fails for a while: from then on only the
    // time it did not wait for the limit counts toward --max-queue-time.
    let claimed = s
        .queue
        .claim("default", T0 + 86_400, 5, &lease("srv_a", 120))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let mut later = sent("srv_a", "t");
    later.attempt.ok = false;
    later.attempt.code = Some("451".into());
    later.recipients.clear();
    later.status = Status::Deferred;
    later.next_attempt_unix = T0 + 86_400 + 600;
    s.queue.record("msg_w", later, "t").await.unwrap();
    let w = s.queue.details("msg_w").await.unwrap().unwrap();
    assert_eq!(w.summary.status, Status::Deferred);
    assert_eq!(w.summary.attempt_count, 1);
    assert_eq!(
        w.next_attempt_at,
        at(T0 + 86_400 + 600),
        "tried after its wait"
    );
    // Created at T0, waited 86,399 s for the limit: a cutoff an hour after
    // its creation (a day after it, counting the wait) leaves it waiting...
    assert_eq!(expire_all(&*s.queue, T0 + 3_600, "t").await.unwrap(), 0);
    assert_eq!(expire_all(&*s.queue, T0 + 86_399, "t").await.unwrap(), 0);
    let w = s.queue.details("msg_w").await.unwrap().unwrap();
    assert_eq!(w.summary.status, Status::Deferred);
    // ...and one past its creation plus its wait fails it.
    assert_eq!(expire_all(&*s.queue, T0 + 86_400, "t").await.unwrap(), 1);
    let w = s.queue.details("msg_w").await.unwrap().unwrap();
    assert_eq!(w.summary.status, Status::Failed);
    assert_eq!(
        w.next_attempt_at, None,
        "a failed message is not tried again"
    );
}

async fn due_messages_of_a_profile_are_claimed_in_turn_per_app(f: Fixture) {
    let s = f.open().await;
    let of = |id: &str, app: &str, profile: &str, at: i64| {
        let mut m = message(id, None);
        m.app_id = Some(app.into());
        m.profile = profile.into();
        m.now_unix = at;
        m
    };
    for i in 0..20 {
        s.queue
            .enqueue(of(&format!("msg_x{i:02}"), "app_busy", "prf_x", T0))
            .await
            .unwrap();
    }
    s.queue
        .enqueue(of("msg_q", "app_quiet", "prf_x", T0 + 5))
        .await
        .unwrap();
    // Older messages of another profile (and of an app between them) are not this profile's.
    s.queue
        .enqueue(of("msg_d", "app_middle", "default", T0 - 100))
        .await
        .unwrap();
    let claimed = s
        .queue
        .claim("prf_x", T0 + 10, 2, &lease("srv_a", 120))
        .await
        .unwrap();
    let ids: Vec<&str> = claimed.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        ["msg_x00", "msg_q"],
        "in turn per app, within the profile"
    );
    let next = s
        .queue
        .claim("prf_x", T0 + 10, 3, &lease("srv_a", 120))
        .await
        .unwrap();
    let ids: Vec<&str> = next.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["msg_x01", "msg_x02", "msg_x03"]);
    let other = s
        .queue
        .claim("default", T0 + 10, 5, &lease("srv_a", 120))
        .await
        .unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].id, "msg_d");
}

fn profile_row(id: &str, name: &str) -> ProfileRow {
    ProfileRow {
        id: id.into(),
        name: name.into(),
        limits: mailroom_shared::profiles::ProfileLimits {
            recipients_per_day: Some(5),
            ..Default::default()
        },
        created_at: "2026-11-26T00:00:00Z".into(),
    }
}

async fn profiles_keep_their_own_settings_pause_and_messages(f: Fixture) {
    let s = f.open().await;
    let profiles = s.settings.profiles().await.unwrap();
    assert_eq!(profiles.len(), 1);
    assert_eq!(profiles[0].id, "default");
    s.settings
        .save("default", 0, record("{\"d\":1}"), vec!["host".into()])
        .await
        .unwrap();
    s.settings
        .create_profile(
            profile_row("prf_b", "Billing"),
            record("{\"b\":1}"),
            vec!["tenant_id".into()],
        )
        .await
        .unwrap();
    // Names are unique, case-blind, in the store too.
    assert!(s
        .settings
        .create_profile(profile_row("prf_c", "BILLING"), record("{}"), vec![])
        .await
        .is_err());
    assert_eq!(
        s.settings
            .profile_named("billing")
            .await
            .unwrap()
            .as_deref(),
        Some("prf_b")
    );
    let other = f.open().await;
    assert_eq!(
        other
            .settings
            .load("prf_b")
            .await
            .unwrap()
            .unwrap()
            .settings_json,
        "{\"b\":1}"
    );
    assert_eq!(
        other
            .settings
            .load("default")
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    assert_eq!(other.settings.history("prf_b").await.unwrap().len(), 1);
    assert_eq!(other.settings.history("default").await.unwrap().len(), 1);
    let listed = other.settings.profiles().await.unwrap();
    assert_eq!(listed[0].id, "default", "default first");
    assert_eq!(listed[1].limits.recipients_per_day, Some(5));
    // One profile's pause is its own.
    let paused = Paused {
        since: "2026-11-26T00:00:00Z".into(),
        stage: Stage::Token,
        code: Some("AADSTS7000215".into()),
        message: "m".into(),
        hint: None,
    };
    s.queue
        .set_pause("prf_b", Some(paused.clone()))
        .await
        .unwrap();
    assert_eq!(
        other.queue.pause_state("prf_b").await.unwrap(),
        Some(paused)
    );
    assert_eq!(other.queue.pause_state("default").await.unwrap(), None);
    assert_eq!(other.queue.pauses().await.unwrap().len(), 1);
    // Claims take only the profile's messages.
    let mut m = message("msg_b", None);
    m.profile = "prf_b".into();
    s.queue.enqueue(m).await.unwrap();
    s.queue.enqueue(message("msg_d", None)).await.unwrap();
    let lease = Lease {
        owner: "srv_1".into(),
        seconds: 60,
    };
    let got = s.queue.claim("prf_b", T0 + 1, 10, &lease).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, "msg_b");
    let (rows, _) = s
        .queue
        .list(ListFilter {
            limit: 10,
            profile: Some("prf_b".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].profile, "prf_b");
    // Not deletable while its message waits; then everything of it goes.
    assert_eq!(
        s.settings.delete_profile("prf_b").await.unwrap(),
        ProfileDelete::Waiting(1)
    );
    assert_eq!(
        s.settings.delete_profile("default").await.unwrap(),
        ProfileDelete::Waiting(1)
    );
    s.queue
        .record(
            "msg_b",
            AttemptRecord {
                attempt: Attempt {
                    at: "t".into(),
                    ok: true,
                    stage: None,
                    code: None,
                    message: "sent".into(),
                    hint: None,
                    transport: None,
                },
                transcript: None,
                recipients: Vec::new(),
                status: Status::Sent,
                next_attempt_unix: T0,
                counts: true,
                owner: "srv_1".into(),
            },
            "t",
        )
        .await
        .unwrap();
    assert_eq!(
        s.settings.delete_profile("prf_b").await.unwrap(),
        ProfileDelete::Deleted
    );
    assert_eq!(s.settings.load("prf_b").await.unwrap(), None);
    assert!(s.settings.history("prf_b").await.unwrap().is_empty());
    assert_eq!(s.queue.pause_state("prf_b").await.unwrap(), None);
    assert_eq!(
        s.settings.delete_profile("prf_b").await.unwrap(),
        ProfileDelete::NotFound
    );
}

fn rand_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

async fn the_daily_count_holds_for_parallel_servers(f: Fixture) {
    let s = f.open().await;
    s.settings
        .create_profile(profile_row("prf_q", "Quota"), record("{}"), vec![])
        .await
        .unwrap();
    // Eight "servers" each take two messages of one recipient at once
    // against a limit of 5: exactly five are counted.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let q = f.open().await.queue;
        tasks.push(tokio::spawn(async move {
            let id = |n: u32| format!("msg_{}_{n}", rand_id());
            q.take_quota("prf_q", vec![(id(1), 1), (id(2), 1)], Some(5), T0)
                .await
                .unwrap()
        }));
    }
    let mut taken = 0;
    for t in tasks {
        let (n, next) = t.await.unwrap();
        taken += n;
        if n < 2 {
            assert_eq!(next, Some(T0 + 86_400), "free a day after the first sends");
        }
    }
    assert_eq!(taken, 5);
    let usage = s.queue.profile_usage("prf_q", T0 + 10).await.unwrap();
    assert_eq!(usage.recipients_today, 5);
    assert_eq!(usage.messages_last_minute, 5);
    assert_eq!(
        s.queue
            .profile_usage("prf_q", T0 + 120)
            .await
            .unwrap()
            .messages_last_minute,
        0
    );
    // A message larger than the limit goes alone once the window is empty.
    assert_eq!(
        s.queue
            .take_quota("prf_q", vec![("msg_big".into(), 9)], Some(5), T0 + 86_400)
            .await
            .unwrap(),
        (1, None)
    );
    // Without a limit, everything is counted.
    assert_eq!(
        s.queue
            .take_quota(
                "prf_q",
                vec![("msg_c".into(), 3), ("msg_d".into(), 4)],
                None,
                T0
            )
            .await
            .unwrap(),
        (2, None)
    );
    // A message counted but not sent is uncounted by its claim's release or
    // its paused attempt (`a_release_gives_back_only_what_its_owner_holds`,
    // `a_late_attempt_leaves_the_message_to_whoever_holds_it`); a release
    // by someone who does not hold it changes nothing.
    let today = |s: Arc<dyn Queue>| async move {
        s.profile_usage("prf_q", T0 + 10)
            .await
            .unwrap()
            .recipients_today
    };
    assert_eq!(today(s.queue.clone()).await, 5 + 9 + 3 + 4);
    s.queue
        .release(vec!["msg_d".into()], "srv_a")
        .await
        .unwrap();
    assert_eq!(today(s.queue.clone()).await, 5 + 9 + 3 + 4);
    s.queue.purge_usage(T0 + 3 * 86_400).await.unwrap();
    assert_eq!(f.rows("profile_usage").await, 0);
}

async fn connection_slots_are_shared_and_lapse(f: Fixture) {
    let (a, b) = (f.open().await.queue, f.open().await.queue);
    assert!(a
        .take_connection_slot("default", 0, "srv_a/0", T0, T0 + 60)
        .await
        .unwrap());
    assert!(!b
        .take_connection_slot("default", 0, "srv_b/0", T0, T0 + 60)
        .await
        .unwrap());
    assert!(
        a.take_connection_slot("default", 0, "srv_a/0", T0 + 30, T0 + 90)
            .await
            .unwrap(),
        "renewed"
    );
    assert!(b
        .take_connection_slot("default", 1, "srv_b/0", T0, T0 + 60)
        .await
        .unwrap());
    // A dead server's slot lapses; a freed one is free at once.
    assert!(b
        .take_connection_slot("default", 0, "srv_b/1", T0 + 91, T0 + 151)
        .await
        .unwrap());
    b.free_connection_slot("default", 1, "srv_b/0")
        .await
        .unwrap();
    assert!(a
        .take_connection_slot("default", 1, "srv_a/1", T0 + 92, T0 + 152)
        .await
        .unwrap());
}

const T0: i64 = 1_795_000_000;

fn record(json: &str) -> Record {
    Record {
        settings_json: json.into(),
        client_secret: Some(vec![1, 2, 3]),
        password: None,
        version: 0,
        updated_at: "2026-11-26T00:00:00Z".into(),
        activate_certificate: None,
    }
}

fn cert_row(der: &[u8]) -> CertRow {
    CertRow {
        slot: CertSlot::Pending,
        cert_der: der.to_vec(),
        private_key: vec![9; 8],
        generated: true,
        created_at: "2026-11-26T00:00:00Z".into(),
        bound_settings: None,
        passed_settings: None,
    }
}

fn message(id: &str, key: Option<&str>) -> NewMessage {
    NewMessage {
        id: id.into(),
        app_id: Some("app_1".into()),
        source: None,
        mail_from: mailroom_shared::fixtures::mailer(),
        recipients: vec![
            format!("{}@{}", "a", "example.org"),
            format!("{}@{}", "b", "example.org"),
        ],
        subject: format!("subject of {id}"),
        body: b"Subject: x\r\n\r\nbody\r\n".to_vec(),
        idempotency_key: key.map(|key| IdempotencyKey {
            key: key.into(),
            request: "the same request".into(),
        }),
        limits: None,
        now: "2026-11-26T00:00:00Z".into(),
        now_unix: T0,
        profile: "default".into(),
        message_id_header: None,
    }
}

/// Ends everything past `cutoff_unix` with [`Queue::expire_some`], a batch
/// at a time as housekeeping does, without events: how many it ended.
async fn expire_all(queue: &dyn Queue, cutoff_unix: i64, now: &str) -> Result<u64, StoreError> {
    let none: mailroom_backend::queue::ExpiryEvents = Arc::new(|_, _| Vec::new());
    let batch = mailroom_backend::queue::EXPIRE_BATCH;
    let mut n = 0;
    loop {
        let ended = queue
            .expire_some(cutoff_unix, now, batch, none.clone())
            .await?;
        n += ended.len() as u64;
        if ended.len() < batch as usize {
            return Ok(n);
        }
    }
}

fn lease(owner: &str, seconds: i64) -> Lease {
    Lease {
        owner: owner.into(),
        seconds,
    }
}

/// An attempt at `at` that delivered to the message's second recipient
/// while the first was put off (`4.2.1`), due again at `next`.
fn partly_sent(owner: &str, at: &str, next: i64) -> AttemptRecord {
    let mut r = sent(owner, at);
    r.attempt.ok = false;
    r.attempt.code = Some("4.2.1".into());
    r.recipients[0].status = Status::Deferred;
    r.recipients[0].code = Some("4.2.1".into());
    r.status = Status::Deferred;
    r.next_attempt_unix = next;
    r
}

fn sent(owner: &str, at: &str) -> AttemptRecord {
    AttemptRecord {
        attempt: Attempt {
            at: at.into(),
            ok: true,
            stage: None,
            code: None,
            message: "accepted".into(),
            hint: None,
            transport: None,
        },
        transcript: None,
        recipients: vec![
            RecipientOutcome {
                idx: 0,
                status: Status::Sent,
                code: None,
                message: None,
            },
            RecipientOutcome {
                idx: 1,
                status: Status::Sent,
                code: None,
                message: None,
            },
        ],
        status: Status::Sent,
        next_attempt_unix: T0,
        counts: true,
        owner: owner.into(),
    }
}

async fn a_pending_certificate_passes_and_a_save_makes_it_active_for_every_server(f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    assert!(a.settings.certificates("default").await.unwrap().is_empty());
    a.settings
        .put_pending_certificate("default", cert_row(b"one"))
        .await
        .unwrap();
    // A pass recorded on one server for another certificate changes nothing.
    b.settings
        .pending_passed("default", b"other".to_vec(), "{}".into())
        .await
        .unwrap();
    let rows = b.settings.certificates("default").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].slot, rows[0].passed_settings.as_deref()),
        (CertSlot::Pending, None)
    );
    b.settings
        .pending_passed("default", b"one".to_vec(), "{\"t\":1}".into())
        .await
        .unwrap();
    assert_eq!(
        a.settings.certificates("default").await.unwrap()[0]
            .passed_settings
            .as_deref(),
        Some("{\"t\":1}")
    );
    // A save naming another pending certificate is refused and changes nothing.
    let mut wrong = record("{\"t\":1}");
    wrong.activate_certificate = Some(b"other".to_vec());
    assert!(matches!(
        a.settings.save("default", 0, wrong, vec![]).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(
        a.settings.load("default").await.unwrap().is_none(),
        "rolled back"
    );
    let mut save = record("{\"t\":1}");
    save.activate_certificate = Some(b"one".to_vec());
    assert_eq!(
        a.settings
            .save("default", 0, save, vec!["client_credential".into()])
            .await
            .unwrap(),
        1
    );
    let rows = b.settings.certificates("default").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].slot, CertSlot::Active);
    assert_eq!(rows[0].bound_settings.as_deref(), Some("{\"t\":1}"));
    // The next one replaces the pending slot only; activating it drops the old active.
    b.settings
        .put_pending_certificate("default", cert_row(b"two"))
        .await
        .unwrap();
    b.settings
        .put_pending_certificate("default", cert_row(b"three"))
        .await
        .unwrap();
    assert_eq!(f.rows("certificates").await, 2);
    let mut save = record("{\"t\":2}");
    save.activate_certificate = Some(b"three".to_vec());
    a.settings.save("default", 1, save, vec![]).await.unwrap();
    let rows = a.settings.certificates("default").await.unwrap();
    assert_eq!(
        (rows.len(), rows[0].cert_der.as_slice()),
        (1, &b"three"[..])
    );
    assert!(a
        .settings
        .delete_certificate("default", CertSlot::Active)
        .await
        .unwrap());
    assert!(!a
        .settings
        .delete_certificate("default", CertSlot::Pending)
        .await
        .unwrap());
}

async fn concurrent_saves_conflict_and_one_wins(f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    let (x, y) = tokio::join!(
        a.settings
            .save("default", 0, record("{\"x\":1}"), vec!["host".into()]),
        b.settings
            .save("default", 0, record("{\"y\":2}"), vec!["port".into()]),
    );
    let wins = [&x, &y].iter().filter(|r| matches!(r, Ok(1))).count();
    assert_eq!(wins, 1, "{x:?} {y:?}");
    let lost = if x.is_ok() { y } else { x };
    assert!(
        matches!(lost, Err(StoreError::Conflict { stored: 1 })),
        "{lost:?}"
    );
    assert_eq!(
        a.settings
            .save("default", 1, record("{}"), vec!["client_secret".into()])
            .await
            .unwrap(),
        2
    );
    let history = b.settings.history("default").await.unwrap();
    assert_eq!(
        history.iter().map(|h| h.version).collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert_eq!(history[0].changed_fields, vec!["client_secret".to_string()]);
    let loaded = b.settings.load("default").await.unwrap().unwrap();
    assert_eq!(
        (loaded.version, loaded.client_secret),
        (2, Some(vec![1, 2, 3]))
    );
}

async fn the_same_idempotency_key_queues_one_message(f: Fixture) {
    let s = f.open().await;
    let tries = (0..8).map(|i| {
        let q = s.queue.clone();
        tokio::spawn(async move {
            q.enqueue(message(&format!("msg_{i}"), Some("nightly-1")))
                .await
                .unwrap()
        })
    });
    let results: Vec<Enqueued> = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let new: Vec<&String> = results
        .iter()
        .filter_map(|r| match r {
            Enqueued::New(id) => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(new.len(), 1, "{results:?}");
    for r in &results {
        if let Enqueued::Repeat(id, status) = r {
            assert_eq!((id, *status), (new[0], Status::Queued));
        }
    }
    assert_eq!(s.queue.counts().await.unwrap()[&Status::Queued], 1);
    // The key with another request: refused, naming the first, nothing kept.
    let mut other = message("msg_reused", Some("nightly-1"));
    if let Some(k) = other.idempotency_key.as_mut() {
        k.request = "another request".into();
    }
    assert_eq!(
        s.queue.enqueue(other).await.unwrap(),
        Enqueued::KeyReused(new[0].clone())
    );
    assert_eq!(s.queue.counts().await.unwrap()[&Status::Queued], 1);
    assert!(s.queue.details("msg_reused").await.unwrap().is_none());
    // Another key is another message.
    assert!(matches!(
        s.queue
            .enqueue(message("msg_other", Some("nightly-2")))
            .await
            .unwrap(),
        Enqueued::New(_)
    ));
}

async fn a_claim_takes_at_most_its_bytes_of_bodies(f: Fixture) {
    use mailroom_backend::queue::CLAIM_BYTES;
    // A fast upstream claims up to 256 messages at once: of 25 MiB each,
    // that was 6.4 GiB of bodies in memory for one connection.
    let (a, b) = (f.open().await, f.open().await);
    let third = (CLAIM_BYTES / 3 + 1) as usize;
    let large = |id: &str, size: usize| {
        let mut m = message(id, None);
        m.body.resize(size, b'x');
        m
    };
    for i in 0..5 {
        a.queue
            .enqueue(large(&format!("msg_{i}"), third))
            .await
            .unwrap();
    }
    let ids = |claimed: &[mailroom_backend::queue::Claimed]| {
        claimed.iter().map(|m| m.id.clone()).collect::<Vec<_>>()
    };
    // Two fit in CLAIM_BYTES, three do not; the rest stay due.
    let mine = a
        .queue
        .claim("default", T0, 10, &lease("srv_a", 60))
        .await
        .unwrap();
    assert_eq!(ids(&mine), ["msg_0", "msg_1"]);
    assert_eq!(mine[0].body.len(), third);
    // Server A dies; B's batches take due messages first, then lapsed
    // leases, the bytes of both counted together.
    let mut batches = Vec::new();
    for at in 61..64 {
        let batch = b
            .queue
            .claim("default", T0 + at, 10, &lease("srv_b", 60))
            .await
            .unwrap();
        batches.push(ids(&batch));
    }
    assert_eq!(
        batches,
        [
            vec!["msg_2", "msg_3"],
            vec!["msg_4", "msg_0"],
            vec!["msg_1"]
        ]
    );
    // One message larger than CLAIM_BYTES is claimed alone.
    a.queue
        .enqueue(large("msg_huge", CLAIM_BYTES as usize + 1))
        .await
        .unwrap();
    a.queue.enqueue(large("msg_small", 100)).await.unwrap();
    let alone = a
        .queue
        .claim("default", T0 + 64, 10, &lease("srv_a", 60))
        .await
        .unwrap();
    assert_eq!(ids(&alone), ["msg_huge"]);
}

async fn a_message_is_claimed_once_and_a_lapsed_lease_is_taken_over(f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    for i in 0..3 {
        a.queue
            .enqueue(message(&format!("msg_{i}"), None))
            .await
            .unwrap();
    }
    let mine = a
        .queue
        .claim("default", T0, 10, &lease("srv_a", 60))
        .await
        .unwrap();
    assert_eq!(mine.len(), 3);
    assert_eq!(mine[0].recipients.len(), 2);
    assert!(
        b.queue
            .claim("default", T0 + 59, 10, &lease("srv_b", 60))
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    assert!(
        a.queue
            .renew("msg_0", T0 + 30, &lease("srv_a", 60))
            .await
            .unwrap(),
        "still mine"
    );
    // Server A dies. After its lease (renewed for msg_0) runs out, B takes them.
    let taken = b
        .queue
        .claim("default", T0 + 61, 10, &lease("srv_b", 60))
        .await
        .unwrap();
    assert_eq!(
        taken.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        vec!["msg_1", "msg_2"]
    );
    let taken = b
        .queue
        .claim("default", T0 + 91, 10, &lease("srv_b", 60))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1, "msg_0 after its renewal ran out too");
    assert!(
        !a.queue
            .renew("msg_0", T0 + 92, &lease("srv_a", 60))
            .await
            .unwrap(),
        "A lost it"
    );
    assert!(b
        .queue
        .renew("msg_0", T0 + 92, &lease("srv_b", 60))
        .await
        .unwrap());
    b.queue
        .record(
            "msg_0",
            sent("srv_b", "2026-11-26T00:01:00Z"),
            "2026-11-26T00:01:00Z",
        )
        .await
        .unwrap();
    let d = a.queue.details("msg_0").await.unwrap().unwrap();
    assert_eq!(
        (d.summary.status, d.summary.attempt_count),
        (Status::Sent, 1)
    );
    assert!(d.recipients.iter().all(|r| r.status == Status::Sent));
    // A sent message is never claimed again; a deferred one is, when due.
    assert!(b
        .queue
        .claim("default", T0 + 10_000, 10, &lease("srv_b", 60))
        .await
        .unwrap()
        .iter()
        .all(|m| m.id != "msg_0"));
    // Unattempted claims go back at once.
    b.queue
        .release(vec!["msg_1".into(), "msg_2".into()], "srv_b")
        .await
        .unwrap();
    assert_eq!(a.queue.counts().await.unwrap()[&Status::Queued], 2);
    let cancelled = b.queue.cancel("msg_2", "t").await.unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    assert!(
        a.queue
            .claim("default", T0 + 100, 10, &lease("srv_a", 60))
            .await
            .unwrap()
            .iter()
            .all(|m| m.id != "msg_2"),
        "a cancelled message is not sent"
    );
    a.queue
        .release(vec!["msg_1".into()], "srv_a")
        .await
        .unwrap();
    assert!(matches!(
        b.queue.cancel("msg_0", "t").await,
        Err(mailroom_backend::queue::ChangeError::Status(Status::Sent))
    ));
    let failed = AttemptRecord {
        attempt: Attempt {
            at: "t".into(),
            ok: false,
            stage: Some(Stage::Send),
            code: Some("5.1.1".into()),
            message: "no such user".into(),
            hint: Some("fix".into()),
            transport: Some(mailroom_shared::Transport::Graph),
        },
        transcript: Some("S: 550 5.1.1".into()),
        recipients: vec![],
        status: Status::Failed,
        next_attempt_unix: T0,
        counts: true,
        owner: "srv_a".into(),
    };
    let claimed = a
        .queue
        .claim("default", T0 + 200, 1, &lease("srv_a", 60))
        .await
        .unwrap();
    a.queue.record(&claimed[0].id, failed, "t").await.unwrap();
    let kept = b.queue.details(&claimed[0].id).await.unwrap().unwrap();
    assert_eq!(
        kept.attempts.last().map(|a| a.transport),
        Some(Some(mailroom_shared::Transport::Graph)),
        "the attempt keeps its way out"
    );
    let retried = b.queue.retry(&claimed[0].id, "t2", T0 + 300).await.unwrap();
    assert_eq!(
        retried.status,
        Status::Queued,
        "a failed message is retried"
    );
    assert!(matches!(
        b.queue.retry("msg_0", "t3", T0).await,
        Err(mailroom_backend::queue::ChangeError::Status(Status::Sent))
    ));
}

/// One recipient took the message and one was refused for now; the
/// server retrying the other dies. Whoever takes the message over is
/// handed the recipient left alone, with the whole body.
async fn a_lapsed_retry_of_a_partly_sent_message_hands_out_only_the_rest(f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    a.queue.enqueue(message("msg_p", None)).await.unwrap();
    let first = a
        .queue
        .claim("default", T0, 10, &lease("srv_a", 60))
        .await
        .unwrap();
    assert_eq!(first[0].recipients.len(), 2);
    let partly = partly_sent("srv_a", "2026-11-26T00:00:01Z", T0 + 60);
    a.queue
        .record("msg_p", partly, "2026-11-26T00:00:01Z")
        .await
        .unwrap();
    assert!(
        a.queue
            .claim("default", T0 + 59, 10, &lease("srv_a", 60))
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    let retry = a
        .queue
        .claim("default", T0 + 60, 10, &lease("srv_a", 60))
        .await
        .unwrap();
    let rest = vec![(0, format!("{}@{}", "a", "example.org"))];
    assert_eq!(retry[0].recipients, rest, "the retry is for a alone");
    // Server A dies mid-retry; after its lease B takes the message over.
    let taken = b
        .queue
        .claim("default", T0 + 121, 10, &lease("srv_b", 60))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(
        taken[0].recipients, rest,
        "b, who has it, is not handed out"
    );
    assert_eq!(taken[0].body, first[0].body, "the whole body is kept");
    let mut done = sent("srv_b", "2026-11-26T00:02:02Z");
    done.recipients.truncate(1);
    b.queue
        .record("msg_p", done, "2026-11-26T00:02:02Z")
        .await
        .unwrap();
    let d = a.queue.details("msg_p").await.unwrap().unwrap();
    assert_eq!(d.summary.status, Status::Sent);
    assert!(
        d.recipients.iter().all(|r| r.status == Status::Sent),
        "{d:?}"
    );
}

/// A message that one recipient has and one waits for, cancelled: the one
/// waiting is cancelled with it (not shown as still waiting to retry), and
/// the one who has it stays sent.
async fn cancelling_a_partly_sent_message_cancels_the_recipients_left(f: Fixture) {
    let a = f.open().await;
    a.queue.enqueue(message("msg_c", None)).await.unwrap();
    a.queue
        .claim("default", T0, 10, &lease("srv_a", 60))
        .await
        .unwrap();
    let partly = partly_sent("srv_a", "2026-11-26T00:00:01Z", T0 + 60);
    a.queue
        .record("msg_c", partly, "2026-11-26T00:00:01Z")
        .await
        .unwrap();
    let cancelled = a
        .queue
        .cancel("msg_c", "2026-11-26T00:00:02Z")
        .await
        .unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    let d = a.queue.details("msg_c").await.unwrap().unwrap();
    let statuses: Vec<Status> = d.recipients.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Status::Cancelled, Status::Sent]);
    // A queued message's recipients are cancelled with it too.
    a.queue.enqueue(message("msg_q", None)).await.unwrap();
    a.queue
        .cancel("msg_q", "2026-11-26T00:00:03Z")
        .await
        .unwrap();
    let d = a.queue.details("msg_q").await.unwrap().unwrap();
    assert!(
        d.recipients.iter().all(|r| r.status == Status::Cancelled),
        "{:?}",
        d.recipients
    );
}

/// A claim reserves its recipients in the profile's day; its attempt
/// leaves only those the server took: none for a deferral, one for a
/// recipient taken beside one put off, all for a delivery.
async fn the_day_keeps_only_the_recipients_an_attempt_delivered(f: Fixture) {
    let a = f.open().await;
    a.queue.enqueue(message("msg_u", None)).await.unwrap();
    let today = |at: i64| {
        let q = a.queue.clone();
        async move {
            q.profile_usage("default", at)
                .await
                .unwrap()
                .recipients_today
        }
    };
    let attempt = |at: i64, left: usize| {
        let q = a.queue.clone();
        async move {
            let claimed = q
                .claim("default", at, 10, &lease("srv_a", 60))
                .await
                .unwrap();
            assert_eq!(claimed[0].recipients.len(), left);
            let fit = q
                .take_quota("default", vec![("msg_u".into(), left as u32)], Some(10), at)
                .await
                .unwrap();
            assert_eq!(fit, (1, None));
        }
    };
    attempt(T0, 2).await;
    assert_eq!(today(T0).await, 2, "reserved at the claim");
    let mut busy = sent("srv_a", "2026-11-26T00:00:01Z");
    busy.attempt.ok = false;
    busy.recipients.clear();
    busy.status = Status::Deferred;
    busy.next_attempt_unix = T0 + 60;
    a.queue
        .record("msg_u", busy, "2026-11-26T00:00:01Z")
        .await
        .unwrap();
    assert_eq!(today(T0).await, 0, "a deferral took nothing");
    attempt(T0 + 60, 2).await;
    let partly = partly_sent("srv_a", "2026-11-26T00:01:01Z", T0 + 120);
    a.queue
        .record("msg_u", partly, "2026-11-26T00:01:01Z")
        .await
        .unwrap();
    assert_eq!(today(T0 + 60).await, 1, "one recipient was taken");
    // The next try pauses delivery (a token error): its own count goes
    // back, the recipient taken before stays counted.
    attempt(T0 + 120, 1).await;
    let mut paused = sent("srv_a", "2026-11-26T00:02:00Z");
    paused.attempt.ok = false;
    paused.recipients.clear();
    paused.status = Status::Queued;
    paused.counts = false;
    a.queue
        .record("msg_u", paused, "2026-11-26T00:02:00Z")
        .await
        .unwrap();
    assert_eq!(
        today(T0 + 120).await,
        1,
        "the earlier delivery stays counted"
    );
    // Claimed again and given back unattempted (a stop): the same.
    attempt(T0 + 120, 1).await;
    a.queue
        .release(vec!["msg_u".into()], "srv_a")
        .await
        .unwrap();
    assert_eq!(today(T0 + 120).await, 1, "released, the earlier stays");
    attempt(T0 + 120, 1).await;
    let mut done = sent("srv_a", "2026-11-26T00:02:01Z");
    done.recipients.truncate(1);
    a.queue
        .record("msg_u", done, "2026-11-26T00:02:01Z")
        .await
        .unwrap();
    assert_eq!(today(T0 + 120).await, 2, "each recipient counted once");
    // The mailbox's own daily limit refused the next one: it waits, and
    // its claim's count goes back (the server took nothing).
    a.queue.enqueue(message("msg_v", None)).await.unwrap();
    a.queue
        .claim("default", T0 + 180, 10, &lease("srv_a", 60))
        .await
        .unwrap();
    a.queue
        .take_quota("default", vec![("msg_v".into(), 2)], Some(10), T0 + 180)
        .await
        .unwrap();
    assert_eq!(today(T0 + 180).await, 4);
    a.queue
        .quota_wait(
            "msg_v",
            T0 + 3780,
            "the mailbox's limit",
            "t",
            T0 + 181,
            true,
        )
        .await
        .unwrap();
    assert_eq!(today(T0 + 181).await, 2, "msg_u's two stay");
}

async fn parallel_claimers_never_share_a_message(f: Fixture) {
    let s = f.open().await;
    for i in 0..60 {
        s.queue
            .enqueue(message(&format!("msg_{i:02}"), None))
            .await
            .unwrap();
    }
    let claimers = (0..3).map(|w| {
        let q = s.queue.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = q
                    .claim("default", T0, 4, &lease(&format!("srv_{w}"), 120))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|m| m.id));
            }
        })
    });
    let mut all: Vec<String> = futures_util::future::join_all(claimers)
        .await
        .into_iter()
        .flat_map(Result::unwrap)
        .collect();
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!((n, all.len()), (60, 60), "each claimed exactly once");
}

async fn pause_is_shared_and_keeps_its_first_since(f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    assert!(a.queue.pause_state("default").await.unwrap().is_none());
    let p = |since: &str, code: &str| Paused {
        since: since.into(),
        stage: Stage::Token,
        code: Some(code.into()),
        message: "The client secret is wrong.".into(),
        hint: Some("Paste the secret's Value.".into()),
    };
    a.queue
        .set_pause("default", Some(p("2026-11-26T10:00:00Z", "AADSTS7000215")))
        .await
        .unwrap();
    b.queue
        .set_pause("default", Some(p("2026-11-26T10:05:00Z", "AADSTS700016")))
        .await
        .unwrap();
    let seen = a.queue.pause_state("default").await.unwrap().unwrap();
    assert_eq!(seen.since, "2026-11-26T10:00:00Z", "the first since stays");
    assert_eq!(
        seen.code.as_deref(),
        Some("AADSTS700016"),
        "the reason is the latest"
    );
    assert_eq!(seen.stage, Stage::Token);
    b.queue.set_pause("default", None).await.unwrap();
    assert!(a.queue.pause_state("default").await.unwrap().is_none());
}

async fn retention_purges_final_messages_only(f: Fixture) {
    let s = f.open().await;
    for id in ["msg_old", "msg_waiting"] {
        s.queue.enqueue(message(id, None)).await.unwrap();
    }
    let claimed = s
        .queue
        .claim("default", T0, 1, &lease("srv", 60))
        .await
        .unwrap();
    assert_eq!(claimed[0].id, "msg_old");
    s.queue
        .record(
            "msg_old",
            sent("srv", "2026-10-01T00:00:00Z"),
            "2026-10-01T00:00:00Z",
        )
        .await
        .unwrap();
    s.queue.release(vec![], "srv").await.unwrap();
    assert_eq!(
        s.queue.purge("2026-09-01T00:00:00Z").await.unwrap(),
        0,
        "not old enough yet"
    );
    assert_eq!(f.rows("attempts").await, 1);
    assert_eq!(s.queue.purge("2026-11-01T00:00:00Z").await.unwrap(), 1);
    assert!(s.queue.details("msg_old").await.unwrap().is_none());
    // Its recipients and attempts went with it: only the waiting one's stay.
    assert_eq!(f.rows("recipients").await, 2, "nothing orphaned");
    assert_eq!(f.rows("attempts").await, 0);
    assert!(
        s.queue.details("msg_waiting").await.unwrap().is_some(),
        "waiting messages stay"
    );
    // Expiry fails what waited too long, with a reason.
    assert_eq!(
        expire_all(&*s.queue, T0 + 1, "2026-11-27T00:00:00Z")
            .await
            .unwrap(),
        1
    );
    let d = s.queue.details("msg_waiting").await.unwrap().unwrap();
    assert_eq!(d.summary.status, Status::Failed);
    assert!(d
        .summary
        .last_error
        .unwrap()
        .message
        .contains("--max-queue-time"));
}

async fn a_session_made_on_one_server_is_valid_on_another(f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    let digest = [7u8; 32];
    a.sessions
        .create_session(digest, T0 + 3600, T0)
        .await
        .unwrap();
    assert!(b.sessions.session_valid(digest, T0 + 10).await.unwrap());
    assert!(
        !b.sessions.session_valid(digest, T0 + 3600).await.unwrap(),
        "expired"
    );
    assert!(
        !b.sessions.session_valid([8u8; 32], T0).await.unwrap(),
        "unknown"
    );
    b.sessions.end_session(digest).await.unwrap();
    assert!(
        !a.sessions.session_valid(digest, T0 + 10).await.unwrap(),
        "ended everywhere"
    );
}

async fn the_delivery_slot_is_shared_where_servers_share_a_store(f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    // A 2-second slot of `profile` asked for at `at_ms` on store `s`.
    let slot = |s: &Stores, profile: &'static str, at_ms: i64| {
        let q = s.queue.clone();
        async move { q.reserve_slot(profile, 2000, at_ms).await.unwrap() }
    };
    let first = slot(&a, "default", 1_000_000).await;
    let second = slot(&b, "default", 1_000_500).await;
    if f.is_pg() {
        assert_eq!(first, Some(1_000_000));
        assert_eq!(second, Some(1_002_000), "the second server waits its turn");
        let later = slot(&a, "default", 2_000_000).await;
        assert_eq!(later, Some(2_000_000), "an idle gap is not saved up");
        // Each profile has its own pace (docs/API.md §15).
        let other = slot(&b, "prf_other", 2_000_100).await;
        assert_eq!(other, Some(2_000_100), "another profile does not wait");
        let again = slot(&b, "default", 2_000_100).await;
        assert_eq!(again, Some(2_002_000));
        // An upstream's Retry-After, seen by A: B's next slot is after it,
        // and a shorter hold after a longer one never brings it forward.
        assert!(a.queue.hold_slots("default", 9_000_000).await.unwrap());
        assert!(a.queue.hold_slots("default", 5_000_000).await.unwrap());
        let held = slot(&b, "default", 3_000_000).await;
        assert_eq!(held, Some(9_000_000), "the other server waits too");
        assert_eq!(slot(&a, "default", 3_000_000).await, Some(9_002_000));
        let free = slot(&b, "prf_other", 3_000_000).await;
        assert_eq!(free, Some(3_000_000), "another profile is not held");
        // A profile with no slot yet is held from its first.
        assert!(b.queue.hold_slots("prf_new", 4_000_000).await.unwrap());
        assert_eq!(slot(&a, "prf_new", 3_000_000).await, Some(4_000_000));
    } else {
        // One process per SQLite file: the engine keeps the slot in memory.
        assert_eq!((first, second), (None, None));
        assert!(!a.queue.hold_slots("default", 9_000_000).await.unwrap());
    }
}

async fn app_limits_hold_under_parallel_submissions(f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    let limits = mailroom_shared::sending::AppLimits {
        messages_per_hour: Some(3),
        ..Default::default()
    };
    // Eight at once, on two servers: exactly three get in.
    let tries = (0..8).map(|i| {
        let q = if i % 2 == 0 {
            a.queue.clone()
        } else {
            b.queue.clone()
        };
        tokio::spawn(async move {
            let mut m = message(&format!("msg_lim_{i}"), None);
            m.limits = Some(limits);
            m.now_unix = T0 + i;
            q.enqueue(m).await.unwrap()
        })
    });
    let results: Vec<Enqueued> = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let new = results
        .iter()
        .filter(|r| matches!(r, Enqueued::New(_)))
        .count();
    assert_eq!(new, 3, "{results:?}");
    for r in &results {
        if let Enqueued::Limited(hit) = r {
            assert_eq!(hit.name, "messages_per_hour");
            assert!(hit.retry_after > 3590 && hit.retry_after <= 3610, "{hit:?}");
        }
    }
    assert_eq!(
        a.queue.counts().await.unwrap()[&Status::Queued],
        3,
        "nothing else stored"
    );
    let recent = a.queue.recent("app_1", T0 + 10, true).await.unwrap();
    let usage = recent.usage(T0 + 10);
    assert_eq!(
        (
            usage.messages_last_hour,
            usage.recipients_today,
            usage.queued
        ),
        (3, 6, 3)
    );
    // An hour after the last of them, the window lets the next one in.
    let mut later = message("msg_lim_later", None);
    later.limits = Some(limits);
    later.now_unix = T0 + 3600 + 8;
    assert!(matches!(
        a.queue.enqueue(later).await.unwrap(),
        Enqueued::New(_)
    ));
    // Another app is not counted with this one.
    let mut other = message("msg_other_app", None);
    other.app_id = Some("app_2".into());
    other.limits = Some(limits);
    assert!(matches!(
        a.queue.enqueue(other).await.unwrap(),
        Enqueued::New(_)
    ));
    // A message refused by a limit does not take its idempotency key: sent
    // again once the window allows, it is stored, not called a repeat.
    let one = mailroom_shared::sending::AppLimits {
        messages_per_hour: Some(1),
        ..Default::default()
    };
    let keyed = |id: &str, at: i64| {
        let mut m = message(id, Some("report-7"));
        m.app_id = Some("app_3".into());
        m.limits = Some(one);
        m.now_unix = at;
        m
    };
    let mut first = message("msg_app3_first", None);
    first.app_id = Some("app_3".into());
    first.limits = Some(one);
    first.now_unix = T0;
    assert!(matches!(
        a.queue.enqueue(first).await.unwrap(),
        Enqueued::New(_)
    ));
    assert!(matches!(
        b.queue
            .enqueue(keyed("msg_app3_refused", T0 + 1))
            .await
            .unwrap(),
        Enqueued::Limited(_)
    ));
    assert_eq!(
        a.queue
            .enqueue(keyed("msg_app3_later", T0 + 3601))
            .await
            .unwrap(),
        Enqueued::New("msg_app3_later".into())
    );
}

/// `queued_max` counts what waits, also past the limit a batch read first:
/// five wait, then one batch (held behind another writer so that it forms)
/// brings a submission with `queued_max` 3 and three with 8, as after the
/// limit was raised between them. The first is refused, two of the others
/// fit, the last is refused: a count stopped at 3 would let all three in.
async fn queued_max_counts_the_queue_and_a_batch_of_changed_limits(f: Fixture) {
    let s = f.open().await;
    for i in 0..5 {
        let m = message(&format!("msg_wait_{i}"), None);
        assert!(matches!(
            s.queue.enqueue(m).await.unwrap(),
            Enqueued::New(_)
        ));
    }
    let max = |n: u32| mailroom_shared::sending::AppLimits {
        queued_max: Some(n),
        ..Default::default()
    };
    // Another writer holds the way while the first submission waits and
    // the rest gather.
    let hold = held(&f, "app_1").await;
    let submit = |m: NewMessage| {
        let q = s.queue.clone();
        tokio::spawn(async move { q.enqueue(m).await.unwrap() })
    };
    let first = submit(message("msg_held", None));
    let mut batch = Vec::new();
    for (i, n) in [3, 8, 8, 8].into_iter().enumerate() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut m = message(&format!("msg_batch_{i}"), None);
        m.limits = Some(max(n));
        batch.push(submit(m));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    hold();
    assert!(matches!(first.await.unwrap(), Enqueued::New(_)));
    let mut out = Vec::new();
    for t in batch {
        out.push(t.await.unwrap());
    }
    let stored: Vec<bool> = out.iter().map(|o| matches!(o, Enqueued::New(_))).collect();
    assert_eq!(stored, [false, true, true, false], "{out:?}");
    for o in [&out[0], &out[3]] {
        assert!(
            matches!(o, Enqueued::Limited(h) if h.name == "queued_max"),
            "{o:?}"
        );
    }
    assert_eq!(s.queue.counts().await.unwrap()[&Status::Queued], 8);
    let usage = s.queue.recent("app_1", T0, false).await.unwrap();
    assert_eq!(usage.waiting, 8);
    // The same for a window limit set between two submissions of a batch:
    // app_2's first message waits behind the lock, then one without a window
    // limit and two with `messages_per_hour` 2 gather. The first of those
    // two must count the message just before it in the batch.
    let hold = held(&f, "app_2").await;
    let first = submit(message_of("msg_hour_0", "app_2", None));
    let mut batch = Vec::new();
    let hourly = mailroom_shared::sending::AppLimits {
        messages_per_hour: Some(2),
        queued_max: None,
        ..Default::default()
    };
    let no_window = mailroom_shared::sending::AppLimits {
        queued_max: None,
        ..Default::default()
    };
    for (i, limits) in [no_window, hourly, hourly].into_iter().enumerate() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        batch.push(submit(message_of(
            &format!("msg_hour_{}", i + 1),
            "app_2",
            Some(limits),
        )));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    hold();
    first.await.unwrap();
    let mut out = Vec::new();
    for t in batch {
        out.push(t.await.unwrap());
    }
    let stored: Vec<bool> = out.iter().map(|o| matches!(o, Enqueued::New(_))).collect();
    assert_eq!(stored, [true, false, false], "{out:?}");
}

/// Message `id` of `app` with `limits`.
fn message_of(
    id: &str,
    app: &str,
    limits: Option<mailroom_shared::sending::AppLimits>,
) -> NewMessage {
    let mut m = message(id, None);
    m.app_id = Some(app.into());
    m.limits = limits;
    m
}

/// Holds the way for a batch to gather behind: SQLite's write lock, or
/// `app`'s lock on PostgreSQL; the returned function lets go.
async fn held(f: &Fixture, app: &str) -> Box<dyn FnOnce() + Send> {
    match f {
        Fixture::Sqlite(dir) => {
            let c = rusqlite::Connection::open(dir.path().join("m.db")).unwrap();
            c.execute_batch("BEGIN IMMEDIATE").unwrap();
            Box::new(move || c.execute_batch("COMMIT").unwrap())
        }
        Fixture::Postgres(schema) => {
            let (c, conn) = tokio_postgres::connect(&schema.url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            c.execute("SELECT pg_advisory_lock(hashtextextended($1, 7))", &[&app])
                .await
                .unwrap();
            Box::new(move || drop(c))
        }
    }
}

/// Window limits count what an app submitted, a second at a time (the
/// messages of one second leave the window together), whatever became of the
/// messages since; a day later the seconds are forgotten.
async fn window_limits_count_submissions_per_second_and_forget_them_after_a_day(f: Fixture) {
    let s = f.open().await;
    let limits = mailroom_shared::sending::AppLimits {
        messages_per_day: Some(3),
        queued_max: None,
        ..Default::default()
    };
    let at = |id: &str, t: i64| {
        let mut m = message(id, None);
        m.limits = Some(limits);
        m.now_unix = t;
        m
    };
    for (id, t) in [("msg_w1", T0), ("msg_w2", T0), ("msg_w3", T0 + 1)] {
        assert!(matches!(
            s.queue.enqueue(at(id, t)).await.unwrap(),
            Enqueued::New(_)
        ));
    }
    assert_eq!(f.rows("app_usage").await, 2, "two seconds");
    let refused = |r: Enqueued| match r {
        Enqueued::Limited(hit) => hit,
        other => panic!("{other:?}"),
    };
    // Both messages of T0 leave together, a day after it.
    let hit = refused(s.queue.enqueue(at("msg_w4", T0 + 2)).await.unwrap());
    assert_eq!((hit.name, hit.retry_after), ("messages_per_day", 86_398));
    // Deleted messages were still submitted.
    f.exec("DELETE FROM messages").await;
    refused(s.queue.enqueue(at("msg_w5", T0 + 3)).await.unwrap());
    let usage = s
        .queue
        .recent("app_1", T0 + 3, true)
        .await
        .unwrap()
        .usage(T0 + 3);
    assert_eq!((usage.messages_today, usage.recipients_today), (3, 6));
    // A day on, the window is empty and the old seconds are gone.
    s.queue.purge_usage(T0 + 86_400 + 1).await.unwrap();
    assert_eq!(f.rows("app_usage").await, 0);
    assert!(matches!(
        s.queue
            .enqueue(at("msg_w6", T0 + 86_400 + 2))
            .await
            .unwrap(),
        Enqueued::New(_)
    ));
    assert_eq!(f.rows("app_usage").await, 1);
}

async fn due_messages_are_claimed_in_turn_per_app(f: Fixture) {
    let s = f.open().await;
    for i in 0..30 {
        let mut m = message(&format!("msg_a{i:02}"), None);
        m.app_id = Some("app_busy".into());
        s.queue.enqueue(m).await.unwrap();
    }
    let mut quiet = message("msg_b", None);
    quiet.app_id = Some("app_quiet".into());
    quiet.now_unix = T0 + 5;
    s.queue.enqueue(quiet).await.unwrap();
    let mut trusted = message("msg_t", None);
    trusted.app_id = None;
    trusted.source = Some("trusted network 192.0.2.9".into());
    trusted.now_unix = T0 + 6;
    s.queue.enqueue(trusted).await.unwrap();
    let claimed = s
        .queue
        .claim("default", T0 + 10, 3, &lease("srv_a", 120))
        .await
        .unwrap();
    let ids: Vec<&str> = claimed.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], "msg_a00", "each sender's oldest first: {ids:?}");
    assert!(ids.contains(&"msg_b") && ids.contains(&"msg_t"), "{ids:?}");
    let next = s
        .queue
        .claim("default", T0 + 10, 2, &lease("srv_a", 120))
        .await
        .unwrap();
    let ids: Vec<&str> = next.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["msg_a01", "msg_a02"]);
    // The list's app filter takes an app's id, or the source a message
    // without one shows in its place.
    for (app, want) in [
        ("trusted network 192.0.2.9", vec!["msg_t"]),
        ("app_quiet", vec!["msg_b"]),
        ("trusted network 192.0.2.99", vec![]),
    ] {
        let (listed, _) = s
            .queue
            .list(ListFilter {
                status: None,
                app: Some(app.into()),
                q: None,
                limit: 50,
                before: None,
                profile: None,
            })
            .await
            .unwrap();
        let ids: Vec<&str> = listed.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, want, "{app}");
    }
}

/// The fixture's webhook store with one webhook for `event`, and its id.
async fn store_with_webhook(f: &Fixture, event: &str) -> (Arc<dyn WebhookStore>, String) {
    let hooks: Arc<dyn WebhookStore> = match f {
        Fixture::Sqlite(dir) => Arc::new(SqliteStore::open(&dir.path().join("m.db")).unwrap()),
        Fixture::Postgres(schema) => Arc::new(
            PgStore::connect(&schema.url, common::pg::tls(None))
                .await
                .unwrap(),
        ),
    };
    hooks
        .add_webhook(WebhookRow {
            webhook: mailroom_backend::webhooks::new_webhook(
                "https://hooks.example.com/x".into(),
                vec![event.into()],
                Default::default(),
                "2026-11-26T00:00:00Z".into(),
            ),
            secret: vec![1],
            previous: None,
        })
        .await
        .unwrap();
    let webhook_id = hooks.webhooks().await.unwrap()[0].webhook.id.clone();
    (hooks, webhook_id)
}

/// `credential.expiring` goes out once a day per profile: after a restart,
/// each profile's own last event counts (one without a profile, stored
/// before profiles, is the default profile's).
async fn the_last_event_of_a_type_is_found_per_profile_or_app(f: Fixture) {
    let (hooks, webhook_id) = store_with_webhook(&f, "credential.expiring").await;
    let event = |id: &str, event: &str, data: Value, at_unix: i64| NewDelivery {
        id: id.into(),
        webhook_id: webhook_id.clone(),
        event: event.into(),
        body: json!({"type": event, "timestamp": "t", "data": data}).to_string(),
        at: "2026-11-26T00:00:01Z".into(),
        at_unix,
        message: None,
    };
    const EXPIRING: &str = "credential.expiring";
    assert_eq!(
        hooks
            .last_event_unix(EXPIRING, EventAbout::Profile("default"))
            .await
            .unwrap(),
        None
    );
    hooks
        .enqueue_deliveries(vec![
            event("evt_1", EXPIRING, json!({"code": "x"}), T0),
            event("evt_2", EXPIRING, json!({"profile": "prf_b"}), T0 + 10),
            event("evt_3", EXPIRING, json!({"profile": "prf_b"}), T0 + 20),
            event(
                "evt_4",
                "message.sent",
                json!({"profile": "prf_c"}),
                T0 + 30,
            ),
        ])
        .await
        .unwrap();
    let last_about = |event: &'static str, about: EventAbout<'static>| {
        let hooks = hooks.clone();
        async move { hooks.last_event_unix(event, about).await.unwrap() }
    };
    let last = |profile| last_about(EXPIRING, EventAbout::Profile(profile));
    assert_eq!(last("default").await, Some(T0), "stored before profiles");
    assert_eq!(last("prf_b").await, Some(T0 + 20));
    assert_eq!(last("prf_c").await, None, "another type's event");
    assert_eq!(last("prf_%").await, None, "a profile id is a value");
    hooks
        .enqueue_deliveries(vec![event(
            "evt_5",
            EXPIRING,
            json!({"profile": "default"}),
            T0 + 40,
        )])
        .await
        .unwrap();
    assert_eq!(last("default").await, Some(T0 + 40));
    assert_eq!(last("prf_b").await, Some(T0 + 20));
    // An app's event is found by its app, never taken for the default
    // profile's (it has no profile) nor for another app's.
    const REFUSED: &str = "app.old_key_refused";
    hooks
        .enqueue_deliveries(vec![
            event("evt_6", REFUSED, json!({"app": "app_a"}), T0 + 50),
            event("evt_7", REFUSED, json!({"app": "app_b"}), T0 + 60),
            event("evt_8", REFUSED, json!({"app": "app_a"}), T0 + 55),
        ])
        .await
        .unwrap();
    let app = |id| last_about(REFUSED, EventAbout::App(id));
    assert_eq!(app("app_a").await, Some(T0 + 55));
    assert_eq!(app("app_b").await, Some(T0 + 60));
    assert_eq!(app("app_c").await, None);
    assert_eq!(app("default").await, None, "an app's event names its app");
    assert_eq!(last("default").await, Some(T0 + 40), "another type's event");
}

async fn webhook_events_commit_with_the_attempts_they_report_or_not_at_all(f: Fixture) {
    let s = f.open().await;
    let (hooks, webhook_id) = store_with_webhook(&f, "message.sent").await;
    let event = |id: &str| NewDelivery {
        id: id.into(),
        webhook_id: webhook_id.clone(),
        event: "message.sent".into(),
        body: "{}".into(),
        at: "2026-11-26T00:00:01Z".into(),
        at_unix: T0,
        message: None,
    };
    for id in ["msg_a", "msg_b"] {
        s.queue.enqueue(message(id, None)).await.unwrap();
    }
    s.queue
        .claim("default", T0, 2, &lease("srv", 60))
        .await
        .unwrap();
    let now = "2026-11-26T00:00:01Z";
    s.queue
        .record_many(
            vec![("msg_a".into(), sent("srv", now))].into(),
            now,
            vec![event("evt_1")].into(),
        )
        .await
        .unwrap();
    assert_eq!(
        (f.rows("attempts").await, f.rows("webhook_deliveries").await),
        (1, 1)
    );
    // The event cannot be stored (its id is taken): the attempt is not either.
    let failed = s
        .queue
        .record_many(
            vec![("msg_b".into(), sent("srv", now))].into(),
            now,
            vec![event("evt_1")].into(),
        )
        .await;
    assert!(failed.is_err());
    assert_eq!(
        (f.rows("attempts").await, f.rows("webhook_deliveries").await),
        (1, 1),
        "one transaction"
    );
    // Retention takes final deliveries only.
    hooks
        .enqueue_deliveries(vec![NewDelivery {
            at: "2026-11-27T00:00:00Z".into(),
            ..event("evt_2")
        }])
        .await
        .unwrap();
    let due = hooks
        .claim_deliveries(T0 + 86_400, "srv", 60, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 2);
    for d in &due {
        let result = mailroom_backend::store::DeliveryResult {
            attempts: 1,
            status: if d.id == "evt_1" {
                "delivered"
            } else {
                "pending"
            },
            next_unix: T0 + 86_400 + 5,
            last_status: Some(200),
            last_error: None,
            at: "2026-11-27T00:00:00Z".into(),
        };
        hooks.finish_delivery(d, result).await.unwrap();
    }
    assert_eq!(
        hooks
            .purge_deliveries("2026-11-28T00:00:00Z")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        f.rows("webhook_deliveries").await,
        1,
        "the pending one stays"
    );
}

/// A webhook delivery whose claim lapsed (a server stalled past its lease)
/// and was taken by another server: the late server's outcome changes
/// nothing, the holder's decides. Written over the holder's claim, a late
/// failure made the event due again (a third request, and a second post in
/// a Teams or Slack channel, which do not skip a repeated `webhook-id`).
async fn a_late_webhook_outcome_leaves_the_delivery_to_its_holder(f: Fixture) {
    use mailroom_backend::store::DeliveryResult;
    let (hooks, webhook_id) = store_with_webhook(&f, "message.sent").await;
    hooks
        .enqueue_deliveries(vec![NewDelivery {
            id: "evt_late".into(),
            webhook_id: webhook_id.clone(),
            event: "message.sent".into(),
            body: "{}".into(),
            at: "2026-11-26T00:00:00Z".into(),
            at_unix: T0,
            message: None,
        }])
        .await
        .unwrap();
    let claim = |owner: &'static str, at: i64| {
        let hooks = hooks.clone();
        async move { hooks.claim_deliveries(at, owner, 60, 10).await.unwrap() }
    };
    let a = claim("srv_a", T0).await;
    assert_eq!(a.len(), 1);
    assert!(claim("srv_b", T0 + 1).await.is_empty(), "A holds it");
    let b = claim("srv_b", T0 + 61).await;
    assert_eq!(b.len(), 1, "A's claim lapsed");
    let outcome = |status: &'static str, error: Option<&str>| DeliveryResult {
        attempts: 1,
        status,
        next_unix: T0 + 66,
        last_status: if error.is_none() { Some(200) } else { None },
        last_error: error.map(str::to_string),
        at: "2026-11-26T00:01:05Z".into(),
    };
    let shown = || {
        let (hooks, webhook_id) = (hooks.clone(), webhook_id.clone());
        async move { hooks.deliveries(&webhook_id, 10).await.unwrap()[0].clone() }
    };
    // A's request timed out, late.
    hooks
        .finish_delivery(&a[0], outcome("pending", Some("timed out")))
        .await
        .unwrap();
    let d = shown().await;
    assert_eq!((d.attempts, d.last_error), (0, None), "B's claim stands");
    assert!(
        claim("srv_c", T0 + 70).await.is_empty(),
        "nobody else may take it"
    );
    let failed_at = |hooks: Arc<dyn WebhookStore>| async move {
        hooks.webhooks().await.unwrap()[0]
            .webhook
            .last_failure_at
            .clone()
    };
    assert_eq!(failed_at(hooks.clone()).await, None);
    // B's outcome decides; A's again after it changes nothing.
    hooks
        .finish_delivery(&b[0], outcome("delivered", None))
        .await
        .unwrap();
    hooks
        .finish_delivery(&a[0], outcome("pending", Some("timed out")))
        .await
        .unwrap();
    let d = shown().await;
    assert_eq!((d.status.as_str(), d.attempts), ("delivered", 1));
    assert_eq!(failed_at(hooks.clone()).await, None);
    assert!(
        claim("srv_c", T0 + 10_000).await.is_empty(),
        "delivered once"
    );
}

async fn deleting_a_message_takes_its_recipients_and_attempts(f: Fixture) {
    let s = f.open().await;
    s.queue.enqueue(message("msg_gone", None)).await.unwrap();
    s.queue
        .claim("default", T0, 1, &lease("srv", 60))
        .await
        .unwrap();
    s.queue
        .record(
            "msg_gone",
            sent("srv", "2026-11-26T00:00:01Z"),
            "2026-11-26T00:00:01Z",
        )
        .await
        .unwrap();
    assert_eq!(
        (f.rows("recipients").await, f.rows("attempts").await),
        (2, 1)
    );
    f.exec("DELETE FROM messages WHERE id = 'msg_gone'").await;
    assert_eq!(
        (f.rows("recipients").await, f.rows("attempts").await),
        (0, 0),
        "ON DELETE CASCADE holds on this store"
    );
}

async fn released_messages_are_queued_again_for_any_server(f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    a.queue.enqueue(message("msg_rel", None)).await.unwrap();
    let claimed = a
        .queue
        .claim("default", T0, 5, &lease("srv_a", 120))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(b
        .queue
        .claim("default", T0, 5, &lease("srv_b", 120))
        .await
        .unwrap()
        .is_empty());
    a.queue
        .release(vec!["msg_rel".into()], "srv_a")
        .await
        .unwrap();
    assert_eq!(a.queue.counts().await.unwrap()[&Status::Queued], 1);
    // At once, not after the lease: the other server may take it.
    let taken = b
        .queue
        .claim("default", T0, 5, &lease("srv_b", 120))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1, "released to anyone");
    assert!(
        !a.queue
            .renew("msg_rel", T0, &lease("srv_a", 120))
            .await
            .unwrap(),
        "A's lease is gone"
    );
    assert!(b
        .queue
        .renew("msg_rel", T0, &lease("srv_b", 120))
        .await
        .unwrap());
}

/// A worker gives back the rest of its batch (paused, stopping, waiting for
/// Graph's limits); a message in it whose claim lapsed and was taken by
/// another worker or server meanwhile is theirs, being sent: it must stay
/// `sending`, or a third claim would send it again.
async fn a_release_gives_back_only_what_its_owner_holds(f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    a.queue.enqueue(message("msg_own", None)).await.unwrap();
    let mine = a
        .queue
        .claim("default", T0, 5, &lease("srv_a/w0", 60))
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    a.queue
        .take_quota("default", vec![("msg_own".into(), 1)], None, T0)
        .await
        .unwrap();
    // A's claim lapses; B takes the message.
    let theirs = b
        .queue
        .claim("default", T0 + 61, 5, &lease("srv_b/w0", 60))
        .await
        .unwrap();
    assert_eq!(theirs.len(), 1);
    a.queue
        .release(vec!["msg_own".into()], "srv_a/w0")
        .await
        .unwrap();
    assert_eq!(
        a.queue.counts().await.unwrap()[&Status::Sending],
        1,
        "B's claim stands"
    );
    assert!(
        a.queue
            .claim("default", T0 + 62, 5, &lease("srv_a/w1", 60))
            .await
            .unwrap()
            .is_empty(),
        "nobody else may take it"
    );
    let usage = |q: Arc<dyn Queue>| async move {
        q.profile_usage("default", T0 + 62)
            .await
            .unwrap()
            .recipients_today
    };
    assert_eq!(usage(a.queue.clone()).await, 1, "still counted for the day");
    // B's own release gives it back, and uncounts it.
    b.queue
        .release(vec!["msg_own".into()], "srv_b/w0")
        .await
        .unwrap();
    assert_eq!(a.queue.counts().await.unwrap()[&Status::Queued], 1);
    assert_eq!(usage(a.queue.clone()).await, 0);
}

/// An attempt recorded after its claim lapsed and another worker or server
/// took the message (a process stalled past its lease, a database away
/// longer than the renewals): the attempt joins the history, but the
/// message, its recipients, its count and its events stay the holder's.
/// Written over the holder's `sending`, a late `deferred` let a third claim
/// send the message while the holder sent it; written over its `sent`, the
/// message went out again.
async fn a_late_attempt_leaves_the_message_to_whoever_holds_it(f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    let (_hooks, webhook_id) = store_with_webhook(&f, "message.deferred").await;
    a.queue.enqueue(message("msg_late", None)).await.unwrap();
    let claimed = |q: Arc<dyn Queue>, at: i64, owner: &'static str| async move {
        q.claim("default", at, 5, &lease(owner, 60))
            .await
            .unwrap()
            .len()
    };
    assert_eq!(claimed(a.queue.clone(), T0, "srv_a/w0").await, 1);
    // A's claim lapses; B takes the message.
    assert_eq!(claimed(b.queue.clone(), T0 + 61, "srv_b/w0").await, 1);
    let mut late = sent("srv_a/w0", "2026-11-26T00:01:02Z");
    late.attempt.ok = false;
    late.attempt.code = Some("451".into());
    late.attempt.message = "timed out".into();
    for r in &mut late.recipients {
        r.status = Status::Deferred;
    }
    late.status = Status::Deferred;
    late.next_attempt_unix = T0 + 62;
    let event = NewDelivery {
        id: "evt_late".into(),
        webhook_id,
        event: "message.deferred".into(),
        body: "{}".into(),
        at: "2026-11-26T00:01:02Z".into(),
        at_unix: T0 + 62,
        message: Some("msg_late".into()),
    };
    let record_late = |q: Arc<dyn Queue>| {
        let (late, event) = (late.clone(), event.clone());
        async move {
            q.record_many(
                vec![("msg_late".into(), late)].into(),
                "2026-11-26T00:01:02Z",
                vec![event].into(),
            )
            .await
            .unwrap()
        }
    };
    record_late(a.queue.clone()).await;
    let d = a.queue.details("msg_late").await.unwrap().unwrap();
    assert_eq!(d.summary.status, Status::Sending, "B's claim stands: {d:?}");
    assert_eq!(d.summary.attempt_count, 0, "{d:?}");
    assert!(d.summary.last_error.is_none(), "{d:?}");
    assert!(
        d.recipients.iter().all(|r| r.status == Status::Queued),
        "{d:?}"
    );
    assert_eq!(d.attempts.len(), 1, "the attempt is in the history");
    assert_eq!(d.attempts[0].message, "timed out");
    assert_eq!(f.rows("webhook_deliveries").await, 0, "no event");
    assert_eq!(
        claimed(a.queue.clone(), T0 + 63, "srv_a/w1").await,
        0,
        "nobody else may take it"
    );
    // A pause (nothing went out) uncounts the message from the profile's
    // day, but only its holder's: A's late one leaves B's count.
    b.queue
        .take_quota("default", vec![("msg_late".into(), 2)], None, T0 + 61)
        .await
        .unwrap();
    let today = |q: Arc<dyn Queue>| async move {
        q.profile_usage("default", T0 + 63)
            .await
            .unwrap()
            .recipients_today
    };
    let mut paused = late.clone();
    paused.recipients.clear();
    paused.status = Status::Queued;
    paused.counts = false;
    a.queue
        .record("msg_late", paused.clone(), "t")
        .await
        .unwrap();
    let d = a.queue.details("msg_late").await.unwrap().unwrap();
    assert_eq!(d.summary.status, Status::Sending, "{d:?}");
    assert_eq!(today(a.queue.clone()).await, 2, "B's count stands");
    paused.owner = "srv_b/w0".into();
    b.queue.record("msg_late", paused, "t").await.unwrap();
    let d = a.queue.details("msg_late").await.unwrap().unwrap();
    assert_eq!(d.summary.status, Status::Queued, "{d:?}");
    assert_eq!(today(a.queue.clone()).await, 0, "B's pause uncounts it");
    // B's next claim sends it; A's late record after that changes nothing.
    assert_eq!(claimed(b.queue.clone(), T0 + 64, "srv_b/w0").await, 1);
    b.queue
        .record("msg_late", sent("srv_b/w0", "2026-11-26T00:01:03Z"), "t")
        .await
        .unwrap();
    record_late(a.queue.clone()).await;
    let d = a.queue.details("msg_late").await.unwrap().unwrap();
    assert_eq!(d.summary.status, Status::Sent, "{d:?}");
    assert_eq!(d.summary.attempt_count, 1, "{d:?}");
    assert!(d.recipients.iter().all(|r| r.status == Status::Sent));
    assert_eq!(d.attempts.len(), 5);
    assert_eq!(f.rows("webhook_deliveries").await, 0);
    assert_eq!(
        claimed(a.queue.clone(), T0 + 10_000, "srv_a/w1").await,
        0,
        "sent once is sent"
    );

    // A claim that lapsed and was put back to wait by a server starting,
    // with nobody claiming it since: the late attempt still decides it (its
    // `sent` is not sent again).
    a.queue.enqueue(message("msg_back", None)).await.unwrap();
    assert_eq!(claimed(a.queue.clone(), T0 + 10_000, "srv_a/w0").await, 1);
    assert_eq!(b.queue.requeue_sending(T0 + 10_061).await.unwrap(), 1);
    a.queue
        .record("msg_back", sent("srv_a/w0", "2026-11-26T02:48:00Z"), "t")
        .await
        .unwrap();
    let d = a.queue.details("msg_back").await.unwrap().unwrap();
    assert_eq!(d.summary.status, Status::Sent, "{d:?}");
    assert_eq!(d.summary.attempt_count, 1, "{d:?}");
}

async fn apps_keep_their_limits_and_changes(f: Fixture) {
    use mailroom_shared::sending::{App, AppLimits};
    let s = f.open().await;
    let app = App {
        id: "app_lim".into(),
        name: "Limited".into(),
        created_at: "2026-11-26T00:00:00Z".into(),
        last_used_at: None,
        messages: 0,
        allowed_from: vec![],
        rewrite_from: false,
        profile: "default".into(),
        limits: AppLimits {
            recipients_per_day: Some(1000),
            ..AppLimits::default()
        },
        usage: Default::default(),
        old_key_until: None,
        old_key_used: None,
        old_key_clients: Vec::new(),
    };
    s.queue.create_app(app.clone(), [7u8; 32]).await.unwrap();
    let listed = s.queue.list_apps().await.unwrap();
    assert_eq!(listed[0].limits, app.limits);
    assert!(s.queue.app_by_id("app_lim").await.unwrap().is_some());
    // A relay sign-in's username with a NUL byte (AUTH LOGIN may carry any
    // byte) names no app; PostgreSQL refused it in text, and the relay
    // answered 454 "cannot reach its database".
    assert!(s.queue.app_by_id("app_lim\0").await.unwrap().is_none());
    let mut changed = app.clone();
    changed.name = "Renamed".into();
    changed.limits.queued_max = None;
    let back = s.queue.update_app(changed.clone()).await.unwrap().unwrap();
    assert_eq!(
        (back.name.as_str(), back.limits),
        ("Renamed", changed.limits)
    );
    // A new key: the app and its limits stay, the old key names nothing.
    let renewed = s
        .queue
        .replace_app_key(
            "app_lim",
            [9u8; 32],
            "2026-11-27T08:00:00Z",
            Some(1_800_000_000),
        )
        .await
        .unwrap()
        .unwrap();
    // The key before is recognised, with until when it still works; the
    // current key is not looked up there.
    let old = s.queue.app_of_replaced_key([7u8; 32]).await.unwrap();
    assert_eq!(
        old,
        Some(mailroom_backend::store::queue::ReplacedKey {
            app: "app_lim".into(),
            name: "Renamed".into(),
            replaced_at: "2026-11-27T08:00:00Z".into(),
            until: Some(1_800_000_000),
        })
    );
    let old = old.unwrap();
    assert!(old.works_at(1_799_999_999) && !old.works_at(1_800_000_000));
    assert!(s
        .queue
        .app_of_replaced_key([9u8; 32])
        .await
        .unwrap()
        .is_none());
    // The app's row says until when too, however it is read.
    let until = mailroom_backend::clock::rfc3339_at(1_800_000_000);
    assert_eq!(renewed.old_key_until, until);
    assert_eq!(s.queue.list_apps().await.unwrap()[0].old_key_until, until);
    let by_id = s.queue.app_by_id("app_lim").await.unwrap().unwrap().0;
    assert_eq!(by_id.old_key_until, until);
    // Its last use is kept, and a new key starts again with none.
    s.queue
        .note_old_key_use("app_lim", 1_799_000_000, "10.0.0.5 (relay)", false)
        .await
        .unwrap();
    let used = s.queue.list_apps().await.unwrap()[0].old_key_used.clone();
    assert_eq!(
        used,
        Some(mailroom_shared::sending::OldKeyUse {
            at: mailroom_backend::clock::rfc3339_at(1_799_000_000).unwrap(),
            from: "10.0.0.5 (relay)".into(),
            refused: false,
        })
    );
    s.queue
        .note_old_key_use("app_lim", 1_799_000_100, "10.0.0.6 (HTTP)", true)
        .await
        .unwrap();
    let used = s
        .queue
        .app_by_id("app_lim")
        .await
        .unwrap()
        .unwrap()
        .0
        .old_key_used;
    assert_eq!(
        used.map(|u| (u.from, u.refused)),
        Some(("10.0.0.6 (HTTP)".to_string(), true))
    );
    // Each client's last use is kept too, newest first.
    let clients = || async {
        s.queue.list_apps().await.unwrap()[0]
            .old_key_clients
            .iter()
            .map(|u| (u.from.clone(), u.refused, u.at.clone()))
            .collect::<Vec<_>>()
    };
    let at = |unix: i64| mailroom_backend::clock::rfc3339_at(unix).unwrap();
    assert_eq!(
        clients().await,
        [
            ("10.0.0.6 (HTTP)".to_string(), true, at(1_799_000_100)),
            ("10.0.0.5 (relay)".to_string(), false, at(1_799_000_000)),
        ]
    );
    s.queue
        .note_old_key_use("app_lim", 1_799_000_200, "10.0.0.5 (relay)", false)
        .await
        .unwrap();
    assert_eq!(
        clients().await,
        [
            ("10.0.0.5 (relay)".to_string(), false, at(1_799_000_200)),
            ("10.0.0.6 (HTTP)".to_string(), true, at(1_799_000_100)),
        ],
        "a client's use again is its row, moved up"
    );
    // Ended early: recognised still (to say it was replaced), working no more.
    assert!(s.queue.end_old_key("app_lim").await.unwrap());
    let old = s.queue.app_of_replaced_key([7u8; 32]).await.unwrap();
    assert_eq!(old.as_ref().map(|r| r.until), Some(None), "{old:?}");
    assert_eq!(s.queue.list_apps().await.unwrap()[0].old_key_until, None);
    assert!(!s.queue.end_old_key("app_none").await.unwrap());
    assert_eq!(
        s.queue.app_by_key([9u8; 32]).await.unwrap().map(|a| a.id),
        Some("app_lim".to_string()),
        "the new key goes on"
    );
    assert_eq!(
        (renewed.id.as_str(), renewed.limits),
        ("app_lim", back.limits)
    );
    assert!(s.queue.app_by_key([7u8; 32]).await.unwrap().is_none());
    assert_eq!(
        s.queue.app_by_key([9u8; 32]).await.unwrap().map(|a| a.id),
        Some("app_lim".to_string())
    );
    assert_eq!(
        s.queue.app_by_id("app_lim").await.unwrap().map(|(_, h)| h),
        Some([9u8; 32])
    );
    // Another new key, stopping the one before at once: the first key is
    // forgotten, and the one before works no more.
    s.queue
        .replace_app_key("app_lim", [8u8; 32], "2026-11-27T08:30:00Z", None)
        .await
        .unwrap()
        .unwrap();
    assert!(s
        .queue
        .app_of_replaced_key([7u8; 32])
        .await
        .unwrap()
        .is_none());
    let old = s.queue.app_of_replaced_key([9u8; 32]).await.unwrap();
    assert_eq!(old.as_ref().map(|r| r.until), Some(None), "{old:?}");
    assert_eq!(
        s.queue.list_apps().await.unwrap()[0].old_key_used,
        None,
        "the key before the newest has not been used"
    );
    assert_eq!(clients().await, [], "nor by any client");
    // The newest clients are kept, at most OLD_KEY_CLIENTS.
    let keep = mailroom_shared::sending::OLD_KEY_CLIENTS as i64;
    for n in 0..keep + 2 {
        s.queue
            .note_old_key_use(
                "app_lim",
                1_799_001_000 + n,
                &format!("10.0.1.{n} (relay)"),
                false,
            )
            .await
            .unwrap();
    }
    let kept = clients().await;
    assert_eq!(kept.len() as i64, keep);
    assert_eq!(kept[0].0, format!("10.0.1.{} (relay)", keep + 1));
    assert_eq!(kept.last().unwrap().0, "10.0.1.2 (relay)");
    s.queue
        .replace_app_key("app_lim", [9u8; 32], "2026-11-27T08:40:00Z", None)
        .await
        .unwrap()
        .unwrap();
    assert!(s
        .queue
        .replace_app_key("app_none", [1u8; 32], "2026-11-27T08:00:00Z", None)
        .await
        .unwrap()
        .is_none());
    assert!(s.queue.revoke_app("app_lim").await.unwrap());
    assert!(
        s.queue.update_app(changed).await.unwrap().is_none(),
        "revoked"
    );
    assert!(
        s.queue
            .replace_app_key("app_lim", [2u8; 32], "2026-11-27T09:00:00Z", None)
            .await
            .unwrap()
            .is_none(),
        "a revoked app gets no new key"
    );
    assert!(s.queue.app_by_key([2u8; 32]).await.unwrap().is_none());
    assert!(
        s.queue
            .app_of_replaced_key([8u8; 32])
            .await
            .unwrap()
            .is_none(),
        "a revoked app's old key names it no more"
    );
}

async fn search_takes_backslash_percent_and_underscore_literally(f: Fixture) {
    let s = f.open().await;
    for (id, subject) in [
        ("msg_bs", r"C:\reports\daily"),
        ("msg_pct", "100% done"),
        ("msg_us", "file_name"),
        ("msg_plain", "Reports: Daily, 100 done, file name"),
    ] {
        let mut m = message(id, None);
        m.subject = subject.into();
        if id == "msg_pct" {
            m.message_id_header = Some(format!("<report.100@{}>", "contoso.com"));
        }
        s.queue.enqueue(m).await.unwrap();
    }
    let search = |q: &str| {
        let queue = s.queue.clone();
        let q = q.to_string();
        async move {
            let (rows, next) = queue
                .list(ListFilter {
                    status: None,
                    app: None,
                    q: Some(q),
                    limit: 50,
                    before: None,
                    profile: None,
                })
                .await
                .unwrap();
            assert!(next.is_none());
            let mut ids: Vec<String> = rows.into_iter().map(|r| r.id).collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(
        search("\\").await,
        vec!["msg_bs"],
        "a backslash is a backslash"
    );
    assert_eq!(search("s\\d").await, vec!["msg_bs"]);
    assert_eq!(
        search("%").await,
        vec!["msg_pct"],
        "a percent sign is no wildcard"
    );
    assert_eq!(
        search("e_n").await,
        vec!["msg_us"],
        "an underscore is no wildcard"
    );
    assert_eq!(
        search("DAILY").await,
        vec!["msg_bs", "msg_plain"],
        "case does not matter"
    );
    // A message's id finds it (the relay's "queued as msg_…"); only the
    // whole id, so a few letters never match ids at random.
    assert_eq!(search(" msg_pct ").await, vec!["msg_pct"]);
    assert_eq!(search("msg_p").await, Vec::<String>::new());
    // So does its whole Message-ID, with or without its angle brackets
    // (as message trace and a recipient's headers show it), and the
    // details name it; a message stored without one names none.
    let header = format!("<report.100@{}>", "contoso.com");
    assert_eq!(search(&header).await, vec!["msg_pct"]);
    assert_eq!(search(&header[1..header.len() - 1]).await, vec!["msg_pct"]);
    assert_eq!(search("report.100").await, Vec::<String>::new());
    let details = |id: &'static str| {
        let queue = s.queue.clone();
        async move { queue.details(id).await.unwrap().unwrap().message_id }
    };
    assert_eq!(details("msg_pct").await, Some(header));
    assert_eq!(details("msg_bs").await, None);
    // The newest first, in pages.
    let (rows, next) = s
        .queue
        .list(ListFilter {
            status: None,
            app: None,
            q: None,
            limit: 3,
            before: None,
            profile: None,
        })
        .await
        .unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["msg_plain", "msg_us", "msg_pct"]);
    assert_eq!(next.as_deref(), Some("msg_pct"));
}

async fn failed_sign_ins_are_counted_for_every_server_and_start_over_after_the_window(f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    let key = "admin/192.0.2.7";
    // Parallel failures on two servers: each counted once, none lost.
    let tries = (0..10).map(|i| {
        let store = if i % 2 == 0 {
            a.failures.clone()
        } else {
            b.failures.clone()
        };
        tokio::spawn(async move { store.add_failure(key, T0, 900).await.unwrap().0 })
    });
    let mut counts: Vec<u32> = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    counts.sort();
    assert_eq!(counts, (1..=10).collect::<Vec<_>>());
    assert_eq!(
        b.failures.failures(key, T0 + 899, 900).await.unwrap(),
        Some((10, T0))
    );
    assert_eq!(
        a.failures.failures(key, T0 + 900, 900).await.unwrap(),
        None,
        "the window ended"
    );
    assert_eq!(
        a.failures.add_failure(key, T0 + 900, 900).await.unwrap(),
        (1, T0 + 900),
        "a new window"
    );
    assert_eq!(
        a.failures
            .failures("app/192.0.2.7", T0 + 900, 900)
            .await
            .unwrap(),
        None,
        "scopes are apart"
    );
    b.failures.clear_failures(key).await.unwrap();
    assert_eq!(a.failures.failures(key, T0 + 901, 900).await.unwrap(), None);
}

/// A PostgreSQL database as the last release left it (its seven migrations
/// and its rows) opens under today's migrations with everything in it.
#[tokio::test]
async fn a_release_postgres_database_is_upgraded_with_its_data() {
    let schema = PgSchema::new().await;
    let (client, connection) = tokio_postgres::connect(&schema.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE mailroom_migrations (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        .await
        .unwrap();
    for (i, sql) in mailroom_backend::pg::migrations()
        .iter()
        .take(7)
        .enumerate()
    {
        client.batch_execute(sql).await.unwrap();
        client
            .execute(
                "INSERT INTO mailroom_migrations (version) VALUES ($1)",
                &[&(i as i32 + 1)],
            )
            .await
            .unwrap();
    }
    client
        .batch_execute(
            "INSERT INTO apps (id, name, key_hash, allowed_from, rewrite_from, created_at)
               VALUES ('app_old', 'Old', '\\x00', '[]', 0, '2026-11-01T00:00:00Z');
             INSERT INTO messages (id, app_id, mail_from, subject, size, body, status, created_at, created_unix, updated_at, next_attempt_unix)
               VALUES ('msg_old', 'app_old', 'a@b.c', 'kept', 5, '\\x41', 'queued', '2026-11-01T00:00:00Z', 1790000000, '2026-11-01T00:00:00Z', 0);
             INSERT INTO recipients (message_seq, idx, address, status)
               SELECT seq, 0, 'x@y.z', 'queued' FROM messages;
             INSERT INTO attempts (message_seq, n, at, ok, message, transcript)
               SELECT seq, 1, '2026-11-01T00:00:00Z', 0, 'deferred', E'S: 354 go\\nC: secret body\\nC: .\\nS: 451 later\\n' FROM messages;
             INSERT INTO messages (id, app_id, mail_from, subject, size, status, created_at, created_unix, updated_at, next_attempt_unix)
               VALUES ('msg_cxl', NULL, 'a@b.c', 'cancelled', 5, 'cancelled', '2026-11-01T00:00:00Z', 1790000000, '2026-11-01T00:00:00Z', 0);
             INSERT INTO recipients (message_seq, idx, address, status)
               SELECT seq, 0, 'x@y.z', 'queued' FROM messages WHERE id = 'msg_cxl';",
        )
        .await
        .unwrap();
    let store = PgStore::connect(&schema.url, common::pg::tls(None))
        .await
        .unwrap();
    let apps = store.list_apps().await.unwrap();
    assert_eq!(
        apps[0].limits,
        mailroom_shared::sending::AppLimits::default()
    );
    let details = store
        .details("msg_old")
        .await
        .unwrap()
        .expect("the message is kept");
    assert_eq!(details.summary.subject, "kept");
    let cancelled = store.details("msg_cxl").await.unwrap().unwrap();
    assert_eq!(
        cancelled.recipients[0].status,
        Status::Cancelled,
        "a cancelled message's recipient left waiting is cancelled too"
    );
    let recent = store.recent("app_old", 1_790_000_100, true).await.unwrap();
    assert_eq!(
        recent.messages,
        vec![(1_790_000_000, 1, 1)],
        "rcpt_count filled in, and the app's usage from its messages"
    );
    let t: String = client
        .query_one("SELECT transcript FROM attempts", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!t.contains("secret body") && t.contains("451 later"), "{t}");
    let versions: i64 = client
        .query_one("SELECT COUNT(*) FROM mailroom_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions as usize, mailroom_backend::pg::migrations().len());
}

#[tokio::test]
async fn postgres_over_tls_verifies_the_server_certificate() {
    let schema = PgSchema::new().await;
    let url = common::pg::schema_url(&schema.name, "require");
    let ca = common::pg::ca_file();
    assert!(
        ca.is_file(),
        "scripts/postgres.sh writes the test server's certificate to {}",
        ca.display()
    );
    let store = PgStore::connect(&url, common::pg::tls(Some(&ca)))
        .await
        .unwrap();
    store.enqueue(message("msg_tls", None)).await.unwrap();
    assert!(store.details("msg_tls").await.unwrap().is_some());
    // Without its CA, the certificate is refused, with the fix in the message.
    let err = PgStore::connect(&url, common::pg::tls(None))
        .await
        .err()
        .unwrap();
    assert!(
        err.contains("certificate") && err.contains("--extra-ca-file"),
        "{err}"
    );
}

/// A COMMIT whose answer is lost (the connection breaks after PostgreSQL got
/// it) is neither reported as failed when it committed, which would make a
/// client send the message again and the engine record its attempt twice,
/// nor reported as done when it never arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_told_from_one_that_failed() {
    use common::pg::{CommitCutter, Cut};
    let f = Fixture::postgres().await;
    let Fixture::Postgres(schema) = &f else {
        unreachable!()
    };
    let cutter = CommitCutter::start().await;
    let store = PgStore::connect(&cutter.url(&schema.url), common::pg::tls(None))
        .await
        .unwrap();

    // Committed, its answer lost: acknowledged, and stored once.
    cutter.arm(Cut::AnswerLost);
    let r = store.enqueue(message("msg_kept", None)).await;
    assert_eq!(cutter.cuts(), 1, "the proxy cut that COMMIT");
    assert!(
        matches!(&r, Ok(Enqueued::New(id)) if id == "msg_kept"),
        "a stored submission is acknowledged: {r:?}"
    );
    assert_eq!(f.rows("messages").await, 1);

    // Never arrived: an error (the client tries again), and nothing stored.
    cutter.arm(Cut::NeverArrives);
    let r = store.enqueue(message("msg_lost", None)).await;
    assert_eq!(cutter.cuts(), 2);
    assert!(
        r.is_err(),
        "a submission that was not stored is refused: {r:?}"
    );
    assert_eq!(f.rows("messages").await, 1);
    assert!(store.details("msg_lost").await.unwrap().is_none());

    // An attempt's record, committed with its answer lost: one attempt, as
    // the engine tries a failed record again.
    let claimed = store
        .claim("default", T0 + 1, 5, &lease("srv_a", 120))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    cutter.arm(Cut::AnswerLost);
    let r = store.record("msg_kept", sent("srv_a", "t"), "t").await;
    assert_eq!(cutter.cuts(), 3);
    if r.is_err() {
        store
            .record("msg_kept", sent("srv_a", "t"), "t")
            .await
            .unwrap();
    }
    assert_eq!(f.rows("attempts").await, 1, "recorded once");
    assert!(r.is_ok(), "a committed record is reported done: {r:?}");
    let d = store.details("msg_kept").await.unwrap().unwrap();
    assert_eq!(d.summary.status, Status::Sent);
    assert_eq!(d.summary.attempt_count, 1);

    // Committed, and then the server is out of reach for a second (every
    // connection broken, new ones refused, as in a restart): asked again
    // until it answers, it is acknowledged.
    cutter.arm(Cut::AnswerLostThenDown);
    let r = store.enqueue(message("msg_restart", None)).await;
    assert_eq!(cutter.cuts(), 4);
    assert!(
        matches!(&r, Ok(Enqueued::New(id)) if id == "msg_restart"),
        "a stored submission is acknowledged once the server answers again: {r:?}"
    );
    assert_eq!(f.rows("messages").await, 2);
}

/// A claim on PostgreSQL is one transaction: when its COMMIT never arrives,
/// nothing was claimed and another claim takes the messages at once (not
/// after the lease); when only the COMMIT's answer is lost, the claim still
/// hands out what it committed, and no later claim takes them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_commit_is_cut_hands_out_its_messages_or_leaves_them_due() {
    use common::pg::{CommitCutter, Cut};
    let f = Fixture::postgres().await;
    let Fixture::Postgres(schema) = &f else {
        unreachable!()
    };
    let s = f.open().await;
    for id in ["msg_a", "msg_b"] {
        s.queue.enqueue(message(id, None)).await.unwrap();
    }
    let cutter = CommitCutter::start().await;
    let cut = PgStore::connect(&cutter.url(&schema.url), common::pg::tls(None))
        .await
        .unwrap();

    cutter.arm(Cut::NeverArrives);
    let r = cut.claim("default", T0 + 1, 1, &lease("srv_a", 120)).await;
    assert_eq!(cutter.cuts(), 1, "the proxy cut the claim's COMMIT");
    assert!(r.is_err(), "nothing claimed is reported: {r:?}");
    let again = s
        .queue
        .claim("default", T0 + 1, 5, &lease("srv_b", 120))
        .await
        .unwrap();
    let ids: Vec<&str> = again.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        ["msg_a", "msg_b"],
        "due again at once, not after the lease"
    );
    s.queue
        .release(ids.iter().map(|i| i.to_string()).collect(), "srv_b")
        .await
        .unwrap();

    cutter.arm(Cut::AnswerLost);
    let r = cut
        .claim("default", T0 + 2, 1, &lease("srv_a", 120))
        .await
        .expect("a committed claim is handed out");
    assert_eq!(cutter.cuts(), 2);
    assert_eq!(r.len(), 1);
    let others = s
        .queue
        .claim("default", T0 + 2, 5, &lease("srv_b", 120))
        .await
        .unwrap();
    assert_eq!(others.len(), 1, "only the other message is left");
    assert_ne!(others[0].id, r[0].id, "never claimed twice");
}

/// A PostgreSQL database of the release before profiles (every migration
/// before theirs, with its settings, history, pause, app and message) opens
/// with all of it the profile `default`'s.
#[tokio::test]
async fn a_postgres_database_before_profiles_becomes_the_default_profile() {
    let schema = PgSchema::new().await;
    let (client, connection) = tokio_postgres::connect(&schema.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE mailroom_migrations (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        .await
        .unwrap();
    let all = mailroom_backend::pg::migrations();
    let profiles = all
        .iter()
        .position(|sql| sql.contains("CREATE TABLE profiles"))
        .unwrap();
    for (i, sql) in all.iter().take(profiles).enumerate() {
        client.batch_execute(sql).await.unwrap();
        client
            .execute(
                "INSERT INTO mailroom_migrations (version) VALUES ($1)",
                &[&(i as i32 + 1)],
            )
            .await
            .unwrap();
    }
    client
        .batch_execute(
            "INSERT INTO settings (id, version, settings, client_secret, updated_at)
               VALUES (1, 2, '{\"x\":2}', '\\x0102', '2026-11-02T00:00:00Z');
             INSERT INTO settings_history (version, changed_at, changed_fields) VALUES
               (1, '2026-11-01T00:00:00Z', 'tenant_id'), (2, '2026-11-02T00:00:00Z', 'sender_name');
             INSERT INTO delivery_pause (id, since, stage, code, message) VALUES
               (1, '2026-11-02T00:00:00Z', 'token', 'AADSTS7000215', 'refused');
             INSERT INTO apps (id, name, key_hash, allowed_from, rewrite_from, created_at)
               VALUES ('app_old', 'Old', '\\x00', '[]', 0, '2026-11-01T00:00:00Z');
             INSERT INTO messages (id, app_id, mail_from, subject, size, body, status, created_at, created_unix, updated_at, next_attempt_unix)
               VALUES ('msg_old', 'app_old', 'a@b.c', 'kept', 5, '\\x41', 'queued', '2026-11-01T00:00:00Z', 1790000000, '2026-11-01T00:00:00Z', 0);",
        )
        .await
        .unwrap();
    let store = PgStore::connect(&schema.url, common::pg::tls(None))
        .await
        .unwrap();
    let record = store.load("default").await.unwrap().expect("kept");
    assert_eq!(record.version, 2);
    assert_eq!(record.settings_json, "{\"x\":2}");
    assert_eq!(record.client_secret, Some(vec![1, 2]));
    let history = store.history("default").await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].changed_fields, vec!["sender_name"]);
    let paused = store.pause_state("default").await.unwrap().expect("paused");
    assert_eq!(paused.code.as_deref(), Some("AADSTS7000215"));
    assert_eq!(store.list_apps().await.unwrap()[0].profile, "default");
    let m = store.details("msg_old").await.unwrap().expect("kept");
    assert_eq!(m.summary.profile, "default");
    let lease = Lease {
        owner: "srv".into(),
        seconds: 60,
    };
    let claimed = store
        .claim("default", 1_790_000_001, 5, &lease)
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        1,
        "its message is the default profile's to deliver"
    );
}

/// Seven messages: five cancelled long ago, two just now.
async fn five_old_and_two_new(queue: &dyn Queue) {
    for i in 0..7 {
        let id = format!("msg_{i}");
        queue.enqueue(message(&id, None)).await.unwrap();
        let when = if i < 5 {
            "2026-01-01T00:00:00Z"
        } else {
            "2026-11-30T00:00:00Z"
        };
        queue.cancel(&id, when).await.unwrap();
    }
}

/// Final messages before `cutoff` purged `batch` at a time, past the traits:
/// `(deleted, batches)`.
async fn purge_in_batches(f: &Fixture, cutoff: &str, batch: i64) -> (u64, u32) {
    match f {
        Fixture::Sqlite(dir) => SqliteStore::open(&dir.path().join("m.db"))
            .unwrap()
            .purge_messages_in_batches(cutoff, batch)
            .await
            .unwrap(),
        Fixture::Postgres(schema) => PgStore::connect(&schema.url, common::pg::tls(None))
            .await
            .unwrap()
            .purge_messages_in_batches(cutoff, batch)
            .await
            .unwrap(),
    }
}

/// A purge with many rows due goes in batches, each its own transaction,
/// until one finds fewer than a batch; what is not due stays.
async fn a_large_purge_goes_in_batches(f: Fixture) {
    let s = f.open().await;
    five_old_and_two_new(&*s.queue).await;
    let cutoff = "2026-06-01T00:00:00Z";
    assert_eq!(purge_in_batches(&f, cutoff, 2).await, (5, 3), "2 + 2 + 1");
    let counts = s.queue.counts().await.unwrap();
    assert_eq!(counts[&Status::Cancelled], 2, "{counts:?}");
    assert!(s.queue.details("msg_6").await.unwrap().is_some());
    // Exactly a batch due: one more (empty) batch ends it.
    assert_eq!(
        purge_in_batches(&f, "2026-12-31T00:00:00Z", 2).await,
        (2, 2)
    );
    assert_eq!(s.queue.purge(cutoff).await.unwrap(), 0);
}

/// On PostgreSQL, rows another server's purge holds are skipped, not
/// waited for, and go with a later purge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_on_postgres_skips_the_rows_another_purge_holds() {
    let f = Fixture::postgres().await;
    let s = f.open().await;
    five_old_and_two_new(&*s.queue).await;
    let Fixture::Postgres(schema) = &f else {
        unreachable!()
    };
    // Another server's purge holds msg_0 in its transaction.
    let (other, conn) = tokio_postgres::connect(&schema.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    other.batch_execute("BEGIN").await.unwrap();
    other
        .execute(
            "SELECT seq FROM messages WHERE id = 'msg_0' FOR UPDATE",
            &[],
        )
        .await
        .unwrap();
    let cutoff = "2026-06-01T00:00:00Z";
    let done = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        purge_in_batches(&f, cutoff, 2),
    )
    .await
    .expect("a held row is skipped, not waited for");
    assert_eq!(done, (4, 3), "2 + 2 + 0: msg_0 is held");
    assert!(s.queue.details("msg_0").await.unwrap().is_some());
    assert!(s.queue.details("msg_1").await.unwrap().is_none());
    other.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(s.queue.purge(cutoff).await.unwrap(), 1, "let go, it goes");
    assert_eq!(s.queue.counts().await.unwrap()[&Status::Cancelled], 2);
}
