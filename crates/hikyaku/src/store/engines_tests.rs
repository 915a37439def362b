//! The store's operations (users, sessions, API tokens, accounts, audit,
//! trusted CAs, submitters, settings, statistics, purge, export) give the
//! same answers on both engines: each case runs on a SQLite file and on a
//! fresh database of the test PostgreSQL cluster.

#![allow(clippy::unwrap_used)] // tests may unwrap

use super::accounts::{JobsOnDelete, NewAccount, TokenGrant};
use super::audit::Action;
use super::ca::NewCa;
use super::retention::Retention;
use super::users::{NewApiToken, SetupTokenState, TokenState};
use super::{Conflict, Store, StoreError};
use crate::cloud::Cloud;
use crate::i18n::Reason;
use crate::provider::Provider;
use crate::queue::{JobFilter, JobState, JobStore as _, conformance};
use crate::roles::Role;

const NOW: i64 = 1_800_000_000;

async fn users_sessions_and_tokens(store: &Store) {
    store.create_setup_token("setup", NOW + 60).await.unwrap();
    assert_eq!(
        store.setup_token_state("setup", NOW).await.unwrap(),
        SetupTokenState::Valid
    );
    let admin = store
        .create_first_admin("setup", "admin", "hash", NOW)
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_first_admin("setup", "other", "hash", NOW)
            .await,
        Err(StoreError::Conflict(Conflict::SetupComplete))
    ));
    assert_eq!(
        store.setup_token_state("setup", NOW).await.unwrap(),
        SetupTokenState::Used
    );
    let bob = store
        .create_user("bob", Role::NetworkAdmin, "hash2", NOW)
        .await
        .unwrap();
    assert!(bob > admin);
    assert!(matches!(
        store.create_user("bob", Role::NetworkAdmin, "x", NOW).await,
        Err(StoreError::Conflict(Conflict::UserExists(_)))
    ));
    assert_eq!(store.count_users().await.unwrap(), 2);
    let names: Vec<String> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["admin", "bob"]);
    // The last Administrator stays.
    assert!(matches!(
        store.delete_user("admin", NOW).await,
        Err(StoreError::Conflict(Conflict::LastAdministrator))
    ));

    store
        .create_session("sid", bob, "csrf", NOW, "127.0.0.1")
        .await
        .unwrap();
    let session = store
        .touch_session("sid", NOW + 10, 900)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (session.user.name.as_str(), session.csrf_token.as_str()),
        ("bob", "csrf")
    );
    assert!(
        store
            .touch_session("sid", NOW + 5000, 900)
            .await
            .unwrap()
            .is_none()
    );

    store
        .create_user_api_token(&NewApiToken {
            name: "scanner",
            role: Role::Administrator,
            token_hash: "th",
            user_id: bob,
            expires_at: Some(NOW + 100),
            now: NOW,
        })
        .await
        .unwrap();
    let token = store.api_token("th", NOW).await.unwrap().unwrap();
    assert_eq!(token.user.as_deref(), Some("bob"));
    // Narrowed to its user's role.
    assert_eq!(token.effective_role(), Role::NetworkAdmin);
    assert_eq!(token.state(NOW + 100), TokenState::Expired);
    store.revoke_api_token("scanner", NOW + 1).await.unwrap();
    let listed = store.list_api_tokens().await.unwrap();
    assert_eq!(listed[0].state(NOW + 1), TokenState::Revoked);

    // Deleting a user ends their sessions and revokes their tokens.
    store
        .create_session("sid2", bob, "c", NOW, "x")
        .await
        .unwrap();
    store.delete_user("bob", NOW).await.unwrap();
    assert!(
        store
            .touch_session("sid2", NOW, 900)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .set_user_role("admin", Role::Administrator)
            .await
            .unwrap(),
        Role::Administrator
    );
}

async fn accounts_audit_ca_submitters_settings(store: &Store) {
    // The two seeded accounts, then one more.
    let seeded = store.accounts().await.unwrap();
    assert_eq!(seeded.len(), 2);
    assert!(seeded.iter().all(|a| a.verify_cert && !a.enabled));
    let id = store
        .create_account(
            &NewAccount {
                provider: Provider::Microsoft,
                name: "sales".into(),
                cloud: Cloud::Worldwide,
                credential_kind: super::accounts::CredentialKind::Delegated,
                mailbox: None,
                enabled: true,
            },
            NOW,
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_account(
                &NewAccount {
                    provider: Provider::Google,
                    name: "sales".into(),
                    cloud: Cloud::Worldwide,
                    credential_kind: super::accounts::CredentialKind::Delegated,
                    mailbox: None,
                    enabled: false,
                },
                NOW,
            )
            .await,
        Err(StoreError::Conflict(Conflict::AccountExists(_)))
    ));
    let account = store.account_by_name("sales").await.unwrap();
    assert_eq!((account.id, account.enabled), (id, true));
    // Sealed secrets (BYTEA / BLOB) and the quoted "authorization" column.
    store
        .set_authorization(id, Some(&[1, 2, 3]), "pending", None)
        .await
        .unwrap();
    store
        .store_tokens(
            id,
            &TokenGrant {
                access_token: vec![4, 5],
                access_expires_at: NOW + 3600,
                refresh_token: Some(vec![6]),
                mailbox: Some("printer@contoso.example".into()),
                identity_verified: Some(true),
                refreshed_at: NOW,
                authorized_at: Some(NOW),
            },
        )
        .await
        .unwrap();
    let sealed = store.sealed_secrets(id).await.unwrap();
    assert_eq!(sealed.access_token.as_deref(), Some(&[4u8, 5][..]));
    assert_eq!(sealed.refresh_token.as_deref(), Some(&[6u8][..]));
    let account = store.account(id).await.unwrap();
    assert_eq!(account.mailbox.as_deref(), Some("printer@contoso.example"));
    store
        .enqueue_owned(
            crate::queue::NewJob {
                account_id: Some(id),
                ..conformance::job("j1")
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(store.pending_jobs_of(id).await.unwrap(), 1);
    let failed = store
        .delete_account(
            id,
            JobsOnDelete::Fail,
            &Reason::new("upstream").arg("reply", "gone"),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(failed, 1);
    assert_eq!(store.job("j1").await.unwrap().state, JobState::Failed);

    store
        .audit(
            NOW,
            "admin",
            "127.0.0.1",
            Action::Login,
            &Reason::new("upstream").arg("reply", "ok"),
        )
        .await
        .unwrap();
    let entries = store.audit_entries(10, 0).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].actor, "admin");

    let ca = NewCa {
        fingerprint: "ab".into(),
        subject: "CN=Proxy".into(),
        issuer: "CN=Proxy".into(),
        not_before: 0,
        not_after: NOW,
        der: vec![0x30, 0x00],
        for_google: true,
    };
    store
        .add_ca_certificates(std::slice::from_ref(&ca), NOW)
        .await
        .unwrap();
    assert!(matches!(
        store.add_ca_certificates(&[ca], NOW).await,
        Err(StoreError::Conflict(Conflict::CaExists(_)))
    ));
    let cas = store.ca_certificates().await.unwrap();
    assert_eq!((cas.len(), cas[0].der.as_slice()), (1, &[0x30u8, 0x00][..]));
    store.delete_ca_certificate(cas[0].id).await.unwrap();
    assert!(store.ca_certificates().await.unwrap().is_empty());

    store.add_submitter("mfp", "h", None, NOW).await.unwrap();
    assert!(matches!(
        store.add_submitter("mfp", "h", None, NOW).await,
        Err(StoreError::Conflict(Conflict::SubmitterExists(_)))
    ));
    assert!(store.submitter("mfp").await.unwrap().is_some());
    store
        .add_allow_entry("10.0.0.0/8", None, NOW)
        .await
        .unwrap();
    assert_eq!(store.allowlist().await.unwrap().len(), 1);
    store.delete_allow_entry("10.0.0.0/8").await.unwrap();
    store.delete_submitter("mfp").await.unwrap();
    assert!(matches!(
        store.delete_submitter("mfp").await,
        Err(StoreError::NotFound)
    ));

    store.set_setting("k", "v").await.unwrap();
    store.set_setting("k", "w").await.unwrap();
    assert_eq!(store.setting("k").await.unwrap().as_deref(), Some("w"));
    store.ping().await.unwrap();
    assert!(store.size_bytes().await.unwrap() > 0);
}

async fn stats_purge_and_export(store: &Store) {
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        store
            .enqueue_owned(conformance::job(id), NOW + i as i64)
            .await
            .unwrap();
    }
    assert_eq!(store.oldest_waiting_since().await.unwrap(), Some(NOW));
    let claimed = store
        .claim_due_jobs_with_bodies(NOW + 10, NOW + 100, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    let ok = Reason::new("upstream").arg("reply", "250 ok");
    store.mark_sent("a", None, &ok, NOW + 20).await.unwrap();
    store.mark_failed("b", None, &ok, NOW + 20).await.unwrap();
    store
        .defer_job("c", &ok, NOW + 30, NOW + 20, true)
        .await
        .unwrap();
    let hours = store
        .hourly_outcomes((NOW + 20) / 3600, (NOW + 20) / 3600)
        .await
        .unwrap();
    assert_eq!(hours.len(), 1);
    assert_eq!(
        (hours[0].1.sent, hours[0].1.failed, hours[0].1.deferred),
        (1, 1, 1)
    );

    // Export pages, newest first, a search that ignores case.
    let filter = JobFilter {
        search: Some("BOSS@".into()),
        ..Default::default()
    };
    let first = store.jobs_page(&filter, None, 2).await.unwrap();
    assert_eq!(
        first.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["c", "b"]
    );
    let cursor = (first[1].created_at, first[1].id.clone());
    let next = store.jobs_page(&filter, Some(&cursor), 2).await.unwrap();
    assert_eq!(
        next.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["a"]
    );

    // A purge far in the future removes the finished jobs and the audit.
    store
        .audit(
            NOW,
            "admin",
            "cli",
            Action::Login,
            &Reason::new("upstream").arg("reply", "ok"),
        )
        .await
        .unwrap();
    let purged = store
        .purge(
            NOW + 400 * 86_400,
            Retention {
                history_days: 1,
                audit_days: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(purged.jobs, 2);
    assert!(store.audit_entries(10, 0).await.unwrap().is_empty());
    assert_eq!(store.job("c").await.unwrap().state, JobState::Deferred);
}

async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Store::open(dir.path()).await.unwrap(), dir)
}

async fn postgres() -> Store {
    Store::open_postgres(&testkit::postgres::database(), "instance-a")
        .await
        .unwrap()
}

#[tokio::test]
async fn users_sessions_and_tokens_on_both_engines() {
    let (lite, _dir) = sqlite().await;
    users_sessions_and_tokens(&lite).await;
    users_sessions_and_tokens(&postgres().await).await;
}

#[tokio::test]
async fn accounts_audit_ca_submitters_and_settings_on_both_engines() {
    let (lite, _dir) = sqlite().await;
    accounts_audit_ca_submitters_settings(&lite).await;
    accounts_audit_ca_submitters_settings(&postgres().await).await;
}

#[tokio::test]
async fn statistics_purge_and_export_on_both_engines() {
    let (lite, _dir) = sqlite().await;
    stats_purge_and_export(&lite).await;
    stats_purge_and_export(&postgres().await).await;
}

/// The queue's conformance suite through [`Store`] on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_on_postgresql_conforms() {
    conformance::all(|| async { (postgres().await, ()) }).await;
}
