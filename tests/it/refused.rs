//! Events are evaluated before the commit that accepts them: when that commit
//! fails, the source is refused and the handler state the evaluation advanced
//! is put back, so the sender's retry is counted once.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{catcher, eventually_async, start_kairo, status_of};
use crate::hardening::SmallDisk;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_refused_on_a_full_disk_is_counted_once_when_sent_again() {
    let disk = SmallDisk::mount("8m");
    let counts = catcher().await;
    let rule = format!(
        r#"if eventType == "TrafficUsage" {{
            webhook(#{{ url: "{}", method: "POST", body: #{{ id: event.id, used: traffic_mib("sim", simId, "day") }} }});
        }}"#,
        counts.url
    );
    let store = disk.path().join("kairo");
    let kairo = start_kairo(&[("count.rhai", &rule)], |c| c.store.path = store.clone()).await;
    let traffic = |id: &str| json!({"id": id, "eventType": "TrafficUsage", "simId": "sim-t", "payload": {"bytes": 1_048_576}});
    let filler = disk.fill(1_500_000);
    let (mut accepted, mut refused) = (0usize, None);
    for round in 0..200 {
        let mut batch = vec![traffic(&format!("t-{round}"))];
        batch.extend((0..50).map(|i| {
            json!({"id": format!("pad-{round}-{i}"), "simId": format!("p-{i}"), "pad": "x".repeat(2_000)})
        }));
        let answer = (kairo.http.post(format!("{}/v1/events", kairo.url)))
            .json(&batch)
            .send()
            .await
            .unwrap();
        match answer.status().as_u16() {
            202 => accepted += 1,
            503 => {
                refused = Some(format!("t-{round}"));
                break;
            }
            other => panic!("unexpected {other}: {}", answer.text().await.unwrap()),
        }
    }
    let refused = refused.expect("a full disk refuses events");
    std::fs::remove_file(filler).unwrap();
    let readyz = format!("{}/readyz", kairo.url);
    eventually_async("ready again", Duration::from_secs(20), || async {
        status_of(&readyz).await == 200
    })
    .await;

    // The sender tries the refused traffic again: counted now, and once.
    let (status, answer) = kairo.post(&traffic(&refused).to_string()).await;
    assert_eq!((status.as_u16(), &answer["duplicates"]), (202, &json!(0)));
    tokio::time::timeout(Duration::from_secs(30), kairo.router.idle())
        .await
        .expect("every accepted event evaluated and acted on");
    let bodies: Vec<Value> = counts.bodies();
    assert_eq!(
        bodies.len(),
        accepted + 1,
        "one call per accepted traffic event: {bodies:?}"
    );
    let resent = bodies.iter().find(|b| b["id"] == refused.as_str()).unwrap();
    assert_eq!(
        resent["used"].as_f64(),
        Some((accepted + 1) as f64),
        "{accepted} MiB accepted before the disk was full, then the resent MiB; the refused attempt counted nothing"
    );
}
