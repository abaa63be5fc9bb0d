//! Tests of the module beside this file.
use super::*;

#[test]
fn backoff_doubles_is_capped_and_jittered() {
    let config = DispatchConfig {
        backoff_initial_ms: 100,
        backoff_max_ms: 1_000,
        ..DispatchConfig::default()
    };
    assert_eq!(
        backoff_with_jitter(&config, 1, 1.0),
        Duration::from_millis(100)
    );
    assert_eq!(
        backoff_with_jitter(&config, 1, 0.0),
        Duration::from_millis(50)
    );
    assert_eq!(
        backoff_with_jitter(&config, 3, 1.0),
        Duration::from_millis(400)
    );
    assert_eq!(
        backoff_with_jitter(&config, 10, 1.0),
        Duration::from_millis(1_000)
    );
    assert_eq!(
        backoff_with_jitter(&config, 10, 0.0),
        Duration::from_millis(500)
    );
    assert_eq!(
        backoff_with_jitter(&config, 99, 0.5),
        Duration::from_millis(750)
    );
    assert_eq!(
        backoff(&config, 1, Some(Duration::from_secs(7))),
        Duration::from_secs(7)
    );
}

#[tokio::test]
async fn in_flight_wakes_waiters_at_zero() {
    let in_flight = Arc::new(InFlight::default());
    in_flight.add(2);
    let waiter = tokio::spawn({
        let in_flight = in_flight.clone();
        async move { in_flight.wait_idle().await }
    });
    in_flight.done(1);
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    in_flight.done(1);
    waiter.await.unwrap();
}
