//! `mallbots-admin` end to end: the binary against the NATS at `NATS_URL` and the PostgreSQL
//! at `DATABASE_URL` (testkit defaults), with a unique prefix/stream and a fresh database per
//! test, cleaned up afterwards.

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use contracts::stores::v1::StoreCreated;
use futures_util::StreamExt;
use messaging::jetstream::{JetStream, JetStreamConfig};
use messaging::{
    Bus, CancellationToken, Envelope, HandlerError, Message, Subscription, Transport, header,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// Runs the binary with explicit connection flags (nothing inherited from the environment).
async fn admin(nats_prefix: &str, database_url: &str, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_mallbots-admin"));
    for var in [
        "NATS_URL",
        "NATS_PREFIX",
        "DATABASE_URL",
        "DATABASE_PREFIX",
        "SAGA_STEP_TIMEOUT",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("--nats-url")
        .arg(testkit::nats_url())
        .arg("--nats-prefix")
        .arg(nats_prefix)
        .arg("--database-url")
        .arg(database_url)
        .args(args);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("mallbots-admin hung")
        .expect("mallbots-admin runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs and parses stdout as JSON; panics with stderr if it failed.
async fn admin_json(nats_prefix: &str, database_url: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = admin(nats_prefix, database_url, &all).await;
    assert!(
        out.status.success(),
        "mallbots-admin {args:?} failed: {}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", text(&out.stdout)))
}

/// Deletes the test's stream when dropped, also when an assertion failed.
struct StreamGuard(String);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(testkit::delete_stream(&testkit::nats_url(), &name));
            }
        })
        .join();
    }
}

/// Polls the dead letters until there are `n`.
async fn wait_for_dead_letters(prefix: &str, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let list = admin_json(prefix, &testkit::database_url(), &["dlq", "list"]).await;
        let list = list.as_array().cloned().unwrap_or_default();
        if list.len() >= n {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{n} dead letter(s) did not appear");
}

#[tokio::test]
async fn dead_letters_are_listed_shown_replayed_and_purged_and_lag_is_reported() {
    let prefix = testkit::unique_prefix("admin_dlq");
    let js = JetStream::connect(JetStreamConfig::new(testkit::nats_url(), prefix.clone()))
        .await
        .expect("NATS");
    let _cleanup = StreamGuard(js.stream_name().to_owned());
    let bus = Bus::new(Arc::new(js.clone()));
    let shutdown = CancellationToken::new();
    // Knows StoreCreated (and refuses the store "bad" for good); any other name is unknown.
    let subscription = Subscription::new("admin-things", "test.events.Thing")
        .on::<StoreCreated, _, _>(|store, _ctx| async move {
            if store.id == "bad" {
                Err(HandlerError::permanent("store bad is refused"))
            } else {
                Ok(())
            }
        });
    let consumer = bus.subscribe(subscription, shutdown.clone()).await.unwrap();

    let subject = format!("{prefix}.test.events.Thing");
    let store = StoreCreated {
        id: "s1".into(),
        name: "Corner shop".into(),
        ..Default::default()
    };
    let mut unknown = Envelope::new(subject.clone(), &store).with_header(header::KEY, "s1");
    unknown.name = "nope.v1.Unknown".into();
    js.publish(&unknown).await.unwrap();
    let list = wait_for_dead_letters(&prefix, 1).await;
    let refused = Envelope::new(
        subject.clone(),
        &StoreCreated {
            id: "bad".into(),
            name: "Bad shop".into(),
            ..Default::default()
        },
    )
    .with_header(header::KEY, "bad");
    js.publish(&refused).await.unwrap();
    let list2 = wait_for_dead_letters(&prefix, 2).await;
    shutdown.cancel();
    let _ = consumer.task.await;

    // list: the unknown name, with its reason, consumer and attempts.
    assert_eq!(list.len(), 1);
    let first = &list2[0];
    assert_eq!(first, &list[0]);
    assert_eq!(first["originalId"], json!(unknown.id.to_string()));
    assert_eq!(first["name"], json!("nope.v1.Unknown"));
    assert_eq!(first["consumer"], json!("admin-things"));
    assert_eq!(first["attempts"], json!(1));
    assert_eq!(first["originalSubject"], json!(subject));
    let reason = first["reason"].as_str().unwrap();
    assert!(reason.contains("unknown message name"), "{reason}");
    let second = &list2[1];
    assert_eq!(second["name"], json!(StoreCreated::message_name()));
    assert!(
        second["reason"]
            .as_str()
            .unwrap()
            .contains("store bad is refused")
    );
    let seq1 = first["seq"].as_u64().unwrap();
    let seq2 = second["seq"].as_u64().unwrap();

    // --consumer filters; the human table names the reason.
    let none = admin_json(
        &prefix,
        &testkit::database_url(),
        &["dlq", "list", "--consumer", "someone-else"],
    )
    .await;
    assert_eq!(none, json!([]));
    let table = admin(
        &prefix,
        &testkit::database_url(),
        &["dlq", "list", "--limit", "1"],
    )
    .await;
    assert!(table.status.success());
    let table = text(&table.stdout);
    println!("$ mallbots-admin dlq list --limit 1\n{table}");
    assert!(table.starts_with("SEQ"), "{table}");
    assert!(table.contains("unknown message name"), "{table}");
    assert_eq!(table.lines().count(), 2, "{table}");

    // show: headers, payload, and a decoded rendering for a known name.
    let shown = admin_json(
        &prefix,
        &testkit::database_url(),
        &["dlq", "show", &seq2.to_string()],
    )
    .await;
    assert_eq!(
        shown["headers"]["Dead-Letter-Consumer"],
        json!("admin-things")
    );
    assert_eq!(shown["headers"]["Message-Key"], json!("bad"));
    assert!(!shown["payloadBase64"].as_str().unwrap().is_empty());
    let decoded = shown["decoded"].as_str().unwrap();
    assert!(
        decoded.contains("StoreCreated") && decoded.contains("Bad shop"),
        "{decoded}"
    );
    let unknown_shown = admin(
        &prefix,
        &testkit::database_url(),
        &["dlq", "show", &seq1.to_string()],
    )
    .await;
    assert!(unknown_shown.status.success());
    let unknown_text = text(&unknown_shown.stdout);
    let known_shown = admin(
        &prefix,
        &testkit::database_url(),
        &["dlq", "show", &seq2.to_string()],
    )
    .await;
    assert!(known_shown.status.success());
    println!(
        "$ mallbots-admin dlq show {seq2}\n{}",
        text(&known_shown.stdout)
    );
    assert!(
        unknown_text.contains("Dead-Letter-Reason"),
        "{unknown_text}"
    );
    assert!(
        unknown_text.contains("not a known contract message"),
        "{unknown_text}"
    );

    // replay: arrives on the original subject with a fresh id and the other headers, and the
    // dead letter is gone.
    let mut watcher = js.client().subscribe(subject.clone()).await.unwrap();
    js.client().flush().await.unwrap();
    let replayed = admin_json(
        &prefix,
        &testkit::database_url(),
        &["dlq", "replay", &seq1.to_string(), "--rate", "50"],
    )
    .await;
    assert_eq!(replayed[0]["replayed"], json!(true), "{replayed}");
    let arrived = tokio::time::timeout(Duration::from_secs(10), watcher.next())
        .await
        .expect("the replayed message arrives")
        .unwrap();
    let headers = arrived.headers.expect("headers");
    assert_eq!(
        headers.get(header::NAME).unwrap().as_str(),
        "nope.v1.Unknown"
    );
    let new_id = headers
        .get(header::NATS_MSG_ID)
        .unwrap()
        .as_str()
        .to_owned();
    assert_ne!(new_id, unknown.id.to_string());
    assert_eq!(replayed[0]["newId"], json!(new_id));
    assert_eq!(headers.get(header::KEY).unwrap().as_str(), "s1");
    assert_eq!(
        headers.get("Replay-Of").unwrap().as_str(),
        unknown.id.to_string()
    );
    assert!(headers.get(header::DEAD_LETTER_REASON).is_none());
    assert_eq!(arrived.payload, unknown.payload);
    let left = admin_json(&prefix, &testkit::database_url(), &["dlq", "list"]).await;
    assert_eq!(left.as_array().unwrap().len(), 1, "{left}");
    assert_eq!(left[0]["seq"], json!(seq2));
    let gone = admin(
        &prefix,
        &testkit::database_url(),
        &["dlq", "show", &seq1.to_string()],
    )
    .await;
    assert!(!gone.status.success());

    // lag: the stopped consumer has the replayed message pending and one dead letter.
    let lag = admin_json(
        &prefix,
        &testkit::database_url(),
        &["lag", "--consumer", "admin-things"],
    )
    .await;
    assert_eq!(lag[0]["consumer"], json!("admin-things"));
    assert_eq!(lag[0]["pending"], json!(1), "{lag}");
    assert_eq!(lag[0]["ackPending"], json!(0), "{lag}");
    assert_eq!(lag[0]["deadLetters"], json!(1), "{lag}");
    let lag_table = admin(&prefix, &testkit::database_url(), &["lag"]).await;
    assert!(lag_table.status.success());
    println!("$ mallbots-admin lag\n{}", text(&lag_table.stdout));
    assert!(text(&lag_table.stdout).contains("admin-things"));

    // purge: refused without --yes, then empties.
    let refused_purge = admin(&prefix, &testkit::database_url(), &["dlq", "purge"]).await;
    assert!(!refused_purge.status.success());
    assert!(text(&refused_purge.stderr).contains("--yes"));
    let still = admin_json(&prefix, &testkit::database_url(), &["dlq", "list"]).await;
    assert_eq!(still.as_array().unwrap().len(), 1);
    let purged = admin_json(
        &prefix,
        &testkit::database_url(),
        &["dlq", "purge", "--yes"],
    )
    .await;
    assert_eq!(purged["purged"], json!(1));
    let empty = admin_json(&prefix, &testkit::database_url(), &["dlq", "list"]).await;
    assert_eq!(empty, json!([]));
}

#[tokio::test]
async fn outbox_backlog_is_reported_per_schema() {
    let db = testkit::TestDatabase::create("admin_outbox").await;
    let pool = persistence::connect(db.url(), "ordering").await.unwrap();
    persistence::migrate_common(&pool, "ordering")
        .await
        .unwrap();
    let env = Envelope::new(
        "mallbots.ordering.events.Order",
        &contracts::ordering::v1::OrderCreated::default(),
    );
    let mut tx = pool.begin().await.unwrap();
    persistence::outbox::enqueue(&mut tx, &[env]).await.unwrap();
    tx.commit().await.unwrap();
    pool.close().await;

    let prefix = testkit::unique_prefix("admin_outbox");
    let rows = admin_json(&prefix, db.url(), &["outbox"]).await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 9, "every service schema");
    let ordering = rows.iter().find(|r| r["schema"] == "ordering").unwrap();
    assert_eq!(ordering["status"], json!("ok"));
    assert_eq!(ordering["unsent"], json!(1));
    assert!(ordering["oldestUnsentAgeSeconds"].as_f64().unwrap() >= 0.0);
    let stores = rows.iter().find(|r| r["schema"] == "stores").unwrap();
    assert_eq!(stores["status"], json!("no outbox table"));

    // One schema, located with --db-for while DATABASE_URL points elsewhere.
    let elsewhere = testkit::replace_database(&testkit::database_url(), "no_such_database_here");
    let db_for = format!("ordering={}", db.url());
    let out = admin(
        &prefix,
        &elsewhere,
        &["outbox", "--schema", "ordering", "--db-for", &db_for],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    println!("$ mallbots-admin outbox --schema ordering --db-for ordering=…\n{table}");
    assert!(table.starts_with("SCHEMA"), "{table}");
    let line = table.lines().nth(1).unwrap();
    assert!(line.starts_with("ordering  1"), "{table}");
    assert!(line.contains(" ok "), "{table}");
}

/// The engine's command log (order-saga's migration `0001_saga_commands.sql`).
const SAGA_COMMANDS: &str = "CREATE TABLE saga_commands (
    command_id   uuid        PRIMARY KEY,
    saga_type    text        NOT NULL,
    saga_id      text        NOT NULL,
    step         integer     NOT NULL,
    compensating boolean     NOT NULL,
    name         text        NOT NULL,
    issued_at    timestamptz NOT NULL DEFAULT now(),
    outcome      text,
    settled_at   timestamptz
)";

#[tokio::test]
async fn sagas_are_listed_shown_retried_and_aborted() {
    let db = testkit::TestDatabase::create("admin_saga").await;
    let pool = persistence::connect(db.url(), "cosec").await.unwrap();
    persistence::migrate_common(&pool, "cosec").await.unwrap();
    sqlx::query(SAGA_COMMANDS).execute(&pool).await.unwrap();

    // A create-order saga whose payment failed and whose shopping-list cancellation failed
    // too: stuck at step 2, compensating, as the engine leaves it.
    let bus = Bus::new(Arc::new(messaging::memory::Memory::new("mallbots")));
    let order_id = Uuid::now_v7().to_string();
    let cancel = bus.command(
        &contracts::depot::v1::CancelShoppingList {
            id: "list-1".into(),
        },
        contracts::CREATE_ORDER_REPLIES,
    );
    let commands = [
        (
            Uuid::now_v7(),
            1,
            false,
            "customers.v1.AuthorizeCustomer",
            "success",
        ),
        (
            Uuid::now_v7(),
            2,
            false,
            "depot.v1.CreateShoppingList",
            "success",
        ),
        (
            Uuid::now_v7(),
            3,
            false,
            "payments.v1.ConfirmPayment",
            "failure",
        ),
        (cancel.id, 2, true, "depot.v1.CancelShoppingList", "failure"),
    ];
    for (i, (id, step, compensating, name, outcome)) in commands.iter().enumerate() {
        sqlx::query(
            "INSERT INTO saga_commands
                 (command_id, saga_type, saga_id, step, compensating, name, issued_at, outcome,
                  settled_at)
             VALUES ($1, 'cosec.CreateOrder', $2, $3, $4, $5,
                     now() - make_interval(secs => $6), $7, now())",
        )
        .bind(id)
        .bind(&order_id)
        .bind(step)
        .bind(compensating)
        .bind(name)
        .bind(f64::from(10 - i as u32))
        .bind(outcome)
        .execute(&pool)
        .await
        .unwrap();
    }
    let mut tx = pool.begin().await.unwrap();
    persistence::outbox::enqueue(&mut tx, std::slice::from_ref(&cancel))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    sqlx::query("UPDATE outbox SET sent_at = now()")
        .execute(&pool)
        .await
        .unwrap();
    let data = json!({
        "data": {"orderId": order_id, "customerId": "c-1", "paymentId": "p-1",
                 "shoppingId": "list-1", "items": [], "total": 12.5},
        "pending": null,
        "correlationId": order_id,
        "traceParent": null,
        "failure": "step 3 (confirm payment): payments.v1.ConfirmPayment failed",
    });
    sqlx::query(
        "INSERT INTO sagas (saga_type, id, version, step, compensating, done, data, deadline,
                            stuck_reason)
         VALUES ('cosec.CreateOrder', $1, 5, 2, true, false, $2, NULL, $3)",
    )
    .bind(&order_id)
    .bind(sqlx::types::Json(&data))
    .bind("step 2 (create shopping list): compensation depot.v1.CancelShoppingList failed")
    .execute(&pool)
    .await
    .unwrap();
    // A finished saga beside it.
    let done_id = Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO sagas (saga_type, id, version, step, compensating, done, data)
         VALUES ('cosec.CreateOrder', $1, 7, 5, false, true, $2)",
    )
    .bind(&done_id)
    .bind(sqlx::types::Json(json!({"data": {}, "pending": null})))
    .execute(&pool)
    .await
    .unwrap();

    let prefix = testkit::unique_prefix("admin_saga");
    let url = db.url();

    // list
    let stuck = admin_json(&prefix, url, &["saga", "list", "--status", "stuck"]).await;
    assert_eq!(stuck.as_array().unwrap().len(), 1, "{stuck}");
    assert_eq!(stuck[0]["id"], json!(order_id));
    assert_eq!(stuck[0]["status"], json!("stuck"));
    let all = admin_json(&prefix, url, &["saga", "list"]).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let completed = admin_json(&prefix, url, &["saga", "list", "--status", "completed"]).await;
    assert_eq!(completed[0]["id"], json!(done_id));

    // show
    let shown = admin_json(&prefix, url, &["saga", "show", &order_id]).await;
    assert_eq!(shown["status"], json!("stuck"));
    assert_eq!(shown["stepName"], json!("create shopping list"));
    assert_eq!(shown["commands"].as_array().unwrap().len(), 4);
    assert_eq!(
        shown["commands"][3]["name"],
        json!("depot.v1.CancelShoppingList")
    );
    assert_eq!(shown["data"]["data"]["shoppingId"], json!("list-1"));
    let human = admin(&prefix, url, &["saga", "show", &order_id]).await;
    assert!(human.status.success());
    let human = text(&human.stdout);
    println!("$ mallbots-admin saga show {order_id}\n{human}");
    assert!(human.contains("stuck reason  step 2"), "{human}");
    assert!(human.contains("depot.v1.CancelShoppingList"), "{human}");

    // retry: the failed compensation goes out again through the outbox, with a new id, and
    // becomes the outstanding command.
    let retried = admin_json(
        &prefix,
        url,
        &["saga", "retry", &order_id, "--step-timeout", "45s"],
    )
    .await;
    assert_eq!(retried["status"], json!("compensating"), "{retried}");
    assert_eq!(
        retried["resent"]["previousCommandId"],
        json!(cancel.id.to_string())
    );
    let new_id: Uuid = retried["resent"]["commandId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(new_id, cancel.id);
    let (name, subject, payload, headers): (String, String, Vec<u8>, sqlx::types::Json<Value>) =
        sqlx::query_as(
            "SELECT name, subject, payload, headers FROM outbox
             WHERE id = $1 AND sent_at IS NULL",
        )
        .bind(new_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(name, cancel.name);
    assert_eq!(subject, cancel.subject);
    assert_eq!(payload, cancel.payload.to_vec());
    assert_eq!(
        headers.0[header::REPLY_TO],
        json!(cancel.header(header::REPLY_TO).unwrap())
    );
    let (version, stuck_reason, data, has_deadline): (
        i64,
        Option<String>,
        sqlx::types::Json<Value>,
        bool,
    ) = sqlx::query_as(
        "SELECT version, stuck_reason, data, deadline > now() + interval '30 seconds'
             FROM sagas WHERE id = $1",
    )
    .bind(&order_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(version, 6);
    assert_eq!(stuck_reason, None);
    assert!(has_deadline);
    assert_eq!(data.0["pending"]["commandId"], json!(new_id.to_string()));
    assert_eq!(
        data.0["pending"]["command"],
        json!("depot.v1.CancelShoppingList")
    );
    assert_eq!(data.0["data"]["shoppingId"], json!("list-1"));
    let logged: (i32, bool, Option<String>) = sqlx::query_as(
        "SELECT step, compensating, outcome FROM saga_commands WHERE command_id = $1",
    )
    .bind(new_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(logged, (2, true, None));
    // Only stuck sagas are retried.
    let again = admin(&prefix, url, &["saga", "retry", &order_id]).await;
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("only a stuck saga"),
        "{}",
        text(&again.stderr)
    );

    // abort: done, visibly aborted with the reason; the outstanding command is closed.
    let aborted = admin_json(
        &prefix,
        url,
        &[
            "saga",
            "abort",
            &order_id,
            "--reason",
            "list cancelled by hand",
        ],
    )
    .await;
    assert_eq!(aborted["status"], json!("aborted"));
    assert_eq!(aborted["previousStatus"], json!("compensating"));
    assert_eq!(aborted["outstandingCommandsClosed"], json!(1));
    let shown = admin_json(&prefix, url, &["saga", "show", &order_id]).await;
    assert_eq!(shown["status"], json!("aborted"));
    assert_eq!(shown["done"], json!(true));
    assert_eq!(shown["aborted"]["reason"], json!("list cancelled by hand"));
    assert_eq!(
        shown["failure"],
        json!("aborted by operator: list cancelled by hand")
    );
    assert_eq!(shown["pendingCommandId"], Value::Null);
    assert_eq!(shown["commands"][4]["outcome"], json!("aborted"));
    let human_list = admin(&prefix, url, &["saga", "list"]).await;
    assert!(human_list.status.success());
    println!("$ mallbots-admin saga list\n{}", text(&human_list.stdout));
    assert!(text(&human_list.stdout).contains("aborted"));
    let listed = admin_json(&prefix, url, &["saga", "list", "--status", "aborted"]).await;
    assert_eq!(listed[0]["id"], json!(order_id));
    let twice = admin(&prefix, url, &["saga", "abort", &order_id, "--reason", "x"]).await;
    assert!(!twice.status.success());
    let missing = admin(&prefix, url, &["saga", "show", "no-such-saga"]).await;
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("no saga no-such-saga"));
    pool.close().await;
}

/// Inserts a `cosec.CreateOrder` saga row as the engine writes it.
async fn insert_saga(
    pool: &sqlx::PgPool,
    id: &str,
    step: i32,
    compensating: bool,
    data: Value,
    stuck_reason: &str,
) {
    sqlx::query(
        "INSERT INTO sagas (saga_type, id, version, step, compensating, done, data, deadline,
                            stuck_reason)
         VALUES ('cosec.CreateOrder', $1, 3, $2, $3, false, $4, NULL, $5)",
    )
    .bind(id)
    .bind(step)
    .bind(compensating)
    .bind(sqlx::types::Json(data))
    .bind(stuck_reason)
    .execute(pool)
    .await
    .unwrap();
}

async fn log_command(
    pool: &sqlx::PgPool,
    saga: &str,
    command: &Envelope,
    step: i32,
    outcome: &str,
) {
    sqlx::query(
        "INSERT INTO saga_commands
             (command_id, saga_type, saga_id, step, compensating, name, outcome, settled_at)
         VALUES ($1, 'cosec.CreateOrder', $2, $3, true, $4, $5, now())",
    )
    .bind(command.id)
    .bind(saga)
    .bind(step)
    .bind(&command.name)
    .bind(outcome)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn saga_retry_resends_a_timed_out_compensation_and_explains_what_it_cannot_resend() {
    let db = testkit::TestDatabase::create("admin_retry").await;
    let pool = persistence::connect(db.url(), "cosec").await.unwrap();
    persistence::migrate_common(&pool, "cosec").await.unwrap();
    sqlx::query(SAGA_COMMANDS).execute(&pool).await.unwrap();
    let bus = Bus::new(Arc::new(messaging::memory::Memory::new("mallbots")));
    let prefix = testkit::unique_prefix("admin_retry");
    let url = db.url();

    // Stuck because RejectOrder got no reply in time: the engine keeps it pending.
    let timed_out_id = Uuid::now_v7().to_string();
    let reject = bus.command(
        &contracts::ordering::v1::RejectOrder {
            id: timed_out_id.clone(),
        },
        contracts::CREATE_ORDER_REPLIES,
    );
    log_command(&pool, &timed_out_id, &reject, 0, "timed_out").await;
    let mut tx = pool.begin().await.unwrap();
    persistence::outbox::enqueue(&mut tx, std::slice::from_ref(&reject))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    insert_saga(
        &pool,
        &timed_out_id,
        0,
        true,
        json!({"data": {"orderId": timed_out_id}, "failure": "step 1 (authorize customer): customers.v1.AuthorizeCustomer failed",
               "pending": {"commandId": reject.id, "command": reject.name}}),
        "step 0 (reject order): no reply to compensation ordering.v1.RejectOrder before its deadline",
    )
    .await;
    let retried = admin_json(&prefix, url, &["saga", "retry", &timed_out_id]).await;
    assert_eq!(
        retried["resent"]["previousCommandId"],
        json!(reject.id.to_string())
    );
    assert_eq!(
        retried["resent"]["command"],
        json!("ordering.v1.RejectOrder")
    );
    assert_eq!(retried["status"], json!("compensating"));
    let shown = admin_json(&prefix, url, &["saga", "show", &timed_out_id]).await;
    assert_eq!(shown["pendingCommandId"], retried["resent"]["commandId"]);
    assert_eq!(shown["commands"][0]["outcome"], json!("timed_out"));
    assert_eq!(shown["commands"][1]["outcome"], Value::Null);

    // Stuck because the compensation could not even be built: nothing was sent to re-send.
    let unbuilt_id = Uuid::now_v7().to_string();
    insert_saga(
        &pool,
        &unbuilt_id,
        2,
        true,
        json!({"data": {"orderId": unbuilt_id}, "pending": null}),
        "step 2 (create shopping list): compensation depot.v1.CancelShoppingList could not be built: the shopping list id is not known",
    )
    .await;
    let out = admin(&prefix, url, &["saga", "retry", &unbuilt_id]).await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("nothing to re-send"), "{err}");

    // Stuck long ago: the failed command's outbox row was cleaned up.
    let old_id = Uuid::now_v7().to_string();
    let cancel = bus.command(
        &contracts::depot::v1::CancelShoppingList { id: "l".into() },
        contracts::CREATE_ORDER_REPLIES,
    );
    log_command(&pool, &old_id, &cancel, 2, "failure").await;
    insert_saga(
        &pool,
        &old_id,
        2,
        true,
        json!({"data": {"orderId": old_id}, "pending": null}),
        "step 2 (create shopping list): compensation depot.v1.CancelShoppingList failed",
    )
    .await;
    let out = admin(&prefix, url, &["saga", "retry", &old_id]).await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("no longer in the outbox"), "{err}");
    // Nothing changed for the refused ones.
    let (stuck,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM sagas WHERE stuck_reason IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stuck, 2);
    pool.close().await;
}
