//! Microsoft device authorization grant and refresh.

use fakecloud::{FakeCloud, Options};

use crate::support::*;

fn opts() -> Options {
    Options {
        device_poll_interval_secs: 1,
        tenants: vec!["contoso.onmicrosoft.com".into()],
        ..Options::default()
    }
}

#[tokio::test]
async fn device_flow_pending_then_approved() {
    let cloud = FakeCloud::start(opts()).await.unwrap();
    let c = http(&cloud);
    let dc = devicecode(&c, &cloud, SMTP_SCOPE).await;
    assert_eq!(dc["interval"], 1);
    assert_eq!(dc["expires_in"], 900);
    let user_code = dc["user_code"].as_str().unwrap();
    let uri = dc["verification_uri"].as_str().unwrap();
    assert_eq!(uri, format!("{}/devicelogin", cloud.base_url()));
    assert!(dc["message"].as_str().unwrap().contains(&format!(
        "open the page {uri} and enter the code {user_code}"
    )));
    let device_code = dc["device_code"].as_str().unwrap();

    let (status, body) = poll(&c, &cloud, device_code).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "authorization_pending");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS70016:")
    );
    assert_eq!(body["error_codes"][0], 70016);

    // Codes are accepted as people type them.
    cloud
        .approve_user_code(&user_code.to_lowercase(), "Alice@Contoso.example")
        .unwrap();
    let (status, tok) = poll(&c, &cloud, device_code).await;
    assert_eq!(status, 200, "{tok}");
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["expires_in"], 3599);
    assert_eq!(tok["ext_expires_in"], 3599);
    assert!(tok["access_token"].as_str().unwrap().len() > 20);
    assert!(tok["refresh_token"].as_str().unwrap().len() > 20);
    assert!(
        tok["scope"]
            .as_str()
            .unwrap()
            .contains("https://outlook.office.com/SMTP.Send")
    );
    let claims = jwt_claims(tok["id_token"].as_str().unwrap());
    assert_eq!(claims["preferred_username"], "Alice@Contoso.example");
    assert_eq!(claims["email"], "Alice@Contoso.example");
    assert_eq!(claims["aud"], "ms-client-id");
    assert!(claims["tid"].as_str().unwrap().len() == 36);
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());

    // A device code is good for one redemption only.
    let (status, body) = poll(&c, &cloud, device_code).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");

    assert_eq!(cloud.device_poll_times().len(), 3);
    let reqs = cloud.requests();
    let dc_req = reqs
        .iter()
        .find(|r| r.path.ends_with("/devicecode"))
        .unwrap();
    assert_eq!(dc_req.form_value("client_id"), Some("ms-client-id"));
    assert_eq!(dc_req.form_value("scope"), Some(SMTP_SCOPE));
}

#[tokio::test]
async fn slow_down_decline_expiry_and_bad_code() {
    let cloud = FakeCloud::start(opts()).await.unwrap();
    let c = http(&cloud);
    let dc = devicecode(&c, &cloud, SMTP_SCOPE).await;
    let device_code = dc["device_code"].as_str().unwrap();
    cloud.slow_down_next_polls(2);
    for _ in 0..2 {
        let (_, body) = poll(&c, &cloud, device_code).await;
        assert_eq!(body["error"], "slow_down");
    }
    let (_, body) = poll(&c, &cloud, device_code).await;
    assert_eq!(body["error"], "authorization_pending");

    cloud
        .decline_user_code(dc["user_code"].as_str().unwrap())
        .unwrap();
    let (_, body) = poll(&c, &cloud, device_code).await;
    assert_eq!(body["error"], "authorization_declined");

    let dc2 = devicecode(&c, &cloud, SMTP_SCOPE).await;
    cloud.expire_device_codes();
    let (_, body) = poll(&c, &cloud, dc2["device_code"].as_str().unwrap()).await;
    assert_eq!(body["error"], "expired_token");
    assert!(matches!(
        cloud.approve_user_code(dc2["user_code"].as_str().unwrap(), "a@b.example"),
        Err(fakecloud::Error::UserCodeExpired(_))
    ));
    assert!(matches!(
        cloud.approve_user_code("NOPE-NOPE", "a@b.example"),
        Err(fakecloud::Error::UnknownUserCode(_))
    ));

    let (_, body) = poll(&c, &cloud, "garbage").await;
    assert_eq!(body["error"], "bad_verification_code");
}

#[tokio::test]
async fn clients_and_tenants_are_checked() {
    let cloud = FakeCloud::start(opts()).await.unwrap();
    let c = http(&cloud);
    let (status, body) = post_form(
        &c,
        &format!("{}/devicecode", cloud.entra_endpoint("common")),
        &[("client_id", "someone-else"), ("scope", SMTP_SCOPE)],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "unauthorized_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS700016:")
    );

    let resp = c
        .get(format!(
            "{}/nowhere.example/v2.0/.well-known/openid-configuration",
            cloud.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_tenant");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("AADSTS90002: Tenant 'nowhere.example' not found")
    );

    let disc: serde_json::Value = c
        .get(format!(
            "{}/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration",
            cloud.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        disc["token_endpoint"],
        format!("{}/token", cloud.entra_endpoint("contoso.onmicrosoft.com"))
    );
    assert_eq!(
        disc["device_authorization_endpoint"],
        format!(
            "{}/devicecode",
            cloud.entra_endpoint("contoso.onmicrosoft.com")
        )
    );
}

#[tokio::test]
async fn refresh_rotates_and_revocation_kills() {
    let cloud = FakeCloud::start(opts()).await.unwrap();
    let c = http(&cloud);
    let tok = ms_tokens(&c, &cloud, "bob@contoso.example").await;
    let rt1 = tok["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |rt: String| {
        let c = c.clone();
        let url = format!("{}/token", cloud.entra_endpoint("common"));
        async move {
            post_form(
                &c,
                &url,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", "ms-client-id"),
                    ("refresh_token", &rt),
                    (
                        "scope",
                        "https://outlook.office.com/SMTP.Send offline_access",
                    ),
                ],
            )
            .await
        }
    };
    let (status, t2) = refresh(rt1.clone()).await;
    assert_eq!(status, 200, "{t2}");
    let rt2 = t2["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    assert_ne!(tok["access_token"], t2["access_token"]);

    let (status, body) = refresh(rt1).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS70000:")
    );

    let (_, body) = refresh("unknown".into()).await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS9002313:")
    );
    assert_eq!(cloud.refresh_count(), 1);

    cloud.revoke_grants("BOB@contoso.example");
    let (_, body) = refresh(rt2).await;
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS50173:")
    );
}

#[tokio::test]
async fn devicelogin_page_approves_like_a_person() {
    let cloud = FakeCloud::start(opts()).await.unwrap();
    let c = http(&cloud);
    let dc = devicecode(&c, &cloud, SMTP_SCOPE).await;
    let page = c
        .get(format!("{}/devicelogin", cloud.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("name=\"otc\""));
    let resp = c
        .post(format!("{}/devicelogin", cloud.base_url()))
        .form(&[
            ("otc", dc["user_code"].as_str().unwrap()),
            ("mailbox", "carol@contoso.example"),
            ("action", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (status, tok) = poll(&c, &cloud, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        jwt_claims(tok["id_token"].as_str().unwrap())["preferred_username"],
        "carol@contoso.example"
    );
}
