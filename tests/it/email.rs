//! Email through a real SMTP server.

use std::time::Duration;

use crate::common::*;

#[tokio::test]
async fn email_is_delivered_over_smtp_with_its_content() {
    let smtp = smtp_server();
    let rule = r#"
        if eventType == "SimSpeedClassChanged" {
            email("fleet-team@example.com", `Speed class of ${simId} changed`,
                  `SIM ${simId} is now ${payload.newSpeedClass}.`);
        }
    "#;
    let kairo = start_kairo(&[("mail.rhai", rule)], |c| {
        c.plugins.email.smtp_url = Some(format!("smtp://127.0.0.1:{}", smtp.port));
        c.plugins.email.from = Some("Kairo <kairo@example.com>".into());
    })
    .await;
    kairo
        .post(r#"{"eventType": "SimSpeedClassChanged", "simId": "s-1", "payload": {"newSpeedClass": "s1.minimum"}}"#)
        .await;
    kairo.router.idle().await;
    let history = kairo.router.history();
    assert!(history[0].succeeded, "{history:?}");

    // The SMTP server writes the mail after acknowledging it; allow it a moment.
    eventually("mail in the maildir", Duration::from_secs(10), || {
        !smtp.messages().is_empty()
    })
    .await;
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1);
    let mail = &messages[0];
    assert!(mail.contains("To: fleet-team@example.com"), "{mail}");
    assert!(mail.contains("From: Kairo <kairo@example.com>"), "{mail}");
    assert!(
        mail.contains("Subject: Speed class of s-1 changed"),
        "{mail}"
    );
    assert!(mail.contains("SIM s-1 is now s1.minimum."), "{mail}");
}

#[tokio::test]
async fn unreachable_smtp_server_is_retried_then_reported() {
    let port = free_port();
    let kairo = start_kairo(
        &[("mail.rhai", r#"email("a@example.com", "s", "b");"#)],
        |c| {
            c.plugins.email.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
            c.plugins.email.from = Some("kairo@example.com".into());
            c.dispatch.max_attempts = 2;
        },
    )
    .await;
    kairo.post("{}").await;
    kairo.router.idle().await;
    let record = &kairo.router.history()[0];
    assert_eq!((record.succeeded, record.attempts), (false, 2));
    assert!(
        record.error.as_deref().unwrap().starts_with("SMTP"),
        "{record:?}"
    );
}

#[tokio::test]
async fn unconfigured_email_names_the_config_key() {
    let kairo = start_kairo(
        &[("mail.rhai", r#"email("a@example.com", "s", "b");"#)],
        |_| {},
    )
    .await;
    kairo.post("{}").await;
    kairo.router.idle().await;
    let record = &kairo.router.history()[0];
    assert_eq!(record.attempts, 1);
    assert!(
        record
            .error
            .as_deref()
            .unwrap()
            .contains("plugins.email.smtp_url")
    );
}

#[tokio::test]
async fn a_server_without_a_usable_login_fails_at_once_without_leaking_the_password() {
    // aiosmtpd offers no AUTH here, so lettre finds no compatible mechanism:
    // a configuration problem that no retry fixes.
    let smtp = smtp_server();
    let kairo = start_kairo(
        &[("mail.rhai", r#"email("a@example.com", "s", "b");"#)],
        |c| {
            c.plugins.email.smtp_url = Some(format!(
                "smtp://mailer:Sup3rS3cretPw@127.0.0.1:{}",
                smtp.port
            ));
            c.plugins.email.from = Some("kairo@example.com".into());
        },
    )
    .await;
    kairo.post("{}").await;
    kairo.router.idle().await;
    let record = &kairo.router.history()[0];
    assert_eq!(
        (record.succeeded, record.attempts),
        (false, 1),
        "{record:?}"
    );
    assert_eq!(record.error_class.as_deref(), Some("permanent"));
    let error = record.error.as_deref().unwrap();
    assert!(error.contains("authentication"), "{error}");
    assert!(!error.contains("Sup3rS3cretPw"), "{error}");
}
