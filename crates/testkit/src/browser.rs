//! A client of the Remote UI and the JSON API, as a browser uses them.

use crate::server::TestServer;

/// A response with its body read.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Page {
    /// The first `name="csrf"` value in the page.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self
            .body
            .find(marker)
            .map(|i| i + marker.len())
            .expect("a csrf field in the page");
        let end = self.body[start..].find('"').expect("end of csrf") + start;
        self.body[start..end].to_string()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A cookie-keeping HTTP client that does not follow redirects.
pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    pub lang: &'static str,
}

impl Browser {
    pub fn new(server: &TestServer) -> Self {
        Self::with_lang(server, "en")
    }

    pub fn with_lang(server: &TestServer, lang: &'static str) -> Self {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            client,
            base: server.base.clone(),
            lang,
        }
    }

    fn abs(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    async fn read(r: reqwest::Response) -> Page {
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = r.text().await.unwrap_or_default();
        Page {
            status,
            location,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        Self::read(
            self.client
                .get(self.abs(path))
                .header("accept-language", self.lang)
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Page {
        Self::read(
            self.client
                .post(self.abs(path))
                .header("accept-language", self.lang)
                .form(form)
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    /// Posts a form with the CSRF token of the page at `from`.
    pub async fn submit(&self, from: &str, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.get(from).await.csrf();
        let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        form.extend_from_slice(fields);
        self.post_form(path, &form).await
    }

    /// A change that succeeds: the answer is a redirect (303) back to a
    /// page with its notice (`?done=`), which is then read.
    pub async fn submit_done(&self, from: &str, path: &str, fields: &[(&str, &str)]) -> Page {
        let r = self.submit(from, path, fields).await;
        assert_eq!(r.status, 303, "{path}: {}", r.body);
        let to = r.location.unwrap_or_default();
        assert!(to.contains("?done="), "{path} redirected to {to}");
        self.get(&to).await
    }

    pub async fn login(&self, user: &str, password: &str) -> Page {
        let page = self.get("/login").await;
        let csrf = page.csrf();
        let r = self
            .post_form(
                "/login",
                &[
                    ("csrf", &csrf),
                    ("username", user),
                    ("password", password),
                    ("next", "/"),
                ],
            )
            .await;
        assert_eq!(r.status, 303, "login as {user} failed: {}", r.body);
        r
    }

    /// The session's CSRF token (from any signed-in page).
    pub async fn session_csrf(&self) -> String {
        self.get("/").await.csrf()
    }
}
