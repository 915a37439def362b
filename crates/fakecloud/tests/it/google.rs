//! Google authorization code grant with PKCE, refresh and revocation.

use fakecloud::{FakeCloud, Options};

use crate::support::*;

#[tokio::test]
async fn consent_and_code_exchange() {
    let cloud = FakeCloud::start(Options::default()).await.unwrap();
    let c = http(&cloud);
    let p = pkce();
    let auth_url = google_auth_url(&cloud, &p.challenge, REDIRECT);
    let landing = cloud
        .google_consent(&auth_url, "dave@gmail.example")
        .unwrap();
    assert!(
        landing.starts_with("http://127.0.0.1:8765/?state=st4te&code=4%2F0A"),
        "{landing}"
    );
    assert!(landing.contains("&scope="));
    let code = query_value(&landing, "code").unwrap();
    assert!(code.starts_with("4/0A"));

    // Wrong secret, redirect and verifier are refused, and do not burn the code.
    let (status, body) = exchange(&c, &cloud, &code, &p.verifier, REDIRECT, Some("wrong")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, body) = exchange(
        &c,
        &cloud,
        &code,
        &p.verifier,
        "http://127.0.0.1:9999",
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("redirect_uri_mismatch"))
    );
    let (status, body) = exchange(&c, &cloud, &code, "wrong-verifier", REDIRECT, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(body["error_description"], "code_verifier mismatch");

    let (status, tok) = exchange(&c, &cloud, &code, &p.verifier, REDIRECT, None).await;
    assert_eq!(status, 200, "{tok}");
    assert!(tok["access_token"].as_str().unwrap().starts_with("ya29."));
    assert!(tok["refresh_token"].as_str().unwrap().starts_with("1//"));
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["expires_in"], 3599);
    assert!(
        tok["scope"]
            .as_str()
            .unwrap()
            .contains("https://mail.google.com/")
    );
    assert_eq!(
        jwt_claims(tok["id_token"].as_str().unwrap())["email"],
        "dave@gmail.example"
    );

    let (status, body) = exchange(&c, &cloud, &code, &p.verifier, REDIRECT, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let req = cloud
        .requests()
        .into_iter()
        .rfind(|r| r.path == "/token")
        .unwrap();
    assert_eq!(
        req.form_value("client_secret"),
        Some("google-client-secret")
    );
    assert_eq!(req.form_value("code_verifier"), Some(p.verifier.as_str()));
}

#[tokio::test]
async fn expired_code_deny_and_bad_requests() {
    let cloud = FakeCloud::start(Options::default()).await.unwrap();
    let c = http(&cloud);
    let p = pkce();
    let auth_url = google_auth_url(&cloud, &p.challenge, REDIRECT);
    let landing = cloud
        .google_consent(&auth_url, "erin@gmail.example")
        .unwrap();
    cloud.expire_google_codes();
    let code = query_value(&landing, "code").unwrap();
    let (_, body) = exchange(&c, &cloud, &code, &p.verifier, REDIRECT, None).await;
    assert_eq!(body["error"], "invalid_grant");

    let denied = cloud.google_deny(&auth_url).unwrap();
    assert_eq!(
        query_value(&denied, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(query_value(&denied, "state").as_deref(), Some("st4te"));

    let bad_redirect = google_auth_url(&cloud, &p.challenge, "https://evil.example/cb");
    assert!(matches!(
        cloud.google_consent(&bad_redirect, "x@y.example"),
        Err(fakecloud::Error::AuthorizationRejected { ref error, .. }) if error == "redirect_uri_mismatch"
    ));
    let resp = c.get(&bad_redirect).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("redirect_uri_mismatch"));

    let unknown_client = auth_url.replace("google-client-id", "other-id");
    let resp = c.get(&unknown_client).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.text().await.unwrap().contains("invalid_client"));
}

#[tokio::test]
async fn consent_page_form_redirects_with_code() {
    let cloud = FakeCloud::start(Options::default()).await.unwrap();
    let c = http(&cloud);
    let p = pkce();
    let auth_url = google_auth_url(&cloud, &p.challenge, "http://localhost:4321/cb");
    let page = c.get(&auth_url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"allow\""));
    // Post back the hidden fields as a browser would.
    let mut form: Vec<(String, String)> = url::Url::parse(&auth_url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    form.push(("email".into(), "frank@gmail.example".into()));
    form.push(("action".into(), "allow".into()));
    let resp = c
        .post(cloud.google_auth_url())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("http://localhost:4321/cb?state=st4te&code=4%2F"),
        "{location}"
    );
    let code = query_value(&location, "code").unwrap();
    let (status, _) = exchange(
        &c,
        &cloud,
        &code,
        &p.verifier,
        "http://localhost:4321/cb",
        None,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn refresh_without_rotation_and_revoke() {
    let cloud = FakeCloud::start(Options::default()).await.unwrap();
    let c = http(&cloud);
    let tok = google_tokens(&c, &cloud, "gina@gmail.example").await;
    let rt = tok["refresh_token"].as_str().unwrap();
    let o = cloud.options().clone();
    let token_url = cloud.google_token_url();
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", o.google_client_id.as_str()),
        ("client_secret", o.google_client_secret.as_str()),
        ("refresh_token", rt),
    ];
    let refresh = || post_form(&c, &token_url, &form);
    let (status, t2) = refresh().await;
    assert_eq!(status, 200, "{t2}");
    assert!(t2.get("refresh_token").is_none());
    let (status, _) = refresh().await;
    assert_eq!(status, 200);
    assert_eq!(cloud.refresh_count(), 2);

    let resp = c
        .post(cloud.google_revoke_url())
        .form(&[("token", rt)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (status, body) = refresh().await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        body["error_description"],
        "Token has been expired or revoked."
    );

    let (status, body) = post_form(&c, &cloud.google_revoke_url(), &[("token", "nope")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_token"))
    );
}

#[tokio::test]
async fn client_credentials_in_basic_auth_work_too() {
    let cloud = FakeCloud::start(Options::default()).await.unwrap();
    let c = http(&cloud);
    let p = pkce();
    let landing = cloud
        .google_consent(
            &google_auth_url(&cloud, &p.challenge, REDIRECT),
            "kim@gmail.example",
        )
        .unwrap();
    let code = query_value(&landing, "code").unwrap();
    let o = cloud.options();
    let resp = c
        .post(cloud.google_token_url())
        .basic_auth(&o.google_client_id, Some(&o.google_client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", p.verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}
