//! The store's durable creates, measured with criterion on a real SQLite file (WAL,
//! `synchronous=FULL`, as `outdial serve` opens it), beside its peer in the same run: SQLite
//! alone inserting one row of a call's size per commit. Cases: one call per request (one
//! commit each), a batch of 100 calls (one commit), and 64 single creates at once (the store
//! thread groups them into few commits: group commit).
//!
//! Run: `cargo bench -p outdial-bench --bench store_insert` (figures: `docs/benchmarks.md`).
//! Disk-bound: compare only figures of the same run.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use outdial_control::model::NewCall;
use outdial_control::store::sqlite::SqliteStore;
use outdial_control::store::{CallStore, TenantStore};
use time::OffsetDateTime;

fn call(n: usize) -> NewCall {
    let mut vars = serde_json::Map::new();
    vars.insert("name".to_owned(), serde_json::Value::from("bench"));
    NewCall {
        tenant: "dev".to_owned(),
        to: format!("sip:+1555{n:07}@192.0.2.1:5060"),
        target_uri: format!("sip:+1555{n:07}@192.0.2.1:5060"),
        url: "http://127.0.0.1:9/app.vxml".to_owned(),
        vars,
        ..NewCall::default()
    }
}

fn sqlite_alone(c: &mut Criterion, dir: &std::path::Path) {
    let db = rusqlite::Connection::open(dir.join("alone.sqlite")).expect("open");
    db.pragma_update(None, "journal_mode", "WAL").expect("wal");
    db.pragma_update(None, "synchronous", "FULL").expect("full");
    db.execute(
        "CREATE TABLE calls (id TEXT PRIMARY KEY, tenant TEXT, status TEXT, to_uri TEXT, \
         url TEXT, vars TEXT, created_at TEXT)",
        [],
    )
    .expect("table");
    let mut n = 0u64;
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sqlite_alone_1_row_per_commit", |b| {
        b.iter(|| {
            n += 1;
            db.execute(
                "INSERT INTO calls VALUES (?1, 'dev', 'queued', 'sip:+15550100@192.0.2.1:5060', \
                 'http://127.0.0.1:9/app.vxml', '{\"name\":\"bench\"}', '2026-12-05T00:00:00Z')",
                [format!("cal_{n:020}")],
            )
        })
    });
    group.finish();
    let rows: i64 = db
        .query_row("SELECT count(*) FROM calls", [], |r| r.get(0))
        .expect("count");
    assert_eq!(u64::try_from(rows).ok(), Some(n), "every insert committed");
}

fn store(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    sqlite_alone(c, dir.path());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = Arc::new(SqliteStore::open(&dir.path().join("outdial.sqlite")).expect("store"));
    rt.block_on(store.ensure_dev_tenant(dir.path()))
        .expect("dev tenant");
    let mut n = 0usize;
    let mut created = 0usize;
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1));
    group.bench_function("create_1_call", |b| {
        b.iter(|| {
            n += 1;
            let out = rt.block_on(store.create_calls(
                "dev",
                vec![call(n)],
                None,
                OffsetDateTime::now_utc(),
            ));
            created += out.as_ref().map_or(0, |c| c.records.len());
            black_box(out)
        })
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("create_100_calls_one_commit", |b| {
        b.iter(|| {
            let batch: Vec<NewCall> = (0..100).map(|i| call(n + i)).collect();
            n += 100;
            let out =
                rt.block_on(store.create_calls("dev", batch, None, OffsetDateTime::now_utc()));
            created += out.as_ref().map_or(0, |c| c.records.len());
            black_box(out)
        })
    });
    group.throughput(Throughput::Elements(64));
    group.bench_function("create_64_concurrent_group_commit", |b| {
        b.iter(|| {
            let first = n;
            n += 64;
            let creates = (0..64).map(|i| {
                store.create_calls(
                    "dev",
                    vec![call(first + i)],
                    None,
                    OffsetDateTime::now_utc(),
                )
            });
            let results = rt.block_on(futures_util::future::join_all(creates));
            created += results
                .iter()
                .map(|r| r.as_ref().map_or(0, |c| c.records.len()))
                .sum::<usize>();
        })
    });
    group.finish();
    assert_eq!(created, n, "every create stored its calls");
}

criterion_group!(benches, store);
criterion_main!(benches);
