//! The built-in Postgres sink against a real PostgreSQL 15: a replayed or delayed older change of
//! a key (a batch consumed again after a crash or a rebalance) never overwrites a newer one, for
//! upserts and deletes alike, and the sink table keeps exactly its own columns.

mod common;

use serde_json::{json, Map, Value};
use xgserve::stream::pg::{Op, Sink};

fn upsert(id: i64, price: i64, offset: i64) -> Op {
    Op::Upsert {
        row: row(json!({"id": id, "price": price})),
        types: None,
        position: (0, offset),
    }
}

fn delete(id: i64, offset: i64) -> Op {
    Op::Delete {
        key: row(json!({"id": id})),
        position: (0, offset),
    }
}

fn row(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

async fn table(db: &tokio_postgres::Client) -> Vec<(i64, i64)> {
    db.query("SELECT id, price FROM priced ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
        .collect()
}

/// A PostgreSQL of its own, its logs in `target/<folder>`.
async fn postgres(folder: &str) -> common::services::Postgres {
    let out = common::repo().join("target").join(folder);
    std::fs::create_dir_all(&out).unwrap();
    tokio::task::spawn_blocking(move || common::services::Postgres::start(&out))
        .await
        .unwrap()
}

#[tokio::test]
async fn an_older_change_never_overwrites_a_newer_one() {
    let postgres = postgres("pg-sink").await;
    let mut sink = Sink::connect(&postgres.url("car_database"), "priced", "id")
        .await
        .unwrap();
    let db = postgres.connect().await;
    sink.apply(&[upsert(1, 100, 10), upsert(2, 200, 11), upsert(3, 300, 12)])
        .await
        .unwrap();
    assert_eq!(table(&db).await, [(1, 100), (2, 200), (3, 300)]);

    // A replay of older changes: key 1's older version, key 2's older delete. Neither applies.
    sink.apply(&[upsert(1, 90, 5), delete(2, 6)]).await.unwrap();
    assert_eq!(table(&db).await, [(1, 100), (2, 200), (3, 300)]);

    // Newer ones do; in one batch the last change of a key wins.
    sink.apply(&[
        upsert(1, 110, 20),
        delete(3, 21),
        upsert(2, 210, 22),
        upsert(2, 220, 23),
    ])
    .await
    .unwrap();
    assert_eq!(table(&db).await, [(1, 110), (2, 220)]);

    // A delayed copy of key 3's insert, older than its delete: the row stays deleted.
    sink.apply(&[upsert(3, 300, 12)]).await.unwrap();
    assert_eq!(table(&db).await, [(1, 110), (2, 220)]);

    // The sink table has its own columns only; the positions are beside it.
    let columns: Vec<String> = db
        .query(
            "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'priced' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(columns, ["id", "price"]);
}

#[tokio::test]
async fn rows_postgres_refuses_are_returned_and_the_rest_applied() {
    let postgres = postgres("pg-sink-refused").await;
    let db = postgres.connect().await;
    // A table of the operator's, stricter than the data: no negative prices.
    db.batch_execute("CREATE TABLE priced (id BIGINT PRIMARY KEY, price BIGINT CHECK (price >= 0))")
        .await
        .unwrap();
    let mut sink = Sink::connect(&postgres.url("car_database"), "priced", "id")
        .await
        .unwrap();
    let applied = sink
        .apply(&[
            upsert(1, 100, 1),
            upsert(2, -5, 2),
            upsert(3, 300, 3),
            delete(1, 4),
            upsert(4, -1, 5),
        ])
        .await
        .unwrap();
    let refused: Vec<usize> = applied.refused.iter().map(|(i, _)| *i).collect();
    assert_eq!(refused, [1, 4], "{:?}", applied.refused);
    assert!(applied.refused[0].1.contains("23514"), "{:?}", applied.refused);
    assert_eq!(
        table(&db).await,
        [(3, 300)],
        "the others applied, in order (1 then deleted)"
    );
    assert_eq!(applied.changed, 3);
}
