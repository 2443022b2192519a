//! `inkflow review` with 1,000 cards: how long the page takes to load (gathered from the
//! journal and metadata, rendered, sent over loopback) and one decision's round trip (the
//! request, the output lock, the journal's transaction, the answer).

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use inkflow::review::ReviewServer;
use serde_json::json;

#[path = "common/offline_batch.rs"]
mod offline_batch;

use offline_batch::{ITEMS, make_batch};

fn review(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    make_batch(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (base, token) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // No run is started from the page here: the executable is never used.
        let server = ReviewServer::new(dir.path(), port, None, "inkflow".into()).unwrap();
        let url = server.url(port);
        tokio::spawn(Arc::new(server).serve(listener));
        let (base, token) = url.split_once("?token=").unwrap();
        (base.to_owned(), token.to_owned())
    });
    inkflow::tls::install_crypto_provider();
    let client = reqwest::Client::new();
    let page_url = format!("{base}?token={token}");
    let page = runtime.block_on(async { client.get(&page_url).send().await.unwrap().text().await.unwrap() });
    assert_eq!(page.matches("<article class=card").count(), ITEMS);
    println!("review page for {ITEMS} cards: {} KiB", page.len() / 1024);
    let key = page.split("data-key=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let decide = |action: &str| {
        let request = client
            .post(format!("{base}api/decide?token={token}"))
            .header("origin", base.trim_end_matches('/'))
            .json(&json!({"key": key, "action": action}));
        async move {
            let response = request.send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.text().await.unwrap());
        }
    };

    let mut group = c.benchmark_group("review");
    group.sample_size(10);
    group.bench_function("page_load_1000_cards", |b| {
        b.iter(|| {
            runtime.block_on(async { client.get(&page_url).send().await.unwrap().bytes().await.unwrap() })
        })
    });
    group.bench_function("approve_and_undo_round_trips", |b| {
        b.iter(|| {
            runtime.block_on(async {
                decide("approve").await;
                decide("undo").await;
            })
        })
    });
    group.finish();
}

criterion_group!(benches, review);
criterion_main!(benches);
